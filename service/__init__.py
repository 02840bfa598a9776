"""Token Broker: short-lived, narrowly scoped Twilio Access Tokens for authenticated callers."""

from service.app import create_app

__all__ = ["create_app"]
