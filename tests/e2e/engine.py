"""A container engine for the tests: the ``docker`` and ``docker-compose`` commands, and
the image built from this checkout's Dockerfile.

The engine is the shared one (``container-engine.sh``): CI starts it (``.ci/run``); a
test session starts it when it is not running and this machine can, and stops what it
started. Without an engine the container tests skip, saying why; under ``CI=true``
they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests import support

IMAGE = "token-broker"
BASE_IMAGE = "python:3.11-slim-bookworm"
ENGINE_SCRIPT_VARIABLE = "CONTAINER_ENGINE_SCRIPT"
#: Where the shared script is on these machines, nearest first.
ENGINE_SCRIPTS = (
    support.ROOT.parent / "shared" / "tools" / "container-engine.sh",
    Path("/work/shared/tools/container-engine.sh"),
)
MB = 1_000_000
DOCKER = shutil.which("docker") or "docker"


class NoEngine(RuntimeError):
    """No container engine runs here, and none could be started: the reason."""


def docker(
    *args: str, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


def shell(image: str, script: str) -> str:
    """What ``sh -c script`` prints in a new container of ``image`` (then removed)."""
    return docker("run", "--rm", "--entrypoint", "sh", image, "-c", script).stdout


def engine_script() -> Path | None:
    named = os.environ.get(ENGINE_SCRIPT_VARIABLE)
    candidates = [Path(named)] if named else list(ENGINE_SCRIPTS)
    return next((path for path in candidates if path.is_file()), None)


def engine_running() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_engine() -> Path:
    """Start the shared engine; the script that started it (to stop it). ``NoEngine``
    says why when that cannot be done here."""
    script = engine_script()
    if script is None:
        raise NoEngine(
            "no docker engine runs and no container-engine.sh was found; set "
            + ENGINE_SCRIPT_VARIABLE
        )
    if os.geteuid() != 0:
        raise NoEngine(f"no docker engine runs, and {script} must run as root to start one")
    result = subprocess.run(
        [str(script), "start"], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0 or not engine_running():
        raise NoEngine(f"{script} start failed: {result.stderr[-2000:]}")
    return script


def stop_engine(script: Path) -> None:
    subprocess.run([str(script), "stop"], capture_output=True, timeout=300, check=False)


def image_size(name: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def build(context: Path, tag: str) -> str:
    """``docker build`` as the README says; its output (which steps came from cache)."""
    result = docker("build", "--network=host", "-t", tag, str(context), timeout=900)
    return result.stdout


@dataclass
class Container:
    """A container started by a test, removed (with its anonymous volumes) at the end."""

    name: str
    started: float

    def health(self) -> str:
        found = docker(
            "inspect", "--format", "{{json .State}}", self.name, check=False
        ).stdout.strip()
        state = json.loads(found) if found else {}
        if not state.get("Running", False):
            return "exited"
        return str(state.get("Health", {}).get("Status", "none"))

    def healthy_within(self, seconds: float) -> float:
        """Seconds from ``docker run`` to its HEALTHCHECK saying healthy (polled, never
        slept on); fails with the container's log past ``seconds``."""
        deadline = self.started + seconds
        while time.monotonic() < deadline:
            status = self.health()
            if status == "healthy":
                return time.monotonic() - self.started
            if status == "exited":
                break
            time.sleep(0.2)  # the polling interval, bounded by the deadline
        raise AssertionError(f"{self.name} is {self.health()} after {seconds} s:\n{self.logs()}")

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exit_code(self, within: float = 30.0) -> int:
        result = docker("wait", self.name, timeout=within)
        return int(result.stdout.strip())

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *command, check=check)

    def stop(self) -> float:
        """``docker stop`` (SIGTERM, then SIGKILL after 10 s); how long it took."""
        started = time.monotonic()
        docker("stop", "--time", "10", self.name, timeout=60)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False, timeout=60)


def run(name: str, image: str, *options: str, command: Sequence[str] = ()) -> Container:
    """``docker run -d`` ``image`` as ``name``."""
    started = time.monotonic()
    docker("run", "--detach", "--name", name, *options, image, *command)
    return Container(name, started)
