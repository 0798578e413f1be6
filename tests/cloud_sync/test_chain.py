"""Canonical hashing and chain verification (pure; hypothesis)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.chain import GENESIS, canonical_json, record_hash, sign_hash, verify_chain
from cloud_sync.policy import seq_runs

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def seal(record: dict[str, Any], prev: str, key: Ed25519PrivateKey | None) -> dict[str, Any]:
    """Link ``record`` to ``prev``, set its hash and (with a key) its signature, in place."""
    record["prev"] = prev
    record["hash"] = record_hash(record)
    record["sig"] = None if key is None else sign_hash(key, record["hash"])
    return record


def make_chain(bodies: list[Any], key=KEY) -> list[dict[str, Any]]:
    prev, out = GENESIS, []
    for i, body in enumerate(bodies, start=1):
        record = {
            "gateway": "g",
            "seq": i,
            "id": f"id-{i}",
            "class": "event",
            "created_at": 1.0 * i,
            "clock_synced": None,
            "body": {"type": "x", "v": body},
        }
        seal(record, prev, key)
        prev = record["hash"]
        out.append(record)
    return out


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_canonical_json_is_key_order_independent(value) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(value) == canonical_json(reordered)


@given(st.lists(json_values, min_size=1, max_size=12))
@settings(max_examples=60)
def test_intact_chain_verifies(bodies) -> None:
    assert verify_chain(make_chain(bodies), PUB).ok


@given(st.lists(json_values, min_size=2, max_size=12), st.data())
@settings(max_examples=80)
def test_any_alteration_is_detected(bodies, data) -> None:
    records = make_chain(bodies)
    i = data.draw(st.integers(0, len(records) - 1))
    records[i] = {**records[i], "body": {"type": "x", "v": "tampered", "w": 1}}
    assert not verify_chain(records, PUB).ok


@given(st.lists(json_values, min_size=3, max_size=12), st.data())
@settings(max_examples=80)
def test_any_removal_is_detected(bodies, data) -> None:
    records = make_chain(bodies)
    i = data.draw(st.integers(0, len(records) - 2))  # the last record may simply not be sent yet
    del records[i]
    report = verify_chain(records, PUB)
    assert not report.ok
    assert report.unexplained_gaps


@given(st.lists(json_values, min_size=2, max_size=10), st.data())
@settings(max_examples=80)
def test_insertion_or_resealing_without_the_key_is_detected(bodies, data) -> None:
    records = make_chain(bodies)
    forger = Ed25519PrivateKey.generate()
    i = data.draw(st.integers(0, len(records) - 1))
    # The forger rewrites record i consistently (hash and link) but cannot sign with our key.
    forged = {**records[i], "body": {"type": "x", "v": "forged"}}
    seal(forged, records[i]["prev"], forger)
    records[i] = forged
    assert not verify_chain(records, PUB).ok


def test_reordered_and_duplicated_delivery_still_verifies() -> None:
    records = make_chain(list(range(10)))
    shuffled = records[::-1] + records[:3]
    assert verify_chain(shuffled, PUB).ok


def test_gap_record_explains_an_evicted_range() -> None:
    records = make_chain(list(range(6)))
    evicted = records[1:3]  # seqs 2..3
    kept = [records[0], *records[3:]]
    gap = {
        "gateway": "g",
        "seq": 7,
        "id": "id-7",
        "class": "event",
        "created_at": 7.0,
        "clock_synced": None,
        "body": {
            "type": "gap",
            "ranges": [
                {
                    "first_seq": 2,
                    "last_seq": 3,
                    "prev": evicted[0]["prev"],
                    "last_hash": evicted[-1]["hash"],
                }
            ],
        },
    }
    seal(gap, records[-1]["hash"], KEY)
    report = verify_chain([*kept, gap], PUB)
    assert report.ok, report.as_dict()
    assert report.explained_gaps == [(2, 3)]


@given(st.sets(st.integers(1, 200), max_size=60))
def test_seq_runs_cover_exactly_the_input(seqs) -> None:
    runs = seq_runs(seqs)
    covered = {s for a, b in runs for s in range(a, b + 1)}
    assert covered == seqs
    assert all(runs[i][1] + 1 < runs[i + 1][0] for i in range(len(runs) - 1))
