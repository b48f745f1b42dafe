"""The providers' own official SDKs, unmodified, cannot tell the simulator from the real thing
for the calls we use: complete and streamed answers, usage, and errors they recognise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.simulators import PROTOCOLS, instant, spec

from quality_gates.simulator import SimulatorThread

pytestmark = pytest.mark.integration
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture(scope="module")
def sims() -> Iterator[SimulatorThread]:
    specs = [spec(p) for p in PROTOCOLS]
    specs += [
        spec(p, name=f"{p}-throttled", faults=instant(rate_limit_rate=1.0)) for p in PROTOCOLS
    ]
    broken = instant(stream_cut_rate=1.0, stream_cut_mode="error")
    specs += [spec(p, name=f"{p}-broken", faults=broken) for p in PROTOCOLS]
    with SimulatorThread(specs) as running:
        yield running


def test_openai_sdk_completes_and_streams(sims: SimulatorThread) -> None:
    import openai

    client = openai.OpenAI(base_url=sims.base_url("openai") + "/v1", api_key="k", max_retries=0)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=12)
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 12
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12
    client.close()


def test_openai_sdk_sees_a_rate_limit_error_with_retry_after(sims: SimulatorThread) -> None:
    import openai

    base = sims.base_url("openai-throttled") + "/v1"
    client = openai.OpenAI(base_url=base, api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.response.headers["retry-after"] == "1"
    client.close()


def test_anthropic_sdk_completes_and_streams(sims: SimulatorThread) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=sims.base_url("anthropic"), api_key="k", max_retries=0)
    kwargs = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 12,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    message = client.messages.create(**kwargs)
    assert message.content[0].text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 12
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[0].text
    assert final.usage.output_tokens == 12
    assert final.stop_reason == "max_tokens"
    client.close()


def test_anthropic_sdk_sees_a_rate_limit_error(sims: SimulatorThread) -> None:
    import anthropic

    base = sims.base_url("anthropic-throttled")
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=5,
            messages=[{"role": "user", "content": "Hi"}],
        )
    client.close()


def test_google_genai_sdk_completes_and_streams(sims: SimulatorThread) -> None:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=sims.base_url("gemini"))
    )
    config = types.GenerateContentConfig(max_output_tokens=12, system_instruction="Be brief.")
    answer = client.models.generate_content(model="gemini-1.5-flash", contents="Hi", config=config)
    assert answer.text
    assert answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert answer.usage_metadata.candidates_token_count == 12
    chunks = list(
        client.models.generate_content_stream(
            model="gemini-1.5-flash", contents="Hi", config=config
        )
    )
    assert "".join(c.text or "" for c in chunks) == answer.text
    assert chunks[-1].usage_metadata.candidates_token_count == 12


def test_google_genai_sdk_sees_resource_exhausted(sims: SimulatorThread) -> None:
    from google import genai
    from google.genai import errors, types

    options = types.HttpOptions(
        base_url=sims.base_url("gemini-throttled"), retry_options=types.HttpRetryOptions(attempts=1)
    )
    client = genai.Client(api_key="k", http_options=options)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gemini-1.5-flash", contents="Hi")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"


def _bedrock(sims: SimulatorThread, name: str = "bedrock"):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        endpoint_url=sims.base_url(name),
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_boto3_converse_and_converse_stream(sims: SimulatorThread) -> None:
    client = _bedrock(sims)
    kwargs = {
        "modelId": BEDROCK_MODEL,
        "system": [{"text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "inferenceConfig": {"maxTokens": 12},
    }
    answer = client.converse(**kwargs)
    text = answer["output"]["message"]["content"][0]["text"]
    assert text
    assert answer["stopReason"] == "max_tokens"
    assert answer["usage"]["outputTokens"] == 12
    events = list(client.converse_stream(**kwargs)["stream"])
    streamed = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert streamed == text
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 12


def test_boto3_sees_a_throttling_exception(sims: SimulatorThread) -> None:
    client = _bedrock(sims, "bedrock-throttled")
    with pytest.raises(client.exceptions.ThrottlingException):
        client.converse(
            modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}]
        )


def test_boto3_sees_a_validation_exception_for_a_malformed_request(sims: SimulatorThread) -> None:
    client = _bedrock(sims)
    with pytest.raises(client.exceptions.ValidationException):
        client.converse(modelId=BEDROCK_MODEL, messages=[{"role": "assistant", "content": []}])


def test_sdks_raise_on_an_in_stream_error_event(sims: SimulatorThread) -> None:
    import anthropic
    import openai
    from botocore.exceptions import EventStreamError

    chat = openai.OpenAI(
        base_url=sims.base_url("openai-broken") + "/v1", api_key="k", max_retries=0
    )
    with pytest.raises(openai.APIError, match="mid-stream"):
        list(
            chat.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
        )
    claude = anthropic.Anthropic(
        base_url=sims.base_url("anthropic-broken"), api_key="k", max_retries=0
    )
    messages = [{"role": "user", "content": "Hi"}]
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        claude.messages.stream(model="m", max_tokens=50, messages=messages) as stream,
    ):
        "".join(stream.text_stream)
    bedrock = _bedrock(sims, "bedrock-broken")
    response = bedrock.converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hi"}]}]
    )
    with pytest.raises(EventStreamError, match="modelStreamErrorException"):
        list(response["stream"])
