"""Client addresses as networks are handed out: IPv6 by its prefix, every spelling one key."""

from __future__ import annotations

import pytest

from service.base.addresses import UNKNOWN, address_key


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("", UNKNOWN),
        (None, UNKNOWN),
        ("not an address", UNKNOWN),
    ],
)
def test_keys(address: str | None, key: str) -> None:
    assert address_key(address) == key


def test_the_prefix_is_configurable() -> None:
    assert address_key("2001:db8:1:2::1", 48) == "2001:db8:1::/48"
    assert address_key("2001:db8:1:2::1", 128) == "2001:db8:1:2::1/128"
