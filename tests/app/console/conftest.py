"""A real gateway with its console on loopback, fed by the real broker, and a real browser.

The gateway runs in-process on its own event loop and thread (as in tests/e2e); the
browser is Debian's headless Chromium driven by Playwright (never a browser download).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_thread import GatewayThread
from helpers import gateway_config, sensor
from mosquitto import free_port
from mqtt_tools import wait_for

from edge.app.config import GatewayConfig
from edge.app.console.users import add_user, users_path

CHROMIUM = Path("/usr/bin/chromium")
MAX_FAILED = 3


@dataclass
class ConsoleSite:
    """A running gateway with its console."""

    config: GatewayConfig
    url: str
    db: Path
    topic: str
    host: str
    port: int

    def new_user(self, prefix: str = "tech") -> tuple[str, str]:
        """A fresh account and its one-time password."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        return name, add_user(users_path(self.config), name)


def _reachable(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/login", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def gateway_thread() -> type[GatewayThread]:
    """The class that runs a real gateway on its own thread (start, then close)."""
    return GatewayThread


@pytest.fixture(scope="module")
def site(mosquitto, tmp_path_factory) -> Iterator[ConsoleSite]:
    tag = uuid.uuid4().hex[:8]
    db = tmp_path_factory.mktemp("console") / "gateway.db"
    port = free_port()
    topic = f"{tag}/noise"
    config = gateway_config(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[
            sensor("noise-01", topic),
            # Never publishes, and counts as offline at once: an open event to look at.
            sensor(
                "quiet-01",
                f"{tag}/quiet",
                health={"expected_interval_s": 0.2, "offline_multiple": 1},
            ),
        ],
        ingest={"catch_all": [f"{tag}/#"]},
        console={"host": "127.0.0.1", "port": port, "max_failed_logins": MAX_FAILED},
    )
    gateway = GatewayThread(config)
    gateway.start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _reachable(url), 30, 0.1), "console did not start"
        yield ConsoleSite(config, url, db, topic, mosquitto.host, mosquitto.port)
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("the console tests need Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")
