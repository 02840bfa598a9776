"""Server-to-server callers with client keys: stored as digests, limited by policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask.testing import FlaskClient

from service.base.errors import ConfigurationError
from service.callers.client_keys import ClientKeyFile
from tests import support
from tests.conftest import LeakWatch


def test_a_backend_acts_for_identities_its_rule_allows(
    backend: FlaskClient,
    keyed: dict[str, str],
    post: support.Post,
    create_key: Callable[[dict[str, str], str], str],
) -> None:
    key = create_key(keyed, "backend")
    ok = post(
        {"identity": "user_42", "grants": {"video": {"room": "user_42-call"}}}, key, to=backend
    )
    assert ok.status_code == 200
    assert ok.get_json()["identity"] == "user_42"
    outside = post({"identity": "admin", "grants": {"voice": {}}}, key, to=backend)
    assert outside.status_code == 403
    assert outside.get_json()["code"] == "grant_not_allowed"
    nameless = post({"grants": {"voice": {}}}, key, to=backend)
    assert nameless.status_code == 400
    # rules for app users (match = {}) never apply to a client key
    chat = post({"identity": "user_42", "grants": {"chat": {}}}, key, to=backend)
    assert chat.get_json()["code"] == "grant_not_allowed"


def test_app_users_never_get_client_rules_nor_name_identities(
    backend: FlaskClient, caller_token: Callable[..., str], post: support.Post
) -> None:
    user = caller_token(sub="user_42")
    assert (
        post({"grants": {"voice": {}}}, user, to=backend).get_json()["code"] == "grant_not_allowed"
    )
    named = post({"identity": "user_7", "grants": {"sync": {}}}, user, to=backend)
    assert named.get_json()["code"] == "unknown_field"


def test_wrong_revoked_and_unknown_keys_look_the_same(
    backend: FlaskClient,
    keyed: dict[str, str],
    leaks: LeakWatch,
    post: support.Post,
    cli: Callable[..., Result],
    create_key: Callable[[dict[str, str], str], str],
) -> None:
    key = create_key(keyed, "backend")
    revoked = create_key(keyed, "backend")
    revoked_id = revoked.split("_")[1]
    assert cli("client-key", "revoke", revoked_id, env=keyed).exit_code == 0
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown = "tbk_0123456789abcdef_" + "A" * 43
    bodies = []
    for candidate in (wrong, revoked, unknown, "tbk_short"):
        leaks.bearers.add(candidate)
        response = post({"identity": "user_1", "grants": {"voice": {}}}, candidate, to=backend)
        assert response.status_code == 401
        body = response.get_json()
        body.pop("request_id")
        bodies.append(body)
    assert all(body == bodies[0] for body in bodies)


def test_a_client_key_without_a_keys_file_is_refused(leaks: LeakWatch, post: support.Post) -> None:
    key = "tbk_0123456789abcdef_" + "A" * 43
    leaks.bearers.add(key)
    assert post({"identity": "user_1", "grants": {"sync": {}}}, key).status_code == 401


def test_bad_client_names_and_files(tmp_path: Path) -> None:
    keys = ClientKeyFile(tmp_path / "keys.json")
    with pytest.raises(ConfigurationError):
        keys.create("Not A Name!", __import__("datetime").datetime.now(__import__("datetime").UTC))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"keys": [{"id": 1}]}))
    with pytest.raises(ConfigurationError):
        ClientKeyFile(broken)
