"""The commented starter config `quality-gates init` writes."""

from __future__ import annotations

STARTER_CONFIG = """\
# quality-gates.yaml: one file for providers, models, environments, alerts and incidents.
# Validate it with `quality-gates config validate`. Durations read 30s, 5m, 2h; ratios 2% or 0.02.
# Secrets never go in this file: write ${{VARIABLE}} and export the variable.
version: 1
project: {project}

# Where state lives (registry, audit log, telemetry, incidents). Default: SQLite in
# .quality-gates/state.db beside this file. For several gateway replicas use PostgreSQL:
#   url: postgresql://qg@db.internal/quality_gates   (or set QG_DATABASE_URL / pass --db)
store:
  url: null

# Providers. These three are built-in simulators that speak the real wire protocols
# (`quality-gates simulate` starts them), so everything works offline. A real provider:
#   - name: bedrock
#     kind: bedrock
#     region: us-east-1                  # standard AWS credential chain, or:
#     credentials: {{access_key_id: AWS_ACCESS_KEY_ID, secret_access_key: AWS_SECRET_ACCESS_KEY}}
#     quotas: {{rpm: 1000, tpm: 400000}}
#   - name: google
#     kind: gemini
#     credentials: {{api_key: GEMINI_API_KEY}}   # the NAME of the variable, not the key
#   - name: meta
#     kind: openai                       # any OpenAI-compatible endpoint: Llama API, vLLM, Ollama
#     endpoint: https://api.llama.com/compat
#     credentials: {{api_key: LLAMA_API_KEY}}
providers:
  - name: bedrock
    kind: simulator
    protocol: bedrock
    port: {port_bedrock}
    profile: healthy
    seed: 1
{answer_key}    quotas: {{rpm: 6000, tpm: 2000000, rpd: 5000000}}
  - name: google
    kind: simulator
    protocol: gemini
    port: {port_google}
    profile: healthy
    seed: 2
{answer_key}    quotas: {{rpm: 6000, tpm: 2000000, rpd: 5000000}}
  - name: meta
    kind: simulator
    protocol: openai
    port: {port_meta}
    profile: healthy
    seed: 3
{answer_key}    quotas: {{rpm: 6000, tpm: 2000000, rpd: 5000000}}

# Models: an id of ours, the provider that runs it, the provider's model name and the price
# in USD per 1,000 tokens (cost reports and cost alerts use it).
models:
  - id: claude-3-5-haiku
    provider: bedrock
    name: anthropic.claude-3-5-haiku-20241022-v1:0
    price: {{input_per_1k: 0.0008, output_per_1k: 0.004}}
  - id: claude-3-haiku
    provider: bedrock
    name: anthropic.claude-3-haiku-20240307-v1:0
    price: {{input_per_1k: 0.00025, output_per_1k: 0.00125}}
  - id: gemini-1-5-flash
    provider: google
    name: gemini-1.5-flash
    price: {{input_per_1k: 0.000075, output_per_1k: 0.0003}}
  - id: llama-3-1-70b
    provider: meta
    name: Llama-3.1-70B-Instruct
    price: {{input_per_1k: 0.00072, output_per_1k: 0.00072}}

# Environments. `aliases` seed the registry once; after that the store owns them and
# `rollback`, `canary` and `pipeline` move them (see `quality-gates history`).
# Requests name an alias (`model: current`) or, where allow_model_ids is true, a model id.
environments:
  production:
    aliases:
      current: claude-3-5-haiku
      previous-stable: claude-3-haiku
      last-known-good: claude-3-haiku
      backup: gemini-1-5-flash
    failover_chains:
      - {{primary: claude-3-5-haiku, secondary: gemini-1-5-flash, tertiary: llama-3-1-70b}}
      - {{primary: claude-3-haiku, secondary: gemini-1-5-flash, tertiary: llama-3-1-70b}}
      - {{primary: gemini-1-5-flash, secondary: llama-3-1-70b, tertiary: claude-3-haiku}}
      - {{primary: llama-3-1-70b, secondary: gemini-1-5-flash, tertiary: claude-3-haiku}}
    # Provider weights: how much of its own models' requests each provider keeps, out of
    # 100 (what it sheds goes down each model's failover chain; docs/routing.md). Empty:
    # every provider keeps all. Change them live with
    # `quality-gates config set --traffic-distribution "bedrock:50,google:50"`.
    traffic: {{}}
    routing: weighted            # weighted | priority | latency (fastest healthy P95)
    # The runbook's key metrics; gates and alerts compare against these.
    thresholds:
      p95_latency_ms: 1500ms
      throughput_rps: 20
      error_rate: 2%
      accuracy: 95%
      satisfaction: 4.0
      toxicity_rate: 0.1%
      availability: 99.9%
      cache_hit_rate: 80%
      resource_utilization: 80%
  staging:
    aliases:
      current: claude-3-5-haiku
      previous-stable: claude-3-haiku
      backup: gemini-1-5-flash
    failover_chains:
      - {{primary: claude-3-5-haiku, secondary: gemini-1-5-flash, tertiary: llama-3-1-70b}}
      - {{primary: claude-3-haiku, secondary: gemini-1-5-flash}}
  development:
    aliases:
      current: claude-3-5-haiku
      backup: llama-3-1-70b
    failover_chains:
      - {{primary: claude-3-5-haiku, secondary: llama-3-1-70b}}

# Alert rules: the runbook's set. `for` is how long a rule must hold before it fires;
# `keep_firing_for` how long it keeps firing after it stops holding. Critical and warning
# rules on health open incidents; info rules and efficiency rules (cache hit rate, cost)
# only notify (`incident: true` changes that). No rule judges fewer than its min_requests.
alerts:
  evaluation_interval: 5s
  rules:
    - {{name: error-rate-critical, expr: "error_rate > 5%", severity: critical, type: provider}}
    - {{name: p95-latency-critical, expr: "p95_latency > 3000ms", severity: critical,
       type: performance}}
    - {{name: provider-availability-critical, expr: "provider_availability < 95%",
       severity: critical, type: provider}}
    - {{name: error-rate-warning, expr: "error_rate > 2%", severity: warning, type: provider}}
    - {{name: p95-latency-warning, expr: "p95_latency > 1500ms", severity: warning,
       type: performance}}
    - {{name: cache-hit-rate-warning, expr: "cache_hit_rate < 70%", severity: warning,
       type: performance, window: 15m, min_requests: 100}}
    - {{name: quality-score-decrease-info, expr: "quality_score_decrease > 5%", severity: info,
       type: quality, window: 15m, group_by: [environment, model_id], min_requests: 10}}
    # The quality rollback trigger: a large drop that the sampled scores show significantly.
    - {{name: quality-score-drop-critical, expr: "quality_score_decrease > 5%",
       severity: critical, type: quality, window: 15m, group_by: [environment, model_id],
       min_requests: 10}}
    - {{name: cost-increase-info, expr: "cost_increase > 20%", severity: info, type: cost,
       window: 15m}}
    # Tool-call arguments or JSON answers an application cannot parse: notify, no incident.
    - {{name: invalid-output-rate-warning, expr: "invalid_output_rate > 5%",
       severity: warning, type: quality, window: 5m, group_by: [environment, model_id],
       min_requests: 50, incident: false}}
    # The failover triggers: a provider answering 5xx or 429, or slow for five minutes.
    - {{name: provider-server-errors-critical, expr: "server_error_rate > 10%",
       severity: critical, type: provider}}
    - {{name: provider-rate-limited-critical, expr: "rate_limited_rate > 25%",
       severity: critical, type: provider}}
    - {{name: provider-p95-latency-critical, expr: "p95_latency > 3000ms", severity: critical,
       type: provider, group_by: [environment, provider], for: 5m}}
    - {{name: unusual-traffic-pattern-info, expr: "unusual_traffic_pattern > 3.5",
       severity: info, type: security, window: 5m}}

# Automatic remediation, per environment. Rollback triggers move `current` back to
# previous-stable; provider triggers force the provider's breakers open and move its traffic
# along the failover chain, which comes back in steps once the provider stayed healthy.
# Golden probes (dataset items with expected answers) and a share of live answers scored
# for refusals, profanity and PII feed the quality rules. `dry_run: true` only records.
remediation:
  dry_run: false
  cooldown: 10m
  rollback: {{triggers: [error-rate-critical, p95-latency-critical, quality-score-drop-critical]}}
  failover: {{triggers: [provider-availability-critical, provider-server-errors-critical,
                        provider-rate-limited-critical, provider-p95-latency-critical]}}
  failback: {{healthy_for: 5m, steps: [25%, 50%, 100%], step_interval: 1m}}
  probes: {{items: 5, interval: 30s}}
  sampling: {{share: 5%}}
  environments:
    development: {{enabled: false}}

# `quality-gates emergency`: degraded service (stale cache, queueing) is held to these
# relaxed targets; a shut-down gateway tells clients to retry after `retry_after`.
emergency:
  degraded: {{p95_latency_ms: 5s, accuracy: 80%, availability: 95%}}
  retry_after: 60s

# Routine checks (the runbook's prevention section): `watch` and `serve` run each command
# line on its cron schedule (minute hour day-of-month month day-of-week, in `timezone`,
# default UTC) with this config and store. Exit 0 passes, 1 or 3 fails, anything else is an
# error; a failed run raises the alert routine-<name>-failed at `severity` until a run passes.
# {{date}} in a command is the run's date. `quality-gates routines list` / `routines run NAME`.
routines:
  jobs:
    - {{name: daily-health-check, cron: "0 6 * * *", command: validate --environment production,
       timeout: 10m, severity: warning, type: infrastructure}}
    - {{name: weekly-staging-pipeline, cron: "0 3 * * 1",
       command: pipeline staging --model-id current, timeout: 2h, severity: warning}}
    - {{name: monthly-report, cron: "0 7 1 * *", environment: production, severity: info,
       command: "report --type detailed --output reports/monthly-{{date}}.md", timeout: 30m}}
    - {{name: monthly-rollback-drill, cron: "0 10 2 * *", timeout: 1h, severity: warning,
       command: drill quality-regression --environment staging --scratch-store}}

# Notification channels: the runbook's Slack channels and PagerDuty. Export the variables
# to turn a channel on; `quality-gates validate` says which are not set.
notifications:
  channels:
    - {{name: ops-alerts, type: slack, url: "${{QG_SLACK_OPS_ALERTS_WEBHOOK}}",
       slack_channel: "#ops-alerts"}}
    - {{name: ai-team, type: slack, url: "${{QG_SLACK_AI_TEAM_WEBHOOK}}",
       slack_channel: "#ai-team"}}
    - {{name: infra-alerts, type: slack, url: "${{QG_SLACK_INFRA_ALERTS_WEBHOOK}}",
       slack_channel: "#infra-alerts"}}
    - {{name: security-alerts, type: slack, url: "${{QG_SLACK_SECURITY_ALERTS_WEBHOOK}}",
       slack_channel: "#security-alerts"}}
    - {{name: pagerduty, type: pagerduty, routing_key: "${{QG_PAGERDUTY_ROUTING_KEY}}"}}
  routes:
    - {{types: [provider, performance, cost], channels: [ops-alerts]}}
    - {{types: [quality], channels: [ai-team]}}
    - {{types: [infrastructure], channels: [infra-alerts]}}
    - {{types: [security], channels: [security-alerts]}}
    - {{severities: [P0, P1], channels: [pagerduty]}}

# The runbook's severity table and escalation matrix.
incidents:
  severities:
    P0: {{name: Critical, description: Complete system outage, response_time: 15m}}
    P1: {{name: High, description: Major functionality impacted, response_time: 30m}}
    P2: {{name: Medium, description: Partial functionality impacted, response_time: 2h}}
    P3: {{name: Low, description: "Minor issues, no user impact", response_time: 24h}}
  escalation:
    - {{issue_type: provider, label: Provider Outage, primary: On-Call Engineer,
       secondary: AI Team Lead, escalation_time: 30m}}
    - {{issue_type: performance, label: Performance Issues, primary: AI Team Lead,
       secondary: Infrastructure Team, escalation_time: 1h}}
    - {{issue_type: security, label: Security Incidents, primary: Security Team,
       secondary: On-Call Engineer, escalation_time: immediate}}
    - {{issue_type: quality, label: Quality Issues, primary: AI Team Lead,
       secondary: Product Team, escalation_time: 2h}}

# Quality gates: `offline`, `performance`, `canary`, `pipeline`. A candidate is compared with
# its baseline item by item; a metric may fall behind by at most its margin.
gates:
  # Written by `init`; JSONL, JSON, CSV or YAML. A simulator above answers its items (right
  # ~97% of the time) when it has `faults: {{answer_key: datasets/eval.jsonl}}`.
  dataset: datasets/eval.jsonl
  alpha: 5%
  moderation: profanity          # what measures toxicity: profanity | judge | none
  margins:
    accuracy: {{margin: 2%}}
    toxicity_rate: {{margin: 0.5%}}
"""

DEFAULT_SIMULATOR_PORTS = {"port_bedrock": 9101, "port_google": 9102, "port_meta": 9103}


def render_starter(
    project: str = "ai-service",
    ports: dict[str, int] | None = None,
    *,
    answer_key: str | None = None,
) -> str:
    """The starter config text for `project`, its simulators on `ports`; with `answer_key` (a
    dataset path) the simulators answer that dataset's items, right ~97% of the time."""
    line = (
        f"    faults: {{answer_key: {answer_key}}}   # answer the dataset's items, ~97% right\n"
        if answer_key
        else ""
    )
    return STARTER_CONFIG.format(
        project=project, answer_key=line, **{**DEFAULT_SIMULATOR_PORTS, **(ports or {})}
    )
