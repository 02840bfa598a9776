"""The identity provider's public keys, from its JWKS, fetched safely.

- A ``kid`` seen before is answered from memory: its caller never waits for a fetch.
- A ``kid`` not seen before fetches the key set again (a key rotated in at the provider
  works on the first token that names it), unless a fetch for an unknown ``kid``
  happened within the cooldown: a flood of made-up ``kid`` values costs at most one
  fetch per cooldown. The first load and the routine refreshes (every ``lifespan``, in
  the background) never start that cooldown.
- Every fetch has one overall deadline, however slowly the bytes come. A bad answer
  (HTTP error, not JSON, no usable key) is ``Unavailable`` (503), never a 401 to a valid
  caller, and starts the same cooldown as a good one: a broken provider is not hammered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import jwt
from jwt import PyJWK, PyJWKSet

from service.base.clock import Clock, system_clock
from service.base.errors import Unavailable
from service.callers.fetch import DEADLINE_SECONDS, FetchFailed, fetch_json

COOLDOWN_SECONDS = 30.0
LIFESPAN_SECONDS = 300.0
log = logging.getLogger("token_broker")


class JwksKeys:
    """Keys from a JWKS URL (or from a function that finds it, as discovery does)."""

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        clock: Clock = system_clock,
        cooldown_seconds: float = COOLDOWN_SECONDS,
        lifespan_seconds: float = LIFESPAN_SECONDS,
        deadline_seconds: float = DEADLINE_SECONDS,
    ) -> None:
        self._url = url if callable(url) else (lambda: url)
        self._clock = clock
        self._cooldown = cooldown_seconds
        self._lifespan = lifespan_seconds
        self._deadline = deadline_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched: datetime | None = None
        self._unknown_fetch: datetime | None = None
        self._failure: str | None = None
        self._failed_at: datetime | None = None
        self._fetch_lock = threading.Lock()
        self._refreshing = False

    def __repr__(self) -> str:
        return f"JwksKeys(keys={sorted(self._keys)!r})"

    def key_for(self, kid: str | None) -> PyJWK:
        """The key ``kid`` names; ``jwt.PyJWKClientError`` if none, ``Unavailable`` if the
        provider's keys cannot be had."""
        if kid is None:
            raise jwt.PyJWKClientError("a kid is required with a JWKS")
        key = self._keys.get(kid)
        if key is not None:
            self._refresh_in_background_if_due()
            return key
        self._fetch_for_unknown_kid()
        key = self._keys.get(kid)
        if key is None:
            raise jwt.PyJWKClientError("no key for this kid")
        return key

    def ready(self) -> bool:
        """True when keys are loaded (fetching them if none were yet): a readiness check."""
        if not self._keys:
            try:
                self._fetch_for_unknown_kid()
            except Unavailable:
                return False
        return bool(self._keys)

    def check(self) -> tuple[int, str | None]:
        """Fetch the keys now (``check-config --online``): how many, or what is wrong."""
        with self._fetch_lock:
            self._fetch()
        return len(self._keys), self._failure

    def _fetch_for_unknown_kid(self) -> None:
        with self._fetch_lock:  # one fetch at a time; the others find its keys
            now = self._clock()
            failed_lately = self._failed_at is not None and _within(
                now, self._failed_at, self._cooldown
            )
            if failed_lately:
                raise Unavailable(
                    f"identity provider keys: {self._failure}", dependency="identity_provider"
                )
            if self._keys:  # loaded: this kid is new, and may be a rotated key
                if self._unknown_fetch is not None and _within(
                    now, self._unknown_fetch, self._cooldown
                ):
                    return
                self._unknown_fetch = now
            self._fetch()
        if self._failure is not None:
            raise Unavailable(
                f"identity provider keys: {self._failure}", dependency="identity_provider"
            )

    def _refresh_in_background_if_due(self) -> None:
        now = self._clock()
        if self._refreshing or (
            self._fetched is not None and _within(now, self._fetched, self._lifespan)
        ):
            return
        self._refreshing = True
        threading.Thread(target=self._refresh, name="jwks-refresh", daemon=True).start()

    def _refresh(self) -> None:
        try:
            with self._fetch_lock:
                self._fetch()
        finally:
            self._refreshing = False

    def _fetch(self) -> None:
        """Fetch the key set; on a bad answer keep the keys held, and say why."""
        try:
            document = fetch_json(self._url(), deadline_seconds=self._deadline)
            key_set = PyJWKSet.from_dict(document)
        except (FetchFailed, jwt.PyJWTError, ValueError, TypeError, AttributeError) as error:
            self._failed(str(error) if isinstance(error, FetchFailed) else "no usable key")
            return
        keys = {key.key_id: key for key in key_set.keys if key.key_id}
        if not keys:
            self._failed("no key with a kid")
            return
        self._keys, self._fetched = keys, self._clock()
        self._failure = self._failed_at = None

    def _failed(self, why: str) -> None:
        """Keep the keys held (a routine refresh that failed loses nothing); say why."""
        self._failure, self._failed_at = why, self._clock()
        self._fetched = self._fetched or self._failed_at
        log.warning("identity provider keys not fetched: %s", why)


def _within(now: datetime, then: datetime, seconds: float) -> bool:
    # A clock that went backwards ends the wait, never extends it.
    return 0 <= (now - then).total_seconds() < seconds
