"""Incremental verification against the whole-chain verifier, and the record schema.

The receiver checks each record once as it arrives (``cloud_sync.receiver_verify``); these
properties hold it to what ``cloud_sync.chain.verify_chain`` says of the same set of
records, whatever the arrival order, duplicates, losses or restarts of the receiver.
"""

from __future__ import annotations

import copy
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cloud_forge import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.chain import verify_chain
from cloud_sync.receiver_store import ReceiverDB
from cloud_sync.record_schema import record_problem
from edge.errors import SetupError

SIGNER = Signer("gw-prop")
CHAIN = SIGNER.chain(40)
PUBLIC = SIGNER.key.public_key()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def fresh_db(directory: str) -> ReceiverDB:
    """A receiver database that knows SIGNER's key."""
    return ReceiverDB(Path(directory) / "cloud.db", {"gw-prop": SIGNER.public_hex})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keep=st.lists(st.booleans(), min_size=40, max_size=40),
    order=st.randoms(use_true_random=False),
    dups=st.lists(st.integers(0, 39), max_size=10),
    restart_at=st.integers(0, 60),
)
def test_incremental_verdict_matches_the_whole_chain_verifier(keep, order, dups, restart_at):
    records = [r for r, k in zip(CHAIN, keep, strict=True) if k]
    arrivals = records + [CHAIN[i] for i in dups if keep[i]]
    order.shuffle(arrivals)
    with tempfile.TemporaryDirectory() as directory:
        db = fresh_db(directory)
        for n, record in enumerate(arrivals):
            if n == restart_at:  # state is persisted: a restarted receiver carries on
                db.close()
                db = fresh_db(directory)
            assert db.ingest([record], "mqtt")[0].status in {"accepted", "duplicate"}
        verdict = db.verify("gw-prop")
        db.close()
    whole = verify_chain(records, PUBLIC)
    assert verdict.unexplained_gaps == whole.unexplained_gaps
    assert verdict.ok == whole.ok
    assert verdict.records == len(records)
    assert verdict.findings == {}


@settings(max_examples=25, deadline=None)
@given(seq=st.integers(1, 20), order=st.randoms(use_true_random=False))
def test_a_second_signed_record_for_a_seq_is_always_equivocation(seq, order):
    chain = CHAIN[:20]
    forged = SIGNER.record(seq, chain[seq - 1]["prev"], body={"type": "event", "forged": True})
    arrivals = [*chain, forged]
    order.shuffle(arrivals)
    with tempfile.TemporaryDirectory() as directory:
        db = fresh_db(directory)
        db.ingest(arrivals, "https")
        verdict = db.verify("gw-prop")
        db.close()
    assert verdict.seqs("equivocation") == [seq]
    assert verdict.verdict == "tampered"
    # The forgery's successor in the honest chain does not link to it: a fork unless the
    # forgery came first at its seq. Either way the chain is not ok.
    assert verdict.records == 21


def test_altered_record_is_rejected_as_bad_hash_and_kept_aside(tmp_path: Path):
    db = fresh_db(str(tmp_path))
    altered = copy.deepcopy(CHAIN[2])
    altered["body"]["detail"] = {"seq": 999}
    results = db.ingest([CHAIN[0], CHAIN[1], altered], "mqtt")
    assert [r.status for r in results] == ["accepted", "accepted", "rejected"]
    assert results[2].reason == "bad_hash: hash does not match the record"
    verdict = db.verify("gw-prop")
    assert verdict.findings == {"bad_hash": 1}
    assert verdict.rejected == {"bad_hash": 1}
    assert [r["kind"] for r in db.rejected()] == ["bad_hash"]
    assert len(db.records()) == 2
    db.close()


def test_valid_records_pass_the_schema():
    assert all(record_problem(r, gateway="gw-prop") is None for r in CHAIN)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_schema_never_raises_and_names_a_reason(value: Any):
    problem = record_problem(value)
    assert problem is None or (isinstance(problem, str) and problem)


@settings(max_examples=150, deadline=None)
@given(
    field=st.sampled_from(
        [
            "gateway",
            "seq",
            "id",
            "class",
            "created_at",
            "clock_synced",
            "body",
            "prev",
            "hash",
            "sig",
            "resent",
        ]
    ),
    value=json_values,
)
def test_any_field_replaced_by_any_json_is_rejected_or_harmless(field: str, value: Any):
    record = dict(CHAIN[0], **{field: value})
    with tempfile.TemporaryDirectory() as directory:
        db = fresh_db(directory)
        (result,) = db.ingest([record], "mqtt", gateway="gw-prop")
        rows = db.records()
        db.close()
    if result.status == "rejected":
        assert result.reason
        assert rows == []
    else:  # only a value that changes nothing hashed can pass (e.g. resent)
        assert rows[0]["hash"] == CHAIN[0]["hash"]


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(json_values, max_size=6))
def test_ingest_of_arbitrary_json_keeps_everything_aside_and_never_raises(batch: list[Any]):
    with tempfile.TemporaryDirectory() as directory:
        db = fresh_db(directory)
        results = db.ingest(batch, "mqtt", gateway="gw-prop")
        rejected = db.rejected()
        db.close()
    assert [r.status for r in results] == ["rejected"] * len(batch)
    assert len(rejected) == len(batch)


def test_a_receiver_database_of_the_old_format_is_refused_with_a_setup_error(tmp_path: Path):
    with closing(sqlite3.connect(tmp_path / "old.db")) as old:
        old.execute("CREATE TABLE records (arrival INTEGER PRIMARY KEY, id TEXT UNIQUE)")
    with pytest.raises(SetupError, match="another version"):
        ReceiverDB(tmp_path / "old.db")
