"""Settings: the frozen ``Settings``, parsed once from an explicit mapping.

``Settings.from_env`` builds them from the declared table (``declared``), read by one
``VariableReader`` (``reading``) that collects every problem, so that they are reported
together. Secrets never appear in a repr or a message.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from service.base.errors import ConfigurationError
from service.config import variables as parse
from service.config.declared import (
    ACCOUNT_SID,
    API_BASE_URL,
    API_KEY_SECRET,
    API_KEY_SID,
    APPCHECK_APP_IDS,
    APPCHECK_JWKS_URL,
    APPCHECK_PROJECT_NUMBER,
    AUDIT_MAX_RECORDS,
    AUDIT_RETENTION_DAYS,
    AUDIT_URL,
    AUTH_TOKEN,
    AUTH_TOKEN_SECONDARY,
    BIND,
    CALLER_ID,
    CLIENT_KEYS_FILE,
    CONVERSATIONS_SID,
    CORS_ORIGINS,
    DEV_DIR,
    FAKE_API_KEY_SECRET,
    IPV6_PREFIX,
    KEY_MAX_AGE_DAYS,
    METRICS_TOKEN,
    OIDC_ALGORITHMS,
    OIDC_AUDIENCE,
    OIDC_CLIENT_IDS,
    OIDC_ISSUER,
    OIDC_JWKS_URL,
    OIDC_LEEWAY,
    OIDC_REQUIRED_TYP,
    POLICY_FILE,
    PROFILE,
    PUBLIC_URL,
    PUSH_CREDENTIALS,
    REGION,
    REVOCATION_DAYS,
    STATE_URL,
    SYNC_SID,
    TRUSTED_PROXIES,
    TWIML_APP_SID,
    Profile,
)
from service.config.reading import VariableReader
from service.state.store import Retention


@dataclass(frozen=True)
class IdentityProvider:
    """An identity provider whose tokens app users present (``OIDC_*``, or one of the
    policy's ``[[providers]]``).

    A token is accepted when its ``aud`` names one of ``audiences``, or its ``client_id``,
    ``azp`` or ``cid`` one of ``client_ids`` (providers whose access tokens carry no
    audience). Without ``jwks_url`` the keys are found through the issuer's
    ``/.well-known/openid-configuration``.
    """

    issuer: str
    audiences: tuple[str, ...] = ()
    client_ids: tuple[str, ...] = ()
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: int = 30
    #: a ``typ`` header every token must carry (``at+jwt``: RFC 9068 access tokens only)
    required_typ: str | None = None
    #: the verified claim that becomes the identity; None: the policy's ``[identity]``
    identity_claim: str | None = None
    #: put before every identity of this provider (required with several providers)
    identity_prefix: str = ""
    name: str = "default"


@dataclass(frozen=True)
class AppCheckSettings:
    """Firebase App Check: whose attestation tokens are accepted (``APPCHECK_*``)."""

    project_number: str
    app_ids: tuple[str, ...]
    jwks_url: str

    @property
    def issuer(self) -> str:
        return f"https://firebaseappcheck.googleapis.com/{self.project_number}"

    @property
    def audience(self) -> str:
        return f"projects/{self.project_number}"


@dataclass(frozen=True)
class Settings:
    """Everything the broker reads from its environment, validated."""

    profile: Profile
    account_sid: str
    api_key_sid: str
    api_key_secret: str = field(repr=False)
    region: str | None
    auth_token: str | None = field(repr=False)
    #: a second Auth Token accepted on webhooks while the primary one is rotated
    auth_token_secondary: str | None = field(repr=False)
    #: the number outgoing calls show (E.164), for <Dial callerId>
    caller_id: str | None
    twiml_app_sid: str | None
    conversations_service_sid: str | None
    sync_service_sid: str | None
    push_credentials: Mapping[str, str]
    #: the identity provider of ``OIDC_*`` (the one-provider shortcut), if set
    oidc: IdentityProvider | None
    #: Firebase App Check, when configured (rules may then require attestation)
    appcheck: AppCheckSettings | None
    policy_file: Path
    client_keys_file: Path | None
    state_url: str
    #: the audit trail's database (PostgreSQL), when not the state store
    audit_url: str | None = field(repr=False)
    #: the proxies whose X-Forwarded-For/-Proto are believed, when they are the peer
    trusted_proxies: tuple[parse.Network, ...]
    cors_origins: tuple[str, ...]
    metrics_token: str | None = field(repr=False)
    public_url: str | None
    #: where the broker's own REST calls go (an emulator, in tests); None: Twilio
    api_base_url: str | None
    bind: str
    dev_dir: Path
    audit_retention_days: int
    audit_max_records: int
    revocation_days: int
    #: an API key older than this is a finding of ``account check``
    key_max_age_days: int
    #: an IPv6 client is budgeted as its network of this many bits
    ipv6_prefix: int
    #: The files the signing key was read from (SID, secret), when both came from files:
    #: watched, so that a rotated key is picked up without a restart.
    signing_key_files: tuple[Path, Path] | None

    @property
    def dev_issuer_enabled(self) -> bool:
        """The built-in development issuer exists only in the dev profile."""
        return self.profile == "dev"

    @property
    def retention(self) -> Retention:
        """How much of the past the state store keeps."""
        return Retention(
            audit_days=self.audit_retention_days,
            audit_max_records=self.audit_max_records,
            revocation_days=self.revocation_days,
        )

    @property
    def uses_fake_credentials(self) -> bool:
        """True when the Twilio credentials are the generated, clearly fake ones."""
        return self.account_sid == "AC" + parse.FAKE_SID_BODY

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate settings; raise ``ConfigurationError`` listing every problem."""
        read = VariableReader(environ)
        settings = cls(
            profile=cast(Profile, read(PROFILE)),
            account_sid=read(ACCOUNT_SID),
            api_key_sid=read(API_KEY_SID),
            api_key_secret=read(API_KEY_SECRET),
            region=read(REGION),
            auth_token=read(AUTH_TOKEN),
            auth_token_secondary=read(AUTH_TOKEN_SECONDARY),
            caller_id=read(CALLER_ID),
            twiml_app_sid=read(TWIML_APP_SID),
            conversations_service_sid=read(CONVERSATIONS_SID),
            sync_service_sid=read(SYNC_SID),
            push_credentials=read(PUSH_CREDENTIALS),
            oidc=_oidc(read),
            appcheck=_appcheck(read),
            policy_file=read(POLICY_FILE),
            client_keys_file=read(CLIENT_KEYS_FILE),
            state_url=read(STATE_URL),
            audit_url=read(AUDIT_URL),
            trusted_proxies=read(TRUSTED_PROXIES),
            cors_origins=read(CORS_ORIGINS),
            metrics_token=read(METRICS_TOKEN),
            public_url=read(PUBLIC_URL),
            api_base_url=read(API_BASE_URL),
            bind=read(BIND),
            dev_dir=read(DEV_DIR),
            audit_retention_days=read(AUDIT_RETENTION_DAYS),
            audit_max_records=read(AUDIT_MAX_RECORDS),
            revocation_days=read(REVOCATION_DAYS),
            key_max_age_days=read(KEY_MAX_AGE_DAYS),
            ipv6_prefix=read(IPV6_PREFIX),
            signing_key_files=_signing_key_files(environ),
        )
        problems = [*read.problems, *_profile_problems(settings, read)]
        if problems:
            raise ConfigurationError(problems)
        return settings


def _oidc(read: VariableReader) -> IdentityProvider | None:
    issuer = read(OIDC_ISSUER)
    audiences, client_ids = read(OIDC_AUDIENCE), read(OIDC_CLIENT_IDS)
    jwks_url, algorithms = read(OIDC_JWKS_URL), read(OIDC_ALGORITHMS)
    leeway, required_typ = read(OIDC_LEEWAY), read(OIDC_REQUIRED_TYP)
    if issuer is None:
        return None
    if not audiences and not client_ids:
        read.problems.append(
            "OIDC_AUDIENCE (or OIDC_CLIENT_IDS, for tokens without an audience) is "
            "required with OIDC_ISSUER"
        )
    return IdentityProvider(
        issuer=issuer,
        audiences=audiences,
        client_ids=client_ids,
        jwks_url=jwks_url,
        algorithms=algorithms,
        leeway_seconds=leeway,
        required_typ=required_typ,
    )


def _appcheck(read: VariableReader) -> AppCheckSettings | None:
    project, app_ids, jwks_url = (
        read(APPCHECK_PROJECT_NUMBER),
        read(APPCHECK_APP_IDS),
        read(APPCHECK_JWKS_URL),
    )
    if project is None:
        if app_ids:
            read.problems.append("APPCHECK_APP_IDS needs APPCHECK_PROJECT_NUMBER")
        return None
    if not app_ids:
        read.problems.append(
            "APPCHECK_APP_IDS is required with APPCHECK_PROJECT_NUMBER: the app ids "
            "(1:1234567890:ios:abc...) whose attestation is accepted"
        )
    return AppCheckSettings(project_number=project, app_ids=app_ids, jwks_url=jwks_url)


def _signing_key_files(environ: Mapping[str, str]) -> tuple[Path, Path] | None:
    sid_file = environ.get(API_KEY_SID.name + "_FILE", "").strip()
    secret_file = environ.get(API_KEY_SECRET.name + "_FILE", "").strip()
    return (Path(sid_file), Path(secret_file)) if sid_file and secret_file else None


def _profile_problems(settings: Settings, read: VariableReader) -> list[str]:
    """What production refuses, and values that conflict with each other."""
    problems = []
    secret, auth_token = settings.api_key_secret, settings.auth_token
    if secret and auth_token and hmac.compare_digest(secret, auth_token):
        problems.append(
            "TWILIO_API_KEY_SECRET holds the account's Auth Token; tokens must be signed "
            "with a Standard API key secret, never the Auth Token"
        )
    if settings.profile != "production":
        return problems
    for variable in (ACCOUNT_SID, API_KEY_SID, TWIML_APP_SID, CONVERSATIONS_SID, SYNC_SID):
        if (read.text(variable) or "").endswith(parse.FAKE_SID_BODY):
            problems.append(
                f"{variable.name} is the generated development placeholder; use a real SID"
            )
    if secret == FAKE_API_KEY_SECRET:
        problems.append("TWILIO_API_KEY_SECRET is the generated development placeholder")
    if (settings.auth_token or settings.auth_token_secondary) and not settings.public_url:
        problems.append(
            "BROKER_PUBLIC_URL is required with TWILIO_AUTH_TOKEN in production: webhook "
            "signatures are checked against the URL Twilio calls, never a request's Host"
        )
    return problems
