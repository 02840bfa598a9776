"""What is this deployment's configuration? Settings, the policy file and their cross-checks.

Everything is validated together so that start-up (and ``token-broker check-config``)
lists every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.base.errors import ConfigurationError
from service.config.declared import POLICY_FILE
from service.config.environment import read_environment, with_first_run_defaults
from service.config.reading import VariableReader
from service.config.settings import IdentityProvider, Settings
from service.serving.policy_file import Policy
from service.serving.tracing import tracing_exporters


@dataclass(frozen=True)
class Configuration:
    settings: Settings
    policy: Policy
    #: True when the dev profile filled in clearly fake Twilio credentials.
    fake_credentials: bool = False

    @property
    def providers(self) -> tuple[IdentityProvider, ...]:
        """The identity providers of app users: ``OIDC_*``, or the policy's list."""
        if self.settings.oidc is not None:
            return (self.settings.oidc,)
        return self.policy.providers


def load_configuration(
    environ: Mapping[str, str], *, dotenv_file: Path = Path(".env")
) -> Configuration:
    """Read settings (and ``.env`` in dev) and the policy file; raise with every problem."""
    merged, fake = with_first_run_defaults(read_environment(environ, dotenv_file))
    problems: list[str] = []
    settings = policy = None
    try:
        settings = Settings.from_env(merged)
    except ConfigurationError as error:
        problems.extend(error.problems)
    # The same variable, read the same way, even when other settings are unusable.
    policy_file = settings.policy_file if settings else VariableReader(merged)(POLICY_FILE)
    try:
        policy = Policy.load(policy_file)
    except ConfigurationError as error:
        problems.extend(error.problems)
    if settings is not None and policy is not None:
        problems.extend(consistency_problems(settings, policy))
    try:
        tracing_exporters(merged)
    except ConfigurationError as error:
        problems.extend(error.problems)
    if problems or settings is None or policy is None:
        raise ConfigurationError(problems)
    return Configuration(settings=settings, policy=policy, fake_credentials=fake)


def consistency_problems(settings: Settings, policy: Policy) -> list[str]:
    """Grants the policy gives that the settings cannot fill in, and who signs users in."""
    problems = []
    if settings.oidc is not None and policy.providers:
        problems.append("set OIDC_ISSUER or the policy's [[providers]], not both")
    if settings.profile == "production" and settings.oidc is None and not policy.providers:
        problems.append(
            "OIDC_ISSUER (or [[providers]] in the policy) is required in production: callers "
            "must be authenticated by your identity provider (the development issuer exists "
            "only with BROKER_PROFILE=dev)"
        )
    attested = [rule.name for rule in policy.tokens.rules if rule.attestation != "none"]
    if attested and settings.appcheck is None:
        problems.append(
            f"policy rule {attested[0]!r} requires attestation: set APPCHECK_PROJECT_NUMBER "
            "and APPCHECK_APP_IDS (Firebase App Check)"
        )
    if policy.tokens.gives_voice_outgoing and not settings.twiml_app_sid:
        problems.append("policy gives outgoing voice, which needs TWILIO_TWIML_APP_SID")
    if policy.tokens.gives_chat and not settings.conversations_service_sid:
        problems.append("policy gives chat, which needs TWILIO_CONVERSATIONS_SERVICE_SID")
    return problems
