"""Alerts derived from stored records: list, filters, pages, one alert with its context."""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid

from cloud_sync.regulator_console.alerts import sync_all


def _ids(text: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-alert="(\d+)"', text)]


def test_alerts_appear_filtered_and_paged(make_console):
    console, web = make_console(page_size=5)
    a, b = console.gateway("gw-a"), console.gateway("gw-b")
    now = time.time()
    console.ingest("gw-a", [a.exceedance(value=3.1, started_at=now - 100 * i) for i in range(7)])
    console.ingest("gw-b", [b.exceedance(value=2.5, severity="warning", started_at=now - 50)])
    info = b.record("event", {"type": "event", "event_id": "e-info", "kind": "config_changed",
                              "source": "gateway", "severity": "info", "status": "instant",
                              "started_at": now, "detail": {}})  # fmt: skip
    console.ingest("gw-b", [info])
    web.ready(console)

    status, _, text = web.get("/regulator/alerts")
    assert status == 200
    assert "8 matching" in text  # info events are not alerts by default
    first = _ids(text)
    assert len(first) == 5
    # Newest first, and the next page continues where this one ended.
    nxt = re.search(r'href="(/regulator/alerts\?[^"]+)" rel="next"', text)
    assert nxt is not None
    _, _, second = web.get(nxt[1].replace("&amp;", "&"))
    assert len(_ids(second)) == 3
    assert not set(first) & set(_ids(second))

    _, _, text = web.get("/regulator/alerts?gateway=gw-b")
    assert len(_ids(text)) == 1
    _, _, text = web.get("/regulator/alerts?severity=alarm")
    assert "7 matching" in text
    _, _, text = web.get("/regulator/alerts?severity=info&gateway=gw-b")
    assert "2 matching" in text
    _, _, text = web.get("/regulator/alerts?kind=violation")
    assert "0 matching" in text
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - 250))
    _, _, text = web.get(f"/regulator/alerts?severity=alarm&since={since}")
    assert "3 matching" in text  # started now, now-100, now-200
    assert web.get("/regulator/alerts?severity=loud")[0] == 400
    assert web.get("/regulator/alerts?since=yesterday")[0] == 400


def test_an_event_with_many_records_is_one_alert_whatever_their_order(console, client):
    gw = console.gateway("gw-order")
    event_id, t0 = str(uuid.uuid4()), time.time() - 600
    opened = gw.exceedance(value=2.4, severity="warning", event_id=event_id, started_at=t0)
    raised = gw.exceedance(value=4.8, severity="alarm", status="update", event_id=event_id,
                           started_at=t0)  # fmt: skip
    closed = gw.exceedance(value=1.2, severity="warning", status="closed", event_id=event_id,
                           started_at=t0)  # fmt: skip
    # The alarm overtakes its backlog (alarms first), then the rest arrive; one is resent.
    console.ingest("gw-order", [raised])
    console.ingest("gw-order", [closed, opened])
    console.call(lambda: console.db.ingest([opened], "mqtt", gateway="gw-order"))
    web = client()
    web.ready(console)
    _, _, text = web.get("/regulator/alerts?gateway=gw-order")
    (alert,) = _ids(text)
    rows = console.sql(
        "SELECT severity, event_status, records, first_seq, last_seq FROM reg_alerts"
    )
    # The worst severity sticks; the highest seq decides the lifecycle; the duplicate is
    # the receiver's (never stored twice).
    assert rows == [("alarm", "closed", 3, 1, 3)]
    _, _, page = web.get(f"/regulator/alerts/{alert}")
    assert "closed" in page
    assert 'class="fact-window_value">1.2<' in page


def test_alert_page_shows_standard_chart_chain_and_evidence(console, client):
    gw = console.gateway("gw-page")
    t0 = time.time() - 1800
    console.ingest("gw-page", gw.minutes(t0 - 600, [1.0, 1.2, 1.5, 2.6, 3.4, 2.9, 1.1]))
    console.ingest("gw-page", [gw.exceedance(value=3.4, started_at=t0 - 600 + 180)])
    picture = b"\x89PNG\r\n\x1a\n" + b"kitchen frame" * 10
    digest = hashlib.sha256(picture).hexdigest()
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    evidence = console.data_dir / "evidence"
    evidence.mkdir()
    (evidence / f"{digest}.png").write_bytes(picture)
    console.ingest("gw-page", [gw.violation(digest), gw.violation(missing)])
    web = client()
    web.ready(console, role="read-only")
    _, _, text = web.get("/regulator/alerts?gateway=gw-page")
    exceedance, *violations = sorted(_ids(text))

    status, _, page = web.get(f"/regulator/alerts/{exceedance}")
    assert status == 200
    for fact in ("GB 18483-2001", "Table 2", "mg/m3", 'class="fact-limit_max">2<', "3.4"):
        assert fact in page, fact
    assert 'id="verdict">ok' in page
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    assert svg[0].count(",") >= 7  # a point per minute
    assert 'class="limit"' in svg[0]
    assert "read-only" in page  # no handling forms for this account
    assert "/steps" not in page

    _, _, page = web.get(f"/regulator/alerts/{violations[0]}")
    assert f'src="/regulator/evidence/{digest}"' in page
    status, _, body = web.get(f"/regulator/evidence/{digest}")
    assert status == 200
    assert body.encode("utf-8", "surrogateescape") == picture
    _, _, page = web.get(f"/regulator/alerts/{violations[1]}")
    assert 'id="no-evidence"' in page
    assert web.get(f"/regulator/evidence/{missing}")[0] == 404
    # A file whose bytes do not match its name is not served as that evidence.
    (evidence / missing).write_bytes(b"something else")
    assert web.get(f"/regulator/evidence/{missing}")[0] == 404


def test_chain_verdict_of_a_tampered_gateway_is_shown(console, client):
    gw = console.gateway("gw-bad")
    records = [gw.exceedance(value=5.0) for _ in range(3)]
    console.ingest("gw-bad", [records[0], records[2]])  # seq 2 never arrives, no gap record
    web = client()
    web.ready(console)
    _, _, text = web.get("/regulator/alerts?gateway=gw-bad")
    _, _, page = web.get(f"/regulator/alerts/{_ids(text)[0]}")
    assert 'id="verdict">tampered' in page


def test_running_counts_match_a_recount_whatever_the_arrival_order(console, client):
    """The risk list's per-day and open counts equal a count over the alerts themselves."""
    rng = random.Random(5)
    gw = console.gateway("gw-counts")
    now = time.time()
    records = []
    for n in range(40):
        event_id, started = str(uuid.uuid4()), now - rng.uniform(0, 40 * 86_400)
        for status, severity in rng.sample(
            [("open", "warning"), ("update", "alarm"), ("closed", "warning")], rng.randint(1, 3)
        ):
            records.append(gw.exceedance(value=3.0, severity=severity, status=status,
                                         event_id=event_id, started_at=started - n))  # fmt: skip
    rng.shuffle(records)
    for i in range(0, len(records), 7):
        console.ingest("gw-counts", records[i : i + 7])
        console.call(lambda: sync_all(console.db.conn))
    web = client()
    web.ready(console)
    ids = [n for (n,) in console.sql("SELECT id FROM reg_alerts")]
    for alert in rng.sample(ids, 10):
        web.step(alert, "close", comment="checked")
    recount_open = console.sql(
        "SELECT gateway, sev_rank, count(*) FROM reg_alerts WHERE state != 'closed'"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert console.sql("SELECT gateway, sev_rank, n FROM reg_open WHERE n != 0 ORDER BY 1, 2") == (
        recount_open
    )
    recount_daily = console.sql(
        "SELECT gateway, CAST(started_at / 86400 AS INTEGER), kind, sev_rank, count(*)"
        " FROM reg_alerts GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    )
    assert (
        console.sql(
            "SELECT gateway, day, kind, sev_rank, n FROM reg_daily WHERE n != 0 ORDER BY 1, 2, 3, 4"
        )
        == recount_daily
    )
