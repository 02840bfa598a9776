"""Settings: one table of variables, every problem at once, secrets never shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.base.errors import ConfigurationError
from service.config.declared import DEV_ISSUER, VARIABLES
from service.config.environment import fake_twilio_credentials
from service.config.settings import Settings
from service.serving.configuration import load_configuration
from tests import support


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(environ)
    return list(raised.value.problems)


def test_valid_environment(environ: dict[str, str]) -> None:
    settings = Settings.from_env(environ)
    assert settings.profile == "production"
    assert settings.push_credentials == {"apns": support.APNS_SID, "fcm": support.FCM_SID}
    assert settings.oidc is not None
    assert settings.oidc.algorithms == ("RS256", "ES256")
    assert not settings.dev_issuer_enabled


def test_secrets_never_in_repr(environ: dict[str, str]) -> None:
    settings = Settings.from_env({**environ, "BROKER_METRICS_TOKEN": "metrics-token-value-123"})
    text = repr(settings)
    assert support.API_KEY_SECRET not in text
    assert support.AUTH_TOKEN not in text
    assert "metrics-token-value-123" not in text


def test_every_problem_is_listed_at_once(environ: dict[str, str]) -> None:
    problems = problems_of(
        {
            **environ,
            "TWILIO_API_KEY_SID": support.ACCOUNT_SID,  # an AC SID where an SK belongs
            "TWILIO_API_KEY_SECRET": "short",
            "TWILIO_REGION": "mars1",
            "TWILIO_TWIML_APP_SID": "APxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "OIDC_ALGORITHMS": "RS256,HS256",
        }
    )
    joined = "\n".join(problems)
    assert "TWILIO_API_KEY_SID must start with SK, not AC" in joined
    assert "at least 32 characters" in joined
    assert "TWILIO_REGION" in joined
    assert "TWILIO_TWIML_APP_SID is a placeholder" in joined
    assert "'HS256' is not allowed" in joined
    assert len(problems) == 5
    assert "short" not in joined  # a secret's value never enters a message


def test_auth_token_as_api_key_secret(environ: dict[str, str]) -> None:
    same = "f" * 32
    problems = problems_of({**environ, "TWILIO_API_KEY_SECRET": same, "TWILIO_AUTH_TOKEN": same})
    assert any("Auth Token" in p for p in problems)
    assert all(same not in p for p in problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TWILIO_ACCOUNT_SID", "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        ("TWILIO_API_KEY_SECRET", "your_api_key_secret_from_the_console"),
        ("TWILIO_ACCOUNT_SID", "AC" + "0" * 32),
    ],
)
def test_placeholders_are_refused(environ: dict[str, str], name: str, value: str) -> None:
    assert problems_of({**environ, name: value})


@pytest.mark.parametrize(
    "missing", ["TWILIO_ACCOUNT_SID", "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET"]
)
def test_required_credentials(environ: dict[str, str], missing: str) -> None:
    environ.pop(missing)
    assert any(missing in p for p in problems_of(environ))


def test_secret_from_file(environ: dict[str, str], tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("S" * 40 + "\n")
    environ.pop("TWILIO_API_KEY_SECRET")
    settings = Settings.from_env({**environ, "TWILIO_API_KEY_SECRET_FILE": str(secret_file)})
    assert settings.api_key_secret == "S" * 40


def test_secret_file_problems(environ: dict[str, str], tmp_path: Path) -> None:
    both = problems_of({**environ, "TWILIO_API_KEY_SECRET_FILE": str(tmp_path / "x")})
    assert any("both set" in p for p in both)
    environ.pop("TWILIO_API_KEY_SECRET")
    unreadable = problems_of({**environ, "TWILIO_API_KEY_SECRET_FILE": str(tmp_path / "absent")})
    assert "TWILIO_API_KEY_SECRET_FILE names a file that cannot be read: no such file" in unreadable
    assert not any("is required" in p for p in unreadable)  # it was given: said once, rightly
    directory = problems_of({**environ, "TWILIO_API_KEY_SECRET_FILE": str(tmp_path)})
    assert any("cannot be read: it is a directory" in p for p in directory)
    (tmp_path / "empty").write_text("\n")
    empty = problems_of({**environ, "TWILIO_API_KEY_SECRET_FILE": str(tmp_path / "empty")})
    assert "TWILIO_API_KEY_SECRET_FILE names an empty file" in empty


def test_production_refuses_the_development_issuer(environ: dict[str, str]) -> None:
    problems = problems_of({**environ, "OIDC_ISSUER": DEV_ISSUER})
    assert any("development issuer" in p for p in problems)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://id.example.test/jwks", True),
        ("http://127.0.0.1:8080/jwks", True),
        ("http://localhost/jwks", True),
        ("http://[::1]:9/jwks", True),
        ("http://id.example.test/jwks", False),
        ("http://10.0.0.1/jwks", False),
        ("ftp://id.example.test/jwks", False),
    ],
)
def test_jwks_url_over_plain_http_only_on_loopback(
    environ: dict[str, str], url: str, accepted: bool
) -> None:
    environ["OIDC_JWKS_URL"] = url
    if accepted:
        Settings.from_env(environ)
    else:
        assert any("OIDC_JWKS_URL" in p for p in problems_of(environ))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BROKER_PROFILE", "staging"),
        ("TWILIO_PUSH_CREDENTIALS", "apns"),
        ("TWILIO_PUSH_CREDENTIALS", f"apns={support.APNS_SID},apns={support.FCM_SID}"),
        ("TWILIO_PUSH_CREDENTIALS", "apns=CR123"),
        ("BROKER_TRUSTED_PROXIES", "-1"),
        ("BROKER_CORS_ORIGINS", "https://app.example.test/path"),
        ("BROKER_STATE_URL", "postgres://db"),
        ("BROKER_PUBLIC_URL", "not a url"),
        ("OIDC_LEEWAY", "120"),
        ("TWILIO_SYNC_SERVICE_SID", "IS123"),
    ],
)
def test_malformed_values(environ: dict[str, str], name: str, value: str) -> None:
    assert problems_of({**environ, name: value})


def test_fake_credentials_are_refused_in_production(policy_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_configuration({"BROKER_POLICY_FILE": str(policy_file)}, dotenv_file=tmp_path / "none")


def test_the_fake_development_secret_is_refused_in_production(environ: dict[str, str]) -> None:
    fake_secret = fake_twilio_credentials()["TWILIO_API_KEY_SECRET"]
    problems = problems_of({**environ, "TWILIO_API_KEY_SECRET": fake_secret})
    assert any("development placeholder" in p for p in problems)


def test_env_example_documents_exactly_the_declared_variables() -> None:
    text = (support.ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))
    assert documented == {variable.name for variable in VARIABLES}


def test_secrets_have_no_defaults_and_never_show() -> None:
    for variable in VARIABLES:
        if variable.secret:
            assert not variable.default, variable.name
    names = [variable.name for variable in VARIABLES]
    assert len(names) == len(set(names))


def test_production_webhooks_need_the_public_url(environ: dict[str, str]) -> None:
    without = {name: value for name, value in environ.items() if name != "BROKER_PUBLIC_URL"}
    assert "BROKER_PUBLIC_URL is required with TWILIO_AUTH_TOKEN" in "\n".join(problems_of(without))
    no_webhooks = {name: value for name, value in without.items() if name != "TWILIO_AUTH_TOKEN"}
    Settings.from_env(no_webhooks)  # no Auth Token: no webhooks, no URL needed
