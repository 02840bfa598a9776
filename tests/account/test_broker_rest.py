"""The serving broker's own REST client: at most so many requests to Twilio at once per
process, the rest refused at their deadline instead of queueing behind a slow Twilio;
a rotated signing key gets a client of its own."""

from __future__ import annotations

import threading
import time

import pytest

from service.account.broker_rest import BoundedTwilio, TwilioWorkers
from service.base.errors import Unavailable
from service.tokens.minting import SigningKey
from tests import support
from tests.fake_twilio import FakeTwilio

KEY = SigningKey(support.ACCOUNT_SID, support.API_KEY_SID, support.API_KEY_SECRET)
WORKSPACE = "WS" + "c" * 32


def test_requests_beyond_the_cap_are_refused_at_their_deadline(twilio: FakeTwilio) -> None:
    twilio.work_seconds = 1.0  # each lookup holds its slot for a second
    workers = TwilioWorkers(BoundedTwilio(lambda: KEY, twilio.url, max_concurrent=2))
    outcomes: list[str] = []

    def look_up(index: int, seconds: float) -> None:
        try:
            workers.find_worker(WORKSPACE, f"agent-{index}", time.monotonic() + seconds)
            outcomes.append("answered")
        except Unavailable as refused:
            outcomes.append(refused.reason)

    holders = [threading.Thread(target=look_up, args=(index, 5.0)) for index in range(2)]
    for thread in holders:
        thread.start()
    assert support.eventually(lambda: len(twilio.requests) == 2)  # both slots taken
    waiting = [threading.Thread(target=look_up, args=(index, 0.3)) for index in range(2, 6)]
    for thread in waiting:
        thread.start()
    for thread in holders + waiting:
        thread.join(10)
    assert sorted(outcomes) == ["answered"] * 2 + ["too many requests to Twilio at once"] * 4
    assert len(twilio.requests) == 2  # Twilio saw only what the cap let through


def test_a_rotated_key_gets_a_client_of_its_own(twilio: FakeTwilio) -> None:
    keys = [SigningKey(support.ACCOUNT_SID, "SK" + "0" * 32, "x" * 32), KEY]
    workers = TwilioWorkers(BoundedTwilio(lambda: keys[0], twilio.url))
    with pytest.raises(Unavailable):  # the emulator knows only the broker's key
        workers.find_worker(WORKSPACE, "alice", time.monotonic() + 3)
    keys.pop(0)  # rotated: the files now hold the broker's key
    assert workers.find_worker(WORKSPACE, "alice", time.monotonic() + 3) is None
