"""``token-broker healthcheck``: finds the server where it listens, TLS included."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.serving.probe import answers, healthcheck, listening
from tests import support


@pytest.fixture
def sleeper() -> Iterator[Callable[..., int]]:
    """A process whose command line looks like ``token-broker serve ARGS``; its PID."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*arguments: str) -> int:
        # Not a wait: a process that stands still to be looked at, stopped below by its PID.
        script = "import time; time.sleep(60)"
        process = subprocess.Popen([sys.executable, "-c", script, "serve", *arguments])
        started.append(process)
        # Until the child has exec'd, /proc shows the parent's command line: wait for ours.
        cmdline = Path(f"/proc/{process.pid}/cmdline")
        assert support.eventually(lambda: b"serve" in cmdline.read_bytes().split(b"\0"))
        return process.pid

    yield start
    for process in started:
        support.stop_process(process)


def test_listening_reads_the_serve_flags(sleeper: Callable[..., int]) -> None:
    pid = sleeper("--workers", "2", "--bind", "0.0.0.0:9000", "--certfile=/c.pem")
    assert listening(pid, "0.0.0.0:8000", False) == ("0.0.0.0:9000", True)
    plain = sleeper("--workers", "2")
    assert listening(plain, "0.0.0.0:8000", False) == ("0.0.0.0:8000", False)


def test_listening_falls_back_when_the_pid_is_not_serve() -> None:
    assert listening(1 << 30, "127.0.0.1:8000", False) == ("127.0.0.1:8000", False)
    self_pid = int(Path("/proc/self/stat").read_text().split()[0])
    assert listening(self_pid, "127.0.0.1:8000", True) == ("127.0.0.1:8000", True)


def test_answers_over_tls_on_a_bind_all_address(tmp_path: Path, environ: dict[str, str]) -> None:
    certfile, keyfile = support.self_signed_certificate(tmp_path)
    server = support.start_broker(
        environ,
        tmp_path,
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        context=ssl.create_default_context(cafile=str(certfile)),
    )
    try:
        port = server.url.rsplit(":", 1)[1]
        assert answers(f"0.0.0.0:{port}", tls=True)
        assert not answers(f"0.0.0.0:{port}", tls=False)
        result = CliRunner().invoke(healthcheck, ["--bind", f"[::]:{port}", "--tls"])
        assert result.output.strip() == "unhealthy"  # it listens on IPv4 loopback only
        assert result.exit_code == 1
    finally:
        support.stop_broker(server)


def test_the_executable_imports_nothing_before_gevent_patches() -> None:
    """``token-broker serve`` patches the standard library before ssl, sockets or locks are
    imported; the light ``healthcheck`` imports none of the broker."""
    script = (
        "import sys, service; "
        "print(sorted(m for m in ('ssl', 'jwt', 'service.cli', 'flask') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
