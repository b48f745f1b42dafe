"""The gate verdict and its exit code."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from quality_gates.errors import EXIT_CONDITIONAL, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK


class GateVerdict(StrEnum):
    """APPROVE, CONDITIONAL or REJECT; ERROR when the gate could not complete."""

    APPROVE = "APPROVE"
    CONDITIONAL = "CONDITIONAL"
    REJECT = "REJECT"
    ERROR = "ERROR"

    @property
    def exit_code(self) -> int:
        """0 APPROVE, 1 REJECT, 3 CONDITIONAL, 4 could not complete."""
        return {
            GateVerdict.APPROVE: EXIT_OK,
            GateVerdict.REJECT: EXIT_FAILED,
            GateVerdict.CONDITIONAL: EXIT_CONDITIONAL,
            GateVerdict.ERROR: EXIT_INCOMPLETE,
        }[self]

    @property
    def style(self) -> str:
        """Rich style for the word."""
        return {
            GateVerdict.APPROVE: "bold green",
            GateVerdict.CONDITIONAL: "bold yellow",
            GateVerdict.REJECT: "bold red",
            GateVerdict.ERROR: "bold magenta",
        }[self]


_ORDER = (GateVerdict.APPROVE, GateVerdict.CONDITIONAL, GateVerdict.REJECT, GateVerdict.ERROR)


def combine(verdicts: Iterable[GateVerdict]) -> GateVerdict:
    """The worst of several verdicts (ERROR > REJECT > CONDITIONAL > APPROVE)."""
    worst = GateVerdict.APPROVE
    for verdict in verdicts:
        if _ORDER.index(verdict) > _ORDER.index(worst):
            worst = verdict
    return worst
