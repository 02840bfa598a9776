"""The leak guard itself: it must be able to fail."""

from __future__ import annotations

import pytest

from tests import support
from tests.conftest import LeakWatch


@pytest.mark.parametrize("kind", ["secret", "bearer", "issued"])
def test_the_guard_catches_each_kind_of_leak(kind: str) -> None:
    watch = LeakWatch()
    value = {
        "secret": support.API_KEY_SECRET,
        "bearer": "eyJbearer.x.y",
        "issued": "eyJissued.a.b",
    }[kind]
    watch.bearers.add("eyJbearer.x.y")
    watch.issued.add("eyJissued.a.b")
    with pytest.raises(AssertionError):
        watch.check_text(f"some log line with {value} in it")
    watch.check_text("a clean log line")


def test_an_issued_token_is_allowed_only_in_its_own_200_response() -> None:
    watch = LeakWatch()
    watch.issued.add("eyJold.a.b")
    watch.check_text("eyJold.a.b", allow=frozenset({"eyJold.a.b"}))
    with pytest.raises(AssertionError):
        watch.check_text("eyJold.a.b")
