"""The application factory: wiring, a request id on every response, no detail in a 500."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service import create_app
from service.http import broker
from tests import support


def test_without_a_configuration_it_reads_the_process_environment(
    process_environ: dict[str, str],
) -> None:
    app = create_app(audit_stream=io.StringIO())
    assert broker(app).settings.account_sid == support.ACCOUNT_SID


def test_the_paused_gauge_follows_the_pause_flag(
    client: FlaskClient, cli: Callable[..., object]
) -> None:
    assert "token_broker_paused 0.0" in client.get("/metrics").get_data(as_text=True)
    cli("pause", "--reason", "drill", check=True)
    assert "token_broker_paused 1.0" in client.get("/metrics").get_data(as_text=True)


def test_budget_windows_follow_the_injected_clock(
    make_client: Callable[..., FlaskClient],
    clock: support.FakeClock,
    caller_token: support.Token,
    post: support.Post,
) -> None:
    client = make_client(policy=support.LIMITED_POLICY)  # per_identity = "3/minute"
    bearer = caller_token()
    assert [post(support.VIDEO, bearer, to=client).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    clock.advance(60)  # a minute later, by the app's clock: the window has moved
    assert post(support.VIDEO, bearer, to=client).status_code == 200


def test_every_response_has_a_request_id(client: FlaskClient) -> None:
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]
    assert len(first) == 32
    assert first != second


def test_unexpected_error_is_a_bare_500(
    client: FlaskClient,
    post: support.Post,
    caller_token: support.Token,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("secret detail " + support.API_KEY_SECRET[:4])

    monkeypatch.setattr(broker(client.application).issuance, "issue", explode)
    response = post(support.VIDEO, caller_token())
    support.assert_problem(response, 500, "internal_error")
    assert "secret detail" not in response.get_data(as_text=True)
