"""Make the token: an exact Twilio Access Token for a plan that policy allowed.

The header and claims are exactly what twilio-python's ``AccessToken.to_jwt()``
produces for the same inputs and clock (``typ``, ``alg`` HS256, ``cty``
``twilio-fpa;v=1``, ``twr`` with a region; ``jti``, ``grants``, ``iss``, ``exp``, ``nbf``,
``sub``). We build it with PyJWT directly so that the clock is injected and nothing is
rebuilt per request; the test suite holds twilio's own class as the oracle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_encode

from service.base.errors import MintingError
from service.config.settings import Settings
from service.tokens.format import MIN_TTL, TWILIO_MAX_TTL, identity_problem
from service.tokens.policy import Plan

ACCESS_TOKEN_CONTENT_TYPE = "twilio-fpa;v=1"


class VoicePayload(TypedDict, total=False):
    incoming: dict[str, bool]
    outgoing: dict[str, str]
    push_credential_sid: str


@dataclass(frozen=True)
class SigningKey:
    """The Standard API key that signs tokens. Its secret never enters a repr."""

    account_sid: str
    api_key_sid: str
    secret: str = field(repr=False)
    region: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKey:
        return cls(
            settings.account_sid, settings.api_key_sid, settings.api_key_secret, settings.region
        )


@dataclass(frozen=True)
class Services:
    """The SIDs that grants carry; they come from configuration, never from a client."""

    twiml_app_sid: str | None = None
    conversations_service_sid: str | None = None
    sync_service_sid: str | None = None
    push_credentials: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            twiml_app_sid=settings.twiml_app_sid,
            conversations_service_sid=settings.conversations_service_sid,
            sync_service_sid=settings.sync_service_sid,
            push_credentials=settings.push_credentials,
        )


@dataclass(frozen=True)
class IssuedToken:
    """A minted token. ``jwt`` is the credential itself: never log or repr it."""

    jwt: str = field(repr=False)
    identity: str
    grants: tuple[str, ...]
    ttl: int
    issued_at: datetime
    expires_at: datetime


def _segment(value: Mapping[str, object], *, sort_keys: bool = False) -> bytes:
    # PyJWT's compact JSON: no spaces; header keys sorted, payload keys in order.
    return base64url_encode(json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode())


def token_fingerprint(token: str) -> str:
    """A short, one-way reference to a token for audit records (never the token)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class _Prepared:
    """One key, ready to sign: its encoded header and its HMAC key, built once."""

    key: SigningKey
    signing_input_prefix: bytes
    hmac_key: bytes = field(repr=False)


class Minter:
    """Signs Access Tokens with the current API key.

    ``key`` is a key, or a callable that returns the key to use now (a rotated key is
    picked up from the next token on). For each key the encoded header and the prepared
    HMAC key are built once; each token then costs one JSON encoding and one HMAC, with
    the bytes PyJWT's ``encode`` would produce.
    """

    def __init__(self, key: SigningKey | Callable[[], SigningKey], services: Services) -> None:
        self._current: Callable[[], SigningKey] = key if callable(key) else lambda: key
        self._services = services
        self._hmac = HMACAlgorithm(HMACAlgorithm.SHA256)
        self._prepared = self._prepare(self._current())

    def __repr__(self) -> str:
        return f"Minter(api_key_sid={self._prepared.key.api_key_sid!r})"

    def _prepare(self, key: SigningKey) -> _Prepared:
        header = {"alg": "HS256", "typ": "JWT", "cty": ACCESS_TOKEN_CONTENT_TYPE}
        if key.region:
            header["twr"] = key.region
        prefix = _segment(header, sort_keys=True) + b"."
        return _Prepared(key, prefix, self._hmac.prepare_key(key.secret) if key.secret else b"")

    def _ready(self) -> _Prepared:
        key = self._current()
        prepared = self._prepared
        if key is not prepared.key:
            prepared = self._prepared = self._prepare(key)
        return prepared

    @property
    def key_sid(self) -> str:
        """The SID of the API key tokens are signed with now."""
        return self._ready().key.api_key_sid

    def can_sign(self) -> bool:
        """True when the signing key is loaded and signs (a readiness check)."""
        prepared = self._ready()
        if not prepared.hmac_key:
            return False
        probe = self._sign(prepared, {"probe": True})
        return jwt.decode(probe, prepared.key.secret, algorithms=["HS256"]) == {"probe": True}

    def mint(self, plan: Plan, now: datetime) -> IssuedToken:
        """Sign a token for ``plan``, valid from ``now`` for ``plan.ttl`` seconds."""
        problem = identity_problem(plan.identity, voice=plan.voice is not None)
        if problem:
            raise MintingError(problem)
        if not MIN_TTL <= plan.ttl <= TWILIO_MAX_TTL:
            raise MintingError("ttl outside Twilio's limits")
        grant_names = plan.grant_names
        if not grant_names:
            raise MintingError("a token needs at least one grant")
        prepared = self._ready()
        key = prepared.key
        issued = int(now.timestamp())
        payload = {
            "jti": f"{key.api_key_sid}-{issued}",
            "grants": self._grants(plan),
            "iss": key.api_key_sid,
            "exp": issued + plan.ttl,
            "nbf": issued,
            "sub": key.account_sid,
        }
        token = self._sign(prepared, payload)
        issued_at = now.replace(microsecond=0)
        return IssuedToken(
            jwt=token,
            identity=plan.identity,
            grants=grant_names,
            ttl=plan.ttl,
            issued_at=issued_at,
            expires_at=issued_at + timedelta(seconds=plan.ttl),
        )

    def _sign(self, prepared: _Prepared, payload: Mapping[str, object]) -> str:
        signing_input = prepared.signing_input_prefix + _segment(payload)
        signature = self._hmac.sign(signing_input, prepared.hmac_key)
        return (signing_input + b"." + base64url_encode(signature)).decode("ascii")

    def _grants(self, plan: Plan) -> dict[str, object]:
        services = self._services
        grants: dict[str, object] = {}
        if plan.video is not None:
            grants["video"] = {"room": plan.video.room}
        if plan.voice is not None:
            voice: VoicePayload = {}
            if plan.voice.incoming:
                voice["incoming"] = {"allow": True}
            if plan.voice.outgoing:
                if not services.twiml_app_sid:
                    raise MintingError("outgoing voice needs TWILIO_TWIML_APP_SID")
                voice["outgoing"] = {"application_sid": services.twiml_app_sid}
            if plan.voice.push:
                voice["push_credential_sid"] = self._push_sid(plan.voice.push)
            grants["voice"] = voice
        if plan.chat is not None:
            if not services.conversations_service_sid:
                raise MintingError("chat needs TWILIO_CONVERSATIONS_SERVICE_SID")
            chat = {"service_sid": services.conversations_service_sid}
            if plan.chat.push:
                chat["push_credential_sid"] = self._push_sid(plan.chat.push)
            grants["chat"] = chat
        if plan.sync:
            sync = {}
            if services.sync_service_sid:
                sync["service_sid"] = services.sync_service_sid
            grants["data_sync"] = sync
        if plan.task_router is not None:
            if plan.task_router.worker_sid is None:
                raise MintingError("a task_router grant needs the caller's Worker")
            grants["task_router"] = {
                "workspace_sid": plan.task_router.rule.workspace_sid,
                "worker_sid": plan.task_router.worker_sid,
                "role": "worker",
            }
        grants["identity"] = plan.identity
        return grants

    def _push_sid(self, name: str) -> str:
        sid = self._services.push_credentials.get(name)
        if sid is None:
            raise MintingError("unknown push credential")
        return sid
