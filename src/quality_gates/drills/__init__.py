"""Disaster-recovery drills: inject a fault into a stack of simulators and a gateway with its
embedded watch, measure what the system does, and hold it to the runbook's targets.

    result = run_drill(conn, loaded, store_url, DrillOptions("provider-outage"))
    result.figures["detection_s"], result.exit_code
"""

from quality_gates.drills._run import DrillOptions, DrillResult, check_options, run_drill
from quality_gates.drills._scenarios import SCENARIOS, Scenario
from quality_gates.drills._stack import DrillCannotRun
from quality_gates.drills.targets import FIGURES, PROJECT, RUNBOOK

__all__ = [
    "FIGURES",
    "PROJECT",
    "RUNBOOK",
    "SCENARIOS",
    "DrillCannotRun",
    "DrillOptions",
    "DrillResult",
    "Scenario",
    "check_options",
    "run_drill",
]
