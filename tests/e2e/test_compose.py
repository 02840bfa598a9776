"""The compose file, brought up as shipped (with the settings its README section lists)
against the shipped policy: two brokers and Redis, healthy; a pause on one broker is
obeyed by the other; then taken down, volumes and all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import support
from tests.conftest import LeakWatch
from tests.e2e import engine
from tests.e2e.conftest import Image

COMPOSE_FILE = support.ROOT / "docker-compose.yml"
UID = 10001


@dataclass
class Project:
    name: str
    directory: Path
    ports: dict[str, int]
    issuer: str

    def compose(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        command = [
            shutil.which("docker-compose") or "docker-compose",
            "--file",
            str(COMPOSE_FILE),
            "--project-directory",
            str(self.directory),
            "--project-name",
            self.name,
            "--env-file",
            str(self.directory / ".env"),
            *args,
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"{' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def container(self, service: str) -> engine.Container:
        """The service's container (compose v1 names it PROJECT_SERVICE_1), its clock
        started now."""
        return engine.Container(f"{self.name}_{service}_1", started=time.monotonic())


def write_identity_provider(directory: Path, issuer: str, keys: support.Keys) -> Path:
    """A static identity provider: its discovery document and keys, as files."""
    root = directory / "idp"
    (root / ".well-known").mkdir(parents=True)
    (root / ".well-known" / "openid-configuration").write_text(
        json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/jwks.json"})
    )
    (root / "jwks.json").write_text(json.dumps(keys.jwks()))
    for path in (root, root / ".well-known"):
        path.chmod(0o755)
    return root


@pytest.fixture
def project(image: Image, tmp_path: Path, keys: support.Keys) -> Iterator[Project]:
    """The compose file up, as its README section says: .env and the secret's file."""
    tmp_path.chmod(0o755)
    idp_port = support.free_port()
    found = Project(
        name=f"tbcompose{os.getpid()}",
        directory=tmp_path,
        ports={"broker-1": support.free_port(), "broker-2": support.free_port()},
        issuer=f"http://127.0.0.1:{idp_port}",
    )
    settings = {
        "TWILIO_ACCOUNT_SID": support.ACCOUNT_SID,
        "TWILIO_API_KEY_SID": support.API_KEY_SID,
        "TWILIO_TWIML_APP_SID": support.TWIML_APP_SID,
        "TWILIO_CONVERSATIONS_SERVICE_SID": support.CONVERSATIONS_SID,
        "OIDC_ISSUER": found.issuer,
        "OIDC_AUDIENCE": support.AUDIENCE,
        "BROKER_1_PORT": str(found.ports["broker-1"]),
        "BROKER_2_PORT": str(found.ports["broker-2"]),
    }
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    secret = secrets / "twilio_api_key_secret"
    secret.write_text(support.API_KEY_SECRET + "\n")
    os.chown(secret, UID, UID)
    secret.chmod(0o400)
    idp = write_identity_provider(tmp_path, found.issuer, keys)
    sidecars: list[str] = []
    try:
        found.compose("up", "--detach")
        for service in ("broker-1", "broker-2"):
            # Each broker's own loopback holds the identity provider (a sidecar in its
            # network namespace): http on loopback is what OIDC_ISSUER allows.
            name = f"{found.name}-idp-{service}"
            engine.docker(
                "run",
                "--detach",
                "--name",
                name,
                "--network",
                f"container:{found.name}_{service}_1",
                "-v",
                f"{idp}:/srv:ro",
                "--entrypoint",
                "python",
                image.name,
                "-m",
                "http.server",
                str(idp_port),
                "--bind",
                "127.0.0.1",
                "--directory",
                "/srv",
            )
            sidecars.append(name)
        yield found
    finally:
        for name in sidecars:
            engine.docker("rm", "--force", name, check=False)
        found.compose("down", "--volumes", "--timeout", "10")


def token_from(project: Project, service: str, bearer: str) -> requests.Response:
    """POST /v1/tokens through the port compose publishes, as the proxy in front would."""
    return requests.post(
        f"http://127.0.0.1:{project.ports[service]}/v1/tokens",
        json=support.VIDEO,
        headers={
            "Authorization": f"Bearer {bearer}",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.7",
        },
        timeout=10,
    )


def test_compose_as_shipped_is_healthy_and_a_pause_is_obeyed_by_every_broker(
    project: Project, keys: support.Keys, leaks: LeakWatch
) -> None:
    for service in ("broker-1", "broker-2"):
        project.container(service).healthy_within(60.0)
    bearer = support.sign(
        support.caller_claims(iss=project.issuer), keys.rsa_private, "RS256", "rsa-1"
    )
    leaks.bearers.add(bearer)
    assert support.eventually(lambda: token_from(project, "broker-2", bearer).status_code == 200)
    project.compose("exec", "-T", "broker-1", "token-broker", "pause", "--reason", "compose test")
    paused = token_from(project, "broker-2", bearer)
    assert paused.status_code == 503
    assert paused.json()["code"] == "issuance_paused"
    project.compose("exec", "-T", "broker-2", "token-broker", "resume")
    resumed = token_from(project, "broker-1", bearer)
    assert resumed.status_code == 200, resumed.text
    leaks.issued.add(resumed.json()["token"])
    for service in ("broker-1", "broker-2"):
        leaks.check_text(project.container(service).logs())
