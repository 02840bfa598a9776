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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
    #: the audit trail's database, when not the state store
    audit_url: str | None = None


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
    if profile.audit_url:
        environment["BROKER_AUDIT_URL"] = profile.audit_url
    command = [str(Path(sys.executable).parent / "token-broker"), "serve"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(profile.workers)]
    log_file = work / f"server-{profile.name}-{port}.log"
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


def scale_out(
    arguments: argparse.Namespace, wrk: str, work: Path, jwks_url: str, script: Path, redis_url: str
) -> None:
    """One instance against two (two workers each) on one Redis, under the same total
    connections from two wrk processes: the aggregate, and each instance's p99."""
    profile = Profile("redis", 2, redis_url, 0.5, None)
    first, first_url, _ = start(profile, work, jwks_url)
    second, second_url, _ = start(profile, work, jwks_url)
    half = max(1, arguments.scale_connections // 2)
    rows: list[tuple[int, str, list[Result]]] = []
    try:
        for url in (first_url, second_url):  # warm-up
            run_wrk(wrk, f"{url}/v1/tokens", 2, half, script)
        for number in range(1, arguments.rounds + 1):
            for label, targets in (
                ("1 instance", [first_url] * 2),
                ("2 instances", [first_url, second_url]),
            ):
                with ThreadPoolExecutor(max_workers=2) as pool:
                    found = list(
                        pool.map(
                            lambda url: run_wrk(
                                wrk, f"{url}/v1/tokens", arguments.seconds, half, script
                            ),
                            targets,
                        )
                    )
                rows.append((number, label, found))
    finally:
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(
        f"\n== scale-out on one Redis: {arguments.scale_connections} connections in all, "
        f"two wrk processes; {os.cpu_count()} cores shared by wrk, Redis and every worker"
    )
    print(f"{'round':<7}{'brokers':<13}{'tokens/s':>10}{'p99 ms (each wrk)':>22}")
    totals: dict[str, list[float]] = {}
    for number, label, found in rows:
        total = sum(result["rps"] for result in found)
        totals.setdefault(label, []).append(total)
        p99s = ", ".join(f"{result['p99_ms']:.1f}" for result in found)
        print(f"{number:<7}{label:<13}{total:>10.0f}{p99s:>22}")
    one, two = (statistics.median(totals[label]) for label in ("1 instance", "2 instances"))
    print(f"two instances / one: {two / one:.2f} (target >= 1.6 where the cores allow)")


def sink_cost(results: list[Measured]) -> None:
    """What the PostgreSQL trail adds to a token at p50, against the Redis stream."""
    by_name = {(m.profile.name, m.connections): m for m in results}
    for connections in sorted({m.connections for m in results}):
        stream, database = (
            by_name.get(("redis", connections)),
            by_name.get(("redis+pg", connections)),
        )
        if stream is None or database is None:
            continue
        cost = database.median(1, "p50_ms") - stream.median(1, "p50_ms")
        print(
            f"audit sink at {connections} connections: PostgreSQL p50 "
            f"{database.median(1, 'p50_ms'):.2f} ms, Redis stream p50 "
            f"{stream.median(1, 'p50_ms'):.2f} ms: {cost:+.2f} ms a token (target <= 0.3)"
        )


@contextmanager
def bench_database() -> Iterator[str | None]:
    """A database of the bench's own on the local PostgreSQL, or None without one."""
    import psycopg  # only for the bench's own database

    admin_url = os.environ.get("BROKER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
    name = f"token_broker_bench_{os.getpid()}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        print(f"bench: no PostgreSQL at {admin_url}: the audit sink is not measured")
        yield None
        return
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--connections", type=lambda text: [int(n) for n in text.split(",")], default=[2, 64]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profiles",
        default="sqlite,redis,redis+pg,scale-out",
        help="any of sqlite, redis, redis+pg (the audit trail in PostgreSQL), scale-out",
    )
    parser.add_argument("--scale-connections", type=int, default=64)
    arguments = parser.parse_args()
    wrk = ensure_wrk()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks_document = {"keys": [{**public_jwk, "kid": "bench", "alg": "RS256"}]}
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600}
    caller = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})

    results: list[Measured] = []
    chosen = arguments.profiles.split(",")
    with (
        tempfile.TemporaryDirectory() as directory,
        serve_jwks(jwks_document) as jwks,
        bench_database() as audit_url,
    ):
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
        if "sqlite" in chosen:
            profiles.append(Profile("sqlite", 1, f"sqlite:///{work}/state.sqlite3", 0.6, 5.0))
        redis.start()
        if "redis" in chosen:
            profiles.append(Profile("redis", 2, redis.url, 0.5, None))
        if "redis+pg" in chosen and audit_url is not None:
            profiles.append(Profile("redis+pg", 2, redis.url, 0.5, None, audit_url=audit_url))
        try:
            for profile in profiles:
                for measured in measure(profile, arguments, wrk, work, jwks.url, script):
                    report(measured)
                    results.append(measured)
            if "scale-out" in chosen:
                scale_out(arguments, wrk, work, jwks.url, script, redis.url)
        finally:
            redis.stop()
    summary(results)
    sink_cost(results)


if __name__ == "__main__":
    main()
