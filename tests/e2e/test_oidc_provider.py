"""End to end against a real, certified OpenID provider: panva's ``oidc-provider`` from
the npm registry, under node on loopback, with real RS256 and ES256 keys.

The broker is configured with ``OIDC_ISSUER`` and ``OIDC_AUDIENCE`` only: the keys are
found by discovery. Its JWT access tokens come from the client-credentials grant (RS256)
and from the authorization-code flow with PKCE that an app runs (ES256).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests import support
from tests.conftest import LeakWatch
from tests.e2e.test_serve import token_request

PROVIDER_DIR = Path(__file__).parent / "node"
AUDIENCE = "https://api.example.test"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never called: the code is read from the URL
VOICE = {"grants": {"voice": {"incoming": True}}}
#: Voice for the callers whose token carries the scope, as the provider grants it.
POLICY = (
    support.POLICY
    + """
[[rules]]
name = "voice by scope"
match = { scopes = ["twilio:voice"] }
voice = { incoming = true }
"""
)


def private_jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def new_rsa(kid: str) -> dict[str, Any]:
    return private_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, "RS256")


@dataclass
class OidcProvider:
    """``node provider.mjs`` on a free loopback port; stopped by its PID."""

    directory: Path
    port: int = field(default_factory=support.free_port)
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    keys: list[dict[str, Any]] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        node = shutil.which("node")
        if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.fail("node and tests/e2e/node/node_modules are needed: run make test")
        config = self.directory / f"provider-{len(self.keys)}.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "issuer": self.issuer,
                    "keys": self.keys,
                    "audience": AUDIENCE,
                    "client_secret": self.client_secret,
                    "redirect_uri": REDIRECT_URI,
                }
            )
        )
        with (self.directory / "provider.log").open("ab") as log:
            self.process = subprocess.Popen(
                [node, str(PROVIDER_DIR / "provider.mjs"), str(config)],
                cwd=PROVIDER_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        discovery = f"{self.issuer}/.well-known/openid-configuration"

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail((self.directory / "provider.log").read_text())
            try:
                return requests.get(discovery, timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        assert support.eventually(answers, within=20.0), "the OpenID provider did not start"

    def stop(self) -> None:
        if self.process is not None:
            support.stop_process(self.process)

    def restart(self, keys: list[dict[str, Any]]) -> None:
        """The same provider (same issuer), with ``keys`` (the first RS256 one signs)."""
        self.stop()
        self.keys = keys
        self.start()

    def client_credentials(self) -> str:
        """An access token for the ``backend`` client (RS256)."""
        response = requests.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "twilio:voice"},
            auth=("backend", self.client_secret),
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def sign_in(self, login: str) -> dict[str, str]:
        """What the ``app`` client gets when ``login`` signs in: the authorization-code
        flow with PKCE, through the provider's login and consent pages."""
        verifier = secrets.token_urlsafe(48)
        challenge = hashlib.sha256(verifier.encode()).digest()
        session = requests.Session()
        response = session.get(
            f"{self.issuer}/auth",
            params={
                "client_id": "app",
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "scope": "openid twilio:voice",
                "code_challenge": base64.urlsafe_b64encode(challenge).rstrip(b"=").decode(),
                "code_challenge_method": "S256",
                "state": secrets.token_urlsafe(8),
                "nonce": secrets.token_urlsafe(8),
                "resource": AUDIENCE,
            },
            allow_redirects=False,
            timeout=10,
        )
        for _ in range(10):  # login, consent, then the redirect back to the app
            if response.is_redirect:
                location = urllib.parse.urljoin(self.issuer, response.headers["Location"])
                if location.startswith(REDIRECT_URI):
                    break
                response = session.get(location, allow_redirects=False, timeout=10)
                continue
            action = re.search(r'action="([^"]+)"', response.text)
            prompt = re.search(r'name="prompt" value="([^"]+)"', response.text)
            assert action, response.text
            assert prompt, response.text
            form = {"prompt": prompt.group(1)}
            if prompt.group(1) == "login":
                form |= {"login": login, "password": "any"}
            response = session.post(
                urllib.parse.urljoin(self.issuer, action.group(1)),
                data=form,
                allow_redirects=False,
                timeout=10,
            )
        code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
        tokens = session.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "client_id": "app",
                "code_verifier": verifier,
                "resource": AUDIENCE,
            },
            timeout=10,
        )
        tokens.raise_for_status()
        found: dict[str, str] = tokens.json()
        return found


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    ec_key = private_jwk(ec.generate_private_key(ec.SECP256R1()), "ec-1", "ES256")
    found = OidcProvider(tmp_path, keys=[new_rsa("rsa-1"), ec_key])
    found.start()
    try:
        yield found
    finally:
        found.stop()


def broker_environ(provider: OidcProvider, tmp_path: Path, **settings: str) -> dict[str, str]:
    """The broker's settings: the provider's issuer and the API's audience, nothing else
    about the provider."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    environ = support.base_environ("", str(policy))
    del environ["OIDC_JWKS_URL"]
    return {
        **environ,
        "OIDC_ISSUER": provider.issuer,
        "OIDC_AUDIENCE": AUDIENCE,
        "BROKER_STATE_URL": f"sqlite:///{tmp_path}/state.sqlite3",
        **settings,
    }


@pytest.fixture
def broker(provider: OidcProvider, tmp_path: Path) -> Iterator[support.BrokerProcess]:
    server = support.start_broker(broker_environ(provider, tmp_path), tmp_path)
    try:
        yield server
    finally:
        support.stop_broker(server)


def test_client_credentials_and_authorization_code_tokens_get_200(
    provider: OidcProvider, broker: support.BrokerProcess, leaks: LeakWatch
) -> None:
    machine = provider.client_credentials()
    app = provider.sign_in("alice")["access_token"]
    assert jwt.get_unverified_header(machine)["alg"] == "RS256"
    assert jwt.get_unverified_header(app) == {"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}
    for token, identity in ((machine, "backend"), (app, "alice")):
        response = token_request(broker.url, VOICE, token, leaks)
        assert response.status_code == 200, response.text
        assert response.json()["identity"] == identity
    leaks.check_text(broker.output())


def test_a_key_added_at_the_provider_works_on_the_next_request(
    provider: OidcProvider, broker: support.BrokerProcess, leaks: LeakWatch
) -> None:
    before = provider.client_credentials()
    assert token_request(broker.url, VOICE, before, leaks).status_code == 200  # keys cached
    provider.restart([new_rsa("rsa-2"), *provider.keys])  # the new key signs from now on
    after = provider.client_credentials()
    assert jwt.get_unverified_header(after)["kid"] == "rsa-2"
    response = token_request(broker.url, VOICE, after, leaks)
    assert response.status_code == 200, response.text


def test_required_typ_closes_id_token_substitution(
    provider: OidcProvider, tmp_path: Path, leaks: LeakWatch
) -> None:
    tokens = provider.sign_in("alice")
    # Where the app's client id is an accepted audience, its ID token passes for an
    # access token, unless access tokens must say what they are.
    for required, expected in ((None, 200), ("at+jwt", 401)):
        settings = {"OIDC_AUDIENCE": f"{AUDIENCE},app"}
        if required:
            settings["OIDC_REQUIRED_TYP"] = required
        directory = tmp_path / f"typ-{required}"
        directory.mkdir()
        server = support.start_broker(broker_environ(provider, directory, **settings), directory)
        try:
            id_token = token_request(server.url, support.VIDEO, tokens["id_token"], leaks)
            access = token_request(server.url, support.VIDEO, tokens["access_token"], leaks)
        finally:
            support.stop_broker(server)
        assert id_token.status_code == expected
        assert access.status_code == 200
        if expected == 401:
            assert id_token.json()["code"] == "invalid_token"


def check_config(environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [support.BROKER, "check-config", "--online"],
        env={"PATH": "/usr/bin:/bin", **environ},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_online_passes_and_names_a_wrong_issuer(
    provider: OidcProvider, tmp_path: Path
) -> None:
    environ = broker_environ(provider, tmp_path)
    passed = check_config(environ, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"ok: identity provider {provider.issuer}: 2 keys, found by discovery" in passed.stdout
    wrong = check_config({**environ, "OIDC_ISSUER": provider.issuer + "/"}, tmp_path)
    assert wrong.returncode != 0
    assert f"names the issuer {provider.issuer!r}, not {provider.issuer + '/'!r}" in wrong.stderr
