"""Routine checks, pure parts: the `routines:` config, cron slots and when a job is due."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quality_gates.config import parse_config_text, render_starter
from quality_gates.config._routines import DEFAULT_ROUTINES, command_environment
from quality_gates.errors import ConfigError
from quality_gates.routines._routine_run import Outcome, last_line, status_of
from quality_gates.routines._schedule import due, latest_slot, next_slot, slot_values


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "qg.yaml")
    return caught.value.problems


def routines_yaml(*jobs: str) -> str:
    return "version: 1\nroutines:\n  jobs:\n" + "".join(f"    - {j}\n" for j in jobs)


# --- config -------------------------------------------------------------------------------


def test_default_routines_are_the_runbooks_four_and_the_starter_writes_them() -> None:
    loaded = parse_config_text(render_starter("demo"), "quality-gates.yaml")
    assert loaded.warnings == []
    jobs = {j.name: j for j in loaded.config.routines.jobs}
    assert list(jobs) == [
        "daily-health-check",
        "weekly-staging-pipeline",
        "monthly-report",
        "monthly-rollback-drill",
    ]
    assert jobs["daily-health-check"].command == "validate --environment production"
    assert jobs["weekly-staging-pipeline"].cron == "0 3 * * 1"
    assert [j.model_dump() for j in loaded.config.routines.jobs] == [
        j.model_dump() for j in DEFAULT_ROUTINES
    ]


def test_default_routines_leave_out_an_environment_the_config_lacks() -> None:
    config = parse_config_text("version: 1\nenvironments: {production: {}}\n", "q.yaml").config
    names = [j.name for j in config.routines.jobs]
    assert "weekly-staging-pipeline" not in names
    assert "daily-health-check" in names


def test_bad_cron_expression_names_file_line_and_field() -> None:
    text = (
        "version: 1\nroutines:\n  jobs:\n    - name: nightly\n      cron: '61 * * * *'\n"
        "      command: status\n"
    )
    (found,) = problems(text)
    assert found.startswith("qg.yaml:5: routines.jobs[0].cron: '61 * * * *' is not a valid cron")
    assert "minute hour day-of-month month day-of-week" in found


def test_cron_needs_five_fields() -> None:
    (found,) = problems(routines_yaml("{name: a, cron: '0 6 * *', command: status}"))
    assert "routines.jobs[0].cron: '0 6 * *' has 4 fields" in found


def test_cron_macros_and_timezones_are_accepted() -> None:
    config = parse_config_text(
        routines_yaml("{name: a, cron: '@daily', command: status, timezone: Europe/Paris}"), "q"
    ).config
    assert (config.routines.jobs[0].cron, config.routines.jobs[0].timezone) == (
        "@daily",
        "Europe/Paris",
    )


def test_unknown_timezone_and_refused_command_are_errors() -> None:
    found = problems(routines_yaml("{name: a, cron: '@daily', command: watch, timezone: Mars/X}"))
    assert any("a routine cannot run 'watch'" in p for p in found)
    assert any("unknown timezone 'Mars/X'" in p for p in found)


def test_command_may_not_carry_its_own_store_or_placeholders_we_do_not_fill() -> None:
    (found,) = problems(routines_yaml("{name: a, cron: '@daily', command: 'status --db x.db'}"))
    assert "--db is not allowed" in found
    (found,) = problems(routines_yaml("{name: a, cron: '@daily', command: 'report -o {when}'}"))
    assert "unknown placeholder {when}" in found


def test_a_routine_defined_twice_is_an_error() -> None:
    (found,) = problems(
        routines_yaml(
            "{name: a, cron: '@daily', command: status}",
            "{name: a, cron: '@hourly', command: status}",
        )
    )
    assert "routines.jobs[1].name: routine 'a' is defined twice" in found


def test_alert_environment_comes_from_the_command() -> None:
    assert command_environment("validate --environment production") == "production"
    assert command_environment("validate -e staging") == "staging"
    assert command_environment("pipeline staging --model-id current") == "staging"
    assert command_environment("report --type detailed") is None


# --- slots --------------------------------------------------------------------------------


def test_latest_and_next_slot_follow_the_cron_expression() -> None:
    now = ts("2026-03-04T12:30:00")
    assert latest_slot("0 6 * * *", "UTC", now) == ts("2026-03-04T06:00:00")
    assert next_slot("0 6 * * *", "UTC", now) == ts("2026-03-05T06:00:00")
    assert latest_slot("0 6 * * *", "UTC", ts("2026-03-04T06:00:00")) == ts("2026-03-04T06:00:00")


def test_slots_are_read_in_the_jobs_timezone() -> None:
    # 06:00 in Paris is 05:00 UTC in winter.
    assert next_slot("0 6 * * *", "Europe/Paris", ts("2026-01-10T00:00:00")) == ts(
        "2026-01-10T05:00:00"
    )
    assert slot_values(ts("2026-01-31T23:30:00"), "Europe/Paris") == {
        "date": "2026-02-01",
        "month": "2026-02",
    }


def test_each_slot_runs_once() -> None:
    first_seen = ts("2026-03-04T05:00:00")
    slot = due("0 6 * * *", "UTC", now=ts("2026-03-04T06:00:05"), last_slot=None,
               first_seen=first_seen, running=False)  # fmt: skip
    assert slot is not None
    assert slot.slot == ts("2026-03-04T06:00:00")
    assert not slot.late
    assert slot.skipped == 0
    again = due("0 6 * * *", "UTC", now=ts("2026-03-04T06:00:35"), last_slot=slot.slot,
                first_seen=first_seen, running=False)  # fmt: skip
    assert again is None
    tomorrow = due("0 6 * * *", "UTC", now=ts("2026-03-05T06:00:01"), last_slot=slot.slot,
                   first_seen=first_seen, running=False)  # fmt: skip
    assert tomorrow is not None
    assert tomorrow.slot == ts("2026-03-05T06:00:00")


def test_a_new_job_does_not_run_the_slot_before_it_was_seen() -> None:
    assert (
        due(
            "0 6 * * *",
            "UTC",
            now=ts("2026-03-04T12:00:00"),
            last_slot=None,
            first_seen=ts("2026-03-04T11:00:00"),
            running=False,
        )
        is None
    )


def test_after_a_gap_only_the_latest_missed_slot_runs_and_it_says_late() -> None:
    last = ts("2026-03-01T06:00:00")
    now = ts("2026-03-04T09:00:00")
    slot = due("0 6 * * *", "UTC", now=now, last_slot=last, first_seen=0.0, running=False)
    assert slot is not None
    assert slot.slot == ts("2026-03-04T06:00:00")
    assert slot.late
    assert slot.skipped == 2
    assert slot.describe() == "late by 3h, 2 missed slots skipped"
    after = due("0 6 * * *", "UTC", now=now + 60, last_slot=slot.slot, first_seen=0.0,
                running=False)  # fmt: skip
    assert after is None


def test_a_job_still_running_is_not_due() -> None:
    assert (
        due(
            "* * * * *",
            "UTC",
            now=ts("2026-03-04T06:10:00"),
            last_slot=ts("2026-03-04T06:00:00"),
            first_seen=0.0,
            running=True,
        )
        is None
    )


# --- outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "timed_out", "status"),
    [(0, False, "passed"), (1, False, "failed"), (3, False, "failed"), (2, False, "error"),
     (4, False, "error"), (-9, False, "error"), (None, True, "error")],
)  # fmt: skip
def test_exit_codes_map_to_run_status(code: int | None, timed_out: bool, status: str) -> None:
    assert status_of(code, timed_out) == status


def test_summary_is_the_exit_and_the_last_output_line() -> None:
    outcome = Outcome("failed", 1, 2.5, "table\n\x1b[31mFAIL: 5 passed, 6 failed\x1b[0m\n\n")
    assert outcome.summary == "exit 1 (failed) in 2.5 s: FAIL: 5 passed, 6 failed"
    assert last_line("") == ""
