"""The token request body: strict JSON, only the contract's fields."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.base.errors import InvalidRequest
from service.tokens.request import TokenRequest, VideoRequest, VoiceRequest, parse_token_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def test_full_request() -> None:
    body = {
        "grants": {"video": {"room": "standup"}, "voice": {"push": "apns"}, "chat": {}, "sync": {}},
        "ttl": 900,
    }
    request = parse_token_request(json.dumps(body).encode())
    assert request == TokenRequest(
        video=VideoRequest("standup"),
        voice=VoiceRequest(push="apns"),
        chat=request.chat,
        sync=True,
        ttl=900,
    )
    assert request.grant_names == ("video", "voice", "chat", "sync")
    assert request.push_names == ("apns",)


@pytest.mark.parametrize("room", ["café", "日本語の部屋", "a b", "x" * 128])
def test_unicode_room_names_are_fine(room: str) -> None:
    request = parse_token_request(json.dumps({"grants": {"video": {"room": room}}}).encode())
    assert request.video == VideoRequest(room)


@pytest.mark.parametrize("room", [" lead", "trail ", "", "a\u200bb", "a\u2028b", "\ud800"])
def test_invisible_or_padded_rooms_are_refused(room: str) -> None:
    body = json.dumps({"grants": {"video": {"room": room}}}).encode()
    with pytest.raises(InvalidRequest) as raised:
        parse_token_request(body)
    assert raised.value.code in ("invalid_room", "invalid_json")


def test_deep_nesting_is_a_clean_refusal() -> None:
    with pytest.raises(InvalidRequest):
        parse_token_request(b"[" * 3000 + b"]" * 3000)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_escape_as_another_error(body: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        parse_token_request(body)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["grants", "ttl", "identity", "params", "account_sid"]),
        json_values
        | st.dictionaries(
            st.sampled_from(["video", "voice", "chat", "sync", "x"]), json_values, max_size=4
        ),
        max_size=3,
    )
)
def test_arbitrary_json_is_accepted_only_when_it_fits_the_schema(
    document: dict[str, object],
) -> None:
    try:
        request = parse_token_request(json.dumps(document).encode())
    except InvalidRequest as refusal:
        status = refusal.status
        request = None
    if request is None:
        assert status == 400
        return
    # whatever got through is exactly within the contract
    assert request.grant_names
    assert set(document) <= {"grants", "ttl", "identity"}
    assert request.ttl is None or (type(request.ttl) is int and 60 <= request.ttl <= 86400)
