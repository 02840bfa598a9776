"""A small Python client for Token Broker: a token now, and a fresh one before expiry.

    client = TokenClient("https://broker.example.com", session_token=lambda: my_idp_token())
    token = client.token({"video": {"room": "standup"}})   # cached until 60 s before exp

A refusal that says when to come back (429 ``rate_limited``, 503 ``issuance_paused`` or
``unavailable``, each with ``Retry-After``) is honoured: until then, the client raises the
same ``BrokerError`` again without asking the broker (``retry_after`` says how long is left).

Standard library only. The broker decides what the token may do.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any


class BrokerError(Exception):
    """The broker refused: ``status`` and its stable ``code`` (``rate_limited``...)."""

    def __init__(self, status: int, code: str, retry_after: int | None) -> None:
        super().__init__(f"token broker said {status} {code}")
        self.status, self.code, self.retry_after = status, code, retry_after


class TokenClient:
    def __init__(
        self,
        broker_url: str,
        session_token: Callable[[], str],
        *,
        refresh_margin_seconds: int = 60,
        timeout: float = 10.0,
    ) -> None:
        self.broker_url = broker_url.rstrip("/")
        self.session_token = session_token
        self.refresh_margin_seconds = refresh_margin_seconds
        self.timeout = timeout
        self._cache: dict[str, dict[str, Any]] = {}
        self._not_before = 0.0
        self._refusal: BrokerError | None = None

    def token(self, grants: dict[str, Any], ttl: int | None = None) -> str:
        """A token for ``grants``: the cached one, unless it is within the margin of expiry."""
        key = json.dumps([grants, ttl], sort_keys=True)
        cached = self._cache.get(key)
        if cached and cached["expires"] - time.time() > self.refresh_margin_seconds:
            return str(cached["token"])
        issued = self.fetch(grants, ttl)
        expires = datetime.fromisoformat(issued["expires_at"].replace("Z", "+00:00")).timestamp()
        self._cache[key] = {"token": issued["token"], "expires": expires}
        return str(issued["token"])

    def fetch(self, grants: dict[str, Any], ttl: int | None = None) -> dict[str, Any]:
        """Ask the broker for a new token; raise ``BrokerError`` when it refuses, or while a
        refusal's ``Retry-After`` has not passed."""
        wait = self._not_before - time.time()
        if self._refusal is not None and wait > 0:
            refusal = self._refusal
            raise BrokerError(refusal.status, refusal.code, max(1, round(wait)))
        body: dict[str, Any] = {"grants": grants}
        if ttl is not None:
            body["ttl"] = ttl
        request = urllib.request.Request(  # the broker's own URL, given by the app
            f"{self.broker_url}/v1/tokens",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.session_token()}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # as above
                return dict(json.load(response))
        except urllib.error.HTTPError as error:
            problem = json.loads(error.read() or b"{}")
            retry_after = error.headers.get("Retry-After")
            refusal = BrokerError(
                error.code, problem.get("code", ""), int(retry_after) if retry_after else None
            )
            if refusal.retry_after is not None:
                self._refusal, self._not_before = refusal, time.time() + refusal.retry_after
            raise refusal from None
