"""The container image, built from this checkout and run with the container engine: as
shipped it runs non-root, is healthy by its own HEALTHCHECK wherever the server
listens, keeps its state in its volume (also read-only), issues a real token, reads its
secret files or says exactly why not, and carries nothing but the package and policy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests

from tests import support
from tests.conftest import LeakWatch
from tests.e2e import engine
from tests.e2e.conftest import Image

ROOT = support.ROOT
DOCKERFILE = (ROOT / "Dockerfile").read_text()
#: The acceptance limits: size over the base image, seconds to healthy and to stop.
MAX_GROWTH_MB = 75
HEALTHY_WITHIN = 20.0
STOPS_WITHIN = 5.0
STATE = "/var/lib/token-broker"
UID = "10001"
#: What --read-only needs beside the state volume (the documented command).
TMPFS = "/tmp"  # noqa: S108  # inside the container: a tmpfs of its own


def _instruction(name: str) -> str:
    """The last value of a Dockerfile instruction, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.+)$", joined, re.MULTILINE)
    assert found, f"no {name} in the Dockerfile"
    return str(found[-1]).strip()


def _image_environment() -> dict[str, str]:
    pairs = re.findall(r"(\w+)=(\S+)", _instruction("ENV"))
    return {name: value for name, value in pairs if name != "PATH"}


def test_the_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything is left out unless listed after it
    assert not any(rule.startswith(("!.env", "!var", "!secrets", "!tests")) for rule in rules)


def test_the_entry_command_starts_and_its_healthcheck_finds_it(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """Without an engine too: the image's ENTRYPOINT and HEALTHCHECK commands, as such."""
    entrypoint = json.loads(_instruction("ENTRYPOINT"))
    healthcheck = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    image_env = _image_environment()
    assert image_env["BROKER_PROFILE"] == "production"
    port = support.free_port()
    environment = {
        **environ,
        **image_env,
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = subprocess.Popen(
        [*entrypoint, "--bind", f"127.0.0.1:{port}"],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The image asks PID 1; here the server's own PID stands in for it.
    probe = [*healthcheck[:-1], str(process.pid)]
    try:
        support.wait_until_healthy(f"http://127.0.0.1:{port}", process)
        check = subprocess.run(probe, env=environment, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "healthy"
    finally:
        support.stop_process(process)
    after = subprocess.run(probe, env=environment, capture_output=True, text=True, timeout=30)
    assert after.returncode == 1
    assert after.stdout.strip() == "unhealthy"


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- The image, built and run --------------------------------------------------------


def settings_file(directory: Path, **settings: str) -> Path:
    """The minimum settings (README "Deployment") as an --env-file, never as arguments."""
    found = {
        "TWILIO_ACCOUNT_SID": support.ACCOUNT_SID,
        "TWILIO_API_KEY_SID": support.API_KEY_SID,
        "TWILIO_API_KEY_SECRET": support.API_KEY_SECRET,
        "TWILIO_TWIML_APP_SID": support.TWIML_APP_SID,
        "TWILIO_CONVERSATIONS_SERVICE_SID": support.CONVERSATIONS_SID,
        "OIDC_ISSUER": support.ISSUER,
        "OIDC_AUDIENCE": support.AUDIENCE,
        **settings,
    }
    path = directory / f"settings-{len(list(directory.glob('settings-*')))}.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in found.items() if v))
    return path


def secret_file(directory: Path, *, owner: int, mode: int) -> Path:
    path = directory / f"secret-{owner}-{mode:o}"
    path.write_text(support.API_KEY_SECRET + "\n")
    os.chown(path, owner, owner)
    path.chmod(mode)
    return path


@dataclass
class Running:
    """The containers of this module, started together (their health checks overlap)."""

    default: engine.Container
    other_port: engine.Container
    tls: engine.Container
    read_only: engine.Container
    secret_file: engine.Container
    unreadable_secret: engine.Container
    no_tmpfs: engine.Container
    ports: dict[str, int]
    volume: str
    certfile: Path
    settings: Path


@pytest.fixture(scope="module")
def running(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("containers")
    directory.chmod(0o755)
    prefix = f"tb-test-{os.getpid()}"
    ports = {name: support.free_port() for name in ("default", "other_port", "tls", "read_only")}
    certfile, keyfile = support.self_signed_certificate(directory)
    for path in (certfile, keyfile):
        os.chown(path, int(UID), int(UID))
    secret_settings = settings_file(
        directory, TWILIO_API_KEY_SECRET="", TWILIO_API_KEY_SECRET_FILE="/run/secrets/secret"
    )
    plain = settings_file(directory)
    volume = f"{prefix}-state"
    started: list[engine.Container] = []

    def run(role: str, *options: str, command: tuple[str, ...] = ()) -> engine.Container:
        container = engine.run(f"{prefix}-{role}", image.name, *options, command=command)
        started.append(container)
        return container

    try:
        found = Running(
            default=run(
                "default", "--env-file", str(plain), "-p", f"127.0.0.1:{ports['default']}:8000"
            ),
            other_port=run(
                "other-port",
                "--env-file",
                str(plain),
                "-p",
                f"127.0.0.1:{ports['other_port']}:9000",
                command=("--bind", "0.0.0.0:9000"),
            ),
            tls=run(
                "tls",
                "--env-file",
                str(plain),
                "-p",
                f"127.0.0.1:{ports['tls']}:8000",
                "-v",
                f"{directory}:/certs:ro",
                command=(
                    "--certfile",
                    f"/certs/{certfile.name}",
                    "--keyfile",
                    f"/certs/{keyfile.name}",
                ),
            ),
            read_only=run(
                "read-only",
                "--env-file",
                str(plain),
                "--read-only",
                "--tmpfs",
                TMPFS,
                "-v",
                f"{volume}:{STATE}",
                "-p",
                f"127.0.0.1:{ports['read_only']}:8000",
            ),
            secret_file=run(
                "secret",
                "--env-file",
                str(secret_settings),
                "-v",
                f"{secret_file(directory, owner=int(UID), mode=0o400)}:/run/secrets/secret:ro",
            ),
            unreadable_secret=run(
                "unreadable",
                "--env-file",
                str(secret_settings),
                "-v",
                f"{secret_file(directory, owner=0, mode=0o600)}:/run/secrets/secret:ro",
            ),
            no_tmpfs=run("no-tmpfs", "--env-file", str(plain), "--read-only"),
            ports=ports,
            volume=volume,
            certfile=certfile,
            settings=plain,
        )
        yield found
    finally:
        for container in started:
            container.remove()
        engine.docker("volume", "rm", "--force", volume, check=False)


def test_the_image_is_small_and_carries_nothing_but_the_package(
    image: Image, capsys: pytest.CaptureFixture[str]
) -> None:
    growth = (image.size - image.base_size) / engine.MB
    with capsys.disabled():  # the numbers the README quotes, in the test output
        print(
            f"\nimage {image.size / engine.MB:.1f} MB, base {image.base_size / engine.MB:.1f} "
            f"MB, growth {growth:.1f} MB (at most {MAX_GROWTH_MB}); built in "
            f"{image.build_seconds:.0f} s"
        )
    assert growth <= MAX_GROWTH_MB
    inside = engine.shell(
        image.name,
        "id -u; id -g; ls -A /app; "
        "python -c 'import pip' 2>/dev/null && echo pip; "
        "python -c 'import setuptools' 2>/dev/null && echo setuptools; "
        "for p in /src /opt/tools /wheels /app/.env /.git /app/.git; do "
        "[ -e $p ] && echo $p; done; "
        "ls /opt/venv/lib/python3.11/site-packages | grep -x -e tests -e service; "
        "test -w /app/policy.toml && echo writable; token-broker --help >/dev/null && echo runs",
    ).split()
    assert inside == [UID, UID, "policy.toml", "service", "runs"]
    # twilio's REST domains the broker and its commands call are there; the rest are not.
    domains = engine.shell(
        image.name,
        "python -c \"from twilio.rest import Client; c = Client('AC' + '0' * 32, 'x'); "
        "c.api.v2010; c.voice.v1; c.monitor.v1; c.taskrouter.v1; c.video.v1; print('used')\"; "
        "python -c 'import twilio.rest.messaging' 2>/dev/null || echo unused-gone",
    ).split()
    assert domains == ["used", "unused-gone"]


def test_every_package_in_the_image_is_a_pinned_version(image: Image) -> None:
    pins = {
        name.lower().replace("_", "-"): version
        for name, _, version in (
            line.partition("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
        )
    }
    listed = engine.shell(
        image.name, "ls /opt/venv/lib/python3.11/site-packages | grep '\\.dist-info$'"
    ).split()
    installed = {
        name.lower().replace("_", "-").replace(".", "-"): version
        for name, version in (entry.removesuffix(".dist-info").rsplit("-", 1) for entry in listed)
    }
    pins = {name.replace(".", "-"): version for name, version in pins.items()}
    assert installed.pop("token-broker") == "0.1.0"
    unpinned = {name: v for name, v in installed.items() if pins.get(name) != v}
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"


def test_healthy_on_the_default_bind_and_stops_on_sigterm(running: Running) -> None:
    seconds = running.default.healthy_within(HEALTHY_WITHIN)
    answer = requests.get(f"http://127.0.0.1:{running.ports['default']}/healthz", timeout=5)
    assert answer.status_code == 200
    stopped = running.default.stop()
    print(f"\nhealthy after {seconds:.1f} s; stopped {stopped:.1f} s after SIGTERM")
    assert stopped <= STOPS_WITHIN
    assert running.default.exit_code() == 0


def test_healthy_on_another_port(running: Running) -> None:
    running.other_port.healthy_within(HEALTHY_WITHIN)
    answer = requests.get(f"http://127.0.0.1:{running.ports['other_port']}/healthz", timeout=5)
    assert answer.status_code == 200


def test_healthy_with_tls_at_the_server(running: Running) -> None:
    running.tls.healthy_within(HEALTHY_WITHIN)
    with pytest.raises(requests.ConnectionError):  # it speaks TLS only
        requests.get(f"http://127.0.0.1:{running.ports['tls']}/healthz", timeout=5)
    answer = requests.get(
        f"https://127.0.0.1:{running.ports['tls']}/healthz",
        timeout=5,
        verify=str(running.certfile),  # the test's certificate, for 127.0.0.1
    )
    assert answer.status_code == 200


def test_read_only_with_the_state_volume_keeps_state(running: Running, image: Image) -> None:
    running.read_only.healthy_within(HEALTHY_WITHIN)
    running.read_only.exec("token-broker", "pause", "--reason", "state survives")
    running.read_only.remove()
    again = engine.run(
        f"{running.read_only.name}-again",
        image.name,
        "--env-file",
        str(running.settings),
        "--read-only",
        "--tmpfs",
        TMPFS,
        "-v",
        f"{running.volume}:{STATE}",
        "--entrypoint",
        "token-broker",
        command=("audit", "--decision", "paused"),
    )
    try:
        assert again.exit_code() == 0, again.logs()
        assert "state survives" in again.logs()  # the new container reads the old one's state
    finally:
        again.remove()


def test_read_only_without_a_tmpfs_says_what_to_add(running: Running) -> None:
    assert running.no_tmpfs.exit_code() == 2
    assert "add --tmpfs /tmp" in running.no_tmpfs.logs()


def test_a_secret_file_the_image_user_owns_works_and_an_unreadable_one_is_named(
    running: Running,
) -> None:
    running.secret_file.healthy_within(HEALTHY_WITHIN)
    assert running.unreadable_secret.exit_code() == 2
    logs = running.unreadable_secret.logs()
    assert "TWILIO_API_KEY_SECRET_FILE names a file that cannot be read: permission denied" in logs
    assert "uid 10001" in logs
    assert "is required" not in logs  # it was given: it is unreadable, not missing
    assert support.API_KEY_SECRET not in logs


def test_a_real_token_end_to_end(
    image: Image, keys: support.Keys, tmp_path: Path, leaks: LeakWatch
) -> None:
    """The host's network: the JWKS on loopback is the container's loopback too."""
    tmp_path.chmod(0o755)
    port = support.free_port()
    with support.serve_jwks(keys.jwks()) as jwks:
        settings = settings_file(tmp_path, OIDC_JWKS_URL=jwks.url)
        container = engine.run(
            f"tb-test-{os.getpid()}-token",
            image.name,
            "--network",
            "host",
            "--env-file",
            str(settings),
            command=("--bind", f"127.0.0.1:{port}"),
        )
        try:
            container.healthy_within(HEALTHY_WITHIN)
            bearer = support.sign(support.caller_claims(), keys.rsa_private, "RS256", "rsa-1")
            leaks.bearers.add(bearer)
            response = requests.post(
                f"http://127.0.0.1:{port}/v1/tokens",
                json=support.VIDEO,
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            token = response.json()["token"]
            leaks.issued.add(token)
            claims = jwt.decode(token, support.API_KEY_SECRET, algorithms=["HS256"])
            assert claims["grants"] == {"identity": "alice", "video": {"room": "lobby"}}
            leaks.check_text(container.logs())
        finally:
            container.remove()


def test_a_rebuild_after_a_source_change_reuses_the_dependency_layer(
    image: Image, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for name in (
        "Dockerfile",
        ".dockerignore",
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "policy.toml",
    ):
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(
        ROOT / "service", context / "service", ignore=shutil.ignore_patterns("__pycache__")
    )
    tag = f"{image.name}-rebuild-{os.getpid()}"
    try:
        engine.build(context, tag)
        init = context / "service" / "__init__.py"
        # a change never built before (the engine's build cache outlives test runs)
        init.write_text(init.read_text() + f"# a change to the source: {uuid.uuid4()}\n")
        output = engine.build(context, tag)
    finally:
        engine.docker("image", "rm", "--force", tag, check=False)
    steps = re.split(r"\nStep \d+/\d+ : ", output)
    dependencies = next(step for step in steps if "--requirement requirements.txt" in step)
    source = next(step for step in steps if step.startswith("COPY service"))
    assert "Using cache" in dependencies
    assert "Using cache" not in source
