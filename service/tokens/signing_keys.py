"""Which key signs now? The API key, re-read from its files when they change.

With ``TWILIO_API_KEY_SID_FILE`` and ``TWILIO_API_KEY_SECRET_FILE`` both set, the files
are checked at most every ``CHECK_SECONDS``; a change is applied once the files have
stayed the same for one more check (so writing the two files one after the other never
pairs a new SID with an old secret), and the new key signs from the next token on: no
restart, no failed request. A Kubernetes secret, or a symlinked directory swapped in
one rename, changes both at once; gunicorn's ``HUP`` also starts fresh workers that read
the files. A change that does not hold a usable key is refused and the previous key
goes on signing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from service.base.clock import Clock, system_clock
from service.base.errors import ConfigurationError
from service.config.reading import read_api_key
from service.config.settings import Settings
from service.state import StateStore
from service.tokens.minting import SigningKey

CHECK_SECONDS = 0.5
#: How often a serving instance reports its key, and how long a report holds.
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 10
log = logging.getLogger("token_broker")


class SigningKeySource:
    """The current signing key; watches its files when it came from files."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._key = SigningKey.from_settings(settings)
        self._files = settings.signing_key_files
        self._production = settings.profile == "production"
        self._clock = clock
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._checked = clock()
        self._seen = self._signature()
        self._pending: tuple[tuple[int, int, int], ...] | None = None

    def __repr__(self) -> str:
        return f"SigningKeySource(api_key_sid={self._key.api_key_sid!r})"

    def current(self) -> SigningKey:
        """The key to sign with now."""
        if self._files is None or not self._due(self._clock()):
            return self._key
        with self._lock:
            self._checked = self._clock()
            signature = self._signature()
            if signature == self._seen:
                self._pending = None
            elif signature != self._pending:
                self._pending = signature  # changed: apply once it holds still
            else:
                self._seen, self._pending = signature, None
                self._reload()
        return self._key

    def _due(self, now: datetime) -> bool:
        # A clock that went backwards makes a check due, never postpones it.
        elapsed = (now - self._checked).total_seconds()
        return not 0 <= elapsed < self._check_seconds

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        if self._files is None:
            return ()
        signature = []
        for path in self._files:
            try:
                status = path.stat()
            except OSError:
                return ()
            signature.append((status.st_ino, status.st_mtime_ns, status.st_size))
        return tuple(signature)

    def _reload(self) -> None:
        if self._files is None:
            return
        try:
            sid, secret = read_api_key(*self._files, production=self._production)
        except ConfigurationError as error:
            # Never the secret: the problems name variables, not values.
            log.error("rotated API key refused, previous key still signs: %s", error)
            return
        previous = self._key
        self._key = SigningKey(previous.account_sid, sid, secret, previous.region)
        if sid != previous.api_key_sid:
            log.warning("signing key rotated: %s -> %s", previous.api_key_sid, sid)


class KeyHeartbeat:
    """Tells the fleet (the state store) which key this instance signs with: a serving
    worker beats every ``HEARTBEAT_SECONDS``, and ``keys rotate`` waits until every live
    instance names the new key. Each beat also looks at the key files."""

    def __init__(
        self, key: Callable[[], SigningKey], store: StateStore, clock: Clock, instance: str
    ) -> None:
        self._key = key
        self._store = store
        self._clock = clock
        self.instance = instance

    def __repr__(self) -> str:
        return f"KeyHeartbeat({self.instance!r})"

    def beat(self) -> str:
        """Report the key signing now (raises ``Unavailable`` with the store down)."""
        sid = self._key().api_key_sid
        self._store.report_signing_key(self.instance, sid, self._clock(), HEARTBEAT_TTL_SECONDS)
        return sid
