"""Whose budget is this? A client address as networks are handed out.

An IPv4 client is its address; an IPv6 client is its network of ``BROKER_IPV6_PREFIX``
bits (default 64: one customer's allocation, within which one device can take any
address it likes). An IPv4 address written as IPv6 (``::ffff:192.0.2.1``) is the IPv4
address. Every spelling of one address gives one key.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

DEFAULT_IPV6_PREFIX = 64
UNKNOWN = "unknown"


def parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address however it is written (``[::1]``, ``::ffff:192.0.2.1``); None if not one."""
    if not text:
        return None
    try:
        parsed = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        return parsed.ipv4_mapped or parsed.sixtofour or parsed
    return parsed


@lru_cache(maxsize=4096)
def address_key(address: str | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The budget key of a client address: ``192.0.2.1`` or ``2001:db8:1:2::/64``."""
    parsed = parse_address(address)
    if parsed is None:
        return UNKNOWN
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(parsed)
