"""Fetching a small JSON document within one deadline, however the bytes come."""

from __future__ import annotations

import time

import pytest

from service.callers import fetch
from service.callers.fetch import FetchFailed, fetch_json
from tests import support


def test_a_good_answer(jwks: support.JwksServer) -> None:
    assert fetch_json(jwks.url) == jwks.document


@pytest.mark.parametrize(
    ("behaviour", "message"), [("not_json", "did not answer JSON"), ("error", "HTTP 500")]
)
def test_bad_answers_say_what_is_wrong(
    jwks: support.JwksServer, behaviour: str, message: str
) -> None:
    jwks.behaviour = behaviour
    with pytest.raises(FetchFailed, match=message):
        fetch_json(jwks.url)


def test_a_trickled_answer_is_cut_off_at_the_deadline(jwks: support.JwksServer) -> None:
    jwks.behaviour = "trickle"
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="cannot be fetched"):
        fetch_json(jwks.url, deadline_seconds=1.0)
    assert time.monotonic() - started < 2.0


def test_too_large_unreachable_and_not_http(
    jwks: support.JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "MAX_BYTES", 10)
    with pytest.raises(FetchFailed, match="more than 10 bytes"):
        fetch_json(jwks.url)
    with pytest.raises(FetchFailed, match="cannot be fetched"):
        fetch_json("http://127.0.0.1:9/jwks.json")
    with pytest.raises(FetchFailed, match="not an http"):
        fetch_json("ftp://example.test/jwks.json")
