"""A fault-injecting simulator that speaks the Bedrock, Gemini, OpenAI and Anthropic wire
protocols well enough for their official SDKs, with seeded, live-controllable behaviour.

    async with run_simulators([SimulatorSpec("meta", "openai", profile="degraded")]) as sims:
        url = sims["meta"].base_url

    with SimulatorThread([spec]) as sims:          # for synchronous code
        openai.OpenAI(base_url=sims.base_url("meta") + "/v1", api_key="x")
"""

from quality_gates.simulator._app import WIRES, SimulatorApp, SimulatorSpec
from quality_gates.simulator._behaviour import Behaviour, Plan, Prompt
from quality_gates.simulator._runner import (
    RunningSimulator,
    SimulatorThread,
    run_simulators,
    serve_forever,
    spec_from_provider,
    start_simulator,
)

PROTOCOLS = tuple(WIRES)

__all__ = [
    "PROTOCOLS",
    "Behaviour",
    "Plan",
    "Prompt",
    "RunningSimulator",
    "SimulatorApp",
    "SimulatorSpec",
    "SimulatorThread",
    "run_simulators",
    "serve_forever",
    "spec_from_provider",
    "start_simulator",
]
