"""From model ids in the config to the adapters the engine calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from quality_gates.errors import UsageError
from quality_gates.gates.engine import ModelTarget
from quality_gates.providers import ChatProvider

if TYPE_CHECKING:
    from quality_gates.config import Model, Provider, QualityGatesConfig

# (provider config, its models) -> a live adapter. Tests pass their own.
ProviderFactory = Callable[["Provider", "Iterable[Model]"], ChatProvider]


def default_factory(provider: Provider, models: Iterable[Model]) -> ChatProvider:
    """The real adapters (quality_gates.providers.build_provider)."""
    from quality_gates.providers import build_provider

    adapter: ChatProvider = build_provider(provider, models)
    return adapter


class Targets:
    """Opens one adapter per provider and shares it between the models on it."""

    def __init__(self, config: QualityGatesConfig, factory: ProviderFactory | None = None):
        self.config = config
        self.factory = factory or default_factory
        self._providers: dict[str, ChatProvider] = {}

    def target(self, model_id: str) -> ModelTarget:
        """The engine's handle on `model_id`."""
        model = self.config.model(model_id)
        if model is None:
            known = ", ".join(m.id for m in self.config.models)
            raise UsageError(f"model {model_id!r} is not in the config", hint=f"known: {known}")
        provider = self.config.provider(model.provider)
        if provider is None:
            raise UsageError(f"model {model_id!r} names unknown provider {model.provider!r}")
        adapter = self._providers.get(provider.name)
        if adapter is None:
            adapter = self.factory(provider, self.config.models)
            self._providers[provider.name] = adapter
        return ModelTarget(
            model_id=model.id,
            provider=adapter,
            provider_name=provider.name,
            provider_model=model.provider_model,
            input_per_1k=model.price.input_per_1k,
            output_per_1k=model.price.output_per_1k,
            timeout_s=provider.timeout,
        )

    async def close(self) -> None:
        """Close every adapter opened."""
        for adapter in self._providers.values():
            await adapter.close()
        self._providers.clear()
