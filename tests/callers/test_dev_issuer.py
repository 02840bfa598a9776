"""The development issuer: a local key, development profile only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.base.errors import AuthenticationFailed
from service.callers import Authenticator, Provider
from service.callers.dev_issuer import DevIssuer
from tests import support
from tests.conftest import LeakWatch


def test_dev_issuer_tokens_verify_and_keep_their_key(
    tmp_path: Path, clock: support.FakeClock
) -> None:
    issuer = DevIssuer.load_or_create(tmp_path)
    again = DevIssuer.load_or_create(tmp_path)
    assert (tmp_path / "issuer-key.pem").stat().st_mode & 0o777 == 0o600
    now = datetime.now(UTC)
    token = issuer.session_token("carol", {"roles": "agent"}, now)
    authenticator = Authenticator(
        [Provider(again.verifier())], identity_claim="sub", clock=lambda: now
    )
    caller = authenticator.authenticate(f"Bearer {token}")
    assert caller.identity == "carol"
    assert caller.claims["roles"] == "agent"
    expired = issuer.session_token("carol", {}, now - timedelta(days=2), ttl=timedelta(hours=1))
    with pytest.raises(AuthenticationFailed):
        authenticator.authenticate(f"Bearer {expired}")


def test_dev_issuer_is_not_accepted_in_production(
    post: Callable[..., TestResponse], tmp_path: Path
) -> None:
    dev_token = DevIssuer.load_or_create(tmp_path / "dev").session_token(
        "alice", {}, datetime.now(UTC)
    )
    response = post(support.VIDEO, dev_token)
    assert response.status_code == 401


def test_client_keys_and_the_development_issuer_stay_apart(
    policy_file: Path,
    tmp_path: Path,
    leaks: LeakWatch,
    post: support.Post,
    cli: Callable[..., Result],
    create_key: Callable[[dict[str, str], str], str],
    make_client: Callable[..., FlaskClient],
) -> None:
    policy_file.write_text(policy_file.read_text() + support.BACKEND_RULE)
    development = {
        "BROKER_PROFILE": "dev",
        "BROKER_POLICY_FILE": str(policy_file),
        "BROKER_DEV_DIR": str(tmp_path / "dev"),
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        "BROKER_CLIENT_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    key = create_key(development, "backend")
    session = cli("dev-session", "user_1", env=development).stdout.strip()
    leaks.bearers.add(session)
    client = make_client(development)
    # the client key is a client, never a development session: it must name an identity
    assert post({"grants": {"voice": {}}}, key, to=client).status_code == 400
    assert post({"identity": "user_1", "grants": {"voice": {}}}, key, to=client).status_code == 200
    # a development session is an app user, never a client: the client rule is not its
    assert post({"grants": {"voice": {}}}, session, to=client).status_code == 403
    # and a development session cannot pass for a key (nor a key for a session)
    forged = "tbk_" + session
    leaks.bearers.add(forged)
    assert (
        post({"identity": "user_1", "grants": {"sync": {}}}, forged, to=client).status_code == 401
    )
