"""The watch plane's evaluator: what `quality-gates watch` runs, and its faces.

Owns the loop (`_service.WatchService`: the lease, one evaluation per interval, remediation,
routine ticks, probes, delivery, retention), one evaluation (`_evaluate`: metrics -> rule
states -> inhibitions and silences -> incidents -> outbox), the evaluator embedded in
`serve` (`embedded`), `monitor` (one model watched live), what `status` shows of the watch
(`status`) and the watch's own series on `/metrics` (`metrics`).

This room sits on top of the plane and may import every room below it: signals (windows,
metrics, probes, sampling), alerts (rules, states, silences), notify, incidents, routines
and remediation, besides the store, config and errors. It never imports exports (the
exporters are injected: `WatchService(exporters=...)`) nor the command line; only exports
and the command line import it. `tests/test_rooms.py` holds the rooms to this.

Light to import: heavy parts (aiohttp, OpenTelemetry) load inside the functions that use
them, so `status` reading a submodule does not pay for the incident machinery.
"""
