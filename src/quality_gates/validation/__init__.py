"""`validate`: checks that each return PASS, WARN or FAIL with evidence (see _framework for
how to add one)."""

from quality_gates.validation import _checks as _checks
from quality_gates.validation import _operations as _operations
from quality_gates.validation import _readiness as _readiness
from quality_gates.validation._framework import (
    CHECKS,
    STATUSES,
    Check,
    CheckResult,
    Status,
    ValidationContext,
    ValidationReport,
    check,
    run_checks,
)

__all__ = [
    "CHECKS",
    "STATUSES",
    "Check",
    "CheckResult",
    "Status",
    "ValidationContext",
    "ValidationReport",
    "check",
    "run_checks",
]
