"""Routine checks: the scheduled jobs of `routines:` that the watch leader runs.

Owns when a job is due (`_schedule`: cron slots in the job's timezone, one run per slot),
one run as a subprocess (`_routine_run`), the scheduler the evaluator ticks and the rule
specs it feeds back as the `routine` metric (`_scheduler`), and the stored runs (`jobs`:
`last_runs`, `latest_by_job` for reports).

May import: alerts (the rule specs a routine's result becomes), the lease and structured
logs, the store, config and errors. Never notify, incidents, remediation, watch, exports
or the command line (a run starts the CLI as a subprocess, not as an import).
"""
