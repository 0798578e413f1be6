"""A real gateway with its console on loopback, fed by the real broker, and a real browser.

The gateway runs in-process on its own event loop and thread (as in tests/e2e); the
browser is Debian's headless Chromium driven by Playwright (never a browser download).
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from gateway_thread import GatewayThread
from helpers import CLI, VALID_USCC, gateway_config, gateway_dict, sensor
from mosquitto import free_port
from mqtt_tools import wait_for

from edge.app.config import GatewayConfig
from edge.app.console.users import add_user, users_path

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


def login(page, url: str, name: str, password: str) -> None:
    """Fill in and send the login form."""
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _ready_user(page, site, prefix: str = "tech") -> tuple[str, str]:
    """Log a new technician in and set their own password; return name and password."""
    from playwright.sync_api import expect

    name, one_time = site.new_user(prefix)
    login(page, site.url, name, one_time)
    expect(page).to_have_url(f"{site.url}/password")
    password = f"own-{name}-secret"
    page.fill("input[name=current]", one_time)
    page.fill("input[name=new]", password)
    page.fill("input[name=again]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{site.url}/sensors")
    return name, password


@pytest.fixture
def ready_user():
    """Log a new technician in with their own password: ``ready_user(page, site, prefix)``."""
    return _ready_user


@dataclass
class FileSite(ConsoleSite):
    """A real ``offsite-edge run`` process from a config file, with a camera."""

    path: Path = Path()
    tag: str = ""
    camera: str = ""


@pytest.fixture(scope="module")
def file_site(mosquitto, tmp_path_factory) -> Iterator[FileSite]:
    """``offsite-edge run`` on a config file: console, catch-all and a replayed camera.

    The camera replays a clip written with OpenCV through the synthetic ONNX detector
    (``vision.synthetic``), in a loop at the clip's frame rate, like a live camera.
    """
    from vision.synthetic import demo_config, write_demo_assets

    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("console-file")
    db = root / "data" / "gateway.db"
    model, clip = write_demo_assets(root)
    vision = demo_config(model, clip).model_dump(mode="json")
    camera = vision["cameras"][0]
    camera.update(loop=True, realtime=True)
    port = free_port()
    data = gateway_dict(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("noise-01", f"{tag}/noise")],
        ingest={"catch_all": [f"{tag}/#"]},
        console={"host": "127.0.0.1", "port": port},
        vision=vision,
        # A Latin name: the screenshots' Chromium may have no CJK font.
        site={"name": "Canteen 7, Demo Catering Co.", "credit_code": VALID_USCC},
    )
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    log = (root / "gateway.log").open("wb")
    process = subprocess.Popen([str(CLI), "run", "--config", str(path)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _reachable(url), 60, 0.2), "console did not start"
        yield FileSite(
            config=GatewayConfig.model_validate(data),
            url=url,
            db=db,
            topic=f"{tag}/noise",
            host=mosquitto.host,
            port=mosquitto.port,
            path=path,
            tag=tag,
            camera=camera["id"],
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()
