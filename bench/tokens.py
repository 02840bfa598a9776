"""Benchmark: POST /v1/tokens against GET /healthz on the same gunicorn server, one run.

The broker runs with the embedded defaults (development profile, fake Twilio
credentials) plus an OIDC issuer on loopback, so that the caller presents a real RS256
token verified against a real JWKS endpoint. wrk drives both endpoints in turn; the
ratio of the two throughputs is what to compare between machines, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the loopback JWKS server and polling helpers of the tests

from tests.support import RedisServer, free_port, serve_jwks, wait_until_healthy  # noqa: E402  # needs ROOT on sys.path

ISSUER = "https://bench.example.test/"
AUDIENCE = "token-broker-bench"
BENCH_LIMITS = """[limits]
per_identity = "100000000/minute"
per_ip = "100000000/minute"
global = "100000000/minute"
auth_failures_per_ip = "100000000/minute"
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("bench: wrk is needed (apt-get install wrk)")
    return found


def run_wrk(
    wrk: str, url: str, seconds: int, connections: int, script: Path | None
) -> dict[str, float]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        sys.exit(f"bench: some responses were not 200:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]  # wrk always prints it
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]  # wrk always prints it
    return {
        "requests": requests,
        "rps": rate,
        "p50_ms": _latency(output, "50%"),
        "p99_ms": _latency(output, "99%"),
    }


def _latency(output: str, percentile: str) -> float:
    found = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output)
    if found is None:
        return float("nan")
    value, unit = float(found.group(1)), found.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


@dataclass(frozen=True)
class Profile:
    name: str
    workers: int
    state_url: str
    target_ratio: float
    target_p99_ms: float


def measure(
    profile: Profile,
    arguments: argparse.Namespace,
    wrk: str,
    work: Path,
    jwks_url: str,
    script: Path,
) -> tuple[list[tuple[dict[str, float], dict[str, float]]], int, float]:
    """Rounds of (healthz, tokens) results, audit lines of issued tokens, tokens received."""
    seconds, connections = arguments.seconds, arguments.connections
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "BROKER_PROFILE": "dev",
        "BROKER_STATE_URL": profile.state_url,
        "BROKER_POLICY_FILE": str(work / "policy.toml"),
        "OIDC_ISSUER": ISSUER,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_JWKS_URL": jwks_url,
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "token-broker"),
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(profile.workers),
        ],
        env=environment,
        cwd=work,
        # A pipe, as under a container runtime or systemd, drained by `cat`.
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log_file = work / f"server-{profile.name}.log"
    with log_file.open("wb") as log:
        drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=log)
    try:
        wait_until_healthy(url, process)
        run_wrk(wrk, f"{url}/healthz", 2, connections, None)  # warm-up
        warm_up = run_wrk(wrk, f"{url}/v1/tokens", 2, connections, script)
        rounds = []
        for _ in range(arguments.rounds):
            # Alternate the endpoints so that machine noise falls on both alike.
            healthz = run_wrk(wrk, f"{url}/healthz", seconds, connections, None)
            tokens = run_wrk(wrk, f"{url}/v1/tokens", seconds, connections, script)
            rounds.append((healthz, tokens))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        drain.wait(timeout=15)
    issued_lines = log_file.read_text(errors="replace").count('"decision": "issued"')
    received = warm_up["requests"] + sum(tokens["requests"] for _, tokens in rounds)
    return rounds, issued_lines, received


def report(
    profile: Profile,
    rounds: list[tuple[dict[str, float], dict[str, float]]],
    issued_lines: int,
    received: float,
    arguments: argparse.Namespace,
) -> tuple[float, float, bool]:
    print(
        f"\n== {profile.name}: workers={profile.workers} "
        f"connections={arguments.connections} seconds={arguments.seconds} rounds={arguments.rounds}"
    )
    print(f"{'round':<7}{'endpoint':<17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    ratios = []
    for number, (healthz, tokens) in enumerate(rounds, start=1):
        ratio = tokens["rps"] / healthz["rps"]
        ratios.append(ratio)
        for name, result, shown in (
            ("GET /healthz", healthz, ""),
            ("POST /v1/tokens", tokens, f"{ratio:.2f}"),
        ):
            print(
                f"{number:<7}{name:<17}{result['rps']:>9.0f}{result['p50_ms']:>9.2f}"
                f"{result['p99_ms']:>9.2f}{shown:>8}"
            )
    print(f"audit lines for issued tokens: {issued_lines} (tokens received by wrk: {received:.0f})")
    median_ratio = statistics.median(ratios)
    worst_p99 = max(tokens["p99_ms"] for _, tokens in rounds)
    met = median_ratio >= profile.target_ratio and worst_p99 <= profile.target_p99_ms
    return median_ratio, worst_p99, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profiles", default="sqlite,redis", help="sqlite, redis or both")
    arguments = parser.parse_args()
    wrk = ensure_wrk()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks_document = {"keys": [{**public_jwk, "kid": "bench", "alg": "RS256"}]}
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600}
    caller = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})

    summary = []
    with tempfile.TemporaryDirectory() as directory, serve_jwks(jwks_document) as jwks:
        work = Path(directory)
        # The shipped policy, with budgets too large to bind: limits are checked, not hit.
        policy = (ROOT / "policy.toml").read_text().split("[limits]")[0]
        (work / "policy.toml").write_text(policy + BENCH_LIMITS)
        script = work / "tokens.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.body = \'{"grants": {"video": {"room": "lobby"}}}\'\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {caller}"\n'
        )
        redis = RedisServer(free_port(), directory)
        profiles = []
        if "sqlite" in arguments.profiles:
            profiles.append(Profile("sqlite", 1, f"sqlite:///{work}/state.sqlite3", 0.6, 5.0))
        if "redis" in arguments.profiles:
            redis.start()
            profiles.append(Profile("redis", 2, redis.url, 0.5, 10.0))
        try:
            for profile in profiles:
                rounds, issued_lines, received = measure(
                    profile, arguments, wrk, work, jwks.url, script
                )
                summary.append(
                    (profile, *report(profile, rounds, issued_lines, received, arguments))
                )
        finally:
            redis.stop()

    print(f"\n{'profile':<9}{'median ratio':>14}{'worst p99 ms':>14}  targets")
    for profile, ratio, p99, met in summary:
        targets = f">= {profile.target_ratio}x, <= {profile.target_p99_ms:.0f} ms"
        print(
            f"{profile.name:<9}{ratio:>14.2f}{p99:>14.2f}  {'met' if met else 'MISSED'} ({targets})"
        )


if __name__ == "__main__":
    main()
