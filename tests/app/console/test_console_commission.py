"""Commissioning a sensor from an unknown topic, and drawing a camera zone, in a real
headless Chromium against a real `offsite-edge run` process fed by the real mosquitto."""

from __future__ import annotations

import json
import re
import time

import yaml
from mqtt_tools import publish_all, query, wait_for
from playwright.sync_api import Page, expect


def _events(site, kind: str) -> list[dict]:
    return [
        json.loads(d) for (d,) in query(site.db, "SELECT detail FROM events WHERE kind = ?", kind)
    ]


def _water(ph: float, do: float) -> bytes:
    return json.dumps({"v": {"ph": ph, "do": do}, "t": int(time.time() * 1000)}).encode()


def _fill_row(page: Page, row: int, values: dict[str, str]) -> None:
    for field, value in values.items():
        page.fill(f"input[name=q{row}_{field}]", value)


def test_a_sensor_is_commissioned_from_an_unknown_topic(file_site, page, screenshots, ready_user):
    site = file_site
    name, _ = ready_user(page, site, "commission")
    topic = f"{site.tag}/water/07"
    publish_all(site.host, site.port, [(topic, _water(7.31, 6.8))])
    assert wait_for(
        lambda: query(
            site.db, "SELECT id FROM dead_letters WHERE sensor_id IS NULL AND topic = ?", topic
        )
    )
    page.goto(f"{site.url}/commission")
    card = page.locator(".unknown-topic", has_text=topic)
    expect(card.locator(".payload").first).to_contain_text('"ph": 7.31')
    card.get_by_role("link", name=re.compile("Commission a sensor")).click()
    expect(page).to_have_url(re.compile(r"/commission/new\?topic="))
    # The decoder is guessed from the payload, and its fields are listed to map from.
    expect(page.locator("select[name=decoder]")).to_have_value("json")
    expect(page.locator("table.fields")).to_contain_text("v.do")

    page.fill("input[name=id]", "water-07")
    page.select_option("select[name=kind]", "water")
    page.fill("input[name=timestamp]", "t")
    page.select_option("select[name=timestamp_format]", "epoch_ms")
    _fill_row(page, 0, {"name": "pH", "unit": "pH", "low": "0", "high": "14", "source": "v.ph"})
    _fill_row(
        page,
        1,
        {
            "name": "DO",
            "unit": "mg/L",
            "low": "0",
            "high": "20",
            "source": "v.do",
            "gain": "1.1",
            "offset": "0.1",
        },
    )
    # The preview follows the form without a submit: 6.8 × 1.1 + 0.1.
    preview = page.locator("#preview")
    expect(preview.locator("[data-quantity=DO]").first).to_have_text("7.58")
    expect(preview.locator("[data-quantity=pH]").first).to_have_text("7.31")
    # A wrong path shows the reason the gateway would give the dead letter.
    page.fill("input[name=q1_source]", "v.oxygen")
    expect(preview).to_contain_text("DO: field missing")
    page.fill("input[name=q1_source]", "v.do")
    expect(preview.locator("[data-quantity=DO]").first).to_have_text("7.58")

    # An edit config check refuses is shown with file, field and reason, and not written.
    page.fill("input[name=id]", "noise-01")
    page.click("button[value=review]")
    refused = page.locator("#refused")
    expect(refused).to_contain_text("gateway.yaml")
    expect(refused).to_contain_text("sensor ids repeat: ['noise-01']")
    assert "water-07" not in site.path.read_text()
    assert not (site.path.parent / "gateway.yaml.bak").exists()

    page.fill("input[name=id]", "water-07")
    page.click("button[value=review]")
    diff = page.locator("#diff")
    expect(diff).to_contain_text("+- id: water-07")
    expect(diff).to_contain_text("+      DO: v.do")
    assert "water-07" not in site.path.read_text(), "a review must not save"
    page.screenshot(path=screenshots / "console-commission.png", full_page=True)

    # Saving a form changed after its review is refused: the diff shown is what is saved.
    page.fill("input[name=location]", "changed after the review")
    page.click("#save")
    expect(page.locator("#refused")).to_contain_text("not the one reviewed")
    assert "water-07" not in site.path.read_text()
    page.fill("input[name=location]", "")
    page.click("button[value=review]")
    page.click("#save")
    # The page waits for the reload, then shows the new sensor's page.
    expect(page).to_have_url(f"{site.url}/sensors/water-07", timeout=60_000)
    saved = yaml.safe_load(site.path.read_text())
    entry = next(s for s in saved["sensors"] if s["id"] == "water-07")
    assert entry["topic"] == topic
    assert entry["decoder"] == {
        "type": "json",
        "fields": {"pH": "v.ph", "DO": "v.do"},
        "timestamp": "t",
        "timestamp_format": "epoch_ms",
    }
    assert entry["quantities"][1]["calibration"] == {"gain": 1.1, "offset": 0.1}
    audit = _events(site, "console_sensor_commissioned")
    assert [(e["who"], e["sensor"], e["topic"]) for e in audit] == [(name, "water-07", topic)]
    assert any("+- id: water-07" in line for line in audit[0]["diff"])
    assert wait_for(
        lambda: any(
            "sensors.water-07" in e["changed_sections"] for e in _events(site, "config_changed")
        ),
        30,
    )

    # The gateway now stores the topic's readings as the sensor's, calibrated, live.
    def live_do() -> bool:
        publish_all(site.host, site.port, [(topic, _water(7.2, 5.0))])
        return page.locator("td.value").nth(1).text_content() == "5.6"

    assert wait_for(live_do, 30, 0.5)
    expect(page.locator("td.value").first).to_have_text("7.2")
    page.screenshot(path=screenshots / "console-commissioned.png", full_page=True)


def _frame_box(page: Page) -> dict:
    svg = page.locator("svg.zone-editor")
    expect(svg).to_be_visible()
    box = svg.bounding_box()
    assert box is not None
    return box


def test_a_zone_is_drawn_on_the_camera_frame_and_saved(file_site, page, screenshots, ready_user):
    site = file_site
    name, _ = ready_user(page, site, "zones")
    camera = site.camera
    page.goto(f"{site.url}/cameras/{camera}")
    # The frame and the counters come from the running camera.
    expect(page.locator("img#frame")).to_be_visible()
    assert wait_for(
        lambda: (
            page.request.get(f"{site.url}/cameras/{camera}/state").json()["counters"]["inferences"]
            > 0
        ),
        60,
    )
    expect(page.locator("[data-cam=inferences]")).not_to_have_text(re.compile(r"^(0|—)$"))
    expect(page.locator("polygon.zone")).to_have_count(2)  # kitchen and floor
    expect(page.locator("polygon.mask")).to_have_count(1)

    width, height = 320, 240  # the clip's frame size
    box = _frame_box(page)
    corners = [(40, 30), (200, 30), (200, 150), (40, 150)]
    for x, y in corners:
        page.locator("svg.zone-editor").click(
            position={"x": x * box["width"] / width, "y": y * box["height"] / height}
        )
    expect(page.locator("#point-count")).to_have_text("4 points")
    drawn = json.loads(page.input_value("input[name=polygon]"))
    assert all(
        abs(px - x) <= 1 and abs(py - y) <= 1
        for (px, py), (x, y) in zip(drawn, corners, strict=True)
    )
    page.fill("#zone-form input[name=name]", "stove")
    page.click("button[value=review]")
    diff = page.locator("#diff")
    expect(diff).to_contain_text("+    - name: stove")
    assert "stove" not in site.path.read_text(), "a review must not save"
    # The reviewed polygon is kept on the page, drawn where it was clicked.
    expect(page.locator("#point-count")).to_have_text("4 points")
    page.screenshot(path=screenshots / "console-camera.png", full_page=True)

    page.click("#save")
    expect(page).to_have_url(f"{site.url}/cameras/{camera}", timeout=60_000)
    saved = yaml.safe_load(site.path.read_text())
    zones = {z["name"]: z["polygon"] for z in saved["vision"]["cameras"][0]["zones"]}
    assert zones["stove"] == drawn
    assert set(zones) == {"kitchen", "floor", "stove"}
    audit = _events(site, "console_zone_changed")
    assert [(e["who"], e["camera"], e["zone"], e["polygon"]) for e in audit] == [
        (name, camera, "stove", drawn)
    ]
    # After the reload the camera runs with three zones, drawn over its frame.
    expect(page.locator("polygon.zone")).to_have_count(3)
    expect(page.locator("polygon.zone[data-zone=stove]")).to_have_attribute(
        "points", " ".join(f"{x},{y}" for x, y in drawn) + " "
    )


def test_a_zone_outside_the_frame_is_refused(file_site, page, ready_user):
    site = file_site
    ready_user(page, site, "zonebad")
    before = site.path.read_text()
    page.goto(f"{site.url}/cameras/{site.camera}")
    token = page.input_value("#zone-form input[name=csrf]")
    response = page.request.post(
        f"{site.url}/cameras/{site.camera}/zones",
        form={
            "csrf": token,
            "name": "far",
            "polygon": "[[0,0],[9000,0],[9000,10]]",
            "action": "save",
        },
        max_redirects=0,
    )
    assert response.status == 400
    assert "outside the frame" in response.text()
    assert site.path.read_text() == before


def test_without_a_config_file_or_cameras_the_pages_say_so(site, page, ready_user):
    # `site` runs the gateway in-process from a config object: nothing can be saved.
    ready_user(page, site, "nofile")
    page.goto(f"{site.url}/cameras")
    expect(page.locator("main")).to_contain_text("No cameras")
    page.goto(f"{site.url}/cameras/kitchen-1")
    expect(page.locator("body")).to_contain_text("no camera 'kitchen-1' is configured")
    page.goto(f"{site.url}/commission/new?topic={site.topic}x")
    expect(page.locator("main")).to_contain_text("runs without a config file")
    expect(page.locator("button[value=review]")).to_have_count(0)
