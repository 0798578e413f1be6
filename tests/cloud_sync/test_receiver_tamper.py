"""Attacks on the evidence chain, against `offsite-edge cloud` in its own process.

Every record reaches the receiver through the real cloud broker (mosquitto) or over
HTTPS with the bearer token, exactly as a gateway's uplinks deliver; the verdicts are read
from ``/api/chain`` as a regulator reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_forge import CloudProcess, Signer, self_signed

from cloud_sync.chain import GENESIS

pytestmark = pytest.mark.timeout(120)

GW = "gw-site-7"


@pytest.fixture
def gateway() -> Signer:
    """The honest gateway (its key is registered at commissioning)."""
    return Signer(GW)


@pytest.fixture
def cloud(
    mosquitto_factory: Callable[..., Any], tmp_path: Path, gateway: Signer
) -> Iterator[CloudProcess]:
    """A receiver process with ``gateway``'s key registered through `cloud register`.

    Its own broker: the receiver's persistent session must not see other tests' messages.
    """
    cert, key = self_signed(tmp_path)
    proc = CloudProcess(tmp_path, mosquitto_factory(), cert, key)
    done = proc.cli(
        "cloud", "register", "--db", str(proc.db), "--gateway", GW, "--public-key",
        gateway.public_hex,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{GW}: registered" in done.stdout
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_honest_chain_over_mqtt_and_https_out_of_order_is_ok(cloud: CloudProcess, gateway):
    records = gateway.chain(12)
    # Alarms first: later seqs arrive before earlier ones, over both transports.
    cloud.publish(GW, records[6:][::-1])
    status, body = cloud.post(GW, records[:6])
    assert status == 200
    assert body["accepted"] == [r["id"] for r in records[:6]]
    cloud.wait_seen(GW, 12)
    cloud.post(GW, records[:2])  # a resend is a duplicate, still named accepted
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "ok", verdict
    assert (verdict["records"], verdict["first_seq"], verdict["last_seq"]) == (12, 1, 12)
    assert verdict["findings"] == {}


def test_forged_record_reusing_a_seq_is_equivocation_and_both_are_kept(
    cloud: CloudProcess, gateway
):
    records = gateway.chain(5)
    cloud.publish(GW, records)
    cloud.wait_seen(GW, 5)
    assert cloud.chain(GW)["ok"]
    # Same key (stolen or the gateway itself), same seq and prev, different content.
    forged = gateway.record(3, records[1]["hash"], body={"type": "event", "kind": "forged"})
    cloud.publish(GW, [forged])
    cloud.wait_seen(GW, 6)
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "tampered"
    assert verdict["ok"] is False
    assert [e["seq"] for e in verdict["equivocation"]] == [3]
    assert set(verdict["equivocation"][0]["hashes"]) == {records[2]["hash"], forged["hash"]}
    at3 = [r for r in cloud.get(f"/api/records?gateway={GW}") if r["seq"] == 3]
    assert {r["id"] for r in at3} == {records[2]["id"], forged["id"]}


def test_replaced_database_resigned_with_the_same_key_is_a_restart(cloud: CloudProcess, gateway):
    old = gateway.chain(20)
    cloud.publish(GW, old)
    cloud.wait_seen(GW, 20)
    # A new database, re-signed: seq starts again at 1, far below the old maximum.
    new = gateway.chain(3, t0=time.time())
    status, body = cloud.post(GW, new)
    assert status == 200, body
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "tampered"
    assert [r["seq"] for r in verdict["restart"]] == [1]
    assert [e["seq"] for e in verdict["equivocation"]] == [1, 2, 3]


def test_fork_is_found_whichever_end_arrives_first(cloud: CloudProcess, gateway):
    records = gateway.chain(6)
    # seq 8 is linked to a fake seq 7; it arrives before the real seq 7.
    fake7 = gateway.record(7, "ab" * 32)
    real7 = gateway.record(7, records[-1]["hash"])
    orphan8 = gateway.record(8, fake7["hash"])
    cloud.publish(GW, [orphan8, *records])
    cloud.wait_seen(GW, 7)
    assert cloud.chain(GW)["unexplained_gaps"] == [[7, 7]]
    cloud.publish(GW, [real7])
    cloud.wait_seen(GW, 8)
    verdict = cloud.chain(GW)
    assert [f["seq"] for f in verdict["fork"]] == [8]
    assert verdict["unexplained_gaps"] == []
    assert verdict["verdict"] == "tampered"


def test_keys_are_registered_not_learned(cloud: CloudProcess, gateway):
    attacker = Signer(GW)
    # The attacker speaks first and announces its own key for the real gateway id.
    announce = attacker.record(
        1, GENESIS, cls="status", body={"type": "status", "public_key": attacker.public_hex}
    )
    status, body = cloud.post(GW, [announce])
    assert status == 422
    assert body["accepted"] == []
    assert body["rejected"][0]["reason"].startswith("bad_signature")
    # The real gateway's records are not turned into bad signatures.
    records = gateway.chain(3)
    assert cloud.post(GW, records)[0] == 200
    verdict = cloud.chain(GW)
    assert verdict["records"] == 3
    assert verdict["findings"] == {"bad_signature": 1}
    assert verdict["rejected"] == {"bad_signature": 1}
    assert verdict["verdict"] == "attention"
    assert announce["id"] not in {r["id"] for r in cloud.get(f"/api/records?gateway={GW}")}
    # A gateway nobody registered: rejected, reported, never a chain.
    stranger = Signer("gw-unknown")
    cloud.publish("gw-unknown", stranger.chain(2))
    cloud.wait_seen("gw-unknown", 2)
    unknown = cloud.chain("gw-unknown")
    assert unknown["verdict"] == "unregistered"
    assert unknown["records"] == 0
    assert unknown["rejected"] == {"unregistered": 2}
    rejected = cloud.get("/api/rejected?gateway=gw-unknown")
    assert [r["kind"] for r in rejected] == ["unregistered", "unregistered"]


def test_clock_running_thirty_days_backwards_is_reported(cloud: CloudProcess, gateway):
    now = time.time()
    records, prev = [], GENESIS
    for seq in range(1, 11):  # each record 3 days earlier than the one before
        records.append(gateway.record(seq, prev, created_at=now - (seq - 1) * 3 * 86400))
        prev = records[-1]["hash"]
    cloud.publish(GW, records)
    cloud.wait_seen(GW, 10)
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "attention"
    assert [c["seq"] for c in verdict["clock_backwards"]] == list(range(2, 11))
    assert verdict["clock_backwards"][-1]["behind_s"] == pytest.approx(27 * 86400, abs=1)


def _gap_record(gateway: Signer, seq: int, prev: str, evicted: list[dict], counts: dict) -> dict:
    body = {
        "type": "gap", "reason": "quota", "counts": counts, "records": len(evicted),
        "from_created_at": evicted[0]["created_at"], "to_created_at": evicted[-1]["created_at"],
        "ranges": [{
            "first_seq": evicted[0]["seq"], "last_seq": evicted[-1]["seq"],
            "prev": evicted[0]["prev"], "last_hash": evicted[-1]["hash"],
        }],
    }  # fmt: skip
    return gateway.record(seq, prev, body=body)


def test_gap_that_covered_alarms_is_flagged_and_one_of_minutes_explained(
    cloud: CloudProcess, gateway
):
    records = gateway.chain(9)
    kept, evicted_minutes = records[:3], records[3:5]
    gap1 = _gap_record(gateway, 10, records[-1]["hash"], evicted_minutes, {"minute": 2})
    cloud.publish(GW, [*kept, *records[5:], gap1])
    cloud.wait_seen(GW, 8)
    verdict = cloud.chain(GW)
    assert verdict["explained_gaps"] == [[4, 5]]
    assert verdict["verdict"] == "ok", verdict
    # Now records 11..12 are evicted with an alarm among them: flagged, not explained.
    more = gateway.chain(2, start=11, prev=gap1["hash"])
    gap2 = _gap_record(gateway, 13, more[-1]["hash"], more, {"alarm": 1, "event": 1})
    cloud.publish(GW, [gap2])
    cloud.wait_seen(GW, 9)
    verdict = cloud.chain(GW)
    assert verdict["flagged_gaps"] == [[11, 12]]
    assert verdict["unexplained_gaps"] == []
    assert verdict["verdict"] == "attention"
    flagged = [g for g in verdict["gaps"] if g["flagged"]]
    assert flagged[0]["counts"] == {"alarm": 1, "event": 1}


def test_unexplained_gap_is_tampering(cloud: CloudProcess, gateway):
    records = gateway.chain(7)
    cloud.publish(GW, records[:3] + records[5:])
    cloud.wait_seen(GW, 5)
    verdict = cloud.chain(GW)
    assert verdict["unexplained_gaps"] == [[4, 5]]
    assert verdict["verdict"] == "tampered"


def test_invalid_records_are_kept_aside_acknowledged_and_never_redelivered(
    cloud: CloudProcess, gateway
):
    good, sentinel = gateway.chain(3)[:2], gateway.chain(3)[2:]
    bad_seq = dict(good[0], seq="abc")
    cloud.publish(GW, [bad_seq])
    cloud.publish_raw(f"offsite/{GW}/up/event", b"{not json")
    cloud.publish_raw(f"offsite/{GW}/up/event", b'{"gateway": "x", "records": [1, null]}')
    cloud.publish(GW, [good[0]], topic_gateway="gw-other")  # the topic names another gateway
    cloud.publish(GW, good)
    cloud.wait_seen(GW, 2)
    deadline = time.monotonic() + 20
    while len(cloud.get("/api/rejected")) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    reasons = [(r["kind"], r["reason"]) for r in cloud.get("/api/rejected")]
    assert ("schema", "seq: not a positive integer") in reasons
    assert any(kind == "schema" and reason.startswith("message:") for kind, reason in reasons)
    assert [k for k, _ in reasons].count("schema") == 4
    assert [k for k, _ in reasons].count("gateway_mismatch") == 1
    assert cloud.chain(GW)["verdict"] == "ok"
    # Everything was acknowledged: a restart gets nothing redelivered, and it is still up.
    cloud.stop()
    cloud.start()
    # The broker hands a resumed session its unacknowledged messages before new ones, so
    # once the sentinel is in, any redelivery would be too.
    cloud.publish(GW, sentinel)
    cloud.wait_seen(GW, 4)
    assert len(cloud.get("/api/rejected")) == 5
    deadline = time.monotonic() + 20
    while cloud.chain(GW)["records"] < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # the sentinel may be counted as seen before its chain step is stored
    assert cloud.chain(GW)["records"] == 3


def test_key_rotation_is_a_signed_record_and_the_old_key_stops_at_it(cloud: CloudProcess, gateway):
    new = Signer(GW)
    records = gateway.chain(3)
    t0 = records[0]["created_at"] - 1  # seq n is made at t0 + n
    rotation = gateway.record(
        4,
        records[-1]["hash"],
        body={"type": "key_rotation", "new_public_key": new.public_hex},
        created_at=t0 + 4,
    )
    after = new.chain(2, start=5, prev=rotation["hash"], t0=t0)
    # Over HTTPS before the rotation record is known: refused, so the uplink keeps them.
    status, body = cloud.post(GW, after)
    assert status == 422
    assert all(r["reason"].startswith("bad_signature:") for r in body["rejected"])
    cloud.publish(GW, [*records, rotation])
    cloud.wait_seen(GW, 6)  # 4 admitted; the 2 rejected ones taken back once it arrived
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "ok", verdict
    assert (verdict["records"], verdict["rejected"]) == (6, {})
    assert [(r["seq"], r["new_public_key"]) for r in verdict["rotations"]] == [(4, new.public_hex)]
    assert cloud.post(GW, after)[1]["duplicates"] == 2  # the uplink's retry: delivered
    # The new key signing before the rotation, the old one after it: forgeries.
    early = new.record(
        3, records[1]["hash"], body={"type": "event", "kind": "forged"}, created_at=t0 + 3
    )
    late = gateway.record(7, after[-1]["hash"], created_at=t0 + 7)
    status, body = cloud.post(GW, [early, late])
    assert status == 422
    assert [r["reason"].split(":")[0] for r in body["rejected"]] == ["bad_signature"] * 2
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "attention"
    assert [f["seq"] for f in verdict["bad_signature"]] == [3, 7]
