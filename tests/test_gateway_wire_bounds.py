"""Requests no model can serve get a 400 naming the field, never a 429 a client would retry
for ever: `max_tokens: 2**62` and an `n` that is not an integer from 1 to 8 (a provider that
cannot give several choices refuses n > 1 by name, see test_gateway_chat_fields)."""

from __future__ import annotations

import pytest

from quality_gates.gateway._wire import ApiError, parse_request


def _body(**extra: object) -> bytes:
    import json

    return json.dumps(
        {"model": "current", "messages": [{"role": "user", "content": "hi"}], **extra}
    ).encode()


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_an_absurd_max_tokens_is_a_bad_request(field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(_body(**{field: 2**62}))
    assert caught.value.status == 400
    assert caught.value.param == field


@pytest.mark.parametrize("n", [True, 1.0, "1", 0, 9])
def test_n_must_be_an_integer_from_one_to_eight(n: object) -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(_body(n=n))
    assert caught.value.status == 400
    assert caught.value.param == "n"


def test_n_one_and_a_sane_max_tokens_pass() -> None:
    request = parse_request(_body(n=1, max_tokens=4096))
    assert request.max_tokens == 4096
