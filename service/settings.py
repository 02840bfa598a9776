"""Settings: one frozen value parsed once from an explicit mapping.

Every problem is collected and reported together; secrets get no defaults and never
appear in a repr. ``NAME_FILE=/path`` may stand in for any secret (the Docker and
Kubernetes secrets convention).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values

from service.errors import ConfigurationError

Profile = Literal["production", "dev"]

#: The issuer name of the built-in development issuer; production refuses it.
DEV_ISSUER = "urn:token-broker:dev-issuer"
DEV_AUDIENCE = "token-broker-dev"

STATE_SCHEMES = frozenset(
    {"sqlite", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"}
)
REGIONS = frozenset({"us1", "us2", "ie1", "de1", "au1", "jp1", "sg1", "br1"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_LEEWAY_SECONDS = 60
_PUSH_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PLACEHOLDER_MARKERS = ("xxxx", "your_", "your-", "changeme", "change_me", "placeholder", "<", ">")
_FAKE_SID_BODY = "0" * 32


@dataclass(frozen=True)
class OidcSettings:
    """The identity provider whose access tokens app users present."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...]
    leeway_seconds: int


@dataclass(frozen=True)
class Settings:
    """Everything the broker reads from its environment, validated."""

    profile: Profile
    account_sid: str
    api_key_sid: str
    api_key_secret: str = field(repr=False)
    region: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    #: a second Auth Token accepted on webhooks while the primary one is rotated
    auth_token_secondary: str | None = field(default=None, repr=False)
    #: the number outgoing calls show (E.164), for <Dial callerId>
    caller_id: str | None = None
    twiml_app_sid: str | None = None
    conversations_service_sid: str | None = None
    sync_service_sid: str | None = None
    push_credentials: Mapping[str, str] = field(default_factory=dict)
    oidc: OidcSettings | None = None
    policy_file: Path = Path("policy.toml")
    client_keys_file: Path | None = None
    state_url: str = "sqlite:///var/broker.sqlite3"
    trusted_proxies: int = 0
    cors_origins: tuple[str, ...] = ()
    metrics_token: str | None = field(default=None, repr=False)
    public_url: str | None = None
    dev_dir: Path = Path("var/dev")
    audit_retention_days: int = 30
    #: The files the signing key was read from (SID, secret), when both came from files:
    #: watched, so that a rotated key is picked up without a restart.
    signing_key_files: tuple[Path, Path] | None = None

    @property
    def dev_issuer_enabled(self) -> bool:
        """The built-in development issuer exists only in the dev profile."""
        return self.profile == "dev"

    @property
    def uses_fake_credentials(self) -> bool:
        """True when the Twilio credentials are the generated, clearly fake ones."""
        return self.account_sid == "AC" + _FAKE_SID_BODY

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate settings; raise ``ConfigurationError`` listing every problem."""
        reader = _Reader(environ)
        profile = reader.choice("BROKER_PROFILE", ("production", "dev"), "production")
        production = profile == "production"

        account_sid = reader.sid("TWILIO_ACCOUNT_SID", "AC", required=True, production=production)
        api_key_sid, api_key_secret = reader.api_key(production)
        auth_token = reader.secret("TWILIO_AUTH_TOKEN", required=False)
        if api_key_secret and auth_token and hmac.compare_digest(api_key_secret, auth_token):
            reader.problem(
                "TWILIO_API_KEY_SECRET holds the account's Auth Token; tokens must be signed "
                "with a Standard API key secret, never the Auth Token"
            )

        region = reader.text("TWILIO_REGION")
        if region is not None and region not in REGIONS:
            reader.problem(f"TWILIO_REGION must be one of {', '.join(sorted(REGIONS))}")

        settings = cls(
            profile=profile,
            account_sid=account_sid,
            api_key_sid=api_key_sid,
            api_key_secret=api_key_secret,
            region=region,
            auth_token=auth_token,
            auth_token_secondary=reader.secret("TWILIO_AUTH_TOKEN_SECONDARY", required=False)
            or None,
            caller_id=reader.phone_number("TWILIO_CALLER_ID"),
            twiml_app_sid=reader.sid("TWILIO_TWIML_APP_SID", "AP", production=production) or None,
            conversations_service_sid=(
                reader.sid("TWILIO_CONVERSATIONS_SERVICE_SID", "IS", production=production) or None
            ),
            sync_service_sid=(
                reader.sid("TWILIO_SYNC_SERVICE_SID", "IS", production=production) or None
            ),
            push_credentials=reader.push_credentials("TWILIO_PUSH_CREDENTIALS"),
            oidc=reader.oidc(production),
            policy_file=Path(reader.text("BROKER_POLICY_FILE") or "policy.toml"),
            client_keys_file=_optional_path(reader.text("BROKER_CLIENT_KEYS_FILE")),
            state_url=reader.state_url("BROKER_STATE_URL"),
            trusted_proxies=reader.integer("BROKER_TRUSTED_PROXIES", default=0, low=0, high=10),
            cors_origins=reader.origins("BROKER_CORS_ORIGINS"),
            metrics_token=reader.secret("BROKER_METRICS_TOKEN", required=False) or None,
            public_url=reader.url("BROKER_PUBLIC_URL"),
            dev_dir=Path(reader.text("BROKER_DEV_DIR") or "var/dev"),
            audit_retention_days=reader.integer(
                "BROKER_AUDIT_RETENTION_DAYS", default=30, low=1, high=3650
            ),
            signing_key_files=reader.signing_key_files(),
        )
        if reader.problems:
            raise ConfigurationError(reader.problems)
        return settings


def read_api_key(sid_file: Path, secret_file: Path, *, production: bool) -> tuple[str, str]:
    """Read a rotated API key from its two files; raise ``ConfigurationError`` if unusable."""
    reader = _Reader(
        {"TWILIO_API_KEY_SID_FILE": str(sid_file), "TWILIO_API_KEY_SECRET_FILE": str(secret_file)}
    )
    sid, secret = reader.api_key(production)
    if reader.problems:
        raise ConfigurationError(reader.problems)
    return sid, secret


def read_environment(environ: Mapping[str, str], dotenv_file: Path) -> dict[str, str]:
    """The process environment, over a ``.env`` file when the profile is ``dev``.

    The process environment always wins; ``.env`` is a development convenience and is
    ignored in production, where secrets come from the environment or ``NAME_FILE``.
    """
    file_values = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
    profile = environ.get("BROKER_PROFILE", file_values.get("BROKER_PROFILE", "production"))
    if profile != "dev":
        return dict(environ)
    return {**file_values, **environ}


def fake_twilio_credentials() -> dict[str, str]:
    """Clearly fake Twilio credentials for a first run: well-formed, refused by Twilio.

    The secret is fixed so that tokens stay verifiable across restarts; production
    refuses the all-zero SIDs.
    """
    return {
        "TWILIO_ACCOUNT_SID": "AC" + _FAKE_SID_BODY,
        "TWILIO_API_KEY_SID": "SK" + _FAKE_SID_BODY,
        "TWILIO_API_KEY_SECRET": "dev-only-fake-secret-twilio-rejects-it",
        "TWILIO_TWIML_APP_SID": "AP" + _FAKE_SID_BODY,
        "TWILIO_CONVERSATIONS_SERVICE_SID": "IS" + _FAKE_SID_BODY,
        "TWILIO_SYNC_SERVICE_SID": "IS" + _FAKE_SID_BODY,
    }


def with_first_run_defaults(environ: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """In the dev profile with no Twilio credentials at all, fill in the fake ones.

    Returns the environment to use and whether fake credentials were filled in.
    """
    credentials = ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET")
    missing = all(not environ.get(name) and not environ.get(name + "_FILE") for name in credentials)
    if environ.get("BROKER_PROFILE") != "dev" or not missing:
        return dict(environ), False
    return {**fake_twilio_credentials(), **environ}, True


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _looks_like_placeholder(value: str) -> bool:
    lowered = value.lower()
    return any(marker in lowered for marker in _PLACEHOLDER_MARKERS)


def _is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads variables from one mapping and collects every problem it meets."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def choice(self, name: str, options: tuple[Profile, ...], default: Profile) -> Profile:
        value = self.text(name) or default
        for option in options:
            if value == option:
                return option
        self.problem(f"{name} must be one of {', '.join(options)}")
        return default

    def api_key(self, production: bool) -> tuple[str, str]:
        """The Standard API key that signs tokens: its SID and its secret."""
        sid = self.sid("TWILIO_API_KEY_SID", "SK", required=True, production=production)
        secret = self.secret("TWILIO_API_KEY_SECRET", required=True)
        if production and secret == fake_twilio_credentials()["TWILIO_API_KEY_SECRET"]:
            self.problem("TWILIO_API_KEY_SECRET is the generated development placeholder")
        if secret and len(secret) < 32:
            self.problem("TWILIO_API_KEY_SECRET must be at least 32 characters")
        return sid, secret

    def raw(self, name: str) -> str:
        """``NAME``, or the contents of the file ``NAME_FILE`` names; never in a message."""
        direct = self.environ.get(name, "")
        file_name = self.environ.get(name + "_FILE", "").strip()
        if direct and file_name:
            self.problem(f"{name} and {name}_FILE are both set; set only one")
            return ""
        if not file_name:
            return direct.strip()
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            self.problem(f"{name}_FILE names a file that cannot be read")
            return ""

    def secret(self, name: str, *, required: bool) -> str:
        """A secret from ``NAME`` or ``NAME_FILE``; its value never enters a message."""
        value = self.raw(name)
        if not value:
            if required:
                self.problem(f"{name} is required (or {name}_FILE)")
            return ""
        if _looks_like_placeholder(value):
            self.problem(f"{name} is a placeholder copied from .env.example")
            return ""
        return value

    def sid(self, name: str, prefix: str, *, production: bool, required: bool = False) -> str:
        value = self.raw(name) or None
        if value is None:
            if required:
                self.problem(f"{name} is required")
            return ""
        if _looks_like_placeholder(value):
            self.problem(f"{name} is a placeholder copied from .env.example")
            return ""
        if not re.fullmatch(r"[A-Z]{2}[0-9a-f]{32}", value):
            self.problem(f"{name} must be {prefix} followed by 32 lowercase hex digits")
            return ""
        if not value.startswith(prefix):
            self.problem(
                f"{name} must start with {prefix}, not {value[:2]} "
                f"(is a different SID in the wrong variable?)"
            )
            return ""
        if production and value.endswith(_FAKE_SID_BODY):
            self.problem(f"{name} is the generated development placeholder; use a real SID")
            return ""
        return value

    def signing_key_files(self) -> tuple[Path, Path] | None:
        sid_file = self.text("TWILIO_API_KEY_SID_FILE")
        secret_file = self.text("TWILIO_API_KEY_SECRET_FILE")
        if sid_file and secret_file:
            return Path(sid_file), Path(secret_file)
        return None

    def phone_number(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
            self.problem(f"{name} must be an E.164 number such as +15005550006")
            return None
        return value

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        if not re.fullmatch(r"[0-9]{1,6}", value) or not low <= int(value) <= high:
            self.problem(f"{name} must be a whole number from {low} to {high}")
            return default
        return int(value)

    def push_credentials(self, name: str) -> dict[str, str]:
        value = self.text(name)
        credentials: dict[str, str] = {}
        if value is None:
            return credentials
        for item in value.split(","):
            label, separator, sid = item.strip().partition("=")
            label, sid = label.strip(), sid.strip()
            if not separator or not _PUSH_NAME.fullmatch(label):
                self.problem(f"{name} must look like apns=CR...,fcm=CR... (lowercase names)")
                continue
            if label in credentials:
                self.problem(f"{name} names {label} twice")
                continue
            if not re.fullmatch(r"CR[0-9a-f]{32}", sid):
                self.problem(f"{name}: {label} must be CR followed by 32 lowercase hex digits")
                continue
            credentials[label] = sid
        return credentials

    def url(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(f"{name} must be an absolute http(s) URL")
            return None
        return value

    def origins(self, name: str) -> tuple[str, ...]:
        value = self.text(name)
        if value is None:
            return ()
        origins = tuple(origin.strip() for origin in value.split(",") if origin.strip())
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                self.problem(f"{name}: {origin!r} is not an exact origin such as https://app.io")
        return origins

    def state_url(self, name: str) -> str:
        value = self.text(name) or "sqlite:///var/broker.sqlite3"
        if urlsplit(value).scheme not in STATE_SCHEMES:
            self.problem(f"{name} must be a sqlite:/// or redis:// URL")
        return value

    def oidc(self, production: bool) -> OidcSettings | None:
        issuer = self.text("OIDC_ISSUER")
        if issuer is None:
            if production:
                self.problem(
                    "OIDC_ISSUER is required in production: callers must be authenticated "
                    "by your identity provider (the development issuer exists only with "
                    "BROKER_PROFILE=dev)"
                )
            return None
        if production and issuer == DEV_ISSUER:
            self.problem("OIDC_ISSUER names the development issuer, which production refuses")
        audience = self.text("OIDC_AUDIENCE")
        if audience is None:
            self.problem("OIDC_AUDIENCE is required with OIDC_ISSUER")
        jwks_url = self.text("OIDC_JWKS_URL")
        if jwks_url is None:
            self.problem("OIDC_JWKS_URL is required with OIDC_ISSUER")
        else:
            parts = urlsplit(jwks_url)
            loopback = _is_loopback_host(parts.hostname)
            if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
                self.problem("OIDC_JWKS_URL must use https (plain http only on a loopback host)")
        algorithms = tuple(
            a.strip() for a in (self.text("OIDC_ALGORITHMS") or "RS256,ES256").split(",")
        )
        for algorithm in algorithms:
            if algorithm not in ASYMMETRIC_ALGORITHMS:
                self.problem(
                    f"OIDC_ALGORITHMS: {algorithm!r} is not allowed; use asymmetric algorithms "
                    f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
                )
        leeway = self.integer("OIDC_LEEWAY", default=30, low=0, high=MAX_LEEWAY_SECONDS)
        return OidcSettings(
            issuer=issuer,
            audience=audience or "",
            jwks_url=jwks_url or "",
            algorithms=algorithms,
            leeway_seconds=leeway,
        )
