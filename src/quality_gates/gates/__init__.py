"""The quality plane: offline evaluation, performance, canary analysis, pipelines and batch.

Services (called by the CLI and by tests): `offline.run_offline`, `performance.run_performance`,
`canary.run_canary`, `pipeline.run_pipeline`, `pipeline.run_batch`. Statistics live in
`stats` and `analysis`, scorers in `scorers`, the call engine in `engine`, stored runs and
what `status` shows of them in `runs` (`runs.gate_status`).
"""
