"""Shared fixtures: a real mosquitto broker on loopback, config builders."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Appended, not prepended: tests/vision must not shadow the real vision package.
sys.path.append(str(Path(__file__).resolve().parent))

from mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One broker for the whole session; give each test its own topics and client ids."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., Mosquitto]]:
    """Start extra brokers a test may stop and restart (same port each time)."""
    brokers: list[Mosquitto] = []

    def make(extra_conf: str = "") -> Mosquitto:
        broker = Mosquitto(extra_conf=extra_conf)
        brokers.append(broker)
        return broker.start()

    yield make
    for broker in brokers:
        broker.__exit__()
