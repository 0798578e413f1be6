"""Shared fixtures: a real mosquitto broker on loopback, Debian's headless Chromium."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Appended, not prepended: tests/vision must not shadow the real vision package.
sys.path.append(str(Path(__file__).resolve().parent))

from mosquitto import Mosquitto

CHROMIUM = Path("/usr/bin/chromium")


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (never a browser download)."""
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (20 s timeouts for a loaded CI machine)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests save their screenshots (console-*.png, regulator-*.png).

    A temporary folder, unless OFFSITE_EDGE_SCREENSHOTS names one (``docs/images`` to
    refresh the README's pictures).
    """
    chosen = os.environ.get("OFFSITE_EDGE_SCREENSHOTS")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")
