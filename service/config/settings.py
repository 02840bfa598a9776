"""Settings: one declared table of variables, parsed once from an explicit mapping.

``VARIABLES`` names every variable the broker reads, with its parser, its default and
whether it is a secret; ``Settings.from_env`` builds the frozen ``Settings`` from it,
collecting every problem so that they are reported together. Secrets get no defaults
and never appear in a repr or a message. ``NAME_FILE=/path`` may stand in for any
secret or SID (the Docker and Kubernetes secrets convention).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar, cast

from service.base.errors import ConfigurationError
from service.config import variables as parse
from service.state.store import Retention

T = TypeVar("T")
Value = TypeVar("Value", covariant=True)
Profile = Literal["production", "dev"]

#: The issuer name of the built-in development issuer; production refuses it.
DEV_ISSUER = "urn:token-broker:dev-issuer"
DEV_AUDIENCE = "token-broker-dev"
REGIONS = frozenset({"us1", "us2", "ie1", "de1", "au1", "jp1", "sg1", "br1"})
MAX_LEEWAY_SECONDS = 60
ASYMMETRIC = parse.ASYMMETRIC_ALGORITHMS
#: The fixed secret of the generated development credentials (see ``environment``).
FAKE_API_KEY_SECRET = "dev-only-fake-secret-twilio-rejects-it"


@dataclass(frozen=True)
class Variable(Generic[Value]):
    """One environment variable: how its text becomes a value, and its default."""

    name: str
    parse: Callable[[str], Value]
    default: Value
    #: a secret: never in a message; may be given as NAME_FILE
    secret: bool = False
    #: may be given as NAME_FILE (every secret may)
    from_file: bool = False
    required: bool = False


def _optional(parser: Callable[[str], T]) -> Callable[[str], T | None]:
    return parser


PROFILE = Variable("BROKER_PROFILE", parse.choice(("production", "dev")), "production")
ACCOUNT_SID = Variable("TWILIO_ACCOUNT_SID", parse.sid("AC"), "", from_file=True, required=True)
API_KEY_SID = Variable("TWILIO_API_KEY_SID", parse.sid("SK"), "", from_file=True, required=True)
API_KEY_SECRET = Variable(
    "TWILIO_API_KEY_SECRET", parse.secret(min_length=32), "", secret=True, required=True
)
REGION = Variable("TWILIO_REGION", _optional(parse.choice(REGIONS)), None)
AUTH_TOKEN = Variable("TWILIO_AUTH_TOKEN", _optional(parse.secret()), None, secret=True)
AUTH_TOKEN_SECONDARY = Variable(
    "TWILIO_AUTH_TOKEN_SECONDARY", _optional(parse.secret()), None, secret=True
)
CALLER_ID = Variable("TWILIO_CALLER_ID", _optional(parse.phone_number), None)
TWIML_APP_SID = Variable("TWILIO_TWIML_APP_SID", _optional(parse.sid("AP")), None, from_file=True)
CONVERSATIONS_SID = Variable(
    "TWILIO_CONVERSATIONS_SERVICE_SID", _optional(parse.sid("IS")), None, from_file=True
)
SYNC_SID = Variable("TWILIO_SYNC_SERVICE_SID", _optional(parse.sid("IS")), None, from_file=True)
PUSH_CREDENTIALS: Variable[Mapping[str, str]] = Variable(
    "TWILIO_PUSH_CREDENTIALS", parse.push_credentials, {}
)


def _issuer(value: str) -> str:
    if value == DEV_ISSUER:
        raise ValueError(
            "names the development issuer: it is built in (BROKER_PROFILE=dev only), never "
            "configured, and production refuses it"
        )
    return parse.issuer_url(value)


OIDC_ISSUER = Variable("OIDC_ISSUER", _optional(_issuer), None)
OIDC_AUDIENCE: Variable[tuple[str, ...]] = Variable("OIDC_AUDIENCE", parse.names, ())
OIDC_CLIENT_IDS: Variable[tuple[str, ...]] = Variable("OIDC_CLIENT_IDS", parse.names, ())
OIDC_JWKS_URL = Variable("OIDC_JWKS_URL", _optional(parse.key_url), None)
OIDC_ALGORITHMS: Variable[tuple[str, ...]] = Variable(
    "OIDC_ALGORITHMS", parse.algorithms, ("RS256", "ES256")
)
OIDC_LEEWAY = Variable("OIDC_LEEWAY", parse.whole_number(0, MAX_LEEWAY_SECONDS), 30)
OIDC_REQUIRED_TYP = Variable("OIDC_REQUIRED_TYP", _optional(parse.text), None)
#: Firebase App Check, for rules that require app attestation.
APPCHECK_PROJECT_NUMBER = Variable("APPCHECK_PROJECT_NUMBER", _optional(parse.project_number), None)
APPCHECK_APP_IDS: Variable[tuple[str, ...]] = Variable("APPCHECK_APP_IDS", parse.names, ())
APPCHECK_JWKS_URL = Variable(
    "APPCHECK_JWKS_URL", parse.key_url, "https://firebaseappcheck.googleapis.com/v1/jwks"
)
POLICY_FILE = Variable("BROKER_POLICY_FILE", parse.path, Path("policy.toml"))
CLIENT_KEYS_FILE = Variable("BROKER_CLIENT_KEYS_FILE", _optional(parse.path), None)
STATE_URL = Variable("BROKER_STATE_URL", parse.state_url, "sqlite:///var/broker.sqlite3")
#: The durable audit trail in PostgreSQL; unset: in the state store. It may hold a
#: password: a secret (also as BROKER_AUDIT_URL_FILE).
AUDIT_URL = Variable("BROKER_AUDIT_URL", _optional(parse.database_url), None, secret=True)
AUDIT_RETENTION_DAYS = Variable("BROKER_AUDIT_RETENTION_DAYS", parse.whole_number(1, 3650), 30)
AUDIT_MAX_RECORDS = Variable(
    "BROKER_AUDIT_MAX_RECORDS", parse.whole_number(1000, 100_000_000), 1_000_000
)
REVOCATION_DAYS = Variable("BROKER_REVOCATION_DAYS", parse.whole_number(1, 3650), 90)
IPV6_PREFIX = Variable("BROKER_IPV6_PREFIX", parse.whole_number(32, 128), 64)
TRUSTED_PROXIES: Variable[tuple[parse.Network, ...]] = Variable(
    "BROKER_TRUSTED_PROXIES", parse.networks, ()
)
CORS_ORIGINS: Variable[tuple[str, ...]] = Variable("BROKER_CORS_ORIGINS", parse.origins, ())
METRICS_TOKEN = Variable("BROKER_METRICS_TOKEN", _optional(parse.secret()), None, secret=True)
PUBLIC_URL = Variable("BROKER_PUBLIC_URL", _optional(parse.http_url), None)
BIND = Variable(parse.BIND_VARIABLE, parse.bind_address, parse.DEFAULT_BIND)
DEV_DIR = Variable("BROKER_DEV_DIR", parse.path, Path("var/dev"))

#: Every variable the broker reads, in the order .env.example documents them.
VARIABLES: tuple[Variable[object], ...] = (
    ACCOUNT_SID,
    API_KEY_SID,
    API_KEY_SECRET,
    REGION,
    AUTH_TOKEN,
    AUTH_TOKEN_SECONDARY,
    CALLER_ID,
    TWIML_APP_SID,
    CONVERSATIONS_SID,
    SYNC_SID,
    PUSH_CREDENTIALS,
    OIDC_ISSUER,
    OIDC_AUDIENCE,
    OIDC_CLIENT_IDS,
    OIDC_JWKS_URL,
    OIDC_ALGORITHMS,
    OIDC_LEEWAY,
    OIDC_REQUIRED_TYP,
    APPCHECK_PROJECT_NUMBER,
    APPCHECK_APP_IDS,
    APPCHECK_JWKS_URL,
    PROFILE,
    POLICY_FILE,
    CLIENT_KEYS_FILE,
    STATE_URL,
    AUDIT_URL,
    AUDIT_RETENTION_DAYS,
    AUDIT_MAX_RECORDS,
    REVOCATION_DAYS,
    IPV6_PREFIX,
    TRUSTED_PROXIES,
    CORS_ORIGINS,
    METRICS_TOKEN,
    PUBLIC_URL,
    BIND,
    DEV_DIR,
)


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
    bind: str
    dev_dir: Path
    audit_retention_days: int
    audit_max_records: int
    revocation_days: int
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
            bind=read(BIND),
            dev_dir=read(DEV_DIR),
            audit_retention_days=read(AUDIT_RETENTION_DAYS),
            audit_max_records=read(AUDIT_MAX_RECORDS),
            revocation_days=read(REVOCATION_DAYS),
            ipv6_prefix=read(IPV6_PREFIX),
            signing_key_files=_signing_key_files(environ),
        )
        problems = [*read.problems, *_profile_problems(settings, read)]
        if problems:
            raise ConfigurationError(problems)
        return settings


class VariableReader:
    """Reads variables of the table from one mapping, collecting every problem."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []
        #: variables whose ``_FILE`` was given but not read (said once, not also "required")
        self._unreadable: set[str] = set()

    def __call__(self, variable: Variable[T]) -> T:
        """The variable's value; its default (and a problem) when missing or malformed."""
        value = self.text(variable)
        if value is None:
            if variable.required and variable.name not in self._unreadable:
                alternative = f" (or {variable.name}_FILE)" if variable.secret else ""
                self.problems.append(f"{variable.name} is required{alternative}")
            return variable.default
        if (variable.secret or variable.from_file) and parse.looks_like_placeholder(value):
            self.problems.append(f"{variable.name} is a placeholder copied from .env.example")
            return variable.default
        try:
            return variable.parse(value)
        except ValueError as error:
            separator = "" if str(error).startswith(":") else " "
            self.problems.append(f"{variable.name}{separator}{error}")
            return variable.default

    def text(self, variable: Variable[object]) -> str | None:
        """The stripped text of ``NAME``, or of the file ``NAME_FILE`` names; None if unset."""
        name = variable.name
        direct = self._environ.get(name, "").strip()
        file_name = (
            self._environ.get(name + "_FILE", "").strip()
            if variable.secret or variable.from_file
            else ""
        )
        if direct and file_name:
            self.problems.append(f"{name} and {name}_FILE are both set; set only one")
            return None
        if not file_name:
            return direct or None
        try:
            found = Path(file_name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            self._unreadable.add(name)
            self.problems.append(f"{name}_FILE names a file that cannot be read: {_why(error)}")
            return None
        if not found:
            self._unreadable.add(name)
            self.problems.append(f"{name}_FILE names an empty file")
        return found or None


def _why(error: OSError | UnicodeDecodeError) -> str:
    """Why a secret's file was not read, and what to do; never its content."""
    if isinstance(error, PermissionError):
        return (
            f"permission denied to this process (uid {os.getuid()}, gid {os.getgid()}): make "
            "the file readable by it (in the image: owned by 10001, mode 0400)"
        )
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    return error.strerror or type(error).__name__


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


def read_api_key(sid_file: Path, secret_file: Path, *, production: bool) -> tuple[str, str]:
    """Read a rotated API key from its two files; raise ``ConfigurationError`` if unusable."""
    read = VariableReader(
        {API_KEY_SID.name + "_FILE": str(sid_file), API_KEY_SECRET.name + "_FILE": str(secret_file)}
    )
    sid, secret = read(API_KEY_SID), read(API_KEY_SECRET)
    problems = list(read.problems)
    if production and (sid.endswith(parse.FAKE_SID_BODY) or secret == FAKE_API_KEY_SECRET):
        problems.append("the rotated API key is the generated development placeholder")
    if problems:
        raise ConfigurationError(problems)
    return sid, secret
