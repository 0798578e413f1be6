"""Immediate alarms pushed to real local webhooks that fail their first attempts."""

from __future__ import annotations

import json
import uuid

from mqtt_tools import wait_for

from cloud_sync.regulator_console.push import alarm_text, backoff_s, request_body


def _config(hooks) -> dict:
    fast = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 5}
    return {
        "webhooks": [
            {"name": "ops", "url": f"{hooks.url}/hook", "format": "json", **fast},
            {"name": "dingtalk", "url": f"{hooks.url}/robot/send", "format": "dingtalk", **fast},
        ]
    }


def test_alarms_are_pushed_with_retries_once_and_durably(make_console, webhooks):
    hooks = webhooks(fail_json=2, fail_robot=1)
    console, _ = make_console(**_config(hooks))
    gw = console.gateway("gw-push")
    event_id = str(uuid.uuid4())
    console.ingest("gw-push", [gw.exceedance(value=6.5, event_id=event_id)])
    # A warning is not an immediate alarm: never pushed.
    console.ingest("gw-push", [gw.exceedance(value=2.2, severity="warning")])
    done = "SELECT count(*) FROM reg_push WHERE pushed_at IS NOT NULL"
    assert wait_for(lambda: console.sql(done) == [(2,)], 30, 0.05), console.sql(
        "SELECT target, attempts, last_error FROM reg_push"
    )
    assert len(hooks.received["json"]) == 3  # two 503s, then accepted
    assert len(hooks.received["robot"]) == 2  # one errcode, then accepted
    generic = hooks.received["json"][-1]
    assert generic["gateway"] == "gw-push"
    assert generic["event_id"] == event_id
    assert generic["value"] == 6.5
    assert generic["standard"] == "GB 18483-2001"
    robot = hooks.received["robot"][-1]
    assert robot["msgtype"] == "text"
    assert set(robot) == {"msgtype", "text"}
    assert "gw-push" in robot["text"]["content"]
    assert "6.5 mg/m3" in robot["text"]["content"]
    attempts = console.sql("SELECT target, attempts FROM reg_push ORDER BY target")
    assert attempts == [("dingtalk", 2), ("ops", 3)]

    # More records of the same alarm push nothing new.
    console.ingest("gw-push", [gw.exceedance(value=7.0, event_id=event_id, status="update")])
    assert wait_for(lambda: console.sql("SELECT count(*) FROM reg_alerts") == [(2,)], 10)
    assert console.sql("SELECT count(*) FROM reg_push") == [(2,)]

    # After a restart nothing already pushed is sent again; a new alarm is.
    console.close()
    again = type(console)(console.db_path.parent, console.config).start()
    try:
        before = {k: len(v) for k, v in hooks.received.items()}
        gw2 = again.gateway("gw-push-2")
        again.ingest("gw-push-2", [gw2.exceedance(value=9.9)])
        done = "SELECT count(*) FROM reg_push WHERE pushed_at IS NOT NULL"
        assert wait_for(lambda: again.sql(done) == [(4,)], 30, 0.05)
        assert {k: len(v) - before[k] for k, v in hooks.received.items()} == {"json": 1, "robot": 1}
    finally:
        again.close()


def test_a_push_that_keeps_failing_is_parked_with_its_reason(make_console, webhooks):
    hooks = webhooks(fail_json=1000, fail_robot=0)
    config = _config(hooks)
    config["webhooks"] = [{**config["webhooks"][0], "max_attempts": 3}]
    console, web_client = make_console(**config)
    gw = console.gateway("gw-down")
    console.ingest("gw-down", [gw.exceedance(value=8.0)])
    parked = "SELECT attempts, last_error FROM reg_push WHERE failed_at IS NOT NULL"
    assert wait_for(lambda: bool(console.sql(parked)), 30, 0.05)
    assert console.sql(parked) == [(3, "HTTP 503: busy")]
    assert len(hooks.received["json"]) == 3
    web_client.ready(console, role="read-only")
    _, _, page = web_client.get("/regulator/alerts/1")
    assert "gave up after 3 attempts: HTTP 503: busy" in page


def test_payload_shapes_and_backoff_bounds():
    payload = {"gateway": "gw", "source": "fume-01", "kind": "exceedance", "quantity": "fume",
               "value": 3.0, "unit": "mg/m3", "limit_max": 2.0, "standard": "GB 18483-2001",
               "clause": "Table 2", "started_at": 0.0, "path": "/regulator/alerts/1"}  # fmt: skip
    for fmt in ("dingtalk", "wecom"):
        body = request_body(fmt, payload)
        assert body == {"msgtype": "text", "text": {"content": alarm_text(payload)}}
        json.dumps(body)
    assert request_body("json", payload) == payload
    assert "limit 2.0; GB 18483-2001 Table 2" in alarm_text(payload)
    for attempts in range(1, 30):
        wait = backoff_s(attempts, 1.0, 60.0)
        ceiling = min(60.0, 2.0 ** (attempts - 1))
        assert ceiling / 2 <= wait <= ceiling
