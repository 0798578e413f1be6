"""The regulator console in headless Chromium, against a real receiver process and broker.

The receiver runs as its own process, started as a regulator starts it
(``offsite-edge cloud … --regulator-config``); records signed like a gateway's are
published through a real mosquitto, evidence is uploaded over HTTP like a gateway's.
Screenshots go to a temporary folder, or with OFFSITE_EDGE_SCREENSHOTS=docs/images to the
README's pictures.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cloud_forge import batch
from mosquitto import free_port
from mqtt_tools import publish_all, wait_for
from playwright.sync_api import Page, expect

from cloud_sync.regulator_console import add_user

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "operator-token-e2e"


class ReceiverProcess:
    """The receiver + console process; publishes records and uploads evidence to it."""

    def __init__(
        self, tmp: Path, broker: Any, gateways: dict[str, Any], console: dict[str, Any]
    ) -> None:
        self.db = tmp / "cloud.db"
        self.broker = broker
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateways = gateways
        self.log = tmp / "receiver.log"
        trust = [f"--trust={g.name}={g.signer.public_hex}" for g in gateways.values()]
        token_file, console_file = tmp / "token", tmp / "regulator.yaml"
        token_file.write_text(TOKEN)
        console_file.write_text(json.dumps(console))  # JSON is YAML
        args = [sys.executable, "-m", "edge.app.cli", "cloud", "--db", str(self.db),
                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                "--http-port", str(self.port), "--token-file", str(token_file), *trust,
                "--regulator-config", str(console_file)]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                            env=dict(os.environ))  # fmt: skip
        assert wait_for(self._subscribed, 30, 0.1), self.log.read_text()[-3000:]

    def _subscribed(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return json.loads(response.read()).get("mqtt") == "subscribed"
        except OSError:
            return False

    def publish(self, gateway: str, records: list[dict]) -> None:
        """One message per record on ``offsite/<gateway>/up/<class>`` (QoS 1)."""
        publish_all("127.0.0.1", self.broker.port,
                    [(f"offsite/{gateway}/up/{r['class']}", batch(gateway, [r]))
                     for r in records])  # fmt: skip

    def upload_evidence(self, gateway: str, jpeg: bytes) -> str:
        """PUT a snapshot like a gateway's evidence uplink; its SHA-256."""
        digest = hashlib.sha256(jpeg).hexdigest()
        request = urllib.request.Request(
            f"{self.url}/v1/evidence/{digest}", data=jpeg, method="PUT",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Offsite-Gateway": gateway,
                     "Content-Type": "image/jpeg"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        return digest

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture
def robot(webhooks: Any) -> Any:
    """A DingTalk-like group robot that refuses its first message."""
    return webhooks(fail_robot=1)


@pytest.fixture
def receiver(
    tmp_path: Path, mosquitto_factory: Any, new_gateway: Any, robot: Any
) -> Iterator[ReceiverProcess]:
    """The receiver with its console, trusting two gateways, fed by its own broker (its
    persistent session must not see other tests' messages)."""
    gateways = {name: new_gateway(name) for name in ("gw-canteen", "gw-noodles")}
    hook = {"name": "dingtalk", "url": f"{robot.url}/robot/send", "format": "dingtalk",
            "backoff_initial_s": 0.1, "backoff_max_s": 0.5}  # fmt: skip
    process = ReceiverProcess(tmp_path, mosquitto_factory(), gateways, {"webhooks": [hook]})
    try:
        yield process
    finally:
        process.stop()


def _kitchen_jpeg() -> bytes:
    """A recognisable picture: a stove, a cook without a hat, a highlighted box."""
    image = np.full((360, 480, 3), (205, 215, 222), np.uint8)
    cv2.rectangle(image, (40, 220), (440, 340), (90, 90, 100), -1)
    cv2.circle(image, (240, 150), 40, (120, 160, 200), -1)
    cv2.rectangle(image, (190, 95), (290, 330), (40, 40, 220), 3)
    cv2.putText(image, "no_hat 0.81", (192, 88), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 40, 220), 2)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return bytes(data)


def _rows(page: Page, url: str, count: int) -> bool:
    page.goto(url)
    return page.locator("tr[data-alert]").count() >= count


def _risk_order(page: Page, url: str) -> list[str]:
    page.goto(f"{url}/regulator/risk")
    return [
        row.get_attribute("data-gateway") or "" for row in page.locator("tr[data-gateway]").all()
    ]


def test_regulator_sees_handles_and_ranks_alerts(
    receiver, robot, page: Page, screenshots: Path, tmp_path
):
    url = receiver.url
    canteen, noodles = receiver.gateways["gw-canteen"], receiver.gateways["gw-noodles"]
    one_time = add_user(receiver.db, "inspector-li", "handling")

    page.goto(f"{url}/regulator/")
    expect(page).to_have_url(f"{url}/regulator/login")
    page.fill("input[name=name]", "inspector-li")
    page.fill("input[name=password]", one_time)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/regulator/password")
    page.fill("input[name=current]", one_time)
    page.fill("input[name=new]", "inspector-li-own-pw")
    page.fill("input[name=again]", "inspector-li-own-pw")
    page.click("main button[type=submit]")
    expect(page).to_have_url(f"{url}/regulator/alerts")
    expect(page.locator("h1")).to_contain_text("0 matching")

    # A fume exceedance at the canteen (with its minutes) and a warning at the noodle shop.
    now = time.time()
    receiver.publish("gw-canteen", canteen.minutes(now - 1500, [
        0.9, 1.1, 1.0, 1.3, 1.6, 2.4, 3.1, 3.6, 3.2, 2.7, 2.2, 1.6, 1.2, 1.0, 0.9, 1.0]))  # fmt: skip
    receiver.publish("gw-canteen", [canteen.exceedance(value=3.6, started_at=now - 1500 + 300)])
    receiver.publish("gw-noodles", [noodles.exceedance(value=2.3, severity="warning",
                                                       sensor="fume-02")])  # fmt: skip
    assert wait_for(lambda: _rows(page, f"{url}/regulator/alerts", 2), 30, 0.2)
    expect(page.locator("tr.sev-alarm")).to_have_count(1)
    assert _risk_order(page, url) == ["gw-canteen", "gw-noodles"]

    # A kitchen violation with its snapshot, uploaded as the gateway's evidence uplink does.
    digest = receiver.upload_evidence("gw-noodles", _kitchen_jpeg())
    receiver.publish("gw-noodles", [noodles.violation(digest)])
    assert wait_for(lambda: _rows(page, f"{url}/regulator/alerts", 3), 30, 0.2)
    page.goto(f"{url}/regulator/alerts")
    page.screenshot(path=screenshots / "regulator-alerts.png", full_page=True)
    page.locator("tr:has-text('violation') a").first.click()
    image = page.locator("img.evidence")
    expect(image).to_be_visible()
    assert page.evaluate("document.querySelector('img.evidence').naturalWidth") == 480
    page.screenshot(path=screenshots / "regulator-evidence.png", full_page=True)

    # The canteen's alarm, walked through the handling trail.
    page.goto(f"{url}/regulator/alerts?severity=alarm")
    page.locator("tr.sev-alarm a").first.click()
    expect(page.locator("#verdict")).to_have_text("ok — every record linked, every gap explained")
    expect(page.locator("svg.chart polyline.values")).to_have_count(1)
    # The immediate alarm reached the robot on its second attempt, once.
    assert wait_for(lambda: len(robot.received["robot"]) == 2, 30, 0.1)
    assert "3.6 mg/m3" in robot.received["robot"][-1]["text"]["content"]
    page.reload()
    expect(page.locator("text=dingtalk: pushed")).to_have_count(1)
    page.click("button:has-text('Acknowledge')")
    expect(page.locator("#alert-state")).to_have_text("acknowledged")
    page.fill("input[name=assignee]", "district-3 team")
    page.click("button:has-text('Assign')")
    expect(page.locator("#alert-state")).to_contain_text("assigned")
    page.fill("textarea[name=comment]", "Owner called: filter overdue, replaced today.")
    page.click("button:has-text('Add comment')")
    photo = tmp_path / "new-filter.jpg"
    photo.write_bytes(_kitchen_jpeg())
    page.set_input_files("input[name=attachment]", str(photo))
    page.click("button:has-text('Mark rectified')")
    expect(page.locator("#alert-state")).to_contain_text("rectified")
    page.fill("form:has(button:has-text('Close')) input[name=comment]", "Verified on site.")
    page.click("button:has-text('Close')")
    expect(page.locator("#alert-state")).to_contain_text("closed")
    steps = page.locator("#timeline li.step")
    expect(steps).to_have_count(5)
    expect(steps.nth(3)).to_contain_text("new-filter.jpg")
    for n in range(5):
        expect(steps.nth(n)).to_contain_text("inspector-li")
    page.screenshot(path=screenshots / "regulator-trail.png", full_page=True)

    # Closed: the canteen's open alarm no longer counts; the noodle shop comes first.
    assert _risk_order(page, url) == ["gw-noodles", "gw-canteen"]
    page.screenshot(path=screenshots / "regulator-risk.png", full_page=True)
    with page.expect_download() as download:
        page.click("a:has-text('Export CSV')")
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[1].startswith("1,gw-noodles,")
    assert len(robot.received["robot"]) == 2  # handled, closed: still pushed once
