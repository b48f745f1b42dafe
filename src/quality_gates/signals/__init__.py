"""What the watch plane measures: the signals its alert rules read.

Owns time windows over the per-minute roll-ups (`_windows`, `_live` for sub-minute windows),
the metric engine every rule names (`_metrics`, with the gateways' own resource use from
`_resources`), the golden probes (`probes`) and the live sampler with its reference-free
checks (`sampling`, `security`, `_offload`).

May import: the store, telemetry, config, errors, providers, gates' scorers and datasets, and
the gateway's telemetry and redaction helpers. It imports no other watch room (alerts,
notify, incidents, routines, remediation, watch, exports) and never the command line.
"""
