"""The development profile's built-in issuer: a local EC key, so a first run needs no IdP.

It signs caller tokens for ``token-broker dev-session`` and verifies them exactly as an
external identity provider's are verified. Production refuses to start with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm

from service.base.errors import ConfigurationError
from service.base.files import private_folder
from service.callers.verifier import IssuerVerifier
from service.config.declared import DEV_AUDIENCE, DEV_ISSUER

KEY_FILE_NAME = "issuer-key.pem"
KEY_ID = "dev-1"
SESSION_TTL = timedelta(hours=12)


class DevIssuer:
    """Signs and verifies development caller tokens with one local key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._private_key = private_key
        public_jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
        self._public_key = PyJWK({**public_jwk, "kid": KEY_ID, "alg": "ES256", "use": "sig"})

    def __repr__(self) -> str:
        return "DevIssuer()"

    @classmethod
    def load_or_create(cls, directory: Path) -> DevIssuer:
        """Load the key from ``directory``, creating it (mode 0600) on first use."""
        path = directory / KEY_FILE_NAME
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            private_folder(directory)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first: use theirs
                return cls.load_or_create(directory)
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ConfigurationError([f"{path} does not hold an EC private key"])
        return cls(loaded)

    def key_for(self, kid: str | None) -> PyJWK:
        if kid != KEY_ID:
            raise jwt.PyJWKClientError("unknown kid for the development issuer")
        return self._public_key

    def ready(self) -> bool:
        return True

    def verifier(self, *, leeway_seconds: int = 30) -> IssuerVerifier:
        return IssuerVerifier(
            issuer=DEV_ISSUER,
            audiences=(DEV_AUDIENCE,),
            algorithms=("ES256",),
            leeway_seconds=leeway_seconds,
            keys=self,
        )

    def session_token(
        self,
        subject: str,
        claims: Mapping[str, object],
        now: datetime,
        ttl: timedelta = SESSION_TTL,
    ) -> str:
        """A caller token for ``subject``, as an identity provider would issue it."""
        issued = int(now.timestamp())
        payload = {
            **claims,
            "iss": DEV_ISSUER,
            "aud": DEV_AUDIENCE,
            "sub": subject,
            "iat": issued,
            "exp": issued + int(ttl.total_seconds()),
        }
        return jwt.encode(payload, self._private_key, algorithm="ES256", headers={"kid": KEY_ID})
