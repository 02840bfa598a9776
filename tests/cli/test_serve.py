"""token-broker serve, check-config, dev-session and inspect."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.state import Retention, open_store
from service.tokens.minting import Minter, Services, SigningKey
from service.tokens.policy import Plan, VideoPlan
from tests import support
from tests.conftest import LeakWatch
from tests.fake_twilio import FakeTwilio


def issued_token(leaks: LeakWatch, **plan: object) -> str:
    minter = Minter(
        SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET), Services()
    )
    token = minter.mint(Plan("alice", 600, video=VideoPlan("lobby")), datetime.now(UTC)).jwt
    leaks.issued.add(token)
    return token


def _forged(
    claims: dict[str, object],
    header: dict[str, str] | None = None,
    secret: str = support.API_KEY_SECRET,
) -> str:
    now = int(datetime.now(UTC).timestamp())
    base: dict[str, object] = {
        "jti": f"{support.API_KEY_SID}-{now}",
        "grants": {"identity": "alice", "video": {"room": "lobby"}},
        "iss": support.API_KEY_SID,
        "sub": support.ACCOUNT_SID,
        "nbf": now,
        "exp": now + 600,
    }
    return jwt.encode(
        {**base, **claims}, secret, algorithm="HS256", headers=header or {"cty": "twilio-fpa;v=1"}
    )


def test_check_config_ok(cli: Callable[..., Result]) -> None:
    result = cli("check-config")
    assert result.exit_code == 0, result.output
    assert "ok: profile production, 2 policy rules" in result.output


def test_check_config_lists_every_problem(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    result = cli(
        "check-config", env={**environ, "TWILIO_REGION": "mars1", "TWILIO_API_KEY_SECRET": "short"}
    )
    assert result.exit_code == 2
    assert "TWILIO_REGION" in result.output
    assert "at least 32 characters" in result.output


def test_inspect_reports_a_fresh_token_as_valid(
    cli: Callable[..., Result], leaks: LeakWatch
) -> None:
    result = cli("inspect", issued_token(leaks))
    assert result.exit_code == 0, result.output
    assert "identity:  alice" in result.output
    assert 'grant:     video {"room": "lobby"}' in result.output
    assert "signature: valid" in result.output
    assert "verdict:   valid" in result.output
    leaks.check_text(result.output)


def test_inspect_reads_stdin_and_prints_json(cli: Callable[..., Result], leaks: LeakWatch) -> None:
    result = cli("inspect", "-", "--json", stdin=issued_token(leaks) + "\n")
    report = json.loads(result.output)
    assert report["valid"] is True
    assert report["claims"]["grants"]["identity"] == "alice"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (_forged({"exp": 1_000_000, "nbf": 999_000}), "20104"),
        (_forged({"nbf": 4_000_000_000, "exp": 4_000_000_600}), "20105"),
        (_forged({"exp": 4_000_000_000}), "20157"),
        (_forged({"iss": "AC" + "0" * 32}), "20103"),
        (_forged({"sub": "AC" + "9" * 32}), "20103"),
        (_forged({}, secret="another-secret-of-thirty-two-chars!"), "20107"),
        (_forged({}, header={"cty": "something"}), "20102"),
        (_forged({"grants": {"identity": "alice"}}), "20106"),
        (_forged({"grants": {"identity": "alice", "video": {}}}), "20106"),
        (_forged({"grants": {"video": {"room": "x"}}}), "53200"),
        (_forged({"grants": {"identity": "x" * 129, "video": {"room": "x"}}}), "53200"),
        (_forged({"grants": {"identity": "alice", "fax": {}}}), "20106"),
        (_forged({"exp": "soon"}), "20104"),
        (_forged({"grants": "all"}), "20106"),
        ("not.a.token", "20101"),
    ],
)
def test_inspect_explains_twilio_errors(
    cli: Callable[..., Result], token: str, code: str, twilio: FakeTwilio
) -> None:
    result = cli("inspect", token)
    assert result.exit_code == 1
    assert f"twilio would refuse it: {code}" in result.output
    assert "verdict:   NOT valid" in result.output


def test_inspect_without_settings_does_not_check_the_signature(
    cli: Callable[..., Result], leaks: LeakWatch
) -> None:
    result = cli("inspect", issued_token(leaks), env={})
    assert result.exit_code == 1
    assert "signature: not_checked" in result.output


def test_dev_session_needs_the_dev_profile(cli: Callable[..., Result]) -> None:
    result = cli("dev-session", "alice")
    assert result.exit_code == 2
    assert "BROKER_PROFILE=dev" in result.output


def test_dev_session_token_gets_a_token_from_a_dev_app(
    cli: Callable[..., Result],
    policy_file: Path,
    tmp_path: Path,
    leaks: LeakWatch,
    post: support.Post,
    make_client: Callable[..., FlaskClient],
) -> None:

    dev_env = {
        "BROKER_PROFILE": "dev",
        "BROKER_POLICY_FILE": str(policy_file),
        "BROKER_DEV_DIR": str(tmp_path / "dev"),
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
    }
    result = cli(
        "dev-session",
        "dave",
        "--claim",
        "roles=agent",
        "--claim",
        "roles=admin",
        "--claim",
        "team=blue",
        env=dev_env,
    )
    assert result.exit_code == 0, result.output
    session = result.output.strip()
    leaks.bearers.add(session)
    claims = jwt.decode(session, options={"verify_signature": False})
    assert claims["roles"] == ["agent", "admin"]
    client = make_client(dev_env)
    response = post({"grants": {"voice": {}, "video": {"room": "team-blue-1"}}}, session, to=client)
    assert response.status_code == 200
    assert response.get_json()["identity"] == "dave"


def test_dev_session_refuses_reserved_claims(
    cli: Callable[..., Result], policy_file: Path, tmp_path: Path
) -> None:
    dev_env = {
        "BROKER_PROFILE": "dev",
        "BROKER_POLICY_FILE": str(policy_file),
        "BROKER_DEV_DIR": str(tmp_path / "dev"),
    }
    result = cli("dev-session", "dave", "--claim", "sub=root", env=dev_env)
    assert result.exit_code != 0


def test_serve_refuses_to_start_with_bad_configuration(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    result = cli("serve", env={**environ, "OIDC_ISSUER": ""})
    assert result.exit_code == 2
    assert "OIDC_ISSUER (or [[providers]] in the policy) is required in production" in result.output


def test_sqlite_state_refuses_several_workers(cli: Callable[..., Result]) -> None:
    result = cli("serve", "--workers", "2")
    assert result.exit_code == 2
    assert "one worker" in result.output


def test_check_config_fails_for_webhooks_without_their_public_url(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    without = {name: value for name, value in environ.items() if name != "BROKER_PUBLIC_URL"}
    result = cli("check-config", env=without)
    assert result.exit_code == 2
    assert "BROKER_PUBLIC_URL is required with TWILIO_AUTH_TOKEN" in result.output


def test_check_config_warns_when_the_signing_key_is_old(
    cli: Callable[..., Result], environ: dict[str, str]
) -> None:
    first_run = cli("check-config", check=True)  # no store yet: no key has an age
    assert "warning" not in first_run.output
    store = open_store(environ["BROKER_STATE_URL"], retention=Retention())  # as serve makes it
    store.first_seen(f"signing-key:{support.API_KEY_SID}", datetime.now(UTC) - timedelta(days=100))
    store.close()
    result = cli("check-config", check=True)  # a warning: it still exits 0
    assert (
        f"warning: the signing key {support.API_KEY_SID} has signed tokens for 100 days, "
        "more than BROKER_KEY_MAX_AGE_DAYS (90)"
    ) in result.output
    lenient = cli("check-config", env={**environ, "BROKER_KEY_MAX_AGE_DAYS": "120"}, check=True)
    assert "warning" not in lenient.output
