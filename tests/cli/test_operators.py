"""The operator's commands: pause, resume, revoke, audit, usage; obeyed by a running app."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.http import broker
from service.state import Retention, open_store
from service.tokens.issuance import REVOCATION_MARGIN_SECONDS
from tests import support
from tests.fake_twilio import ADMIN_SID, FakeTwilio


def with_policy(environ: dict[str, str], table: str) -> dict[str, str]:
    """``environ`` with ``table`` added to a copy of its policy file."""
    original = Path(environ["BROKER_POLICY_FILE"])
    policy = original.with_name("with-" + original.name)
    policy.write_text(original.read_text() + "\n" + table)
    return {**environ, "BROKER_POLICY_FILE": str(policy)}


def test_a_pause_is_obeyed_at_once_shows_no_reason_and_resume_restores(
    client: FlaskClient,
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    bearer = caller_token()
    assert post(support.VIDEO, bearer).status_code == 200
    cli("pause", "--reason", "account alice compromised", check=True)
    # The next request, with no time passing: nothing caches the pause.
    paused = post(support.VIDEO, bearer)
    support.assert_problem(paused, 503, "issuance_paused")
    assert paused.headers["Retry-After"] == "60"  # until an operator acts: ask once a minute
    ready = client.get("/readyz")
    assert ready.status_code == 200  # paused is not broken
    assert ready.get_json()["paused"] is True
    assert "alice" not in ready.get_data(as_text=True)  # the reason is for operators only
    assert "token_broker_paused 1.0" in client.get("/metrics").get_data(as_text=True)
    cli("resume", check=True)
    assert post(support.VIDEO, bearer).status_code == 200
    assert "token_broker_paused 0.0" in client.get("/metrics").get_data(as_text=True)


def test_revoked_identity_needs_a_new_session(
    cli: Callable[..., Result],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    old_session = caller_token()
    assert post(support.VIDEO, old_session).status_code == 200
    output = cli("revoke", "--identity", "alice", check=True).output
    assert "revoked identity:alice" in output
    support.assert_problem(post(support.VIDEO, old_session), 403, "revoked")
    assert post(support.VIDEO, caller_token(sub="bob")).status_code == 200  # others unaffected
    # signed in again, later than the revocation by more than the provider's clock may be off
    new_session = caller_token(auth_time=int(time.time()) + REVOCATION_MARGIN_SECONDS + 1)
    assert post(support.VIDEO, new_session).status_code == 200
    cli("unrevoke", "--identity", "alice", check=True)
    assert post(support.VIDEO, old_session).status_code == 200


@pytest.mark.parametrize("claim", ["sid", "session_id", "origin_jti"])
def test_a_revoked_session_stays_revoked_through_its_refreshes(
    environ: dict[str, str], caller_token: support.Token, post: support.Post, claim: str
) -> None:
    """A provider that says no auth_time (Auth0, Entra ID, Keycloak, Supabase, Clerk...):
    the session's first sight is its sign-in, so a refreshed access token (a new iat) of
    a revoked session is refused; a session begun after the revocation is served."""
    now = int(time.time())
    first = caller_token(iat=now - 200, **{claim: "session-1"})  # signed in minutes ago
    assert post(support.VIDEO, first).status_code == 200
    # revoked a minute and a half after that first sight (as `token-broker revoke` would)
    store = open_store(environ["BROKER_STATE_URL"], retention=Retention(), create=False)
    store.revoke("identity:alice", datetime.fromtimestamp(now - 120, UTC))
    store.close()
    refreshed = caller_token(iat=now, **{claim: "session-1"})  # iat well after the revocation
    support.assert_problem(post(support.VIDEO, refreshed), 403, "revoked")
    signed_in_again = caller_token(iat=now, **{claim: "session-2"})
    assert post(support.VIDEO, signed_in_again).status_code == 200
    # a token that says when its user signed in is judged by that, as before
    assert (
        post(support.VIDEO, caller_token(iat=now, auth_time=now, sid="session-1")).status_code
        == 200
    )
    without = caller_token(iat=now)  # no session named: its iat is all there is
    assert post(support.VIDEO, without).status_code == 200


def test_a_revocation_names_the_identity_as_tokens_or_the_provider_show_it(
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
    audit_stream: io.StringIO,
) -> None:
    """Subject ``a-b`` is ``a_x2d_b`` in its tokens and audit records: either name
    revokes that person, and only that person (``a_x2d_b`` as a subject is another)."""
    person, lookalike = caller_token(sub="a-b"), caller_token(sub="a_x2d_b")
    assert post(support.VIDEO, person).get_json()["identity"] == "a_x2d_b"
    assert post(support.VIDEO, lookalike).get_json()["identity"] == "a_x5f_x2d_x5f_b"
    cli("revoke", "--identity", "a_x5f_x2d_x5f_b", check=True)  # as the audit trail shows
    support.assert_problem(post(support.VIDEO, lookalike), 403, "revoked")
    assert post(support.VIDEO, person).status_code == 200
    cli("unrevoke", "--identity", "a_x5f_x2d_x5f_b", check=True)
    cli("revoke", "--identity", "a-b", check=True)  # as the identity provider says
    support.assert_problem(post(support.VIDEO, person), 403, "revoked")
    assert post(support.VIDEO, lookalike).status_code == 200
    refused = [json.loads(line) for line in audit_stream.getvalue().splitlines()]
    assert [(r["identity"], r.get("subject")) for r in refused if r.get("code") == "revoked"] == [
        ("a_x5f_x2d_x5f_b", "a_x2d_b"),
        ("a_x2d_b", "a-b"),
    ]


def test_revoked_client_app(
    cli: Callable[..., Result],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    web, ios = caller_token(azp="web-app"), caller_token(sub="carol", client_id="ios-app")
    okta = caller_token(sub="dave", cid="okta-app")  # Okta names the app in cid
    cli("revoke", "--client", "web-app", check=True)
    support.assert_problem(post(support.VIDEO, web), 403, "revoked")
    assert post(support.VIDEO, ios).status_code == 200
    assert post(support.VIDEO, okta).status_code == 200
    cli("revoke", "--client", "okta-app", check=True)
    support.assert_problem(post(support.VIDEO, okta), 403, "revoked")


def test_revoke_needs_exactly_one_subject(cli: Callable[..., Result]) -> None:
    assert cli("revoke").exit_code != 0
    assert cli("revoke", "--identity", "a", "--client", "b").exit_code != 0


def test_audit_command_reads_the_durable_trail(
    cli: Callable[..., Result], caller_token: support.Token, post: support.Post
) -> None:
    post(support.VIDEO, caller_token())
    post({"grants": {"voice": {}}}, caller_token(sub="bob"))
    cli("pause", "--reason", "drill", check=True)
    cli("resume", check=True)
    every = [json.loads(line) for line in cli("audit", "--json", check=True).output.splitlines()]
    assert [r["decision"] for r in every] == ["issued", "denied", "paused", "resumed"]
    assert [r["event"] for r in every] == ["token", "token", "operator", "operator"]
    denied = cli("audit", "--decision", "denied", "--since", "1h", check=True).output
    assert "bob" in denied
    assert "alice" not in denied
    assert cli("audit", "--identity", "alice", check=True).output.count("issued") == 1
    assert cli("audit", "--since", "yesterday").exit_code != 0


def test_usage_under_thresholds_exits_zero(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    calm = with_policy(
        environ, "[usage]\ntoday = { calls = 100.0 }\nthis_month = { calls = 1000 }\n"
    )
    result = admin_cli(calm, "usage")
    assert result.exit_code == 0, result.output
    assert "today      calls" in result.output
    assert "60.00 usd" in result.output
    assert f"GET /2010-04-01/Accounts/{ADMIN_SID}/Usage/Records/Today.json" in twilio.requests
    assert f"GET /2010-04-01/Accounts/{ADMIN_SID}/Usage/Records/ThisMonth.json" in twilio.requests


def test_usage_over_a_threshold_exits_non_zero(
    environ: dict[str, str], admin_cli: Callable[..., Result]
) -> None:
    tight = with_policy(environ, "[usage]\nthis_month = { calls = 300.0 }\n")
    result = admin_cli(tight, "usage")
    assert result.exit_code == 1
    assert "OVER 300" in result.output
    assert "this_month calls" in result.output


def test_usage_trigger_calls_back_the_usage_alert_endpoint(
    environ: dict[str, str], twilio: FakeTwilio, admin_cli: Callable[..., Result]
) -> None:
    public = {**environ, "BROKER_PUBLIC_URL": "https://broker.example.test"}
    result = admin_cli(public, "usage-trigger", "create", "--category", "calls", "--value", "100")
    assert result.exit_code == 0, result.output
    [trigger] = twilio.triggers
    assert trigger["CallbackUrl"] == "https://broker.example.test/v1/twilio/usage-alert"
    assert trigger["UsageCategory"] == "calls"
    assert trigger["TriggerValue"] == "100"
    assert trigger["CallbackMethod"] == "POST"
    unset = {name: value for name, value in environ.items() if name != "BROKER_PUBLIC_URL"}
    missing = admin_cli(unset, "usage-trigger", "create", "--category", "calls", "--value", "100")
    assert missing.exit_code == 2
    assert "BROKER_PUBLIC_URL" in missing.output


def test_a_command_never_creates_a_store(
    cli: Callable[..., Result], environ: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere" / "state.sqlite3"
    elsewhere = {**environ, "BROKER_STATE_URL": f"sqlite:///{missing}"}
    for command in (["pause", "--reason", "x"], ["resume"], ["revoke", "--identity", "a"]):
        result = cli(*command, env=elsewhere)
        assert result.exit_code == 2
        assert str(missing) in result.output  # the file it looked for
    assert not missing.exists()
    assert not missing.parent.exists()


def test_state_files_are_their_owners_alone(
    client: FlaskClient, environ: dict[str, str], caller_token: support.Token, post: support.Post
) -> None:
    post(support.VIDEO, caller_token())
    state = Path(environ["BROKER_STATE_URL"].removeprefix("sqlite:///"))
    for path in state.parent.glob(state.name + "*"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_audit_text_escapes_what_a_caller_could_smuggle(
    cli: Callable[..., Result], client: FlaskClient, environ: dict[str, str]
) -> None:
    forged = "alice\n2026-11-28T18:00:00Z issued identity=admin \x1b[2J\x07"
    cli("revoke", "--identity", forged, check=True)
    text = cli("audit", check=True).output
    line = next(line for line in text.splitlines() if "revoked" in line)
    assert "\\n2026-11-28T18:00:00Z issued identity=admin \\x1b[2J\\x07" in line
    assert "\x1b" not in text
    assert len([line for line in text.splitlines() if "identity=admin" in line]) == 1


def test_no_command_takes_a_secret_as_an_argument(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    result = cli("keys", "list", "--account-sid", ADMIN_SID, "--auth-token", "f" * 32, env=environ)
    assert result.exit_code == 2
    assert "never as an argument" in result.output
    assert "f" * 32 not in result.output


def test_revoking_an_app_spares_a_client_key_of_that_name(
    keyed: dict[str, str],
    backend: FlaskClient,
    cli: Callable[..., Result],
    create_key: Callable[[dict[str, str], str], str],
    caller_token: support.Token,
    post: support.Post,
) -> None:
    key = create_key(keyed, "backend")
    cli("revoke", "--client", "backend", env=keyed, check=True)
    app_user = caller_token(azp="backend")
    support.assert_problem(post(support.VIDEO, app_user, to=backend), 403, "revoked")
    acting = {"identity": "user_1", "grants": {"video": {"room": "user_1-call"}}}
    assert post(acting, key, to=backend).status_code == 200  # another namespace


def test_audit_lists_the_same_records_from_every_backend(
    environ: dict[str, str],
    make_client: Callable[..., FlaskClient],
    cli: Callable[..., Result],
    caller_token: support.Token,
    post: support.Post,
    redis_url: str,
    cluster_url: str,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """The same traffic, kept by SQLite, Redis, a Redis Cluster and PostgreSQL: `audit
    --identity alice --since 1h` lists the same records (but for what differs by nature:
    request ids, times, the issued tokens' fingerprints)."""
    alice, bob = caller_token(), caller_token(sub="bob")
    backends = {
        "sqlite": {"BROKER_STATE_URL": f"sqlite:///{tmp_path}/audit.sqlite3"},
        "redis": {"BROKER_STATE_URL": redis_url},
        "redis_cluster": {"BROKER_STATE_URL": cluster_url},
        "postgres": {
            "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
            "BROKER_AUDIT_URL": postgres_url,
        },
    }
    listed = {}
    for name, settings in backends.items():
        environment = {**environ, **settings}
        client = make_client(environment)
        post(support.VIDEO, alice, to=client)
        post({"grants": {"voice": {}}}, alice, to=client)  # denied: alice is no agent
        post(support.VIDEO, bob, to=client)
        post(support.VIDEO, "not-a-token", to=client)  # counted, never listed for alice
        post({"grants": {"video": {"room": "bob-1"}}}, alice, to=client)  # denied: a room
        broker(client.application).close()
        result = cli("audit", "--identity", "alice", "--since", "1h", "--json", env=environment)
        assert result.exit_code == 0, result.output
        listed[name] = [
            {k: v for k, v in json.loads(line).items() if k not in ("request_id", "at", "token")}
            for line in result.output.splitlines()
        ]
    assert [record["decision"] for record in listed["sqlite"]] == ["issued", "denied", "denied"]
    assert listed["sqlite"] == listed["redis"] == listed["redis_cluster"] == listed["postgres"]
