"""Alert rules and their state: what a rule means, not when the evaluator runs it.

Owns the rules' semantics free of I/O (`_rules`: `for`, `keep_firing_for`, inhibition,
matchers), the SQL for alert states, alert events and silences (`_store`), the operator's
silences (`silences`) and when provider alerts end with or without traffic (`_recovery`).

May import: signals (the metric engine `_recovery` reads), the store, config and errors.
Never notify, incidents, routines, remediation, watch, exports or the command line.
"""
