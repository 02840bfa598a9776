"""The environment a process sees: .env only in development, fake credentials for a first run."""

from __future__ import annotations

from pathlib import Path

from service.serving.configuration import load_configuration
from tests import support


def test_dotenv_is_read_only_in_development(environ: dict[str, str], tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("TWILIO_REGION=ie1\n")
    production = load_configuration(environ, dotenv_file=dotenv)
    assert production.settings.region is None
    development = load_configuration({**environ, "BROKER_PROFILE": "dev"}, dotenv_file=dotenv)
    assert development.settings.region == "ie1"
    # the process environment wins over .env
    override = load_configuration(
        {**environ, "BROKER_PROFILE": "dev", "TWILIO_REGION": "au1"}, dotenv_file=dotenv
    )
    assert override.settings.region == "au1"


def test_first_run_uses_clearly_fake_credentials(policy_file: Path, tmp_path: Path) -> None:
    configuration = load_configuration(
        {"BROKER_PROFILE": "dev", "BROKER_POLICY_FILE": str(policy_file)},
        dotenv_file=tmp_path / "none",
    )
    assert configuration.fake_credentials
    assert configuration.settings.uses_fake_credentials
    assert configuration.settings.dev_issuer_enabled
    assert configuration.settings.oidc is None


def test_a_dotenv_never_selects_the_development_profile(
    environ: dict[str, str], tmp_path: Path
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BROKER_PROFILE=dev\nTWILIO_REGION=ie1\n")
    production = {name: value for name, value in environ.items() if name != "BROKER_PROFILE"}
    configuration = load_configuration(production, dotenv_file=dotenv)
    assert configuration.settings.profile == "production"
    assert not configuration.settings.dev_issuer_enabled
    assert configuration.settings.region is None  # nor is the rest of .env read


def test_the_shipped_example_selects_no_profile() -> None:
    example = (support.ROOT / ".env.example").read_text()
    assert "\nBROKER_PROFILE=" not in example
