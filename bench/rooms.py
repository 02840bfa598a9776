"""Benchmark: a token for a provisioned room the broker knows against a token for a room
without provision, on the same gunicorn server (SQLite, one worker), in one run.

Twilio's REST API is the tests' emulator on loopback (the first token for the room
creates it there; every later one finds it known). wrk drives both bodies in turn,
alternating rounds so that noise falls on both alike; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the emulator, the JWKS server and wrk's runner

from tokens import AUDIENCE, BENCH_LIMITS, ISSUER, ensure_wrk, run_wrk  # noqa: E402  # bench/tokens.py, beside this file

from tests import support  # noqa: E402  # needs ROOT on sys.path
from tests.fake_twilio import serve_fake_twilio  # noqa: E402  # needs ROOT on sys.path

POLICY = """
[[rules]]
name = "everyone"
match = {}
video = { rooms = ["lobby"] }

[[rules]]
name = "standups"
match = {}
video = { rooms = ["standup-*"], provision = { max_participants = 4, """ + (
    "max_participant_duration = 3600, empty_room_timeout = 5, unused_room_timeout = 5 } }\n"
)


def script(work: Path, name: str, room: str, caller: str) -> Path:
    path = work / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps({'grants': {'video': {'room': room}}})}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {caller}"\n'
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    wrk = ensure_wrk()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_document = {
        "keys": [{**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "bench"}]
    }
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 3600}
    caller = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})
    with (
        tempfile.TemporaryDirectory() as directory,
        support.serve_jwks(jwks_document) as jwks,
        serve_fake_twilio() as twilio,
    ):
        work = Path(directory)
        (work / "policy.toml").write_text(POLICY + BENCH_LIMITS)
        port = support.free_port()
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "BROKER_PROFILE": "dev",
            "BROKER_STATE_URL": f"sqlite:///{work}/state.sqlite3",
            "BROKER_POLICY_FILE": str(work / "policy.toml"),
            "OIDC_ISSUER": ISSUER,
            "OIDC_AUDIENCE": AUDIENCE,
            "OIDC_JWKS_URL": jwks.url,
            "TWILIO_ACCOUNT_SID": support.ACCOUNT_SID,
            "TWILIO_API_KEY_SID": support.API_KEY_SID,
            "TWILIO_API_KEY_SECRET": support.API_KEY_SECRET,
            "TWILIO_API_BASE_URL": twilio.url,
        }
        command = [str(Path(sys.executable).parent / "token-broker"), "serve"]
        command += ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
        with (work / "server.log").open("ab") as log:
            process = subprocess.Popen(command, env=environment, cwd=work, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            support.wait_until_healthy(url, process)
            plain = script(work, "plain", "lobby", caller)
            provisioned = script(work, "provisioned", "standup-1", caller)
            first = urllib.request.Request(
                f"{url}/v1/tokens",
                data=b'{"grants": {"video": {"room": "standup-1"}}}',
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {caller}"},
            )
            with urllib.request.urlopen(first, timeout=10) as answer:  # loopback
                if answer.status != 200:
                    sys.exit(f"bench: the first token for the room: HTTP {answer.status}")
            created = twilio.count("POST /v1/Rooms")
            for body in (plain, provisioned):  # warm-up
                run_wrk(wrk, f"{url}/v1/tokens", 2, arguments.connections, body)
            print(f"{'round':<7}{'room':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
            ratios = []
            for number in range(1, arguments.rounds + 1):
                a = run_wrk(
                    wrk, f"{url}/v1/tokens", arguments.seconds, arguments.connections, plain
                )
                b = run_wrk(
                    wrk, f"{url}/v1/tokens", arguments.seconds, arguments.connections, provisioned
                )
                ratios.append(b["rps"] / a["rps"])
                for name, result, shown in (
                    ("lobby (plain)", a, ""),
                    ("standup-1 (known)", b, f"{ratios[-1]:.2f}"),
                ):
                    print(
                        f"{number:<7}{name:<22}{result['rps']:>9.0f}{result['p50_ms']:>9.2f}"
                        f"{result['p99_ms']:>9.2f}{shown:>8}"
                    )
            print(
                "\nprovisioned (known) / plain throughput: median "
                f"{sorted(ratios)[len(ratios) // 2]:.2f}"
                f"; rooms created: {created}, REST calls during the load: "
                f"{len(twilio.requests) - created}"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
