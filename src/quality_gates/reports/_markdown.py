"""The report as Markdown: tables fit to paste into a pull request or a ticket.

`images` maps a chart's section to the link its image is shown from (a relative file path,
or a data: URI for the HTML rendering); without it charts are left out, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quality_gates.reports._format import DASH, cell, change, ratio, seconds, value, when

NO_DATA_LINE = "_No data in this period._"
Images = dict[str, tuple[str, str]]  # section id -> (title, link)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _classes(classes: dict[str, int]) -> str:
    return (
        (" (" + ", ".join(f"{cell(k)} {n:,}" for k, n in classes.items()) + ")") if classes else ""
    )


def _overview(data: dict[str, Any]) -> list[str]:
    c = data["compliance"]
    rows = [
        ["Requests", value(data["requests"], "count")],
        [
            "Answers other than 2xx",
            f"{value(data['not_2xx'], 'count')}" + _classes(data.get("not_2xx_classes") or {}),
        ],
        [
            "Failed requests (gateway errors)",
            f"{value(data['failed_requests'], 'count')} ({ratio(data['error_rate'])})",
        ],
        ["Upstream attempts", value(data["upstream_attempts"], "count")],
        ["Requests answered after a failover", value(data["failovers"], "count")],
        ["Cost", value(data["cost"], "usd")],
        ["Tokens (input / output)", f"{data['input_tokens']:,} / {data['output_tokens']:,}"],
        ["Incidents", str(data["incidents"])],
        ["Key metrics", f"{c['PASS']} pass, {c['FAIL']} fail, {c['NO DATA']} without data"],
    ]
    return _table(["Figure", "Value"], rows)


def _compliance(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            cell(m["name"]),
            value(m["measured"], m["unit"]),
            f"{m['comparison']} {value(m['target'], m['unit'])}",
            f"**{m['status']}**",
            cell(m["basis"]),
        ]
        for m in data["metrics"]
    ]
    return _table(["Metric", "Measured", "Target", "Verdict", "Based on"], rows)


def _providers(data: dict[str, Any]) -> list[str]:
    rows = [
        [
            cell(p["provider"]),
            value(p["attempts"], "count"),
            value(p["errors"], "count"),
            ratio(p["availability"]),
            f"> {ratio(p['target'])}",
            f"**{p['status']}**",
            value(p["p95_ms"], "ms"),
            cell(", ".join(f"{k} {v}" for k, v in p["errors_by_class"].items()) or DASH),
        ]
        for p in data["providers"]
    ]
    header = [
        "Provider",
        "Attempts",
        "Errors",
        "Availability",
        "Target",
        "Verdict",
        "P95",
        "Errors by class",
    ]
    return _table(header, rows)


def _latency(data: dict[str, Any]) -> list[str]:
    points = data["points"]
    worst = max(points, key=lambda p: p["p95_ms"] or 0.0)
    over = sum(1 for p in points if (p["p95_ms"] or 0.0) >= data["target_ms"])
    return [
        f"{len(points)} buckets of {seconds(data['bucket_seconds'])}; worst P95 "
        f"{value(worst['p95_ms'], 'ms')} at {when(_iso(worst['t']))}; {over} bucket(s) at or "
        f"over the {value(data['target_ms'], 'ms')} target."
    ]


def _iso(ts: float) -> str:
    from quality_gates.notify._channels import iso

    return iso(ts) or ""


def _error_budget(data: dict[str, Any]) -> list[str]:
    rows = [
        ["SLO", cell(data["slo"])],
        ["Objective", ratio(data["objective"])],
        ["Requests", value(data["requests"], "count")],
        ["Failed (counting against availability)", value(data["failed"], "count")],
        ["Failures the budget allows", value(data["allowed_failures"], "count")],
        ["Budget spent", ratio(data["consumed"])],
        [
            "Burn rate (1 = spending exactly the budget)",
            DASH if data["burn_rate"] is None else f"{data['burn_rate']:.2f}",
        ],
        ["Verdict", f"**{data['status']}**"],
    ]
    return _table(["Figure", "Value"], rows)


def _incidents(data: dict[str, Any]) -> list[str]:
    lines = _table(
        [
            "Severity",
            "Incidents",
            "Open",
            "Mean TTA",
            "Max TTA",
            "Mean TTR",
            "Max TTR",
            "Response breaches",
        ],
        [
            [
                s["severity"],
                str(s["count"]),
                str(s["open"]),
                seconds(s["mean_tta_seconds"]),
                seconds(s["max_tta_seconds"]),
                seconds(s["mean_ttr_seconds"]),
                seconds(s["max_ttr_seconds"]),
                str(s["response_breaches"]),
            ]
            for s in data["by_severity"]
        ],
    )
    lines += [
        "",
        *_table(
            ["#", "Severity", "State", "Opened", "Title", "TTA", "Response target", "TTR"],
            [
                [
                    str(i["id"]),
                    i["severity"],
                    i["state"],
                    when(i["opened_at"]),
                    cell(i["title"]),
                    seconds(i["tta_seconds"]),
                    _met(i["response_met"], i["response_target_seconds"]),
                    seconds(i["ttr_seconds"]),
                ]
                for i in data["items"]
            ],
        ),
    ]
    return lines


def _met(met: bool | None, target: float | None) -> str:
    limit = seconds(target)
    if met is None:
        return f"< {limit}"
    return f"< {limit} **{'PASS' if met else 'FAIL'}**"


def _alerts(data: dict[str, Any]) -> list[str]:
    lines = [f"{data['transitions']} alert transitions."]
    if data["fired"]:
        lines += [
            "",
            *_table(
                ["Rule", "Severity", "Times fired"],
                [[cell(f["rule"]), f["severity"], str(f["times"])] for f in data["fired"]],
            ),
        ]
    return lines


def _remediations(data: dict[str, Any]) -> list[str]:
    return _table(
        [
            "#",
            "Action",
            "Target",
            "To",
            "State",
            "Started",
            "After alert",
            "Duration",
            "Incident",
            "Summary",
        ],
        [
            [
                str(r["id"]),
                r["action"],
                cell(r["target"]),
                cell(r["to"]),
                r["state"],
                when(r["started_at"]),
                seconds(r["seconds_after_alert"]),
                "ongoing" if not r["finished_at"] else seconds(r["duration_seconds"]),
                f"#{r['incident_id']}" if r["incident_id"] else DASH,
                cell(r["summary"]),
            ]
            for r in data["items"]
        ],
    )


def _alias_changes(data: dict[str, Any]) -> list[str]:
    return _table(
        ["Time", "Environment", "Alias", "From", "To", "Operation", "By", "Took", "Reason"],
        [
            [
                when(m["time"]),
                cell(m["environment"]),
                cell(m["alias"]),
                cell(m["from_model"]),
                cell(m["to_model"]),
                cell(m["operation"]),
                f"{cell(m['actor'])} ({m['source']})",
                value(m["duration_ms"], "ms"),
                cell(m["reason"]),
            ]
            for m in data["items"]
        ],
    )


def _gates(data: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{k}: {v}" for k, v in data["verdicts"].items())
    lines = [f"Verdicts: {counts}.", ""]
    lines += _table(
        ["Run", "Kind", "Model", "Baseline", "Started", "Took", "Verdict"],
        [
            [
                cell(r["id"][:12]),
                r["kind"],
                cell(r["model_id"]),
                cell(r["baseline"]),
                when(r["started_at"]),
                seconds(r["duration_seconds"]),
                f"**{r['verdict'] or r['status']}**",
            ]
            for r in data["runs"]
        ],
    )
    return lines


def _cost(data: dict[str, Any]) -> list[str]:
    return _table(
        ["Figure", "Value"],
        [
            ["Cost", value(data["cost"], "usd")],
            ["Cost per request", value(data["cost_per_request"], "usd")],
            ["Input tokens", value(data["input_tokens"], "count")],
            ["Output tokens", value(data["output_tokens"], "count")],
        ],
    )


def _quota(data: dict[str, Any]) -> list[str]:
    return _table(
        [
            "Provider",
            "RPM quota",
            "Peak RPM",
            "Mean RPM",
            "Peak RPM share",
            "TPM quota",
            "Peak TPM",
            "Peak TPM share",
            "Minutes",
            "Verdict",
        ],
        [
            [
                cell(p["provider"]),
                value(p["rpm_quota"], "count"),
                value(p["peak_rpm"], "count"),
                value(p["mean_rpm"], "count"),
                ratio(p["peak_rpm_share"]),
                value(p["tpm_quota"], "count"),
                value(p["peak_tpm"], "count"),
                ratio(p["peak_tpm_share"]),
                str(p["minutes_with_traffic"]),
                f"**{p['status']}**",
            ]
            for p in data["providers"]
        ],
    )


def label(name: str) -> str:
    """`detection_seconds` -> `detection`."""
    return cell(name.removesuffix("_seconds").replace("_", " "))


def _figures(figures: list[dict[str, Any]]) -> str:
    parts = []
    for f in figures:
        shown = value(f["value"], f["unit"])
        if f["target"] is None:
            parts.append(f"{label(f['name'])} {shown} (no target) **{f['status']}**")
            continue
        target = value(f["target"], f["unit"])
        if shown == target and f["value"] is not None:
            # Rounded alike, a FAIL would read "30.0 s (target under 30.0 s)": show why.
            shown, target = f"{f['value']:.3f}", f"{f['target']:.3f}"
            if f["unit"] == "s":
                shown, target = f"{shown} s", f"{target} s"
        parts.append(f"{label(f['name'])} {shown} (target under {target}) **{f['status']}**")
    return "<br>".join(parts) if parts else DASH


def _recovery(data: dict[str, Any]) -> list[str]:
    lines = [
        "Targets: "
        + ", ".join(
            f"{label(t['name'])} under {value(t['target'], t['unit'])}" for t in data["targets"]
        )
        + "."
    ]
    lines += ["", "### Drills", ""]
    if data["drills"]:
        lines += _table(
            ["#", "Scenario", "Provider", "Started", "Status", "Figures"],
            [
                [
                    str(d["id"]),
                    cell(d["scenario"]),
                    cell(d["provider"]),
                    when(d["started_at"]),
                    f"**{cell(d['status'])}**",
                    _figures(d["figures"]),
                ]
                for d in data["drills"]
            ],
        )
    else:
        lines.append("_No drill ran in this period._")
    lines += ["", "### Automatic failovers", ""]
    if data["failovers"]:
        lines += _table(
            ["#", "Provider", "To", "Started", "State", "Figures"],
            [
                [
                    str(f["id"]),
                    cell(f["target"]),
                    cell(f["to"]),
                    when(f["started_at"]),
                    f["state"],
                    _figures(f["figures"]),
                ]
                for f in data["failovers"]
            ],
        )
    else:
        lines.append("_No automatic failover in this period._")
    lines += ["", "### Automatic rollbacks", ""]
    if data["rollbacks"]:
        lines += _table(
            ["#", "From", "To", "Started", "Figures"],
            [
                [
                    str(r["id"]),
                    cell(r["target"]),
                    cell(r["to"]),
                    when(r["started_at"]),
                    _figures(r["figures"]),
                ]
                for r in data["rollbacks"]
            ],
        )
    else:
        lines.append("_No automatic rollback in this period._")
    return lines


def _routine_checks(data: dict[str, Any]) -> list[str]:
    return _table(
        ["Job", "Runs", "Passed", "Failed", "Last run", "Last status"],
        [
            [
                cell(j["job"]),
                str(j["runs"]),
                str(j["passed"]),
                str(j["failed"]),
                when(j["last_run"]),
                f"**{j['last_status']}**",
            ]
            for j in data["jobs"]
        ],
    )


def _comparison(data: dict[str, Any]) -> list[str]:
    a, b = data["model_a"], data["model_b"]
    lines = [f"A: **{cell(a['id'])}** ({a['source']}); B: **{cell(b['id'])}** ({b['source']}).", ""]
    lines += _table(
        ["Metric", f"A: {cell(a['id'])}", f"B: {cell(b['id'])}", "A against B"],
        [
            [
                cell(r["name"]),
                value(r["a"], r["unit"]),
                value(r["b"], r["unit"]),
                change(r["change"]),
            ]
            for r in data["rows"]
        ],
    )
    for label, model in (("A", a), ("B", b)):
        gate = model["last_gate"]
        if gate:
            lines += [
                "",
                f"Last gate run of {label}: {gate['kind']} "
                f"**{gate['verdict'] or gate['status']}** at {when(gate['started_at'])}.",
            ]
    return lines


def _impact(data: dict[str, Any]) -> list[str]:
    lines = []
    change_row = data["change"]
    if change_row:
        lines += [
            f"Change at {when(data['at'])}: {cell(change_row['operation'])} of `current` from "
            f"{cell(change_row['from_model'])} to {cell(change_row['to_model'])} by "
            f"{cell(change_row['actor'])} ({cell(change_row['reason'])}).",
            "",
        ]
    else:
        lines += [f"Compared around {when(data['at'])}.", ""]
    lines += [
        f"Before: {when(data['before'][0])} to {when(data['before'][1])}; after: "
        f"{when(data['after'][0])} to {when(data['after'][1])}.",
        "",
    ]
    lines += _table(
        ["Metric", "Before", "After", "Change"],
        [
            [
                cell(r["name"]),
                value(r["b"], r["unit"]),
                value(r["a"], r["unit"]),
                change(r["change"]),
            ]
            for r in data["rows"]
        ],
    )
    return lines


def _incident(data: dict[str, Any]) -> list[str]:
    inc, times, impact = data["incident"], data["times"], data["impact"]
    response = data.get("response") or {}
    lines = [f"**#{inc['id']} {cell(inc['title'])}**", ""]
    lines += _table(
        ["Figure", "Value"],
        [
            ["Severity", inc["severity"]],
            ["Type", cell(inc["type"])],
            ["State", inc["state"]],
            ["Environment", cell(inc["environment"])],
            ["Opened", when(times["opened"])],
            ["Acknowledged", when(times["acknowledged"])],
            [
                "Time to acknowledge",
                seconds(times["response_seconds"])
                + " "
                + _met(response.get("response_met"), response.get("response_target_seconds")),
            ],
            ["Recovered (alerts cleared)", when(times["mitigated"])],
            ["Resolved", when(times["resolved"])],
            ["Time to resolve", seconds(times["resolution_seconds"])],
            ["Requests in the impact window", value(impact["requests"], "count")],
            [
                "Answers other than 2xx",
                f"{value(impact.get('not_2xx', impact['failed_requests']), 'count')}"
                + _classes(impact.get("not_2xx_classes") or {}),
            ],
            [
                "Failed requests (gateway errors)",
                f"{value(impact['failed_requests'], 'count')} ({ratio(impact['error_rate'])})",
            ],
            ["Providers involved", cell(", ".join(impact["providers"]) or DASH)],
            ["Extra cost", value(impact["extra_cost"], "usd")],
            [
                "Review",
                cell(data["postmortem_path"])
                if data["postmortem_path"]
                else "not written yet (`quality-gates incident postmortem N`)",
            ],
        ],
    )
    lines += ["", "### Timeline", ""]
    lines += _table(
        ["Time", "Kind", "Who", "What"],
        [
            [when(e["time"]), cell(e["kind"]), cell(e["actor"]), cell(e["message"])]
            for e in data["timeline"]
        ],
    )
    lines += ["", "### Alerts", ""]
    if data["alerts"]:
        lines += _table(
            ["Time", "Rule", "Severity", "Transition", "Value"],
            [
                [
                    when(a["time"]),
                    cell(a["rule"]),
                    a["severity"],
                    a["transition"],
                    DASH if a["value"] is None else f"{a['value']:.4g}",
                ]
                for a in data["alerts"]
            ],
        )
    else:
        lines.append("_No alert is attached to this incident._")
    lines += ["", "### Remediations", ""]
    lines += (
        _remediations({"items": data["remediations"]})
        if data["remediations"]
        else ["_No automatic action was taken._"]
    )
    lines += [
        "",
        "### Root cause",
        "",
        cell(data["root_cause"]) if data["root_cause"] else "_Not recorded._",
    ]
    return lines


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "overview": _overview,
    "compliance": _compliance,
    "providers": _providers,
    "latency": _latency,
    "error_budget": _error_budget,
    "incidents": _incidents,
    "alerts": _alerts,
    "remediations": _remediations,
    "alias_changes": _alias_changes,
    "gates": _gates,
    "cost": _cost,
    "quota": _quota,
    "recovery": _recovery,
    "routine_checks": _routine_checks,
    "comparison": _comparison,
    "impact": _impact,
    "incident": _incident,
}


def render(document: dict[str, Any], images: Images | None = None, note: str | None = None) -> str:
    """The whole report as Markdown; `note` (one line) goes under the heading."""
    period, filters = document["period"], document["filters"]
    scope = ", ".join(
        f"{k.replace('_', ' ')} {cell(v)}" for k, v in filters.items() if v not in (None, "")
    )
    lines = [
        f"# {cell(document['title'])}: {cell(document['project'])}",
        "",
        f"Period: {when(period['start'])} to {when(period['end'])} ({cell(period['name'])})"
        + (f"; {scope}" if scope else "")
        + f". Generated {when(document['generated_at'])} from the quality-gates store; "
        "every figure is measured, none is assumed.",
    ]
    if note:
        lines += ["", f"_{cell(note)}_"]
    for section in document["sections"]:
        lines += ["", f"## {cell(section['title'])}", ""]
        if section["note"]:
            lines += [f"_{cell(section['note'])}_", ""]
        if section["empty"] and section["id"] not in ("recovery", "compliance", "quota"):
            lines.append(NO_DATA_LINE)
            continue
        if section["empty"]:
            lines += [NO_DATA_LINE, ""]
        lines += RENDERERS[section["id"]](section["data"])
        if images and section["id"] in images:
            title, link = images[section["id"]]
            lines += ["", f"![{title}]({link})"]
    return "\n".join(lines) + "\n"
