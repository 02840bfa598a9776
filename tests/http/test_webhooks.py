"""Twilio's webhooks: only requests Twilio signed for this support.VOICE_URL are acted on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from tests import support
from tests.fake_twilio import FakeTwilio


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no signature header at all
        {"X-Twilio-Signature": "not-a-signature"},
        support.twilio_signature(
            support.ALICE_TO_US, token="0" * 32
        ),  # signed with another account's token
        support.twilio_signature(
            support.ALICE_TO_US, url="http://localhost/v1/twilio/voice/incoming"
        ),  # replayed here
        support.twilio_signature(
            {**support.ALICE_TO_US, "To": "+15550000000"}
        ),  # a parameter changed after signing
    ],
)
def test_unsigned_or_wrongly_signed_requests_get_no_dial(
    voice: FlaskClient, headers: dict[str, str]
) -> None:
    response = support.call(voice, support.ALICE_TO_US, headers)
    assert response.status_code == 403
    assert response.get_json()["code"] == "invalid_signature"
    assert "<Dial" not in response.get_data(as_text=True)


def test_the_secondary_auth_token_works_during_rotation(
    voice_environ: dict[str, str], make_client: Callable[..., FlaskClient]
) -> None:
    secondary = "e" * 32
    client = make_client({**voice_environ, "TWILIO_AUTH_TOKEN_SECONDARY": secondary})
    assert (
        support.call(
            client,
            support.ALICE_TO_US,
            support.twilio_signature(support.ALICE_TO_US, token=secondary),
        ).status_code
        == 200
    )
    assert support.call(client, support.ALICE_TO_US).status_code == 200


def test_behind_a_proxy_the_public_url_is_what_twilio_signed(
    voice_environ: dict[str, str], make_client: Callable[..., FlaskClient], twilio: FakeTwilio
) -> None:
    public = "https://broker.example.test"
    client = make_client({**voice_environ, "BROKER_PUBLIC_URL": public})
    headers = support.twilio_signature(support.ALICE_TO_US, url=f"{public}/v1/twilio/voice")
    assert (
        support.call(
            client, support.ALICE_TO_US, headers, base_url="http://10.0.0.5:8000"
        ).status_code
        == 200
    )
    assert (
        support.call(client, support.ALICE_TO_US).status_code == 403
    )  # internal support.VOICE_URL


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "forged"},
        support.twilio_signature({"From": "+1", "To": "+15005550006"}, url=support.VOICE_URL),
    ],
)
def test_inbound_requires_a_signature_for_its_own_url(
    inbound: FlaskClient, headers: dict[str, str], twilio: FakeTwilio
) -> None:
    params = {"From": "+1", "To": "+15005550006"}
    response = inbound.post("/v1/twilio/voice/incoming", data=params, headers=headers)
    assert response.status_code == 403
    assert "<Dial" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "forged"},
        support.twilio_signature(support.ALERT, url="http://localhost/v1/twilio/voice"),
        support.twilio_signature(
            {**support.ALERT, "CurrentValue": "1.00"}, support.USAGE_ALERT_URL
        ),
    ],
)
def test_unsigned_alerts_change_nothing(
    client: FlaskClient,
    headers: dict[str, str],
    caller_token: Callable[..., str],
    post: support.Post,
    twilio: FakeTwilio,
) -> None:
    response = client.post("/v1/twilio/usage-alert", data=support.ALERT, headers=headers)
    assert response.status_code == 403
    assert response.get_json()["code"] == "invalid_signature"
    assert client.get("/readyz").get_json()["paused"] is False
    assert post(support.VIDEO, caller_token()).status_code == 200
