"""The parsers of the settings table: a value, or the end of a sentence saying what is wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import variables


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (variables.sid("AC"), "AC" + "0a" * 16, "AC" + "0a" * 16),
        (variables.whole_number(0, 10), "7", 7),
        (variables.phone_number, "+15005550006", "+15005550006"),
        (variables.http_url, "https://broker.example.com", "https://broker.example.com"),
        (variables.key_url, "http://127.0.0.1:9/jwks", "http://127.0.0.1:9/jwks"),
        (variables.key_url, "https://id.example.com/jwks", "https://id.example.com/jwks"),
        (variables.origins, "https://a.test, https://b.test", ("https://a.test", "https://b.test")),
        (
            variables.origins,
            "HTTPS://App.Test:443,http://[::1]:8080",
            ("https://app.test", "http://[::1]:8080"),
        ),
        (variables.origins, "http://127.0.0.1:80", ("http://127.0.0.1",)),
        (variables.algorithms, "RS256, ES256", ("RS256", "ES256")),
        (variables.state_url, "redis://r:6379/0", "redis://r:6379/0"),
        (variables.bind_address, "[::1]:8000", "[::1]:8000"),
        (variables.push_credentials, "apns=CR" + "1" * 32, {"apns": "CR" + "1" * 32}),
        (variables.path, "var/x", Path("var/x")),
        (variables.choice(("a", "b")), "b", "b"),
    ],
)
def test_good_values(parse: object, text: str, expected: object) -> None:
    assert callable(parse)
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (variables.sid("SK"), "AC" + "0a" * 16, "must start with SK, not AC"),
        (variables.sid("SK"), "SK123", "32 lowercase hex digits"),
        (variables.whole_number(0, 10), "11", "from 0 to 10"),
        (variables.whole_number(0, 10), "-1", "from 0 to 10"),
        (variables.secret(min_length=32), "short", "at least 32 characters"),
        (variables.phone_number, "5005550006", "E.164"),
        (variables.http_url, "broker.example.com", "absolute http(s) URL"),
        (variables.key_url, "http://id.example.com/jwks", "https"),
        (variables.origins, "https://a.test/path", "not an exact origin"),
        (variables.origins, "https://*.a.test", "not an exact origin"),
        (variables.origins, "https://a.test?x=1", "not an exact origin"),
        (variables.origins, "https://user@a.test", "not an exact origin"),
        (variables.origins, "https://a.test:99999", "not an exact origin"),
        (variables.origins, "null", "not an exact origin"),
        (variables.algorithms, "HS256", "'HS256' is not allowed"),
        (variables.state_url, "postgres://x", "sqlite:/// or redis://"),
        (variables.bind_address, "8000", "HOST:PORT"),
        (variables.push_credentials, "APNS=CR1", "lowercase names"),
        (variables.push_credentials, "apns=CR1", "apns must be CR"),
        (variables.choice(("a", "b")), "c", "one of a, b"),
    ],
)
def test_bad_values_say_why_without_the_value(parse: object, text: str, message: str) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)


def test_placeholders_and_loopback() -> None:
    assert variables.looks_like_placeholder("your_api_key_secret")
    assert variables.looks_like_placeholder("ACxxxxxxxx")
    assert not variables.looks_like_placeholder("kVq3pZ8wX1rT6yB0nM4cL7hJ2gF5dS9a")
    assert variables.is_loopback_host("localhost")
    assert variables.is_loopback_host("::1")
    assert not variables.is_loopback_host("example.com")
    assert not variables.is_loopback_host(None)
