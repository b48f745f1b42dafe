"""What the simulator decides: profiles, seeds, the answer key, per-model accuracy, token
counts, and the live control endpoints."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError
from tests.simulators import instant, spec

from quality_gates.config import SimulatorFaults, profile_faults
from quality_gates.simulator import Behaviour, Prompt, run_simulators
from quality_gates.simulator._answers import (
    AnswerKey,
    KeyItem,
    count_tokens,
    lognormal_quantile,
    parse_items,
    tokens,
)


def behaviour(seed: int = 3, **faults: object) -> Behaviour:
    return Behaviour(profile=None, faults=instant(**faults), seed=seed)


def ask(text: str, model: str = "m", **kw: object) -> Prompt:
    return Prompt(model, [("user", text)], **kw)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_outcomes_and_answers() -> None:
    faults = {
        "server_error_rate": 0.3,
        "rate_limit_rate": 0.2,
        "latency_p50_ms": 50,
        "latency_p95_ms": 100,
    }
    runs = []
    for _ in range(2):
        sim = behaviour(seed=11, **faults)
        runs.append([(p.outcome, p.delay, p.text) for p in map(sim.plan, [ask("q")] * 50)])
    assert runs[0] == runs[1]
    assert {o for o, _, _ in runs[0]} == {"answer", "server_error", "rate_limited"}
    other = behaviour(seed=12, **faults)
    assert [p.outcome for p in map(other.plan, [ask("q")] * 50)] != [o for o, _, _ in runs[0]]


def test_lognormal_quantiles_hit_the_configured_median_and_p95() -> None:
    assert lognormal_quantile(200, 600, 0.5) == pytest.approx(200)
    assert lognormal_quantile(200, 600, 0.95) == pytest.approx(600)
    assert lognormal_quantile(0, 0, 0.7) == 0
    assert lognormal_quantile(100, 100, 0.99) == 100


def test_answer_key_items_are_right_at_the_configured_rate_and_stable_per_item() -> None:
    sim = behaviour(accuracy=0.8)
    items = [{"input": f"What is {i} + {i}?", "expected": str(2 * i)} for i in range(2000)]
    sim.key.add(parse_items(items))
    first = [sim.plan(ask(item["input"])).correct for item in items]
    again = [sim.plan(ask(item["input"])).correct for item in items]
    assert first == again  # an item's fate does not depend on order or repetition
    assert 0.77 < sum(first) / len(first) < 0.83
    right = sim.plan(ask(items[0]["input"]) if first[0] else ask(items[1]["input"]))
    assert right.text in ("0", "2")


def test_per_model_accuracy_lets_candidate_and_baseline_differ_on_one_port() -> None:
    sim = behaviour()
    sim.update({"models": {"candidate": {"accuracy": 0.5}, "baseline": {"accuracy": 1.0}}})
    sim.key.add(parse_items([{"input": f"q{i}", "expected": f"a{i}"} for i in range(1000)]))
    baseline = [sim.plan(ask(f"q{i}", "baseline")).correct for i in range(1000)]
    candidate = [sim.plan(ask(f"q{i}", "candidate")).correct for i in range(1000)]
    assert all(baseline)
    assert 0.45 < sum(candidate) / 1000 < 0.55


def test_wrong_answers_are_plausible_and_differ_from_the_expected_one() -> None:
    key = AnswerKey()
    key.add([("capital of France", KeyItem("Paris")), ("capital of Italy", KeyItem("Rome"))])
    assert key.wrong_answer(KeyItem("42"), "s") != "42"
    assert key.wrong_answer(KeyItem("42"), "s").isdigit()
    assert key.wrong_answer(KeyItem("Yes"), "s") == "No"
    assert key.wrong_answer(KeyItem("B"), "s") in ("A", "C", "D")
    assert key.wrong_answer(KeyItem("Paris"), "s") == "Rome"
    assert key.wrong_answer(KeyItem("Paris", wrong="Lyon"), "s") == "Lyon"


def test_the_answer_key_matches_on_the_normalised_last_user_message() -> None:
    sim = behaviour(accuracy=1.0)
    sim.key.add(parse_items([{"input": "What is  the Capital of France?", "ideal": "Paris"}]))
    prompt = Prompt("m", [("system", "Be brief"), ("user", "what is the capital   of france?")])
    assert sim.plan(prompt).text == "Paris"


def test_chat_message_inputs_and_several_file_formats_load_into_the_key(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "x"}, {"role": "user", "content": "Q1"}]
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": 1, "input": chat, "expected": "A1"}))
    (tmp_path / "b.csv").write_text("id,input,expected\n2,Q2,A2\n")
    (tmp_path / "c.yaml").write_text("items:\n  - {input: Q3, expected: A3}\n")
    (tmp_path / "d.json").write_text(json.dumps([{"question": "Q4", "answer": "A4"}]))
    key = AnswerKey()
    assert sum(key.load(tmp_path / f) for f in ("a.jsonl", "b.csv", "c.yaml", "d.json")) == 4
    assert [key.get(q).expected for q in ("q1", "q2", "q3", "q4")] == ["A1", "A2", "A3", "A4"]


def test_generic_answers_are_deterministic_and_near_the_configured_length() -> None:
    sim = behaviour(answer_tokens_p50=80, answer_tokens_p95=200)
    lengths = [sim.plan(ask(f"tell me about {i}")).output_tokens for i in range(400)]
    assert sim.plan(ask("tell me about 5")).output_tokens == lengths[5]
    lengths.sort()
    assert 65 < lengths[200] < 100  # the median, give or take a sentence


def test_max_tokens_and_stop_sequences_shape_the_answer() -> None:
    sim = behaviour()
    plan = sim.plan(ask("hello", max_tokens=7))
    assert plan.output_tokens == 7
    assert plan.finish == "length"
    word = sim.plan(ask("hello")).text.split()[2]
    stopped = sim.plan(ask("hello", stop=[word]))
    assert stopped.stop_sequence == word
    assert word not in stopped.text


def test_tokens_rejoin_to_the_text_and_count_like_bpe() -> None:
    text = "The deployment rolled back at 03:12 UTC after errors rose."
    assert "".join(tokens(text)) == text
    assert 10 <= count_tokens(text) <= 16  # ~1.3 tokens per word


def test_toxicity_and_pii_are_injected_at_their_rates() -> None:
    sim = behaviour(toxicity_rate=0.25, pii_rate=0.1)
    plans = [sim.plan(ask(f"q{i}")) for i in range(2000)]
    toxic = sum("idiot" in p.text or "moron" in p.text or "fool" in p.text for p in plans)
    pii = sum("@example." in p.text for p in plans)
    assert 0.21 < toxic / 2000 < 0.29
    assert 0.08 < pii / 2000 < 0.12


def test_profiles_lay_configured_faults_over_their_defaults() -> None:
    degraded = profile_faults("degraded", SimulatorFaults.model_validate({"accuracy": 0.5}))
    assert degraded.server_error_rate == 0.04
    assert degraded.accuracy == 0.5
    assert profile_faults("outage").outage
    with pytest.raises(ValueError, match="unknown simulator profile"):
        profile_faults("broken")


def test_faults_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ValidationError, match="latency_p95_ms"):
        SimulatorFaults.model_validate({"latency_p50_ms": 500, "latency_p95_ms": 100})
    with pytest.raises(ValidationError, match="at most 100%"):
        SimulatorFaults.model_validate({"server_error_rate": 0.7, "rate_limit_rate": 0.5})
    with pytest.raises(ValidationError, match=r"models\.slow"):
        SimulatorFaults.model_validate({"models": {"slow": {"latency_p50_ms": "9s"}}})


@pytest.mark.integration
async def test_control_endpoints_change_behaviour_live() -> None:
    async with run_simulators([spec("openai", profile="healthy")]) as sims:
        base = sims["openai"].base_url
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{base}/_sim/faults", json={"profile": "throttled"}) as r:
                body = await r.json()
            assert body["profile"] == "throttled"
            assert body["faults"]["rate_limit_rate"] == 0.5
            async with http.put(f"{base}/_sim/faults", json={"accuracy": "150%"}) as r:
                assert r.status == 400
                assert "accuracy" in (await r.json())["error"]
            async with http.put(f"{base}/_sim/faults", json={"reset": True, "seed": 99}) as r:
                body = await r.json()
            assert body["profile"] == "healthy"
            assert body["seed"] == 99
            assert body["faults"]["latency_p50_ms"] == 0  # the configured faults came back
            items = [{"input": "ping?", "expected": "pong"}]
            async with http.put(f"{base}/_sim/answers", json={"items": items}) as r:
                assert (await r.json())["items"] == 1
            async with http.get(f"{base}/_sim/stats") as r:
                assert (await r.json())["requests"] == 0
            async with http.get(f"{base}/_sim/nothing") as r:
                assert r.status == 404
            # What a web page can send without a preflight is refused, and changes nothing.
            async with http.post(
                f"{base}/_sim/faults",
                data='{"outage": true}',
                headers={"content-type": "text/plain"},
            ) as r:
                assert r.status == 415
            async with http.put(
                f"{base}/_sim/faults",
                json={"outage": True},
                headers={"origin": "https://evil.test"},
            ) as r:
                assert r.status == 403
            async with http.get(f"{base}/_sim/faults") as r:
                assert (await r.json())["faults"]["outage"] is False


MALFORMED = {
    "openai": (
        "/v1/chat/completions",
        {"authorization": "Bearer k"},
        lambda body: body["error"]["type"] == "invalid_request_error",
    ),
    "anthropic": (
        "/v1/messages",
        {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        lambda body: body["type"] == "error" and body["error"]["type"] == "invalid_request_error",
    ),
    "gemini": (
        "/v1beta/models/gemini-1.5-flash:generateContent",
        {"x-goog-api-key": "k"},
        lambda body: body["error"]["status"] == "INVALID_ARGUMENT" and body["error"]["code"] == 400,
    ),
    "bedrock": (
        "/model/m/converse",
        {
            "authorization": "AWS4-HMAC-SHA256 "
            "Credential=AKID/20240101/us-east-1/bedrock/aws4_request"
        },
        lambda body: "message" in body,
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("protocol", list(MALFORMED))
@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[]", b'{"model": 5, "messages": "x"}'],
    ids=["garbage", "array", "types"],
)
async def test_malformed_requests_get_the_protocols_own_400(protocol: str, payload: bytes) -> None:
    path, headers, shaped = MALFORMED[protocol]
    async with run_simulators([spec(protocol)]) as sims, aiohttp.ClientSession() as http:
        url = sims[protocol].base_url + path
        async with http.post(url, data=payload, headers=headers) as response:
            assert response.status == 400
            assert shaped(await response.json())
            if protocol == "bedrock":
                assert response.headers["x-amzn-errortype"].startswith("ValidationException")


@pytest.mark.integration
@pytest.mark.parametrize("protocol", list(MALFORMED))
async def test_unknown_paths_and_missing_keys_get_the_protocols_own_errors(protocol: str) -> None:
    path, _headers, _shaped = MALFORMED[protocol]
    async with run_simulators([spec(protocol)]) as sims:
        base = sims[protocol].base_url
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/nowhere", data=b"{}") as response:
                assert response.status == 404
                assert isinstance(await response.json(), dict)
            async with http.post(base + path, data=b"{}") as response:
                assert response.status in (401, 403)


def test_the_configured_answer_key_file_loads_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "golden.jsonl").write_text('{"input": "2+2?", "expected": "4"}\n')
    sim = Behaviour(
        profile=None,
        faults=instant(answer_key="golden.jsonl", accuracy=1.0),
        seed=1,
        base_dir=tmp_path,
    )
    assert sim.plan(ask("2+2?")).text == "4"
    with pytest.raises(ValueError, match="answer key"):
        Behaviour(
            profile=None, faults=instant(answer_key="missing.jsonl"), seed=1, base_dir=tmp_path
        )


@pytest.mark.integration
async def test_a_live_answer_key_outside_the_config_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    (folder / "datasets").mkdir(parents=True)
    (folder / "datasets" / "golden.jsonl").write_text('{"input": "2+2?", "expected": "4"}\n')
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"input": "key?", "expected": "hunter2"}\n')
    (folder / "datasets" / "link.jsonl").symlink_to(secret)
    sim = spec("openai", base_dir=folder)
    async with run_simulators([sim]) as sims, aiohttp.ClientSession() as http:
        url = sims["openai"].base_url + "/_sim/faults"
        for outside in (str(secret), "../secret.jsonl", "datasets/link.jsonl"):
            async with http.put(url, json={"answer_key": outside}) as response:
                assert response.status == 400
                error = (await response.json())["error"]
                assert "outside the config's folder" in error
                assert "hunter2" not in error
        async with http.get(sims["openai"].base_url + "/_sim/answers") as response:
            assert (await response.json())["items"] == 0  # nothing was read
        async with http.put(url, json={"answer_key": "datasets/golden.jsonl"}) as response:
            assert response.status == 200
            assert (await response.json())["answer_key_items"] == 1
