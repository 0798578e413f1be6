"""Key rotation: an explicit record, signed with the old key, that hands the chain to a new key.

From the seq after the rotation record on, only the new key signs; before it, only the old
one. Records travel out of order, so records signed with the new key may arrive before
the rotation record: they are rejected until it arrives, then taken back.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from cloud_forge import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.chain import GENESIS
from cloud_sync.receiver_store import ReceiverDB

GW = "gw-rot"
K0, K1, K2 = Signer(GW), Signer(GW), Signer(GW)


def rotated_chain() -> list[dict[str, Any]]:
    """Seq 1-2 under K0, 3 rotates to K1 (signed K0), 4-5 under K1, 6 to K2, 7-8 under K2."""
    plan = [K0, K0, K0, K1, K1, K1, K2, K2]
    rotations = {3: K1, 6: K2}
    out: list[dict[str, Any]] = []
    prev, t0 = GENESIS, time.time() - 100
    for seq, signer in enumerate(plan, 1):
        body = None
        if seq in rotations:
            body = {"type": "key_rotation", "new_public_key": rotations[seq].public_hex}
        out.append(signer.record(seq, prev, body=body, created_at=t0 + seq))
        prev = out[-1]["hash"]
    return out


CHAIN = rotated_chain()


def fresh(directory: Path) -> ReceiverDB:
    """A receiver database with K0 registered for GW (commissioning)."""
    return ReceiverDB(directory / "cloud.db", {GW: K0.public_hex})


def test_rotation_in_order_is_ok_and_listed(tmp_path: Path):
    db = fresh(tmp_path)
    assert [r.status for r in db.ingest(CHAIN, "mqtt", gateway=GW)] == ["accepted"] * 8
    verdict = db.verify(GW)
    assert verdict.verdict == "ok", verdict.as_dict()
    assert [(r["seq"], r["new_public_key"]) for r in verdict.as_dict()["rotations"]] == [
        (3, K1.public_hex),
        (6, K2.public_hex),
    ]
    db.close()


def test_each_key_signs_only_its_own_seqs(tmp_path: Path):
    db = fresh(tmp_path)
    db.ingest(CHAIN[:5], "https", gateway=GW)
    new_key_too_early = K1.record(3, CHAIN[1]["hash"])  # before the rotation record
    old_key_too_late = K0.record(5, CHAIN[3]["hash"])  # after it
    results = db.ingest([new_key_too_early, old_key_too_late], "https", gateway=GW)
    assert [r.status for r in results] == ["rejected", "rejected"]
    assert all(r.reason and r.reason.startswith("bad_signature:") for r in results)
    verdict = db.verify(GW)
    assert verdict.findings == {"bad_signature": 2}
    assert verdict.records == 5
    db.close()


def test_records_under_the_new_key_arriving_first_are_taken_back(tmp_path: Path):
    db = fresh(tmp_path)
    # Alarms overtake: 4 and 5 (signed K1) before the rotation record at 3 is known.
    early = db.ingest(CHAIN[3:5], "mqtt", gateway=GW)
    assert [r.status for r in early] == ["rejected", "rejected"]
    assert db.verify(GW).rejected == {"bad_signature": 2}
    db.ingest(CHAIN[:3], "mqtt", gateway=GW)
    verdict = db.verify(GW)
    assert verdict.verdict == "ok", verdict.as_dict()
    assert (verdict.records, verdict.findings, verdict.rejected) == (5, {}, {})
    assert db.rejected() == []
    db.close()


def test_old_key_used_after_the_rotation_is_tampering_whenever_it_arrived(tmp_path: Path):
    db = fresh(tmp_path)
    db.ingest(CHAIN[:2], "mqtt", gateway=GW)
    # A holder of the retired key gets seq 4 in before the rotation record reaches the
    # receiver: it verifies under K0 at that moment.
    stolen = K0.record(4, CHAIN[2]["hash"], body={"type": "event", "kind": "forged"})
    assert db.ingest([stolen], "mqtt", gateway=GW)[0].status == "accepted"
    db.ingest(CHAIN[2:5], "mqtt", gateway=GW)
    verdict = db.verify(GW)
    assert verdict.verdict == "tampered"
    assert verdict.seqs("retired_key") == [4]
    assert verdict.findings["equivocation"] == 1  # the real seq 4, under K1, came too
    db.close()


def test_a_rotation_reusing_a_held_seq_swaps_no_key(tmp_path: Path):
    db = fresh(tmp_path)
    plain = K0.chain(4, t0=CHAIN[0]["created_at"] - 1)
    db.ingest(plain, "mqtt", gateway=GW)
    # A holder of K0 slips a rotation to its own key in at seq 3, already held.
    evil = Signer(GW)
    rotation = K0.record(
        3, plain[1]["hash"], body={"type": "key_rotation", "new_public_key": evil.public_hex}
    )
    assert db.ingest([rotation], "mqtt", gateway=GW)[0].status == "accepted"  # kept, reported
    after = evil.record(5, plain[3]["hash"])
    assert db.ingest([after], "mqtt", gateway=GW)[0].status == "rejected"
    verdict = db.verify(GW)
    assert verdict.verdict == "tampered"
    assert verdict.seqs("equivocation") == [3]
    assert (verdict.rotations, verdict.records) == ([], 5)
    db.close()


def test_rotation_record_needs_a_key(tmp_path: Path):
    db = fresh(tmp_path)
    bad = K0.record(1, GENESIS, body={"type": "key_rotation", "new_public_key": "xyz"})
    result = db.ingest([bad], "mqtt", gateway=GW)[0]
    assert result.status == "rejected"
    assert "new_public_key" in str(result.reason)
    db.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(8)), cuts=st.lists(st.integers(1, 7), max_size=4))
def test_any_arrival_order_of_a_rotated_chain_is_ok(order: list[int], cuts: list[int]):
    arrivals = [CHAIN[i] for i in order]
    bounds = sorted({0, *cuts, 8})
    with tempfile.TemporaryDirectory() as work:
        db = fresh(Path(work))
        for a, b in itertools.pairwise(bounds):
            db.ingest(arrivals[a:b], "mqtt", gateway=GW)
        verdict = db.verify(GW)
        assert verdict.verdict == "ok", (order, verdict.as_dict())
        assert (verdict.records, verdict.findings, verdict.rejected) == (8, {}, {})
        assert len(verdict.rotations) == 2
        db.close()
