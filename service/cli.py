"""The ``token-broker`` command."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from service.audit import AuditRecord, Decision
from service.callers.client_keys import ClientKeyFile
from service.callers.dev_issuer import DevIssuer
from service.clock import system_clock
from service.configuration import Configuration, load_configuration
from service.errors import ConfigurationError, Unavailable
from service.inspection import inspect_token
from service.minting import SigningKey
from service.settings import Settings
from service.state import StateStore, open_store
from service.twilio_admin import TwilioApiError, TwilioKeys, TwilioUsage

FAKE_CREDENTIALS_NOTICE = (
    "Twilio credentials: FAKE (generated for a first run). Tokens are well-formed, "
    "Twilio will reject them until real credentials are in .env"
)
DEFAULT_BIND = "127.0.0.1:8000"
DEMO_REQUEST = {"grants": {"video": {"room": "lobby"}}}
#: prometheus_client's own variable; service.metrics names it too, but importing that
#: module would import prometheus_client before serve sets it.
PROMETHEUS_MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
T = TypeVar("T")


def _fail(problems: tuple[str, ...] | list[str], exit_code: int = 2) -> NoReturn:
    click.echo("token-broker: the configuration has problems:", err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(exit_code)


def _configuration() -> Configuration:
    try:
        return load_configuration(os.environ)
    except ConfigurationError as error:
        _fail(error.problems)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Token Broker: short-lived, scoped Twilio Access Tokens for authenticated callers."""


@main.command("check-config")
def check_config() -> None:
    """Validate settings and policy; list every problem and exit non-zero if any."""
    configuration = _configuration()
    settings = configuration.settings
    click.echo(f"ok: profile {settings.profile}, {len(configuration.policy.rules)} policy rules")
    if configuration.fake_credentials:
        click.echo(FAKE_CREDENTIALS_NOTICE)


@main.command("serve")
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    envvar="BROKER_BIND",
    help="HOST:PORT to listen on (or BROKER_BIND).",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads per worker; above 1 uses gunicorn's gthread worker instead of sync.",
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM); needs --keyfile.",
)
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="Its private key.")
def serve(bind: str, workers: int, threads: int, certfile: str | None, keyfile: str | None) -> None:
    """Run the broker under gunicorn (never Flask's development server)."""
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")
    configuration = _configuration()
    store = _store(configuration.settings)
    if store.in_process_limits and workers > 1:
        _fail(
            [
                "with SQLite state the rate limits live in one process: run one worker "
                "(use --threads for concurrency) or set BROKER_STATE_URL=redis://..."
            ]
        )
    if configuration.settings.profile == "dev":
        click.echo(_dev_banner(configuration, bind), err=True)
    # prometheus_client reads this variable when first imported: set it before the import.
    metrics_directory = tempfile.mkdtemp(prefix="token-broker-metrics-")
    os.environ[PROMETHEUS_MULTIPROCESS_VARIABLE] = metrics_directory
    from service.server import run  # imports the app, gunicorn and prometheus_client

    try:
        run(
            bind=bind,
            workers=workers,
            threads=threads,
            metrics_directory=metrics_directory,
            tls=(certfile, keyfile) if certfile and keyfile else None,
        )
    finally:
        shutil.rmtree(metrics_directory, ignore_errors=True)


def _store(settings: Settings) -> StateStore:
    try:
        store = open_store(settings.state_url, audit_retention_days=settings.audit_retention_days)
        store.ping()
    except ConfigurationError as error:
        _fail(error.problems)
    except Unavailable:
        _fail(["the state store (BROKER_STATE_URL) cannot be reached"], exit_code=3)
    return store


def _operator_record(store: StateStore, record: AuditRecord) -> None:
    store.append_audit(record.at, record.to_json())


def _subject(identity: str | None, client: str | None) -> str:
    if (identity is None) == (client is None):
        raise click.UsageError("name exactly one of --identity or --client")
    return f"identity:{identity}" if identity is not None else f"client:{client}"


@main.command("healthcheck")
@click.option("--bind", default=DEFAULT_BIND, envvar="BROKER_BIND", help="As given to serve.")
def healthcheck(bind: str) -> None:
    """Exit 0 when the local server answers /healthz (the container's HEALTHCHECK)."""
    host, _, port = bind.rpartition(":")
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host.strip("[]")  # noqa: S104  # a bind-all address, not a bind
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            healthy = response.status == HTTPStatus.OK
    except OSError:
        healthy = False
    click.echo("healthy" if healthy else "unhealthy")
    sys.exit(0 if healthy else 1)


def _dev_banner(configuration: Configuration, bind: str) -> str:
    settings = configuration.settings
    session = DevIssuer.load_or_create(settings.dev_dir).session_token("alice", {}, system_clock())
    curl = " ".join(
        [
            "curl -sS -X POST",
            shlex.quote(f"http://{bind}/v1/tokens"),
            "-H",
            shlex.quote(f"Authorization: Bearer {session}"),
            "-H 'Content-Type: application/json'",
            "-d",
            shlex.quote(json.dumps(DEMO_REQUEST)),
        ]
    )
    lines = [
        "",
        f"Token Broker, development profile, on http://{bind}",
        "Caller tokens come from the built-in development issuer (token-broker dev-session NAME).",
    ]
    if configuration.fake_credentials:
        lines.append(FAKE_CREDENTIALS_NOTICE)
    broker = os.path.relpath(Path(sys.executable).parent / "token-broker")
    lines += [
        "",
        "Get a token for the development user 'alice':",
        "",
        f"  {curl}",
        "",
        "Check the token it returns (signature, expiry, what Twilio would say):",
        "",
        f"  BROKER_PROFILE=dev {shlex.quote(broker)} inspect TOKEN",
        "",
    ]
    return "\n".join(lines)


@main.command("dev-session")
@click.argument("name")
@click.option(
    "--claim",
    "claims",
    multiple=True,
    metavar="KEY=VALUE",
    help="Extra claim; repeat a key for a list.",
)
def dev_session(name: str, claims: tuple[str, ...]) -> None:
    """Print a caller token for NAME from the development issuer (dev profile only)."""
    settings = _configuration().settings
    if not settings.dev_issuer_enabled:
        _fail(["dev-session needs BROKER_PROFILE=dev; production has no development issuer"])
    extra: dict[str, Any] = {}
    for item in claims:
        key, separator, value = item.partition("=")
        if not separator or not key or key in ("iss", "aud", "sub", "iat", "exp", "nbf"):
            raise click.BadParameter(
                f"{item!r} is not KEY=VALUE with a custom key", param_hint="--claim"
            )
        if key in extra:
            previous = extra[key]
            extra[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            extra[key] = value
    issuer = DevIssuer.load_or_create(settings.dev_dir)
    click.echo(issuer.session_token(name, extra, system_clock()))


@main.command("inspect")
@click.argument("token")
@click.option("--json", "as_json", is_flag=True, help="Print the inspection as JSON.")
def inspect(token: str, as_json: bool) -> None:
    """Decode a Twilio Access Token, verify it, and explain what Twilio would refuse.

    Pass - to read the token from standard input. Exits 1 when the token is not valid.
    """
    if token == "-":
        token = sys.stdin.read().strip()
    key = _signing_key_if_configured()
    report = inspect_token(token, key, system_clock())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": report.valid,
                    "header": report.header,
                    "claims": report.claims,
                    "signature": report.signature,
                    "findings": [{"code": f.code, "message": str(f)} for f in report.findings],
                    "notes": list(report.notes),
                },
                indent=2,
            )
        )
    else:
        click.echo(f"identity:  {report.identity}")
        grants = report.claims.get("grants")
        for grant, value in grants.items() if isinstance(grants, dict) else ():
            if grant != "identity":
                click.echo(f"grant:     {grant} {json.dumps(value)}")
        for claim in ("nbf", "exp"):
            if isinstance(report.claims.get(claim), int):
                moment = report.claims[claim]
                click.echo(f"{claim}:       {moment} ({_iso(moment)})")
        click.echo(f"signature: {report.signature}")
        for note in report.notes:
            click.echo(f"note:      {note}")
        for finding in report.findings:
            click.echo(f"twilio would refuse it: {finding}")
        click.echo("verdict:   valid" if report.valid else "verdict:   NOT valid")
    sys.exit(0 if report.valid else 1)


@main.group("client-key")
def client_key() -> None:
    """Keys for server-to-server callers (your backend), never for mobile or web apps."""


def _client_key_file() -> ClientKeyFile:
    path = _configuration().settings.client_keys_file
    if path is None:
        _fail(["set BROKER_CLIENT_KEYS_FILE to the file that keeps client keys"])
    try:
        return ClientKeyFile(path)
    except ConfigurationError as error:
        _fail(error.problems)


@client_key.command("create")
@click.argument("name")
def client_key_create(name: str) -> None:
    """Create a key for client NAME and print it: the only time it is shown."""
    keys = _client_key_file()
    try:
        key = keys.create(name, system_clock())
    except ConfigurationError as error:
        _fail(error.problems)
    click.echo(key)
    click.echo(
        f"stored only as a digest in {keys.path}; give it to the {name!r} backend now", err=True
    )


@client_key.command("list")
def client_key_list() -> None:
    """List the keys: id, client, when created, revoked or not (never the key)."""
    for key in _client_key_file().entries():
        state = "revoked" if key.revoked else "active"
        click.echo(f"{key.id}  {key.client}  {_iso(int(key.created))}  {state}")


@client_key.command("revoke")
@click.argument("id_or_client")
def client_key_revoke(id_or_client: str) -> None:
    """Revoke one key by id, or every key of a client by its name."""
    count = _client_key_file().revoke(id_or_client)
    if not count:
        _fail([f"no active key has the id or client {id_or_client!r}"], exit_code=1)
    click.echo(f"revoked {count} key(s)")


def _admin_options(command: Callable[..., None]) -> Callable[..., None]:
    """Credentials for Twilio's REST API, given to this command only (never the server)."""
    command = click.option(
        "--api-base-url", envvar="TWILIO_API_BASE_URL", hidden=True, help="A local emulator."
    )(command)
    command = click.option(
        "--auth-token",
        envvar="TWILIO_ADMIN_AUTH_TOKEN",
        required=True,
        help="The account's Auth Token (or TWILIO_ADMIN_AUTH_TOKEN); never stored.",
    )(command)
    return click.option(
        "--account-sid",
        envvar="TWILIO_ADMIN_ACCOUNT_SID",
        required=True,
        help="The account (or TWILIO_ADMIN_ACCOUNT_SID).",
    )(command)


@main.group("keys")
def keys() -> None:
    """The account's Standard API keys, through Twilio's REST API (for rotation)."""


@keys.command("list")
@_admin_options
def keys_list(account_sid: str, auth_token: str, api_base_url: str | None) -> None:
    """List the account's API keys; mark the one this broker signs with."""
    active = _active_key_sid()
    for key in _twilio_call(
        lambda: TwilioKeys(account_sid, auth_token, api_base_url=api_base_url).list()
    ):
        created = key.created.isoformat() if key.created else "?"
        marker = "  (signs tokens here)" if key.sid == active else ""
        click.echo(f"{key.sid}  {created}  {key.friendly_name}{marker}")


@keys.command("create")
@click.argument("friendly_name")
@_admin_options
def keys_create(
    friendly_name: str, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Create a Standard API key; print its SID and secret (shown this once)."""
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    key = _twilio_call(lambda: client.create(friendly_name))
    click.echo(key.sid)
    click.echo(key.secret)
    click.echo(
        "Write both into TWILIO_API_KEY_SID_FILE and TWILIO_API_KEY_SECRET_FILE (or send the "
        "server HUP after changing them); then delete the old key once its tokens expired.",
        err=True,
    )


@keys.command("delete")
@click.argument("sid")
@click.option("--force", is_flag=True, help="Delete although tokens signed with it may be alive.")
@_admin_options
def keys_delete(
    sid: str, force: bool, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Delete an API key that no longer signs tokens."""
    configuration = _configuration()
    if sid == configuration.settings.api_key_sid:
        _fail([f"{sid} is the key this broker signs with: rotate to a new key first"])
    alive_until = _old_tokens_alive_until(configuration)
    if alive_until is not None and not force:
        _fail(
            [
                f"tokens signed with the previous key may be alive until {alive_until.isoformat()} "
                "(the maximum TTL after the switch); wait, or pass --force"
            ],
            exit_code=1,
        )
    client = TwilioKeys(account_sid, auth_token, api_base_url=api_base_url)
    _twilio_call(lambda: client.delete(sid))
    click.echo(f"deleted {sid}")


@main.command("usage")
@_admin_options
def usage(account_sid: str, auth_token: str, api_base_url: str | None) -> None:
    """Today's and this month's spend by category against the policy's [usage] thresholds.

    Exits 1 when a threshold is exceeded (for cron), 0 otherwise.
    """
    thresholds = _configuration().policy.usage_thresholds
    client = TwilioUsage(account_sid, auth_token, api_base_url=api_base_url)
    exceeded = []
    for period in ("today", "this_month"):
        for record in _twilio_call(partial(client.records, period)):
            limit = thresholds.get(period, {}).get(record.category)
            over = limit is not None and record.price > limit
            if over:
                exceeded.append(f"{period} {record.category}")
            mark = (
                f"  OVER {limit}" if over else (f"  (limit {limit})" if limit is not None else "")
            )
            click.echo(
                f"{period:<11}{record.category:<28}{record.price:>12} {record.price_unit}"
                f"  {record.usage} {record.usage_unit}{mark}"
            )
    if exceeded:
        click.echo("over threshold: " + ", ".join(exceeded), err=True)
        sys.exit(1)


@main.group("usage-trigger")
def usage_trigger() -> None:
    """Twilio Usage Triggers that pause issuance here when spend runs away."""


@usage_trigger.command("create")
@click.option(
    "--category", required=True, help="A Twilio usage category, e.g. calls or totalprice."
)
@click.option("--value", required=True, help="The price at which it fires, e.g. 100.")
@_admin_options
def usage_trigger_create(
    category: str, value: str, account_sid: str, auth_token: str, api_base_url: str | None
) -> None:
    """Create a daily Usage Trigger whose callback pauses issuance here."""
    public_url = _configuration().settings.public_url
    if not public_url:
        _fail(["set BROKER_PUBLIC_URL: Twilio calls the trigger back there"])
    callback = public_url.rstrip("/") + "/v1/twilio/usage-alert"
    client = TwilioUsage(account_sid, auth_token, api_base_url=api_base_url)
    sid = _twilio_call(lambda: client.create_trigger(category, value, callback))
    click.echo(f"{sid} calls {callback} when {category} reaches {value}")


def _active_key_sid() -> str | None:
    try:
        return load_configuration(os.environ).settings.api_key_sid
    except ConfigurationError:
        return None


def _old_tokens_alive_until(configuration: Configuration) -> datetime | None:
    """When the last token of the previous key expires, if that is still ahead.

    The switch is when the key files last changed; without key files it is unknown, and
    the command cannot tell: it says nothing.
    """
    files = configuration.settings.signing_key_files
    if files is None:
        return None
    switched = max(path.stat().st_mtime for path in files)
    until = datetime.fromtimestamp(switched, UTC) + timedelta(seconds=configuration.policy.max_ttl)
    return until if until > system_clock() else None


def _twilio_call(action: Callable[[], T]) -> T:
    try:
        return action()
    except TwilioApiError as error:
        _fail([f"Twilio's REST API: {error}"], exit_code=3)


@main.command("pause")
@click.option("--reason", required=True, help="Why; shown in /readyz, the audit trail and logs.")
def pause(reason: str) -> None:
    """Refuse all issuance (503 issuance_paused) on every worker and instance."""
    store = _store(_configuration().settings)
    now = system_clock()
    _guarded(lambda: store.pause(reason, now))
    _guarded(lambda: _operator_record(store, _operator("paused", now, reason=reason)))
    click.echo(f"issuance paused: {reason}")


@main.command("resume")
def resume() -> None:
    """End a pause."""
    store = _store(_configuration().settings)
    now = system_clock()
    _guarded(store.resume)
    _guarded(lambda: _operator_record(store, _operator("resumed", now)))
    click.echo("issuance resumed")


@main.command("revoke")
@click.option("--identity", help="A Twilio identity (the verified claim of a caller).")
@click.option("--client", help="An app: the azp/client_id of its callers' tokens.")
def revoke(identity: str | None, client: str | None) -> None:
    """Refuse new tokens to sessions issued before now (403 revoked)."""
    subject = _subject(identity, client)
    store = _store(_configuration().settings)
    now = system_clock()
    _guarded(lambda: store.revoke(subject, now))
    record = _operator("revoked", now, identity=identity, client=client)
    _guarded(lambda: _operator_record(store, record))
    click.echo(f"revoked {subject} for sessions issued before {_iso(int(now.timestamp()))}")


@main.command("unrevoke")
@click.option("--identity")
@click.option("--client")
def unrevoke(identity: str | None, client: str | None) -> None:
    """Lift a revocation."""
    subject = _subject(identity, client)
    store = _store(_configuration().settings)
    now = system_clock()
    found = _guarded(lambda: store.unrevoke(subject))
    record = _operator("unrevoked", now, identity=identity, client=client)
    _guarded(lambda: _operator_record(store, record))
    click.echo(f"unrevoked {subject}" if found else f"{subject} was not revoked")


@main.command("audit")
@click.option("--identity", help="Only records for this identity.")
@click.option("--decision", help="Only this decision: issued, denied, authentication_failed...")
@click.option("--since", "since_text", help="Only the last 30m, 1h, 7d...")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON record a line.")
def audit(
    identity: str | None, decision: str | None, since_text: str | None, limit: int, as_json: bool
) -> None:
    """Show the durable audit trail, oldest first."""
    since = system_clock() - _duration(since_text) if since_text else None
    store = _store(_configuration().settings)
    # Filters are applied after reading, so read generously and cut to --limit at the end.
    lines = _guarded(
        lambda: store.audit_lines(since, limit if not (identity or decision) else 100_000)
    )
    records = [json.loads(line) for line in lines]
    records = [
        r
        for r in records
        if (identity is None or r.get("identity") == identity)
        and (decision is None or r.get("decision") == decision)
    ][-limit:]
    for record in records:
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(_audit_line(record))


def _audit_line(record: dict[str, Any]) -> str:
    parts = [record.get("at", "?"), record.get("decision", "?")]
    for name in ("identity", "client", "code", "reason", "room", "ttl", "request_id", "client_ip"):
        if name in record:
            parts.append(f"{name}={record[name]}")
    if record.get("grants"):
        parts.append("grants=" + ",".join(record["grants"]))
    return " ".join(str(part) for part in parts)


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise click.BadParameter(
            "use a number and s, m, h or d, such as 30m or 7d", param_hint="--since"
        )
    return timedelta(seconds=int(number) * units[unit])


def _operator(
    decision: Decision,
    at: datetime,
    *,
    reason: str | None = None,
    identity: str | None = None,
    client: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        decision=decision,
        request_id="cli",
        client_ip="",
        at=at,
        reason=reason,
        identity=identity,
        client=client,
    )


def _guarded(action: Callable[[], T]) -> T:
    try:
        return action()
    except Unavailable:
        _fail(["the state store (BROKER_STATE_URL) cannot be reached"], exit_code=3)


def _iso(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _signing_key_if_configured() -> SigningKey | None:
    try:
        settings = load_configuration(os.environ).settings
    except ConfigurationError:
        click.echo(
            "note:      the settings do not load here, so the signature cannot be checked "
            "(for tokens from `make run`, set BROKER_PROFILE=dev)",
            err=True,
        )
        return None
    return SigningKey.from_settings(settings)
