"""From config to adapter: credentials by variable name, Bedrock's credential sources, cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.simulators import spec

from quality_gates.config import Model, Provider
from quality_gates.errors import AuthError, CredentialMissing
from quality_gates.providers import (
    AnthropicProvider,
    BedrockProvider,
    ChatRequest,
    GeminiProvider,
    Message,
    OpenAIProvider,
    Usage,
    build_provider,
    cost_of,
)
from quality_gates.simulator import run_simulators

REQUEST = ChatRequest("anthropic.claude-3-haiku-20240307-v1:0", (Message("user", "hi"),))


@pytest.mark.parametrize(
    ("protocol", "cls"),
    [
        ("openai", OpenAIProvider),
        ("anthropic", AnthropicProvider),
        ("gemini", GeminiProvider),
        ("bedrock", BedrockProvider),
    ],
)
def test_a_simulator_provider_gets_the_adapter_of_its_protocol(protocol: str, cls: type) -> None:
    provider = Provider(name="sim", kind="simulator", protocol=protocol, port=9999)
    model = Model(id="m", provider="sim", name="model-x", price={"input_per_1k": 1})
    adapter = build_provider(provider, [model])
    assert isinstance(adapter, cls)
    assert adapter.base_url == "http://127.0.0.1:9999"
    assert adapter.probe_model == "model-x"


def test_required_keys_name_their_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(CredentialMissing, match="GEMINI_API_KEY"):
        build_provider(Provider(name="google", kind="gemini"))
    monkeypatch.setenv("MY_CLAUDE_KEY", "sk-test")
    anthropic = Provider(name="claude", kind="anthropic", credentials={"api_key": "MY_CLAUDE_KEY"})
    assert isinstance(build_provider(anthropic), AnthropicProvider)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert isinstance(build_provider(Provider(name="vllm", kind="openai")), OpenAIProvider)


def test_a_simulator_without_a_port_cannot_be_reached() -> None:
    from quality_gates.errors import ConfigError

    with pytest.raises(ConfigError, match="no port"):
        build_provider(Provider(name="sim", kind="simulator", protocol="openai"))


def test_cost_comes_from_the_models_prices() -> None:
    model = Model(id="m", provider="p", price={"input_per_1k": 0.5, "output_per_1k": 1.5})
    assert cost_of(model, Usage(1000, 2000)) == pytest.approx(0.5 + 3.0)


@pytest.mark.integration
async def test_bedrock_signs_with_keys_from_the_standard_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    async with run_simulators([spec("bedrock", api_key="AKIDFROMENV")]) as sims:
        adapter = BedrockProvider("aws", sims["bedrock"].base_url, region="eu-west-1")
        answer = await adapter.complete(REQUEST)
        await adapter.close()
    assert answer.text


@pytest.mark.integration
async def test_bedrock_api_keys_go_as_bearer_tokens() -> None:
    async with run_simulators([spec("bedrock", api_key="bedrock-api-key")]) as sims:
        base = sims["bedrock"].base_url
        good = BedrockProvider("aws", base, region="us-east-1", bearer_token="bedrock-api-key")
        bad = BedrockProvider("aws", base, region="us-east-1", bearer_token="stolen")
        assert (await good.complete(REQUEST)).text
        with pytest.raises(AuthError):
            await bad.complete(REQUEST)
        await good.close()
        await bad.close()


async def test_bedrock_without_any_credentials_says_where_they_could_come_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    adapter = BedrockProvider("aws", "http://127.0.0.1:9", region="us-east-1")
    with pytest.raises(AuthError, match="AWS_ACCESS_KEY_ID"):
        await adapter.complete(REQUEST)
