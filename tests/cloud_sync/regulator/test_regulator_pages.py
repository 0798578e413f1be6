"""The regulator console over HTTP: login, alerts, one alert, handling trail, risk list."""

from __future__ import annotations

import pytest

from cloud_sync.regulator_console import AccountError, add_user


def test_login_needs_own_password_and_refuses_wrong_ones(console, client):
    web = client()
    status, url, _ = web.get("/regulator/alerts")
    assert url.endswith("/regulator/login")
    assert web.get("/regulator")[1].endswith("/regulator/login")
    name, one_time = console.user("read-only")
    status, _, _ = web.login(name, "not-the-password")
    assert status == 401
    status, url, _ = web.login(name, one_time)
    assert url.endswith("/regulator/password")
    # Nothing else is reachable on a one-time password.
    _, url, _ = web.get("/regulator/risk")
    assert url.endswith("/regulator/password")
    status, _, text = web.post(
        "/regulator/password", {"current": one_time, "new": "short", "again": "short"}
    )
    assert status == 400
    assert "at least 10" in text
    own = "a-long-own-password"
    _, url, _ = web.post("/regulator/password", {"current": one_time, "new": own, "again": own})
    assert url.endswith("/regulator/alerts")
    # The one-time password is spent; the new one works in a new browser.
    assert client().login(name, one_time)[0] == 401
    assert client().login(name, own)[1].endswith("/regulator/alerts")


def test_post_without_the_sessions_csrf_token_is_refused(console, client):
    web = client()
    web.get("/regulator/login")
    name, one_time = console.user()
    status, _, _ = web.post("/regulator/login", {"name": name, "password": one_time}, csrf=False)
    assert status == 403
    other = client()
    other.get("/regulator/login")
    web.csrf = other.csrf  # a token, but another session's
    assert web.post("/regulator/login", {"name": name, "password": one_time})[0] == 403


def test_failed_logins_are_throttled(make_console):
    console, web = make_console(max_failed_logins=2, lockout_s=600)
    name, one_time = console.user()
    assert web.login(name, "wrong-1")[0] == 401
    assert web.login(name, "wrong-2")[0] == 401
    # Locked: even the right password waits for the window to pass.
    status, _, text = web.login(name, one_time)
    assert status == 429
    assert "Too many failed logins" in text


def test_add_user_validates_and_resets(console):
    with pytest.raises(AccountError, match="account name"):
        add_user(console.db_path, "X!", "handling")
    with pytest.raises(AccountError, match="role"):
        add_user(console.db_path, "anna", "admin")
    first = add_user(console.db_path, "anna", "read-only")
    with pytest.raises(AccountError, match="exists"):
        add_user(console.db_path, "anna", "handling")
    second = add_user(console.db_path, "anna", "handling", reset=True)
    assert first != second
    rows = console.sql("SELECT role, must_change, password_hash FROM reg_users WHERE name='anna'")
    assert rows[0][:2] == ("handling", 1)
    assert rows[0][2].startswith("$argon2id$")
    assert second not in rows[0][2]
