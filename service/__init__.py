"""Token Broker: short-lived, narrowly scoped Twilio Access Tokens for authenticated callers.

``create_app`` is imported on first use, so that the command line can set up the
metrics' multiprocess directory before prometheus_client is first imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(name)
