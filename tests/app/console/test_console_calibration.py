"""Zero/span calibration: the computation, the config edit, and saving it from the console
of a real `offsite-edge run` process, which then reloads and calibrates new readings."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
import uuid

import pytest
import yaml
from helpers import CLI, gateway_dict, sensor
from hypothesis import assume, given
from hypothesis import strategies as st
from mosquitto import free_port
from mqtt_tools import noise_payload, publish_all, query, wait_for
from playwright.sync_api import expect

from edge.app.config import GatewayConfig
from edge.app.console.calibration import (
    CalibrationError,
    Fit,
    TwoPoint,
    calibrated_text,
    fit,
    raw_of,
)
from edge.app.console.users import add_user, users_path

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


@given(finite, finite, finite, finite)
def test_the_fit_maps_each_raw_reading_to_its_reference(zero_ref, zero_raw, span_ref, span_raw):
    points = TwoPoint(zero_ref=zero_ref, zero_raw=zero_raw, span_ref=span_ref, span_raw=span_raw)
    ascending = (span_ref - zero_ref) * (span_raw - zero_raw) > 0
    assume(abs(span_raw - zero_raw) > 1e-3 and abs(span_ref - zero_ref) > 1e-3)
    if not ascending:
        with pytest.raises(CalibrationError, match="other way"):
            fit(points)
        return
    new = fit(points)
    scale = max(1.0, abs(zero_ref), abs(span_ref))
    assert new.gain > 0
    assert math.isclose(new.apply(zero_raw), zero_ref, rel_tol=1e-6, abs_tol=1e-6 * scale)
    assert math.isclose(new.apply(span_raw), span_ref, rel_tol=1e-6, abs_tol=1e-6 * scale)
    assert math.isclose(raw_of(new.apply(span_raw), new.gain, new.offset), span_raw, abs_tol=1e-3)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ((0, 5, 94, 5), "equal"),
        ((40, 41, 40, 96), "span reference must differ"),
        ((0, 0, float("nan"), 1), "finite"),
    ],
)
def test_points_without_a_calibration_are_refused(points, reason):
    zero_ref, zero_raw, span_ref, span_raw = points
    with pytest.raises(CalibrationError, match=reason):
        fit(TwoPoint(zero_ref=zero_ref, zero_raw=zero_raw, span_ref=span_ref, span_raw=span_raw))


def test_only_the_quantitys_calibration_changes_in_the_config(tmp_path):
    data = gateway_dict(tmp_path / "g.db", sensors=[sensor("a", "t/a"), sensor("b", "t/b")])
    text = yaml.safe_dump(data, allow_unicode=True)
    new = yaml.safe_load(calibrated_text(text, "b", "LA", Fit(gain=0.98, offset=1.5)))
    assert new["sensors"][1]["quantities"][0]["calibration"] == {"gain": 0.98, "offset": 1.5}
    del new["sensors"][1]["quantities"][0]["calibration"]
    assert new == data
    with pytest.raises(CalibrationError, match="no quantity"):
        calibrated_text(text, "b", "fume", Fit(gain=1, offset=0))


@pytest.fixture
def running(mosquitto, tmp_path):
    """A real `offsite-edge run` process with its console, from a config file."""
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    db = tmp_path / "data" / "gateway.db"
    data = gateway_dict(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[sensor("noise-01", f"{tag}/noise")],
        console={"host": "127.0.0.1", "port": port},
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen([str(CLI), "run", "--config", str(path)], stdout=log, stderr=log)
    try:
        yield (
            path,
            db,
            f"http://127.0.0.1:{port}",
            f"{tag}/noise",
            GatewayConfig.model_validate(data),
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


def test_a_saved_calibration_is_audited_reloaded_and_applied(
    running, browser, mosquitto, screenshots
):
    path, db, url, topic, config = running
    name = f"cal-{uuid.uuid4().hex[:6]}"
    one_time = add_user(users_path(config), name)
    page = browser.new_page()
    page.set_default_timeout(20_000)
    try:
        assert wait_for(lambda: _up(page, url), 30, 0.2)
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", one_time)
        page.click("button[type=submit]")
        page.fill("input[name=current]", one_time)
        page.fill("input[name=new]", "calibrator-94dB")
        page.fill("input[name=again]", "calibrator-94dB")
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{url}/sensors")
        page.goto(f"{url}/sensors/noise-01/calibrate")
        # A sound calibrator: 40 dB(A) read as 41, 94 dB(A) read as 96.
        for field, value in (
            ("zero_ref", "40"),
            ("zero_raw", "41"),
            ("span_ref", "94"),
            ("span_raw", "96"),
        ):
            page.fill(f"input[name={field}]", value)
        page.click("button[value=preview]")
        expected = fit(TwoPoint(zero_ref=40, zero_raw=41, span_ref=94, span_raw=96))
        expect(page.locator("#new-gain")).to_have_text(f"{expected.gain:.6g}")
        expect(page.locator("#new-offset")).to_have_text(f"{expected.offset:.6g}")
        page.screenshot(path=screenshots / "console-calibrate.png", full_page=True)
        assert "gain" not in yaml.safe_load(path.read_text())["sensors"][0]["quantities"][0].get(
            "calibration", {}
        ), "a preview must not save"
        page.click("button[value=save]")
        expect(page.locator(".notice")).to_contain_text("saved")
        saved = yaml.safe_load(path.read_text())["sensors"][0]["quantities"][0]["calibration"]
        assert saved == {"gain": expected.gain, "offset": expected.offset}
        assert path.with_name(path.name + ".bak").exists()

        def events(kind):
            return [
                json.loads(d)
                for (d,) in query(db, "SELECT detail FROM events WHERE kind = ?", kind)
            ]

        audit = events("console_calibration")
        assert [(e["who"], e["sensor"], e["quantity"]) for e in audit] == [(name, "noise-01", "LA")]
        assert audit[0]["gain"] == expected.gain
        # The reload records the config change too, naming the sensor's section.
        assert wait_for(lambda: events("config_changed"), 30)
        assert "sensors.noise-01" in events("config_changed")[0]["changed_sections"]

        # After the reload a raw 96 is stored as 94, and the technician is still logged in.
        def calibrated():
            publish_all(
                mosquitto.host,
                mosquitto.port,
                [(topic, noise_payload(96, int(time.time() * 1000)))],
            )
            rows = query(db, "SELECT max_value FROM minute_aggregates WHERE sensor_id = 'noise-01'")
            return any(r[0] is not None and abs(r[0] - 94) < 1e-6 for r in rows)

        assert wait_for(calibrated, 30, 0.5)
        page.goto(f"{url}/sensors/noise-01")
        expect(page).to_have_url(f"{url}/sensors/noise-01")
        expect(page.locator("td.value").first).to_have_text("94")
    finally:
        page.close()


def _up(page, url) -> bool:
    try:
        return page.goto(f"{url}/login").status == 200
    except Exception:
        return False
