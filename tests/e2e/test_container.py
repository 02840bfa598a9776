"""The container image: its Dockerfile and its entry command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests import support

ROOT = support.ROOT


DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    """The last value of a Dockerfile instruction, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.+)$", joined, re.MULTILINE)
    assert found, f"no {name} in the Dockerfile"
    return str(found[-1]).strip()


def _image_environment() -> dict[str, str]:
    pairs = re.findall(r"(\w+)=(\S+)", _instruction("ENV"))
    return {name: value for name, value in pairs if name != "PATH"}


def test_image_shape() -> None:
    assert DOCKERFILE.count("\nFROM ") + DOCKERFILE.startswith("FROM ") >= 2  # multi-stage
    assert "-slim" in _instruction("FROM")
    assert _instruction("USER") not in ("root", "0")
    assert "--constraint constraints.txt" in DOCKERFILE
    assert ".env" not in DOCKERFILE
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything is left out unless listed after it
    assert not any(rule.startswith(("!.env", "!var", "!secrets")) for rule in rules)


def test_the_entry_command_starts_and_answers_healthz(
    environ: dict[str, str], tmp_path: Path
) -> None:
    entrypoint = json.loads(_instruction("ENTRYPOINT"))
    healthcheck = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1])
    image_env = _image_environment()
    assert image_env["BROKER_PROFILE"] == "production"
    port = support.free_port()
    environment = {
        **environ,
        **image_env,
        "BROKER_BIND": f"127.0.0.1:{port}",  # the image binds 0.0.0.0:8000; here a free port
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    process = subprocess.Popen(
        entrypoint,
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        support.wait_until_healthy(f"http://127.0.0.1:{port}", process)
        check = subprocess.run(
            healthcheck, env=environment, capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "healthy"
    finally:
        process.terminate()
        process.wait(timeout=15)
    after = subprocess.run(healthcheck, env=environment, capture_output=True, text=True, timeout=30)
    assert after.returncode == 1
    assert after.stdout.strip() == "unhealthy"


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
