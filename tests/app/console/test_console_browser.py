"""The technician console in a real headless Chromium against a real gateway and broker."""

from __future__ import annotations

import json
import re
import time

from mqtt_tools import noise_payload, publish_all, query, wait_for
from playwright.sync_api import Page, expect

from edge.app.console.users import load_accounts, users_path


def _login(page: Page, site, name: str, password: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _publish(site, la: float) -> None:
    publish_all(site.host, site.port, [(site.topic, noise_payload(la, int(time.time() * 1000)))])


def _console_events(site, kind: str) -> list[dict]:
    return [
        json.loads(detail)
        for (detail,) in query(
            site.db, "SELECT detail FROM events WHERE kind = ? AND source = 'console'", kind
        )
    ]


def test_one_time_password_must_be_replaced_then_readings_update_live(site, page, screenshots):
    name, one_time = site.new_user()
    _login(page, site, name, one_time)
    expect(page).to_have_url(f"{site.url}/password")
    page.screenshot(path=screenshots / "console-password.png", full_page=True)
    # Nothing else is reachable on a one-time password.
    page.goto(f"{site.url}/sensors")
    expect(page).to_have_url(f"{site.url}/password")
    page.fill("input[name=current]", one_time)
    page.fill("input[name=new]", "a-long-new-password")
    page.fill("input[name=again]", "a-long-new-passwore")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("The new passwords differ.")
    page.fill("input[name=current]", one_time)
    page.fill("input[name=new]", "a-long-new-password")
    page.fill("input[name=again]", "a-long-new-password")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{site.url}/sensors")
    assert load_accounts(users_path(site.config))[name].must_change is False

    # A reading published now appears without reloading the page, and so does the next.
    page.evaluate("window.loadedOnce = 'yes'")
    value = page.locator(".value").first
    _publish(site, 61.5)
    expect(value).to_have_text("61.5")
    _publish(site, 72.25)
    expect(value).to_have_text("72.25")
    assert page.evaluate("window.loadedOnce") == "yes", "the page was reloaded"
    expect(page.locator("[data-live-state]")).to_have_text(re.compile("live"))
    page.screenshot(path=screenshots / "console-sensors.png", full_page=True)

    # The one-time password is spent: it no longer logs in.
    page.context.clear_cookies()
    _login(page, site, name, one_time)
    expect(page.locator(".error")).to_have_text("Wrong account or password.")
    assert wait_for(lambda: any(e["who"] == name for e in _console_events(site, "console_login")))
    changed = _console_events(site, "console_password_changed")
    assert [e["who"] for e in changed].count(name) == 1


def test_a_dead_letter_shows_its_reason_and_raw_payload(site, page, screenshots, ready_user):
    ready_user(page, site)
    bad = json.dumps({"la": "loud", "ts": int(time.time() * 1000)}).encode()
    publish_all(site.host, site.port, [(site.topic, bad)])
    assert wait_for(
        lambda: query(site.db, "SELECT id FROM dead_letters WHERE sensor_id = 'noise-01'")
    )
    page.goto(f"{site.url}/sensors/noise-01")
    letter = page.locator(".dead-letter").first
    expect(letter.locator(".reason")).to_contain_text("LA: str is not a number")
    expect(letter.locator(".payload")).to_have_text(bad.decode())
    # Beside the letters, the decoder's mapping they were read with.
    expect(page.locator("main")).to_contain_text('fields: {"LA": "la"}')
    _publish(site, 55.0)
    expect(page.locator("td.value").first).to_have_text("55")
    page.screenshot(path=screenshots / "console-sensor.png", full_page=True)


def test_a_message_on_a_mistyped_topic_is_shown_on_the_sensors_page(site, page, ready_user):
    ready_user(page, site, "topic")
    mistyped = site.topic.replace("noise", "nosie")
    publish_all(site.host, site.port, [(mistyped, b"57.5")])
    assert wait_for(lambda: query(site.db, "SELECT id FROM dead_letters WHERE sensor_id IS NULL"))
    page.goto(f"{site.url}/sensors")
    unrouted = page.locator("#unrouted .dead-letter").first
    expect(unrouted).to_contain_text(mistyped)
    expect(unrouted.locator(".reason")).to_have_text("no sensor is configured for this topic")
    expect(unrouted.locator(".payload")).to_have_text("57.5")


def test_a_silent_sensor_shows_offline_with_its_open_event(site, page, ready_user):
    ready_user(page, site, "health")
    assert wait_for(
        lambda: query(
            site.db,
            "SELECT seq FROM events WHERE kind = 'sensor_offline' AND source = 'quiet-01'"
            " AND status = 'open'",
        )
    )
    page.goto(f"{site.url}/sensors/quiet-01")
    expect(page.locator("td.health")).to_have_text("offline")
    expect(page.locator("section", has_text="Open events")).to_contain_text("sensor_offline")
    page.goto(f"{site.url}/sensors")
    row = page.locator("tr", has_text="quiet-01")
    expect(row.locator("td.health")).to_have_text("offline")


def _maintenance_rows(site):
    rows = query(
        site.db,
        "SELECT status, detail FROM events WHERE kind = 'maintenance' AND source = 'noise-01'",
    )
    return [(status, json.loads(detail)) for status, detail in rows]


def _outbox_maintenance(site):
    bodies = [
        json.loads(body)
        for (body,) in query(site.db, "SELECT body FROM outbox WHERE data_class = 'event'")
    ]
    return [b for b in bodies if b.get("kind") == "maintenance"]


def test_maintenance_is_recorded_under_the_technicians_name(site, page, ready_user):
    name, _ = ready_user(page, site, "maint")
    page.goto(f"{site.url}/sensors/noise-01")
    page.select_option("select[name=mode]", "maintenance")
    page.fill("input[name=why]", "replacing the windscreen")
    page.click("form[action$='/mode'] button")
    expect(page.locator(".notice")).to_contain_text(f"maintenance requested for noise-01 by {name}")
    # The live view follows the gateway's monitor, without a reload.
    expect(page.locator("#mode")).to_have_text("maintenance")
    assert wait_for(
        lambda: any(
            s == "open" and d["who"] == name and d["why"] == "replacing the windscreen"
            for s, d in _maintenance_rows(site)
        )
    )
    # The same change is in the signed outbox chain, under the technician's name.
    assert wait_for(lambda: any(b["detail"]["who"] == name for b in _outbox_maintenance(site)))
    chained = query(
        site.db,
        "SELECT hash, prev FROM outbox WHERE data_class = 'event'"
        " AND json_extract(body, '$.detail.who') = ?",
        name,
    )
    assert chained
    assert all(h for h, _ in chained)
    page.select_option("select[name=mode]", "normal")
    page.fill("input[name=why]", "windscreen replaced")
    page.click("form[action$='/mode'] button")
    expect(page.locator("#mode")).to_have_text("normal")
    assert wait_for(
        lambda: any(
            s == "closed" and d["who"] == name and d["why"] == "windscreen replaced"
            for s, d in _maintenance_rows(site)
        )
    )


def test_a_post_without_the_csrf_token_is_refused(site, page, ready_user):
    ready_user(page, site, "csrf")
    before = len(_maintenance_rows(site))
    form = {"mode": "calibration", "why": "forged"}
    refused = page.request.post(f"{site.url}/sensors/noise-01/mode", form=form, max_redirects=0)
    assert refused.status == 403
    assert "CSRF" in refused.text()
    wrong = page.request.post(
        f"{site.url}/sensors/noise-01/mode", form={**form, "csrf": "guess"}, max_redirects=0
    )
    assert wrong.status == 403
    # Another site's page cannot post even with the token: its Origin is not the console.
    page.goto(f"{site.url}/sensors/noise-01")
    token = page.input_value("form[action$='/mode'] input[name=csrf]")
    foreign = page.request.post(
        f"{site.url}/sensors/noise-01/mode",
        form={**form, "csrf": token},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert foreign.status == 403
    # The same request with the page's token is taken (the check is not refusing everything).
    # The mode desk applies requests in order: once this one is recorded, a refused one
    # that had slipped through would be recorded too.
    accepted = page.request.post(
        f"{site.url}/sensors/noise-01/mode",
        form={**form, "why": "legit", "csrf": token},
        max_redirects=0,
    )
    assert accepted.status == 303
    assert wait_for(lambda: any(d["why"] == "legit" for _, d in _maintenance_rows(site)))
    assert len(_maintenance_rows(site)) == before + 1
    assert all(d["why"] != "forged" for _, d in _maintenance_rows(site))
    page.goto(f"{site.url}/sensors/noise-01")
    expect(page.locator("#mode")).to_have_text("calibration")
    page.select_option("select[name=mode]", "normal")
    page.fill("input[name=why]", "done")
    page.click("form[action$='/mode'] button")
    expect(page.locator("#mode")).to_have_text("normal")


def test_wrong_passwords_are_refused_then_throttled(site, page):
    name, one_time = site.new_user("victim")
    for _ in range(site.config.console.max_failed_logins):
        _login(page, site, name, "not-the-password")
        expect(page.locator(".error")).to_have_text("Wrong account or password.")
    _login(page, site, name, one_time)
    expect(page.locator(".error")).to_contain_text("Too many failed logins")
    expect(page).to_have_url(f"{site.url}/login")
    assert wait_for(
        lambda: any(e["who"] == name for e in _console_events(site, "console_login_locked"))
    )
    assert not any(e["who"] == name for e in _console_events(site, "console_login"))


def test_pages_need_a_login(site, page, screenshots):
    page.goto(f"{site.url}/gateway")
    expect(page).to_have_url(f"{site.url}/login")
    page.screenshot(path=screenshots / "console-login.png", full_page=True)
    response = page.request.get(f"{site.url}/live")
    assert response.status == 401
    response = page.request.post(f"{site.url}/login", form={"name": "x", "password": "y"})
    assert response.status == 403


def test_gateway_page_shows_connections_clock_version_and_digest(
    site, page, screenshots, ready_user
):
    ready_user(page, site, "gw")
    page.goto(f"{site.url}/gateway")
    body = page.locator("main")
    expect(body).to_contain_text("connected")
    expect(body).to_contain_text("not configured (local only)")
    expect(body).to_contain_text("synchronised now")
    expect(body).to_contain_text("offsite-edge 0.")
    meta = query(site.db, "SELECT value FROM meta WHERE key = 'running_config'")
    expect(body).to_contain_text(json.loads(meta[0][0])["sha256"])
    page.screenshot(path=screenshots / "console-gateway.png", full_page=True)
    for name in ("console-password.png", "console-sensors.png", "console-gateway.png"):
        if (screenshots / name).exists():
            assert (screenshots / name).stat().st_size > 1000
