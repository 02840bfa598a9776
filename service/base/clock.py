"""The one source of time: an injected, timezone-aware clock."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the Unix epoch, as JWT claims carry them."""
    return int(moment.timestamp())
