"""The declared table: every variable the broker reads, with its parser, its default and
whether it is a secret (``VARIABLES``), and the constants the settings rest on. Secrets
get no defaults. ``NAME_FILE=/path`` may stand in for any secret or SID (the Docker and
Kubernetes secrets convention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from service.config import variables as parse

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
#: Where the broker's own REST calls go (TaskRouter Workers, Video rooms): an emulator in
#: tests, with Twilio's paths kept. Unset: Twilio.
API_BASE_URL = Variable("TWILIO_API_BASE_URL", _optional(parse.http_url), None)


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
#: Twilio's advice: rotate credentials every three months.
KEY_MAX_AGE_DAYS = Variable("BROKER_KEY_MAX_AGE_DAYS", parse.whole_number(1, 3650), 90)
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
    API_BASE_URL,
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
    KEY_MAX_AGE_DAYS,
    IPV6_PREFIX,
    TRUSTED_PROXIES,
    CORS_ORIGINS,
    METRICS_TOKEN,
    PUBLIC_URL,
    BIND,
    DEV_DIR,
)
