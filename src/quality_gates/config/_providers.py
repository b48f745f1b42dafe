"""Providers (where models run) and models (what the gateway routes to)."""

from __future__ import annotations

import os
from typing import Literal, get_args

from pydantic import Field, NonNegativeFloat, PositiveInt

from quality_gates.config._base import (
    ENV_VAR_PATTERN,
    NAME_PATTERN,
    Duration,
    StrictModel,
    looks_like_secret,
)
from quality_gates.config._simulator import SimulatorFaults, SimulatorProfile, profile_faults
from quality_gates.errors import CredentialMissing

ProviderKind = Literal["bedrock", "gemini", "openai", "anthropic", "simulator"]
Protocol = Literal["bedrock", "gemini", "openai", "anthropic"]

DEFAULT_ENDPOINTS: dict[str, str] = {
    "bedrock": "https://bedrock-runtime.{region}.amazonaws.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
}

# credential field -> (default environment variable, required)
CREDENTIAL_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "bedrock": {
        "access_key_id": ("AWS_ACCESS_KEY_ID", False),
        "secret_access_key": ("AWS_SECRET_ACCESS_KEY", False),
        "session_token": ("AWS_SESSION_TOKEN", False),
        "profile": ("AWS_PROFILE", False),
        "bearer_token": ("AWS_BEARER_TOKEN_BEDROCK", False),  # Bedrock API keys
    },
    "gemini": {"api_key": ("GEMINI_API_KEY", True)},
    "openai": {"api_key": ("OPENAI_API_KEY", False)},
    "anthropic": {"api_key": ("ANTHROPIC_API_KEY", True)},
    "simulator": {"api_key": ("QG_SIMULATOR_API_KEY", False)},
}
SIMULATOR_PROFILES: tuple[str, ...] = get_args(SimulatorProfile)


class Quotas(StrictModel):
    """The provider's limits for this account: requests and tokens per minute, requests per day."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    rpd: PositiveInt | None = None


class Provider(StrictModel):
    """An upstream AI provider account, or a simulator that plays one."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: ProviderKind
    endpoint: str | None = None
    region: str | None = None
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="credential field -> name of the environment variable that holds it",
    )
    quotas: Quotas = Field(default_factory=Quotas)
    timeout: Duration = 60.0
    max_connections: PositiveInt = 256
    # Simulator only: the wire protocol it speaks, where it listens and how it behaves.
    protocol: Protocol | None = None
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=0, le=65535)
    profile: SimulatorProfile | None = None
    seed: int | None = None
    faults: SimulatorFaults = Field(
        default_factory=SimulatorFaults, description="keys laid over the profile's behaviour"
    )

    @property
    def wire_protocol(self) -> Protocol:
        """The protocol spoken on the wire: the kind itself, or a simulator's `protocol`."""
        if self.kind == "simulator":
            return self.protocol or "openai"
        return self.kind

    @property
    def base_url(self) -> str:
        """Where requests go: the configured endpoint, or the kind's public default."""
        if self.endpoint:
            return self.endpoint.rstrip("/")
        if self.kind == "simulator":
            return f"http://{self.host}:{self.port or 0}"
        return DEFAULT_ENDPOINTS[self.kind].format(region=self.region or "us-east-1")

    def simulator_faults(self) -> SimulatorFaults:
        """A simulator's behaviour: its profile with the configured `faults` laid over it."""
        return profile_faults(self.profile, self.faults)

    def credential_variable(self, field: str) -> str | None:
        """The environment variable that holds `field`, or None for a plain-text value."""
        configured = self.credentials.get(field)
        if configured is None:
            default = CREDENTIAL_FIELDS.get(self.kind, {}).get(field)
            return default[0] if default else None
        if looks_like_secret(configured) or not ENV_VAR_PATTERN.match(configured):
            return None
        return configured

    def credential(self, field: str, *, required: bool | None = None) -> str | None:
        """The credential's value; raises CredentialMissing naming the variable if required."""
        known = CREDENTIAL_FIELDS.get(self.kind, {}).get(field)
        must_have = known[1] if (required is None and known) else bool(required)
        configured = self.credentials.get(field)
        variable = self.credential_variable(field)
        if variable is None:
            return configured  # a plain-text value (validation warned about it)
        value = os.environ.get(variable)
        if value:
            return value
        if must_have or configured is not None:
            raise CredentialMissing(variable, needed_by=f"provider {self.name!r}")
        return None

    def missing_credentials(self) -> list[str]:
        """Environment variables this provider needs that are not set now."""
        missing = []
        fields = set(CREDENTIAL_FIELDS.get(self.kind, {})) | set(self.credentials)
        for field in sorted(fields):
            try:
                self.credential(field)
            except CredentialMissing as exc:
                missing.append(exc.variable)
        return missing


class Price(StrictModel):
    """USD per 1,000 tokens."""

    input_per_1k: NonNegativeFloat = 0.0
    output_per_1k: NonNegativeFloat = 0.0


class Model(StrictModel):
    """A model as the gateway knows it: one provider's model under a stable id."""

    id: str = Field(pattern=NAME_PATTERN)
    provider: str
    name: str | None = Field(default=None, description="the provider's own model name")
    price: Price = Field(default_factory=Price)
    description: str | None = None

    @property
    def provider_model(self) -> str:
        """The model name sent to the provider."""
        return self.name or self.id

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for one call with these token counts."""
        return (
            input_tokens * self.price.input_per_1k + output_tokens * self.price.output_per_1k
        ) / 1000.0
