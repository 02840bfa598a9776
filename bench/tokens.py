"""Benchmark: POST /v1/tokens against GET /healthz on the same gunicorn server, one run.

The broker runs with the embedded defaults (development profile, fake Twilio
credentials) plus an OIDC issuer on loopback, so that the caller presents a real RS256
token verified against a real JWKS endpoint. For each profile (SQLite with one worker,
Redis with two) and each number of connections, wrk drives both endpoints in turn,
alternating rounds so that machine noise falls on both alike; the ratio of the two
throughputs is what to compare between machines, not the absolutes. Each worker's
resident memory is read from /proc after the load.
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
Result = dict[str, float]


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


def run_wrk(wrk: str, url: str, seconds: int, connections: int, script: Path | None) -> Result:
    threads = 1 if connections <= 2 else 2
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
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
    target_p99_ms: float | None  # at 2 connections


@dataclass
class Measured:
    profile: Profile
    connections: int
    rounds: list[tuple[Result, Result]]
    worker_rss_mb: list[float]
    issued_lines: int = 0
    received: int = 0

    @property
    def ratio(self) -> float:
        return statistics.median(tokens["rps"] / healthz["rps"] for healthz, tokens in self.rounds)

    def median(self, endpoint: int, name: str) -> float:
        return statistics.median(round_[endpoint][name] for round_ in self.rounds)

    @property
    def worst_p99(self) -> float:
        return max(tokens["p99_ms"] for _, tokens in self.rounds)


def worker_rss_mb(master: int) -> list[float]:
    """Resident memory of each worker (the master's children), in MB."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    sizes = []
    for child in children:
        status = Path(f"/proc/{child}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        if found:
            sizes.append(int(found.group(1)) / 1024)
    return sizes


def start(profile: Profile, work: Path, jwks_url: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "BROKER_PROFILE": "dev",
        "BROKER_STATE_URL": profile.state_url,
        "BROKER_POLICY_FILE": str(work / "policy.toml"),
        "OIDC_ISSUER": ISSUER,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_JWKS_URL": jwks_url,
    }
    command = [str(Path(sys.executable).parent / "token-broker"), "serve"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(profile.workers)]
    log_file = work / f"server-{profile.name}.log"
    # Output to a pipe, as under a container runtime or systemd, drained by `cat`.
    with log_file.open("ab") as log:
        drain = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=log)
    process = subprocess.Popen(
        command, env=environment, cwd=work, stdout=drain.stdin, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process)
    return process, url, log_file


def measure(
    profile: Profile,
    arguments: argparse.Namespace,
    wrk: str,
    work: Path,
    jwks_url: str,
    script: Path,
) -> list[Measured]:
    process, url, log_file = start(profile, work, jwks_url)
    results = []
    received = 0
    try:
        for connections in arguments.connections:
            run_wrk(wrk, f"{url}/healthz", 2, connections, None)  # warm-up
            received += int(run_wrk(wrk, f"{url}/v1/tokens", 2, connections, script)["requests"])
            rounds = []
            for _ in range(arguments.rounds):
                healthz = run_wrk(wrk, f"{url}/healthz", arguments.seconds, connections, None)
                tokens = run_wrk(wrk, f"{url}/v1/tokens", arguments.seconds, connections, script)
                received += int(tokens["requests"])
                rounds.append((healthz, tokens))
            results.append(Measured(profile, connections, rounds, worker_rss_mb(process.pid)))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    time.sleep(0.5)  # let `cat` write out what the server said last (the count below)
    issued = log_file.read_text(errors="replace").count('"decision": "issued"')
    results[-1].issued_lines, results[-1].received = issued, received
    return results


def report(measured: Measured) -> None:
    print(
        f"\n== {measured.profile.name}: workers={measured.profile.workers} "
        f"connections={measured.connections} rounds={len(measured.rounds)}"
    )
    print(f"{'round':<7}{'endpoint':<17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for number, (healthz, tokens) in enumerate(measured.rounds, start=1):
        for name, result, shown in (
            ("GET /healthz", healthz, ""),
            ("POST /v1/tokens", tokens, f"{tokens['rps'] / healthz['rps']:.2f}"),
        ):
            print(
                f"{number:<7}{name:<17}{result['rps']:>9.0f}{result['p50_ms']:>9.2f}"
                f"{result['p99_ms']:>9.2f}{shown:>8}"
            )
    rss = ", ".join(f"{size:.0f}" for size in measured.worker_rss_mb)
    print(f"worker RSS MB: {rss}")
    if measured.received:
        print(
            f"audit lines for issued tokens: {measured.issued_lines} "
            f"(tokens received by wrk: {measured.received})"
        )


def summary(results: list[Measured]) -> None:
    print(
        f"\n{'profile':<8}{'conns':>6}{'tokens/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'healthz/s':>11}{'ratio':>7}{'RSS MB':>8}  targets"
    )
    for measured in results:
        profile = measured.profile
        rss = max(measured.worker_rss_mb) if measured.worker_rss_mb else float("nan")
        targets = [f"ratio >= {profile.target_ratio}", "RSS <= 60 MB"]
        met = measured.ratio >= profile.target_ratio and rss <= 60
        if profile.target_p99_ms is not None and measured.connections == 2:
            targets.append(f"p99 <= {profile.target_p99_ms:.0f} ms")
            met = met and measured.worst_p99 <= profile.target_p99_ms
        print(
            f"{profile.name:<8}{measured.connections:>6}{measured.median(1, 'rps'):>10.0f}"
            f"{measured.median(1, 'p50_ms'):>8.2f}{measured.worst_p99:>8.2f}"
            f"{measured.median(0, 'rps'):>11.0f}{measured.ratio:>7.2f}{rss:>8.0f}  "
            f"{'met' if met else 'MISSED'} ({', '.join(targets)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--connections", type=lambda text: [int(n) for n in text.split(",")], default=[2, 64]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profiles", default="sqlite,redis", help="sqlite, redis or both")
    arguments = parser.parse_args()
    wrk = ensure_wrk()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks_document = {"keys": [{**public_jwk, "kid": "bench", "alg": "RS256"}]}
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600}
    caller = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})

    results: list[Measured] = []
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
            profiles.append(Profile("redis", 2, redis.url, 0.5, None))
        try:
            for profile in profiles:
                for measured in measure(profile, arguments, wrk, work, jwks.url, script):
                    report(measured)
                    results.append(measured)
        finally:
            redis.stop()
    summary(results)


if __name__ == "__main__":
    main()
