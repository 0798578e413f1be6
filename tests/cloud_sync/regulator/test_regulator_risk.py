"""The risk list: the order follows the documented score, explained; CSV export."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.chain import sign_hash
from cloud_sync.regulator_console.risk import FREQUENCIES, SiteFacts, frequency_of, score


def _order(text: str) -> list[str]:
    return re.findall(r'<tr data-gateway="([^"]+)">', text)


def test_risk_order_follows_alerts_chain_and_handling(make_console):
    console, web = make_console(grades={"gw-clean": "D"})
    alarmed, warned, clean = (console.gateway(g) for g in ("gw-alarm", "gw-warn", "gw-clean"))
    now = time.time()
    console.ingest("gw-alarm", [alarmed.exceedance(value=9.0, started_at=now - 60),
                                alarmed.exceedance(value=8.0, started_at=now - 120)])  # fmt: skip
    console.ingest("gw-warn", [warned.exceedance(value=2.1, severity="warning")])
    console.ingest("gw-clean", clean.minutes(now - 600, [0.5, 0.6]))
    web.ready(console)

    status, _, text = web.get("/regulator/risk")
    assert status == 200
    assert _order(text) == ["gw-alarm", "gw-warn", "gw-clean"]
    row = re.search(r'<tr data-gateway="gw-alarm">.*?</tr>', text, re.S)[0]
    # 2 open alarms (20) + 2 alarm exceedances today (3 × 1.0 each = 6).
    assert '<td class="score">26<' in row
    assert "open alarms</a>: <b>20</b>" in row
    assert "exceedances (30 days, weighted)</a>: <b>6</b>" in row
    # Each factor links to the alerts behind it.
    link = re.search(r'href="(/regulator/alerts\?[^"]*)">open alarms<', row)[1]
    _, _, behind = web.get(link.replace("&amp;", "&"))
    assert "2 matching" in behind
    assert '<td class="freq quarterly">' in row
    # Grade D inspects at least monthly whatever its score.
    assert (
        '<td class="freq monthly">monthly'
        in re.search(r'<tr data-gateway="gw-clean">.*?</tr>', text, re.S)[0]
    )

    # A record signed with another key (refused) makes gw-warn's chain "attention"…
    forged = warned.signer.record(1, "0" * 64, body={"type": "event", "detail": {}})
    forged["sig"] = sign_hash(Ed25519PrivateKey.generate(), forged["hash"])
    console.call(lambda: console.db.ingest([forged], "mqtt", gateway="gw-warn"))
    # …and closing gw-alarm's alarms takes them out of the open count.
    for alert in [n for (n,) in console.sql("SELECT id FROM reg_alerts WHERE gateway='gw-alarm'")]:
        web.step(alert, "close", comment="false alarm: fan test")
    _, _, text = web.get("/regulator/risk")
    assert _order(text) == ["gw-warn", "gw-alarm", "gw-clean"]
    assert "chain verdict attention: <b>15</b>" in text
    _, _, still_open = web.get("/regulator/alerts?gateway=gw-alarm&state=open")
    assert "0 matching" in still_open

    status, _, body = web.get("/regulator/risk.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["gateway"] for r in rows] == ["gw-warn", "gw-alarm", "gw-clean"]
    assert rows[0]["verdict"] == "attention"
    assert rows[2]["grade"] == "D"
    assert rows[2]["inspection"] == "monthly"
    assert "open warnings=3 (1)" in rows[0]["factors"]


facts = st.builds(
    SiteFacts,
    gateway=st.just("gw"),
    open_alarms=st.integers(0, 50),
    open_warnings=st.integers(0, 50),
    exceedance_weight=st.floats(0, 100),
    gap_records=st.integers(0, 10_000),
    refused_commands=st.integers(0, 20),
    silent_s=st.floats(0, 10 * 86_400),
    verdict=st.sampled_from(["ok", "attention", "tampered", "unregistered"]),
)


@given(facts, st.sampled_from([None, "A", "B", "C", "D"]))
def test_score_is_explained_and_monotone(site, grade):
    risk = score(site, grade)
    factor = {"A": 0.8, "C": 1.25, "D": 1.5}.get(grade or "", 1.0)
    assert abs(risk.score - round(sum(c.points for c in risk.contributions) * factor, 1)) < 0.11
    assert risk.score >= 0
    worse = score(dataclasses.replace(site, open_alarms=site.open_alarms + 1), grade)
    assert worse.score >= risk.score
    assert FREQUENCIES.index(worse.frequency) >= FREQUENCIES.index(risk.frequency)


@given(st.floats(0, 500), st.floats(0, 500), st.sampled_from([None, "A", "B", "C", "D"]))
def test_frequency_grows_with_score(low, high, grade):
    low, high = min(low, high), max(low, high)
    assert FREQUENCIES.index(frequency_of(low, grade)) <= FREQUENCIES.index(
        frequency_of(high, grade)
    )
