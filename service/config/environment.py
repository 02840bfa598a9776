"""Which variables does this process see? The environment, ``.env`` in development, and
clearly fake Twilio credentials for a first run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from service.config.declared import FAKE_API_KEY_SECRET, PROFILE
from service.config.variables import FAKE_SID_BODY


def read_environment(environ: Mapping[str, str], dotenv_file: Path) -> dict[str, str]:
    """The process environment, over a ``.env`` file when the profile is ``dev``.

    ``BROKER_PROFILE`` comes from the process environment only: a ``.env`` copied onto a
    server never turns on the development issuer nor drops the HTTPS requirement. The
    process environment always wins; ``.env`` is a development convenience and is ignored
    in production, where secrets come from the environment or ``NAME_FILE``.
    """
    if environ.get(PROFILE.name, PROFILE.default) != "dev":
        return dict(environ)
    file_values = {
        name: value
        for name, value in dotenv_values(dotenv_file).items()
        if value is not None and name != PROFILE.name
    }
    return {**file_values, **environ}


def fake_twilio_credentials() -> dict[str, str]:
    """Clearly fake Twilio credentials for a first run: well-formed, refused by Twilio.

    The secret is fixed so that tokens stay verifiable across restarts; production
    refuses the all-zero SIDs.
    """
    return {
        "TWILIO_ACCOUNT_SID": "AC" + FAKE_SID_BODY,
        "TWILIO_API_KEY_SID": "SK" + FAKE_SID_BODY,
        "TWILIO_API_KEY_SECRET": FAKE_API_KEY_SECRET,
        "TWILIO_TWIML_APP_SID": "AP" + FAKE_SID_BODY,
        "TWILIO_CONVERSATIONS_SERVICE_SID": "IS" + FAKE_SID_BODY,
        "TWILIO_SYNC_SERVICE_SID": "IS" + FAKE_SID_BODY,
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
