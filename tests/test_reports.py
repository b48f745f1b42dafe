"""Reports from a store with a history (tests/report_data.py): the figures match the store,
every rendering is well formed, an empty store says "no data", bad input is refused."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace, make_workspace
from tests.report_data import INCIDENT_ACK_S, INCIDENT_RESOLVE_S, History, expected, fill

from quality_gates.config import QualityGatesConfig, load_config
from quality_gates.errors import UsageError
from quality_gates.reports import (
    REPORT_TYPES,
    build_report,
    make_request,
    schema,
    write_report,
)

Filled = tuple[Workspace, QualityGatesConfig, History]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    root = tmp_path_factory.mktemp("reports")
    ws = make_workspace(root / "ws", f"sqlite:///{root / 'ws' / 'state.db'}")
    config = load_config(ws.config_path).config
    history = fill(ws.conn, config, time.time())
    yield ws, config, history
    ws.database.close_shared()


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[tuple[Workspace, QualityGatesConfig]]:
    ws = make_workspace(tmp_path / "empty", f"sqlite:///{tmp_path / 'empty' / 'state.db'}")
    yield ws, load_config(ws.config_path).config
    ws.database.close_shared()


def document(filled: Filled, type: str = "detailed", **kw: Any) -> dict[str, Any]:
    ws, config, history = filled
    request = make_request(type, now=history.now, **kw)
    return build_report(ws.conn, config, request, now=history.now)


def section(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in doc["sections"] if s["id"] == sid)


def metric(doc: dict[str, Any], name: str) -> dict[str, Any]:
    rows = section(doc, "compliance")["data"]["metrics"]
    return next(m for m in rows if m["metric"] == name)


def validate(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.Draft202012Validator(schema()).validate(json.loads(json.dumps(doc)))


# --- figures against the store -------------------------------------------------------------


def test_compliance_figures_are_the_store_s_own(filled: Filled) -> None:
    ws, _config, history = filled
    doc = document(filled)
    truth = expected(ws.conn, history.start, history.now)
    overview = section(doc, "overview")["data"]
    assert overview["requests"] == truth["requests"] == len(history.request_ids)
    assert overview["failed_requests"] == truth["errors"] > 0
    error_rate = metric(doc, "error_rate")
    assert error_rate["measured"] == pytest.approx(truth["errors"] / truth["requests"])
    assert error_rate["status"] == "PASS"
    assert error_rate["target"] == 0.02
    # P95 from the roll-up histograms agrees with the raw rows within the sketch's 1%.
    assert metric(doc, "p95_latency")["measured"] == pytest.approx(truth["p95"], rel=0.03)
    cache = metric(doc, "cache_hit_rate")
    assert cache["measured"] == pytest.approx(truth["cache_hits"] / truth["requests"])
    assert cache["status"] == "FAIL"  # ~60% against the runbook's 80%
    # Golden probe scores: 180 at 0.97 and 20 at 0.90.
    assert metric(doc, "accuracy")["measured"] == pytest.approx(0.963)
    assert metric(doc, "satisfaction")["measured"] == pytest.approx((40 * 5 + 20 * 3) / 60)
    toxicity = metric(doc, "toxicity_rate")
    assert toxicity["measured"] == pytest.approx(0.001)
    assert toxicity["status"] == "FAIL"
    # 30 requests a minute at most: far below the runbook's 20 req/s.
    throughput = metric(doc, "throughput")
    assert throughput["measured"] == pytest.approx(0.5)
    assert throughput["status"] == "FAIL"


def test_thresholds_come_from_the_environment_s_config(filled: Filled) -> None:
    ws, config, history = filled
    strict = config.model_copy(deep=True)
    strict.environments["production"].thresholds.p95_latency_ms = 100.0
    request = make_request("detailed", now=history.now)
    doc = build_report(ws.conn, strict, request, now=history.now)
    p95 = metric(doc, "p95_latency")
    assert p95["target"] == 100.0
    assert p95["status"] == "FAIL"


def test_google_s_outage_shows_in_its_availability_and_the_error_budget(filled: Filled) -> None:
    doc = document(filled)
    providers = {p["provider"]: p for p in section(doc, "providers")["data"]["providers"]}
    assert set(providers) == {"bedrock", "google", "meta"}
    google = providers["google"]
    assert google["errors_by_class"]["server_error"] == google["errors"] > 0
    assert google["availability"] < providers["bedrock"]["availability"]
    budget = section(doc, "error_budget")["data"]
    assert budget["objective"] == 0.999
    assert budget["failed"] == section(doc, "overview")["data"]["failed_requests"]
    assert budget["consumed"] == pytest.approx(budget["failed"] / (0.001 * budget["requests"]))


def test_latency_series_shows_the_spike(filled: Filled) -> None:
    data = section(document(filled), "latency")["data"]
    points = data["points"]
    assert data["bucket_seconds"] == 300
    assert len(points) >= 18
    assert (
        sum(p["requests"] for p in points)
        == section(document(filled), "overview")["data"]["requests"]
    )
    worst = max(points, key=lambda p: p["p95_ms"])
    calm = sorted(p["p95_ms"] for p in points)[len(points) // 2]
    assert worst["p95_ms"] > 1500 > calm


def test_incidents_carry_time_to_acknowledge_and_resolve_by_severity(filled: Filled) -> None:
    _ws, _config, history = filled
    data = section(document(filled), "incidents")["data"]
    rows = {s["severity"]: s for s in data["by_severity"]}
    assert rows["P1"]["count"] == 1
    assert rows["P1"]["open"] == 0
    assert rows["P1"]["mean_tta_seconds"] == pytest.approx(INCIDENT_ACK_S)
    assert rows["P1"]["mean_ttr_seconds"] == pytest.approx(INCIDENT_RESOLVE_S)
    assert rows["P2"]["count"] == 1
    assert rows["P2"]["open"] == 1
    assert rows["P2"]["mean_tta_seconds"] is None
    assert rows["P0"]["count"] == 0
    p1 = next(i for i in data["items"] if i["id"] == history.incident_id)
    assert p1["response_met"] is True
    assert p1["response_target_seconds"] == 1800


def test_remediations_gates_drills_and_routine_checks_are_listed(filled: Filled) -> None:
    _ws, _config, history = filled
    doc = document(filled)
    actions = section(doc, "remediations")["data"]["items"]
    assert [a["action"] for a in actions] == ["failover", "rollback"]
    assert actions[0]["duration_seconds"] == pytest.approx(894.0)
    assert section(doc, "gates")["data"]["verdicts"] == {"APPROVE": 1, "REJECT": 1}
    moves = section(doc, "alias_changes")["data"]["items"]
    assert any(m["operation"] == "rollback" and m["actor"] == "alice" for m in moves)
    recovery = section(doc, "recovery")["data"]
    drill = recovery["drills"][0]
    assert drill["id"] == history.drill_id
    assert drill["status"] == "passed"
    assert {f["name"]: f["status"] for f in drill["figures"]}["detection_seconds"] == "PASS"
    failover = {f["name"]: f for f in recovery["failovers"][0]["figures"]}
    assert failover["failover_seconds"]["value"] == 6.0
    assert failover["failover_seconds"]["status"] == "PASS"
    # Detection is measured from google's first failed attempt before the alert: > 0.
    assert failover["detection_seconds"]["value"] > 0
    assert recovery["rollbacks"][0]["figures"][0]["value"] == 4.0
    jobs = section(doc, "routine_checks")["data"]["jobs"]
    assert jobs == [
        {
            "job": "daily-health-check",
            "runs": 3,
            "passed": 2,
            "failed": 1,
            "last_status": "passed",
            "last_run": jobs[0]["last_run"],
        }
    ]


def test_drill_figures_without_recorded_verdicts_meet_the_runbook_s_targets(
    filled: Filled,
) -> None:
    ws, _config, history = filled
    figures = {"requests_sent": 1000, "request_loss": 0.02, "detection_seconds": 9.0}
    with ws.conn.write():
        ws.conn.execute(
            "INSERT INTO drill_runs (scenario, environment, provider, started_at, status, "
            "figures, verdicts, details, actor) VALUES ('multi-provider-outage', 'production', "
            "NULL, :t, 'missed', :f, '{}', '{}', 'ops')",
            {"t": history.now - 20, "f": json.dumps(figures)},
        )
    try:
        drills = section(document(filled, "failover-effectiveness"), "recovery")["data"]["drills"]
        drill = next(d for d in drills if d["scenario"] == "multi-provider-outage")
        got = {f["name"]: (f["unit"], f["target"], f["status"]) for f in drill["figures"]}
        assert got == {
            "requests_sent": ("count", None, "INFO"),
            "request_loss": ("ratio", 0.01, "FAIL"),
            "detection_seconds": ("s", 30.0, "PASS"),
        }
    finally:
        with ws.conn.write():
            ws.conn.execute("DELETE FROM drill_runs WHERE scenario = 'multi-provider-outage'")


def test_a_drill_with_unreadable_figures_is_shown_without_a_verdict(filled: Filled) -> None:
    ws, _config, history = filled
    with ws.conn.write():
        ws.conn.execute(
            "INSERT INTO drill_runs (scenario, environment, provider, started_at, status, "
            "figures, verdicts, details, actor) VALUES ('latency-spike', 'production', NULL, "
            ":t, 'running', 'not json', '[1, 2]', '{}', 'ops')",
            {"t": history.now - 10},
        )
    try:
        drills = section(document(filled, "failover-effectiveness"), "recovery")["data"]["drills"]
        running = next(d for d in drills if d["scenario"] == "latency-spike")
        assert running["status"] == "running"
        assert running["figures"] == []
    finally:
        with ws.conn.write():
            ws.conn.execute("DELETE FROM drill_runs WHERE scenario = 'latency-spike'")


def test_quota_use_is_the_busiest_minute_against_the_configured_quota(filled: Filled) -> None:
    ws, config, _history = filled
    rows = {
        p["provider"]: p
        for p in section(document(filled, "quota-usage"), "quota")["data"]["providers"]
    }
    per_minute = ws.conn.execute(
        "SELECT CAST(ts / 60 AS INTEGER) AS m, COUNT(*) AS n FROM attempts WHERE provider = "
        "'bedrock' GROUP BY m ORDER BY n DESC LIMIT 1"
    )
    bedrock = rows["bedrock"]
    assert bedrock["peak_rpm"] == per_minute[0]["n"]
    assert bedrock["rpm_quota"] == config.provider("bedrock").quotas.rpm  # type: ignore[union-attr]
    assert bedrock["peak_rpm_share"] == pytest.approx(bedrock["peak_rpm"] / bedrock["rpm_quota"])
    assert bedrock["status"] == "OK"


def test_comparison_sets_two_models_side_by_side(filled: Filled) -> None:
    doc = document(
        filled, "comparison", model_id="claude-3-5-haiku", baseline_model="gemini-1-5-flash"
    )
    data = section(doc, "comparison")["data"]
    rows = {r["metric"]: r for r in data["rows"]}
    assert rows["requests"]["a"] > rows["requests"]["b"] > 0
    assert rows["accuracy"]["a"] == pytest.approx(0.963)
    assert rows["accuracy"]["b"] is None
    assert data["model_a"]["last_gate"]["verdict"] in ("APPROVE", "REJECT")


def test_comparison_defaults_to_current_against_previous_stable(filled: Filled) -> None:
    data = section(document(filled, "comparison"), "comparison")["data"]
    # After the rollback in the history, current is claude-3-haiku.
    assert data["model_a"] == {**data["model_a"], "id": "claude-3-haiku", "source": "alias current"}
    assert data["model_b"]["id"] == "claude-3-5-haiku"


def test_performance_impact_compares_around_a_given_time(filled: Filled) -> None:
    _ws, _config, history = filled
    from tests.report_data import SPIKE

    spike_end = history.start + SPIKE.stop * 60
    doc = document(filled, "performance-impact", period="10m", at=str(spike_end))
    rows = {r["metric"]: r for r in section(doc, "impact")["data"]["rows"]}
    # The 10 minutes before include the spike, the 10 after do not: P95 fell.
    assert rows["p95_ms"]["b"] > 1500 > rows["p95_ms"]["a"]
    assert rows["p95_ms"]["change"] < -0.5


def test_performance_impact_without_a_change_says_so(
    empty: tuple[Workspace, QualityGatesConfig],
) -> None:
    ws, config = empty
    with ws.conn.write():
        ws.conn.execute("DELETE FROM alias_history")
    doc = build_report(ws.conn, config, make_request("performance-impact"), now=time.time())
    impact = section(doc, "impact")
    assert impact["empty"]
    assert "--at" in impact["note"]


def test_incident_report_has_timeline_alerts_remediations_and_times(filled: Filled) -> None:
    _ws, _config, history = filled
    data = section(document(filled, "incident", incident_id=history.incident_id), "incident")[
        "data"
    ]
    assert data["times"]["response_seconds"] == pytest.approx(INCIDENT_ACK_S)
    assert data["times"]["resolution_seconds"] == pytest.approx(INCIDENT_RESOLVE_S)
    assert [e["kind"] for e in data["timeline"]][:3] == ["opened", "ack", "resolved"]
    assert [a["transition"] for a in data["alerts"]] == ["pending -> firing", "firing -> resolved"]
    assert {r["action"] for r in data["remediations"]} == {"failover", "rollback"}
    assert data["root_cause"] == "upstream 503s at google"
    assert data["postmortem_path"] is None


def test_incident_report_names_the_incidents_that_exist(filled: Filled) -> None:
    _ws, _config, history = filled
    with pytest.raises(UsageError) as caught:
        document(filled, "incident", incident_id=999)
    assert caught.value.exit_code == 2
    assert f"{history.incident_id}" in str(caught.value)
    assert "#999" in str(caught.value)


# --- renderings ----------------------------------------------------------------------------


@pytest.mark.parametrize("report_type", REPORT_TYPES)
def test_every_type_writes_json_that_validates_against_the_shipped_schema(
    filled: Filled, report_type: str, tmp_path: Path
) -> None:
    ws, config, history = filled
    path = write_report(
        ws.conn,
        config,
        type=report_type,
        output=tmp_path / "r.json",
        incident_id=history.incident_id,
        model_id="claude-3-5-haiku" if report_type == "comparison" else None,
        baseline_model="gemini-1-5-flash" if report_type == "comparison" else None,
        now=history.now,
    )
    doc = json.loads(path.read_text())
    validate(doc)
    assert doc["schema_version"] == schema()["properties"]["schema_version"]["const"]
    assert doc["type"] == report_type


def test_the_schema_refuses_a_document_that_breaks_it(filled: Filled) -> None:
    import jsonschema

    doc = document(filled)
    metric(doc, "p95_latency")["status"] = "GREAT"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_markdown_links_charts_that_exist_and_renders(filled: Filled, tmp_path: Path) -> None:
    import markdown

    ws, config, history = filled
    path = write_report(
        ws.conn, config, type="detailed", output=tmp_path / "monthly-report.md", now=history.now
    )
    text = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == [
        "monthly-report_files/cost-tokens.png",
        "monthly-report_files/error-budget.png",
        "monthly-report_files/latency.png",
    ]
    for link in links:
        png = (path.parent / link).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 5000
    html = markdown.markdown(text, extensions=["tables"])
    assert html.count("<table>") >= 12
    assert "<td><strong>PASS</strong></td>" in html
    assert "<td><strong>FAIL</strong></td>" in html


def test_html_is_self_contained(filled: Filled, tmp_path: Path) -> None:
    ws, config, history = filled
    path = write_report(
        ws.conn, config, type="detailed", output=tmp_path / "r.html", now=history.now
    )
    page = path.read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 3
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert not (tmp_path / "r_files").exists()


def test_text_from_the_store_cannot_inject_html(filled: Filled, tmp_path: Path) -> None:
    ws, config, history = filled
    from quality_gates import incidents

    row = incidents.open_incident(
        ws.conn,
        config,
        title="<script>alert(1)</script> | broken",
        incident_type="provider",
        severity="P3",
        environment="production",
        group_key="xss",
        actor="watch",
        now=history.now - 5,
    )
    try:
        page = write_report(
            ws.conn, config, type="summary", output=tmp_path / "r.html", now=history.now
        ).read_text()
        assert "<script>" not in page
        assert "&lt;script&gt;" in page
    finally:
        with ws.conn.write():
            ws.conn.execute("DELETE FROM incidents WHERE id = :id", {"id": row["id"]})


def test_an_unknown_extension_is_refused_before_anything_is_read(filled: Filled) -> None:
    ws, config, _history = filled
    with pytest.raises(UsageError, match=r"\.md, \.html or \.json"):
        write_report(ws.conn, config, type="summary", output=Path("report.pdf"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "weekly"}, "unknown report type 'weekly'"),
        ({"type": "summary", "period": "soon"}, "--period 'soon' is not a duration"),
        ({"type": "summary", "period": "0s"}, "out of range"),
        ({"type": "incident"}, "needs --incident"),
        ({"type": "performance-impact", "at": "yesterday-ish"}, "is not a time"),
    ],
)
def test_bad_requests_are_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    report_type = kwargs.pop("type")
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        make_request(report_type, **kwargs)
    assert caught.value.exit_code == 2


# --- an empty store ------------------------------------------------------------------------


@pytest.mark.parametrize("report_type", [t for t in REPORT_TYPES if t != "incident"])
def test_an_empty_store_reports_no_data_and_invents_nothing(
    empty: tuple[Workspace, QualityGatesConfig], report_type: str, tmp_path: Path
) -> None:
    ws, config = empty
    with ws.conn.write():
        ws.conn.execute("DELETE FROM alias_history")
    kwargs: dict[str, Any] = {}
    if report_type == "comparison":
        kwargs = {"model_id": "claude-3-5-haiku", "baseline_model": "claude-3-haiku"}
    md = write_report(ws.conn, config, type=report_type, output=tmp_path / "r.md", **kwargs)
    doc = json.loads(
        write_report(
            ws.conn, config, type=report_type, output=tmp_path / "r.json", **kwargs
        ).read_text()
    )
    validate(doc)
    assert all(s["empty"] for s in doc["sections"]), [s["id"] for s in doc["sections"]]
    assert "No data in this period" in md.read_text()
    assert not (tmp_path / "r_files").exists()  # no chart drawn from nothing
    for sec in doc["sections"]:
        for row in sec["data"].get("metrics", []):
            assert row["measured"] is None
            assert row["status"] == "NO DATA"
        for row in sec["data"].get("rows", []):
            assert row["a"] in (None, 0)
            assert row["b"] in (None, 0)


def test_at_accepts_iso_epoch_and_a_duration_ago() -> None:
    from quality_gates.reports._request import parse_time

    now = 1_800_003_600.0
    assert parse_time("2027-01-15T08:00:00Z", now=now) == 1_800_000_000.0
    assert parse_time("2027-01-15T08:00:00", now=now) == 1_800_000_000.0  # naive means UTC
    assert parse_time("1800000000", now=now) == 1_800_000_000.0
    assert parse_time("30m", now=now) == now - 1800


def test_a_bare_period_is_hours() -> None:
    request = make_request("summary", period="6", now=1_800_000_000.0)
    assert request.seconds == 6 * 3600


def test_the_report_reads_alike_on_each_store(workspace: Workspace, tmp_path: Path) -> None:
    config = load_config(workspace.config_path).config
    history = fill(workspace.conn, config, time.time())
    path = write_report(
        workspace.conn, config, type="detailed", output=tmp_path / "r.json", now=history.now
    )
    doc = json.loads(path.read_text())
    validate(doc)
    assert section(doc, "overview")["data"]["requests"] == len(history.request_ids)
    rows = {s["severity"]: s for s in section(doc, "incidents")["data"]["by_severity"]}
    assert rows["P1"]["mean_tta_seconds"] == pytest.approx(INCIDENT_ACK_S)
    assert section(doc, "recovery")["data"]["drills"][0]["status"] == "passed"


def test_markdown_keeps_comparisons_readable_and_never_self_contradictory() -> None:
    from quality_gates.reports._format import cell
    from quality_gates.reports._markdown import _figures

    assert cell("p95 < 1.5 s and x > y") == "p95 < 1.5 s and x > y"  # no &lt; entities
    assert cell("<script>alert(1)</script> &amp;") == (
        "&lt;script>alert(1)&lt;/script> &amp;amp;"
    )  # nothing that could open a tag or an entity
    failed = _figures(
        [{"name": "detection_seconds", "value": 30.04, "target": 30.0, "unit": "s",
          "status": "FAIL"}]
    )  # fmt: skip
    assert failed == "detection 30.040 s (target under 30.000 s) **FAIL**"
