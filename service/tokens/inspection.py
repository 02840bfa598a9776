"""Why would Twilio refuse this token? Decode an Access Token and explain it.

Each finding names the Twilio error code that a client SDK or Twilio's edge would
answer with, so that "20104" in a support ticket becomes a one-line diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jwt

from service.tokens.format import TWILIO_MAX_TTL, identity_problem
from service.tokens.minting import ACCESS_TOKEN_CONTENT_TYPE, SigningKey
from service.tokens.workers import WORKER_SID, WORKSPACE_SID

TWILIO_ERRORS = {
    20101: "Invalid Access Token",
    20102: "Access Token header invalid",
    20103: "Invalid Access Token issuer/subject",
    20104: "Access Token expired or expiration date invalid",
    20105: "Access Token not yet valid",
    20106: "Invalid Access Token grants",
    20107: "Invalid Access Token signature",
    20157: "Expiration Time Exceeds Maximum Time Allowed",
    53200: "Participant identity is invalid",
}
_GRANT_KEYS = {
    "video",
    "voice",
    "chat",
    "data_sync",
    "ip_messaging",
    "task_router",
    "player_stream",
}
Signature = Literal["valid", "invalid", "not_checked"]


@dataclass(frozen=True)
class Finding:
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {TWILIO_ERRORS[self.code]}: {self.message}"


@dataclass(frozen=True)
class Inspection:
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    signature: Signature = "not_checked"
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.signature == "valid" and not self.findings

    @property
    def identity(self) -> str | None:
        grants = self.claims.get("grants")
        identity = grants.get("identity") if isinstance(grants, dict) else None
        return identity if isinstance(identity, str) else None


def inspect_token(token: str, key: SigningKey | None, now: datetime) -> Inspection:
    """Decode ``token`` and list what Twilio would refuse; verify it when ``key`` is given."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return Inspection(findings=(Finding(20101, "not a decodable JWT"),))

    findings: list[Finding] = []
    notes: list[str] = []
    if (
        header.get("alg") != "HS256"
        or header.get("typ") != "JWT"
        or header.get("cty") != ACCESS_TOKEN_CONTENT_TYPE
    ):
        findings.append(
            Finding(20102, f"expected alg HS256, typ JWT, cty {ACCESS_TOKEN_CONTENT_TYPE}")
        )
    findings.extend(_issuer_findings(claims, key))
    findings.extend(_time_findings(claims, now))
    findings.extend(_grant_findings(claims))

    signature: Signature = "not_checked"
    if key is None:
        notes.append("signature not checked: no API key secret is configured here")
    else:
        signature = _signature(token, key)
        if signature == "invalid":
            findings.append(Finding(20107, "the signature does not match the configured secret"))
    return Inspection(header, claims, signature, tuple(findings), tuple(notes))


def _issuer_findings(claims: dict[str, Any], key: SigningKey | None) -> list[Finding]:
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not re.fullmatch(r"SK[0-9a-f]{32}", issuer):
        return [Finding(20103, "iss must be an API key SID (SK...)")]
    if not isinstance(subject, str) or not re.fullmatch(r"AC[0-9a-f]{32}", subject):
        return [Finding(20103, "sub must be the Account SID (AC...)")]
    if key is not None and (issuer != key.api_key_sid or subject != key.account_sid):
        return [Finding(20103, "iss/sub are not the configured API key and account")]
    return []


def _time_findings(claims: dict[str, Any], now: datetime) -> list[Finding]:
    expires, not_before = claims.get("exp"), claims.get("nbf")
    if isinstance(expires, bool) or not isinstance(expires, int):
        return [Finding(20104, "exp is missing or not an integer")]
    findings = []
    moment = int(now.timestamp())
    if expires <= moment:
        when = datetime.fromtimestamp(expires, UTC).isoformat()
        findings.append(Finding(20104, f"expired at {when}"))
    start = not_before if isinstance(not_before, int) and not isinstance(not_before, bool) else None
    if start is not None and start > moment:
        findings.append(Finding(20105, "nbf is in the future"))
    if expires - (start if start is not None else moment) > TWILIO_MAX_TTL:
        findings.append(Finding(20157, "lives longer than 24 hours"))
    return findings


def _grant_findings(claims: dict[str, Any]) -> list[Finding]:
    grants = claims.get("grants")
    if not isinstance(grants, dict):
        return [Finding(20106, "grants is missing or not an object")]
    findings = []
    products = set(grants) - {"identity"}
    if not products:
        findings.append(Finding(20106, "no product grant"))
    unknown = products - _GRANT_KEYS
    if unknown:
        findings.append(Finding(20106, f"unknown grants: {', '.join(sorted(unknown))}"))
    identity = grants.get("identity")
    problem = (
        identity_problem(identity, voice="voice" in grants)
        if isinstance(identity, str)
        else "identity is missing"
    )
    if problem:
        findings.append(Finding(53200, problem))
    video = grants.get("video")
    if isinstance(video, dict) and not video.get("room"):
        findings.append(Finding(20106, "video grant without a room opens every room"))
    if "task_router" in grants:
        findings += _task_router_findings(grants["task_router"])
    return findings


def _task_router_findings(grant: object) -> list[Finding]:
    """What the TaskRouter SDK needs of a Worker's grant: the workspace, the Worker, and
    the role ``worker``."""
    if not isinstance(grant, dict):
        return [Finding(20106, "task_router grant is not an object")]
    findings = []
    if not isinstance(grant.get("workspace_sid"), str) or not WORKSPACE_SID.fullmatch(
        grant["workspace_sid"]
    ):
        findings.append(Finding(20106, "task_router grant without a Workspace SID (WS...)"))
    worker = grant.get("worker_sid")
    if not isinstance(worker, str) or not WORKER_SID.fullmatch(worker):
        findings.append(Finding(20106, "task_router grant without a Worker SID (WK...)"))
    if grant.get("role") != "worker":
        findings.append(Finding(20106, "task_router grant's role is not worker"))
    return findings


def _signature(token: str, key: SigningKey) -> Signature:
    try:
        jwt.decode(
            token,
            key.secret,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return "invalid"
    return "valid"
