"""Fixtures of the end-to-end tests that run the image: the engine and the image."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests import support
from tests.e2e import engine


@pytest.fixture(scope="session")
def container_engine() -> Iterator[None]:
    """A running container engine: the one running, or one started (and stopped) here."""
    if engine.engine_running():
        yield
        return
    try:
        script = engine.start_engine()
    except engine.NoEngine as why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the container engine: {why}")
        pytest.skip(f"no container engine: {why}")  # only outside CI: CI fails above
    try:
        yield
    finally:
        engine.stop_engine(script)


@dataclass(frozen=True)
class Image:
    name: str
    size: int
    base_size: int
    build_seconds: float


@pytest.fixture(scope="session")
def image(container_engine: None) -> Image:
    """The image, built from this checkout as the README says (``token-broker``)."""
    started = time.monotonic()
    engine.build(support.ROOT, engine.IMAGE)
    seconds = time.monotonic() - started
    return Image(
        engine.IMAGE,
        engine.image_size(engine.IMAGE),
        engine.image_size(engine.BASE_IMAGE),
        seconds,
    )
