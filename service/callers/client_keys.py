"""Server-to-server callers: client keys, stored only as digests.

A key looks like ``tbk_<id>_<secret>``; the file (``BROKER_CLIENT_KEYS_FILE``, JSON, mode
0600) keeps the id, the client's name, when it was made, whether it is revoked and the
SHA-256 of the whole key: 256 random bits need no slow hash. A presented key is found by
its id and compared in constant time; a wrong, revoked or unknown key fails the same way.
The file is re-read when it changes, so ``token-broker client-key revoke`` takes effect
at once, without a restart. A client key is for a backend, never for a mobile or web app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from service.base.errors import AuthenticationFailed, ConfigurationError, Unavailable
from service.base.files import private_folder

PREFIX = "tbk_"
_KEY = re.compile(r"tbk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_CLIENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ClientKey:
    """One stored key: never the key itself, only its digest."""

    id: str
    client: str
    created: float
    sha256: str
    revoked: bool = False


def looks_like_client_key(credential: str) -> bool:
    return credential.startswith(PREFIX)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ClientKeyFile:
    """The keys file: read, verify against, and (for the command line) change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys: dict[str, ClientKey] = {}
        self._signature: tuple[int, int, int] | None = None
        self._reload(force=True)

    def __repr__(self) -> str:
        return f"ClientKeyFile({str(self.path)!r})"

    def verify(self, credential: str) -> ClientKey:
        """The key's record, or ``AuthenticationFailed`` (wrong, revoked, unknown alike)."""
        try:
            self._reload()
        except ConfigurationError:
            raise Unavailable(
                "the client keys file cannot be read", dependency="client_keys"
            ) from None
        match = _KEY.fullmatch(credential)
        stored = self._keys.get(match.group(1)) if match else None
        # Compare even when nothing was found, so that timing does not tell which it was.
        expected = stored.sha256 if stored else "0" * 64
        if not hmac.compare_digest(_digest(credential), expected) or stored is None:
            raise AuthenticationFailed("client key unknown or wrong")
        if stored.revoked:
            raise AuthenticationFailed("client key revoked")
        return stored

    def entries(self) -> list[ClientKey]:
        self._reload(force=True)
        return sorted(self._keys.values(), key=lambda key: key.created)

    def create(self, client: str, now: datetime) -> str:
        """Store a new key for ``client`` and return it: the only time it is seen."""
        if not _CLIENT_NAME.fullmatch(client):
            raise ConfigurationError(["a client name is 1-64 of a-z, 0-9, '.', '_', '-'"])
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with self._lock:
            self._reload(force=True)
            self._keys[key_id] = ClientKey(key_id, client, now.timestamp(), _digest(key))
            self._write()
        return key

    def revoke(self, key_id_or_client: str) -> int:
        """Revoke one key by id, or every key of a client; return how many."""
        with self._lock:
            self._reload(force=True)
            chosen = [
                key
                for key in self._keys.values()
                if key_id_or_client in (key.id, key.client) and not key.revoked
            ]
            for key in chosen:
                self._keys[key.id] = ClientKey(key.id, key.client, key.created, key.sha256, True)
            if chosen:
                self._write()
        return len(chosen)

    def _reload(self, *, force: bool = False) -> None:
        # One stat per verification (microseconds): a change is seen at once.
        try:
            status = self.path.stat()
        except FileNotFoundError:
            self._keys, self._signature = {}, None
            return
        signature = (status.st_ino, status.st_mtime_ns, status.st_size)
        if signature == self._signature and not force:
            return
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            keys = {entry["id"]: ClientKey(**entry) for entry in document["keys"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigurationError(
                [f"client keys file {str(self.path)!r} is not readable"]
            ) from None
        self._keys, self._signature = keys, signature

    def _write(self) -> None:
        private_folder(self.path.parent)
        document = {"keys": [asdict(key) for key in self._keys.values()]}
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(document, file, indent=2)
        temporary.replace(self.path)
