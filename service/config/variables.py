"""How an environment variable's text becomes a value: the parsers of the settings table.

Each parser takes the stripped text of one variable and returns its value, or raises
``ValueError`` with the end of a sentence that starts with the variable's name
("must be ...", or ": 'x' is not ..." about one item of a list). A parser never puts a
secret's value in the message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from pathlib import Path
from urllib.parse import urlsplit

STATE_SCHEMES = frozenset(
    {"sqlite", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"}
)
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
FAKE_SID_BODY = "0" * 32
#: Where ``token-broker serve`` listens unless told otherwise (``BROKER_BIND``).
DEFAULT_BIND = "127.0.0.1:8000"
BIND_VARIABLE = "BROKER_BIND"
_PLACEHOLDER_MARKERS = ("xxxx", "your_", "your-", "changeme", "change_me", "placeholder", "<", ">")
_PUSH_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def looks_like_placeholder(value: str) -> bool:
    """True for a value copied unchanged from ``.env.example``."""
    lowered = value.lower()
    return any(marker in lowered for marker in _PLACEHOLDER_MARKERS)


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def text(value: str) -> str:
    return value


def path(value: str) -> Path:
    return Path(value)


def choice(options: Collection[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(sorted(options))}")
        return value

    return parse


def sid(prefix: str) -> Callable[[str], str]:
    """A Twilio SID: two capital letters (``prefix``) and 32 lowercase hex digits."""

    def parse(value: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}[0-9a-f]{32}", value):
            raise ValueError(f"must be {prefix} followed by 32 lowercase hex digits")
        if not value.startswith(prefix):
            raise ValueError(
                f"must start with {prefix}, not {value[:2]} "
                f"(is a different SID in the wrong variable?)"
            )
        return value

    return parse


def secret(*, min_length: int = 1) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if len(value) < min_length:
            raise ValueError(f"must be at least {min_length} characters")
        return value

    return parse


def whole_number(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return int(value)

    return parse


def phone_number(value: str) -> str:
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
        raise ValueError("must be an E.164 number such as +15005550006")
    return value


def push_credentials(value: str) -> dict[str, str]:
    """``apns=CR...,fcm=CR...``: the names a request may use, and their SIDs."""
    credentials: dict[str, str] = {}
    for item in value.split(","):
        label, separator, credential = item.strip().partition("=")
        label, credential = label.strip(), credential.strip()
        if not separator or not _PUSH_NAME.fullmatch(label):
            raise ValueError("must look like apns=CR...,fcm=CR... (lowercase names)")
        if label in credentials:
            raise ValueError(f"names {label} twice")
        if not re.fullmatch(r"CR[0-9a-f]{32}", credential):
            raise ValueError(f": {label} must be CR followed by 32 lowercase hex digits")
        credentials[label] = credential
    return credentials


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value


def key_url(value: str) -> str:
    """Where keys are fetched from: https, or plain http only on a loopback host."""
    parts = urlsplit(value)
    if parts.scheme != "https" and not (
        parts.scheme == "http" and is_loopback_host(parts.hostname)
    ):
        raise ValueError("must use https (plain http only on a loopback host)")
    if not parts.hostname:
        raise ValueError("must be an absolute URL")
    return value


def names(value: str) -> tuple[str, ...]:
    """A comma-separated list: ``api://broker,2f1e...``."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def issuer_url(value: str) -> str:
    """An identity provider's issuer: https, or plain http only on a loopback host."""
    key_url(value)
    return value


DEFAULT_PORTS = {"http": 80, "https": 443}


def origins(value: str) -> tuple[str, ...]:
    """Exact origins, written as a browser sends them in ``Origin`` (lowercase host, no
    default port), so that ``https://App.io:443`` still matches; no wildcard, no path."""
    return tuple(_origin(origin.strip()) for origin in value.split(",") if origin.strip())


def _origin(text: str) -> str:
    problem = f": {text!r} is not an exact origin such as https://app.io"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    host = parts.hostname
    exact = not (parts.path or parts.query or parts.fragment or parts.username or "*" in text)
    if parts.scheme not in DEFAULT_PORTS or not host or not exact:
        raise ValueError(problem)
    origin = f"{parts.scheme}://[{host}]" if ":" in host else f"{parts.scheme}://{host}"
    return origin if port in (None, DEFAULT_PORTS[parts.scheme]) else f"{origin}:{port}"


def database_url(value: str) -> str:
    """A PostgreSQL URL (``postgresql://user:password@host:5432/database``)."""
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path:
        raise ValueError("must be a postgresql://HOST/DATABASE URL")
    return value


def project_number(value: str) -> str:
    """A Google Cloud project number: digits (the Firebase console's "Project number")."""
    if not re.fullmatch(r"[0-9]{1,20}", value):
        raise ValueError("must be the project's number (digits), not its id")
    return value


def state_url(value: str) -> str:
    if urlsplit(value).scheme not in STATE_SCHEMES:
        raise ValueError("must be a sqlite:/// or redis:// URL")
    return value


def algorithms(value: str) -> tuple[str, ...]:
    found = tuple(algorithm.strip() for algorithm in value.split(","))
    for algorithm in found:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(
                f": {algorithm!r} is not allowed; use asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
            )
    return found


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(value: str) -> tuple[Network, ...]:
    """Addresses or CIDRs, comma separated: ``10.0.0.0/8,127.0.0.1``."""
    if value.isdigit():
        raise ValueError(
            f"takes the addresses or networks of your proxies now, such as "
            f"10.0.0.0/8,127.0.0.1, not a number of hops ({value})"
        )
    found = []
    for item in (part.strip() for part in value.split(",")):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f": {item!r} is not an address or a network such as 10.0.0.0/8"
            ) from None
    return tuple(found)


def bind_address(value: str) -> str:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, separator, port = value.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 127.0.0.1:8000")
    return value
