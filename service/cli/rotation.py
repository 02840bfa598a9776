"""``token-broker keys rotate``: a new signing key for the whole fleet, step by step.

The steps, each recorded in a file beside the key files before the next (so that an
interrupted rotation, run again, goes on or says what is left):

1. ``creating``: ask Twilio for a new Standard key (its secret is shown this once);
2. ``written``: the key's SID and secret written over the key files, each whole (a
   temporary file, flushed, renamed: never half-written), owner-only;
3. ``switched``: every live instance signs with the new key (each says so through the
   state store every second), and the switch time is kept;
4. ``--finish``: the previous key deleted, once every token it signed has expired.

A run interrupted while creating lost the new key's secret with it: the next run deletes
that key and makes another.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import click

from service.account.twilio_rest import TwilioKeys
from service.base.clock import system_clock
from service.base.files import write_private
from service.cli.loading import EXIT_NO, fail, guarded, twilio_call
from service.serving.configuration import Configuration
from service.state import StateStore

#: How often the fleet's keys are looked at while waiting for every instance.
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Rotation:
    phase: str
    old: str
    name: str
    new: str = ""
    switched_at: str = ""


def rotate(
    configuration: Configuration, keys: TwilioKeys, store: StateStore, timeout: float
) -> None:
    """Go on with the rotation from wherever it stands, up to the switch."""
    sid_file, secret_file = key_files(configuration)
    path = _state_file(sid_file)
    found = _read(path)
    if found is not None and found.phase == "switched":
        _say_switched(configuration, found)
        return
    if found is not None and found.phase == "creating":
        for key in twilio_call(keys.list):  # made by the interrupted run: its secret is lost
            if key.friendly_name == found.name:
                twilio_call(partial(keys.delete, key.sid))
        found = None
    written = found or _create(keys, path, sid_file, secret_file)
    _wait_for_fleet(store, written.new, timeout)
    switched = system_clock()
    guarded(partial(store.first_seen, f"signing-key:{written.new}", switched))
    done = replace(written, phase="switched", switched_at=switched.isoformat())
    _write(path, done)
    _say_switched(configuration, done)


def _create(keys: TwilioKeys, path: Path, sid_file: Path, secret_file: Path) -> Rotation:
    """Steps 1 and 2: a new key, in the key files (its secret nowhere else)."""
    name = f"token-broker {system_clock():%Y%m%dT%H%M%SZ}"
    creating = Rotation("creating", sid_file.read_text().strip(), name)
    _write(path, creating)
    new = twilio_call(partial(keys.create, name))
    write_private(secret_file, new.secret + "\n")
    write_private(sid_file, new.sid + "\n")
    written = replace(creating, phase="written", new=new.sid)
    _write(path, written)
    click.echo(f"created {new.sid} and wrote it to the key files; waiting for the fleet")
    return written


def finish(configuration: Configuration, keys: TwilioKeys) -> None:
    """Delete the previous key, once the last token it signed has expired."""
    sid_file, _ = key_files(configuration)
    path = _state_file(sid_file)
    rotation = _read(path)
    if rotation is None or rotation.phase != "switched":
        fail(["no switched rotation to finish: run `token-broker keys rotate` first"], EXIT_NO)
    until = _old_tokens_expire(configuration, rotation)
    if system_clock() < until:
        fail(
            [
                f"tokens signed with {rotation.old} may be alive until {until.isoformat()} "
                "(the switch and the maximum TTL): run --finish after that"
            ],
            exit_code=EXIT_NO,
        )
    if any(key.sid == rotation.old for key in twilio_call(keys.list)):
        twilio_call(partial(keys.delete, rotation.old))
    path.unlink()
    click.echo(f"deleted {rotation.old}; {rotation.new} signs tokens")


def _wait_for_fleet(store: StateStore, new: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        behind = {
            instance: sid
            for instance, sid in guarded(partial(store.signing_keys, system_clock())).items()
            if sid != new
        }
        if not behind:
            return
        if time.monotonic() > deadline:
            fail(
                [f"instance {instance} still signs with {sid}" for instance, sid in behind.items()]
                + ["run `token-broker keys rotate` again to go on waiting"],
                exit_code=EXIT_NO,
            )
        time.sleep(POLL_SECONDS)  # the instances report every second: look again soon


def _say_switched(configuration: Configuration, rotation: Rotation) -> None:
    until = _old_tokens_expire(configuration, rotation)
    click.echo(
        f"rotated: {rotation.old} -> {rotation.new}; every instance signs with {rotation.new}. "
        f"`token-broker keys rotate --finish` deletes {rotation.old} after {until.isoformat()}"
    )


def _old_tokens_expire(configuration: Configuration, rotation: Rotation) -> datetime:
    max_ttl = configuration.policy.tokens.max_ttl
    return datetime.fromisoformat(rotation.switched_at) + timedelta(seconds=max_ttl)


def key_files(configuration: Configuration) -> tuple[Path, Path]:
    files = configuration.settings.signing_key_files
    if files is None:
        fail(
            [
                "keys rotate writes the key files: set TWILIO_API_KEY_SID_FILE and "
                "TWILIO_API_KEY_SECRET_FILE (README: Rotating the signing key)"
            ]
        )
    return files


def _state_file(sid_file: Path) -> Path:
    return sid_file.with_name(f".{sid_file.name}.rotation.json")


def _read(path: Path) -> Rotation | None:
    if not path.exists():
        return None
    return Rotation(**json.loads(path.read_text(encoding="utf-8")))


def _write(path: Path, rotation: Rotation) -> None:
    write_private(path, json.dumps(asdict(rotation)) + "\n")
