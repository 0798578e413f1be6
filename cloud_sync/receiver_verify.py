"""Incremental chain verification for the reference receiver: each record checked once.

A record that passed the schema, its gateway's registered key and its hash is *admitted*
by :func:`admit` inside the receiver's ingest transaction. Admission checks everything that
can be checked with what is already stored, and stores what later records need:

- **equivocation**: a second, different, validly signed record for a seq already held
  (both are kept); a second genesis record (seq 1) is also a **restart** (a replaced
  gateway database re-signed with the same key);
- **fork**: ``prev`` differs from every record (or announced gap range) at ``seq - 1``;
  checked by whichever of the two ends arrives second, so out-of-order delivery (alarms
  first) needs no re-scan;
- **clock going backwards**: ``created_at`` earlier, by more than the tolerance, than a
  record with a lower seq (tracked through the latest-seq "peak" of each gateway);
- **holes**: seq ranges below the highest seq with no record, kept as intervals;
  gap records' ranges are stored, and a hole they cover is *explained* unless it
  covered alarms or events (then it is *flagged*).

:func:`verdict` then answers from these tables alone (no chain re-scan): milliseconds for
a chain of any length. Signature and hash failures are rejected by the caller
(:mod:`cloud_sync.receiver_store`) before admission and only counted here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.chain import GENESIS

__all__ = ["VERIFY_SCHEMA", "ChainVerdict", "admit", "verdict"]

VERIFY_SCHEMA = """
CREATE TABLE IF NOT EXISTS chain_state (
    gateway TEXT PRIMARY KEY,
    records INTEGER NOT NULL DEFAULT 0,
    first_seq INTEGER,
    max_seq INTEGER NOT NULL DEFAULT 0,
    peak_seq INTEGER NOT NULL DEFAULT 0,
    peak_created_at REAL
);
CREATE TABLE IF NOT EXISTS holes (
    gateway TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (gateway, first_seq)
);
CREATE TABLE IF NOT EXISTS gap_ranges (
    gateway TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    last_hash TEXT NOT NULL,
    record_seq INTEGER NOT NULL,
    info TEXT NOT NULL,
    PRIMARY KEY (gateway, first_seq, record_seq)
);
CREATE INDEX IF NOT EXISTS gap_ranges_last ON gap_ranges (gateway, last_seq);
CREATE TABLE IF NOT EXISTS findings (
    n INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_kind ON findings (gateway, kind, seq);
"""

FLAGGED_CLASSES = frozenset({"alarm", "event"})
"""A gap that covered records of these classes is flagged, never explained."""

TAMPERING = ("equivocation", "restart", "fork", "retired_key")
"""Findings that mean the chain itself cannot be trusted."""
ATTENTION = ("clock_backwards", "bad_signature", "bad_hash")
"""Findings about an intact chain: a clock running backwards, forged submissions (rejected)."""
LISTED = 100
"""At most this many seqs are listed per finding kind (the counts are always complete)."""


def finding(cur: sqlite3.Cursor, gateway: str, kind: str, seq: int | None, **detail: Any) -> None:
    """Record one verification finding about ``gateway``'s chain."""
    cur.execute(
        "INSERT INTO findings (gateway, kind, seq, detail) VALUES (?, ?, ?, ?)",
        (gateway, kind, seq, json.dumps(detail, ensure_ascii=False)),
    )


def _hashes_before(cur: sqlite3.Cursor, gateway: str, seq: int) -> set[str]:
    """Hashes a record at ``seq`` may link to: records at seq-1, gap ranges ending there."""
    if seq == 1:
        return {GENESIS}
    hashes = {
        str(h)
        for (h,) in cur.execute(
            "SELECT hash FROM records WHERE gateway = ? AND seq = ?", (gateway, seq - 1)
        )
    }
    hashes.update(
        str(h)
        for (h,) in cur.execute(
            "SELECT last_hash FROM gap_ranges WHERE gateway = ? AND last_seq = ?",
            (gateway, seq - 1),
        )
    )
    return hashes


def _split_hole(cur: sqlite3.Cursor, gateway: str, seq: int) -> None:
    row = cur.execute(
        "SELECT first_seq, last_seq FROM holes WHERE gateway = ? AND first_seq <= ?"
        " ORDER BY first_seq DESC LIMIT 1",
        (gateway, seq),
    ).fetchone()
    if row is None or row[1] < seq:
        return
    first, last = row
    cur.execute("DELETE FROM holes WHERE gateway = ? AND first_seq = ?", (gateway, first))
    if first < seq:
        cur.execute("INSERT INTO holes VALUES (?, ?, ?)", (gateway, first, seq - 1))
    if seq < last:
        cur.execute("INSERT INTO holes VALUES (?, ?, ?)", (gateway, seq + 1, last))


def _state(cur: sqlite3.Cursor, gateway: str) -> tuple[int, int, float | None]:
    cur.execute("INSERT OR IGNORE INTO chain_state (gateway) VALUES (?)", (gateway,))
    max_seq, peak_seq, peak_at = cur.execute(
        "SELECT max_seq, peak_seq, peak_created_at FROM chain_state WHERE gateway = ?",
        (gateway,),
    ).fetchone()
    return int(max_seq), int(peak_seq), peak_at


def _check_clock(
    cur: sqlite3.Cursor, r: Mapping[str, Any], peak_seq: int, peak_at: float | None, tol: float
) -> None:
    gateway, seq, created = r["gateway"], int(r["seq"]), float(r["created_at"])
    if peak_at is None or seq > peak_seq:
        if peak_at is not None and created < peak_at - tol:
            finding(
                cur, gateway, "clock_backwards", seq,
                behind_s=round(peak_at - created, 3), than_seq=peak_seq,
                clock_synced=r.get("clock_synced"),
            )  # fmt: skip
            return  # the peak stays: a clock that keeps running backwards keeps being caught
        cur.execute(
            "UPDATE chain_state SET peak_seq = ?, peak_created_at = ? WHERE gateway = ?",
            (seq, created, gateway),
        )
    elif created > peak_at + tol:
        # An earlier seq made later than the peak: time ran backwards between the two.
        finding(
            cur, gateway, "clock_backwards", peak_seq,
            behind_s=round(created - peak_at, 3), than_seq=seq,
            clock_synced=r.get("clock_synced"),
        )  # fmt: skip


def admit(
    cur: sqlite3.Cursor, r: Mapping[str, Any], *, first_at_seq: bool, clock_tolerance_s: float
) -> None:
    """Check a just-stored, validly signed record against the stored chain.

    ``first_at_seq``: no other record with this seq was held before (else the caller has
    already stored it as a second version of the seq: equivocation).
    """
    gateway, seq = str(r["gateway"]), int(r["seq"])
    max_seq, peak_seq, peak_at = _state(cur, gateway)
    cur.execute(
        "UPDATE chain_state SET records = records + 1,"
        " first_seq = min(coalesce(first_seq, ?), ?) WHERE gateway = ?",
        (seq, seq, gateway),
    )
    if first_at_seq:
        if seq > max_seq:
            if seq > max_seq + 1:
                cur.execute("INSERT INTO holes VALUES (?, ?, ?)", (gateway, max_seq + 1, seq - 1))
            cur.execute("UPDATE chain_state SET max_seq = ? WHERE gateway = ?", (seq, gateway))
        else:
            _split_hole(cur, gateway, seq)
    else:
        others = [
            h
            for (h,) in cur.execute(
                "SELECT hash FROM records WHERE gateway = ? AND seq = ? AND hash != ?",
                (gateway, seq, r["hash"]),
            )
        ]
        finding(cur, gateway, "equivocation", seq, hashes=[*others, r["hash"]], id=r["id"])
        if seq == 1 or r["prev"] == GENESIS:
            finding(cur, gateway, "restart", seq, id=r["id"])
    before = _hashes_before(cur, gateway, seq)
    if before and r["prev"] not in before:
        finding(cur, gateway, "fork", seq, prev=r["prev"], expected=sorted(before))
    if first_at_seq:
        # Successors that arrived first waited for this record to be checked against.
        for succ_seq, succ_prev in cur.execute(
            "SELECT seq, prev FROM records WHERE gateway = ? AND seq = ?", (gateway, seq + 1)
        ).fetchall():
            if succ_prev != r["hash"] and not _covered_end(cur, gateway, seq, succ_prev):
                finding(cur, gateway, "fork", succ_seq, prev=succ_prev, expected=[r["hash"]])
    _check_clock(cur, r, peak_seq, peak_at, clock_tolerance_s)
    body = r["body"]
    if body.get("type") == "gap":
        _admit_gap(cur, gateway, seq, body)


def _covered_end(cur: sqlite3.Cursor, gateway: str, seq: int, digest: str) -> bool:
    """Whether a gap range ending at ``seq`` announces ``digest`` (already checked)."""
    return (
        cur.execute(
            "SELECT 1 FROM gap_ranges WHERE gateway = ? AND last_seq = ? AND last_hash = ?",
            (gateway, seq, digest),
        ).fetchone()
        is not None
    )


def _admit_gap(cur: sqlite3.Cursor, gateway: str, record_seq: int, body: Mapping[str, Any]) -> None:
    info = {
        "reason": body.get("reason"),
        "counts": body.get("counts") or {},
        "records": body.get("records"),
        "from_created_at": body.get("from_created_at"),
        "to_created_at": body.get("to_created_at"),
        "gap_record_seq": record_seq,
    }
    for rng in body["ranges"]:
        first, last = int(rng["first_seq"]), int(rng["last_seq"])
        cur.execute(
            "INSERT OR IGNORE INTO gap_ranges VALUES (?, ?, ?, ?, ?, ?, ?)",
            (gateway, first, last, rng["prev"], rng["last_hash"], record_seq, json.dumps(info)),
        )
        if cur.rowcount != 1:
            continue
        before = _hashes_before(cur, gateway, first)
        if before and rng["prev"] not in before:
            finding(cur, gateway, "fork", first, prev=rng["prev"], expected=sorted(before))
        if cur.execute(
            "SELECT 1 FROM records WHERE gateway = ? AND seq = ?", (gateway, last)
        ).fetchone():
            continue  # records at the range's end were already checked against seq last + 1
        for succ_seq, succ_prev in cur.execute(
            "SELECT seq, prev FROM records WHERE gateway = ? AND seq = ?", (gateway, last + 1)
        ).fetchall():
            if succ_prev != rng["last_hash"]:
                finding(cur, gateway, "fork", succ_seq, prev=succ_prev, expected=[rng["last_hash"]])


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainVerdict:
    """What a regulator sees about one gateway's chain (``/api/chain``)."""

    gateway: str
    registered: bool
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    findings: dict[str, int] = field(default_factory=dict)
    """Count per finding kind (equivocation, restart, fork, clock_backwards, bad_signature…)."""
    listed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """The first findings of each kind, with their detail."""
    explained_gaps: list[tuple[int, int]] = field(default_factory=list)
    flagged_gaps: list[tuple[int, int]] = field(default_factory=list)
    unexplained_gaps: list[tuple[int, int]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    """Every announced gap range with what it covered (counts by class, time span)."""
    rejected: dict[str, int] = field(default_factory=dict)
    rotations: list[dict[str, Any]] = field(default_factory=list)
    """The gateway's key rotations (seq of the rotation record, new key), in seq order."""

    @property
    def verdict(self) -> str:
        """``unregistered``, ``tampered``, ``attention`` or ``ok`` (see docs/protocol.md)."""
        if not self.registered:
            return "unregistered"
        if self.unexplained_gaps or any(self.findings.get(k) for k in TAMPERING):
            return "tampered"
        if self.flagged_gaps or any(self.findings.get(k) for k in ATTENTION):
            return "attention"
        return "ok"

    @property
    def ok(self) -> bool:
        """Intact and complete: nothing altered, forged, replayed or lost unexplained."""
        return self.verdict == "ok"

    def seqs(self, kind: str) -> list[int]:
        """The listed seqs of one finding kind."""
        return [int(f["seq"]) for f in self.listed.get(kind, []) if f["seq"] is not None]

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the receiver's API."""
        return {
            "gateway": self.gateway,
            "verdict": self.verdict,
            "ok": self.ok,
            "registered": self.registered,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "findings": self.findings,
            **{kind: self.listed.get(kind, []) for kind in (*TAMPERING, *ATTENTION)},
            "explained_gaps": [list(g) for g in self.explained_gaps],
            "flagged_gaps": [list(g) for g in self.flagged_gaps],
            "unexplained_gaps": [list(g) for g in self.unexplained_gaps],
            "gaps": self.gaps,
            "rejected": self.rejected,
            "rotations": self.rotations,
        }


def _subtract(hole: tuple[int, int], covers: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces, start = [], hole[0]
    for first, last in sorted(covers):
        if last < start or first > hole[1]:
            continue
        if first > start:
            pieces.append((start, first - 1))
        start = max(start, last + 1)
    if start <= hole[1]:
        pieces.append((start, hole[1]))
    return pieces


def verdict(
    conn: sqlite3.Connection,
    gateway: str,
    *,
    registered: bool,
    rejected: dict[str, int],
    rotations: list[dict[str, Any]] | None = None,
) -> ChainVerdict:
    """The stored verdict of ``gateway``'s chain (reads only small, indexed tables)."""
    state = conn.execute(
        "SELECT records, first_seq, max_seq FROM chain_state WHERE gateway = ?", (gateway,)
    ).fetchone()
    records, first_seq, max_seq = state if state else (0, None, 0)
    counts = {
        str(kind): int(n)
        for kind, n in conn.execute(
            "SELECT kind, count(*) FROM findings WHERE gateway = ? GROUP BY kind", (gateway,)
        )
    }
    listed = {
        kind: [
            {"seq": seq, **json.loads(detail)}
            for seq, detail in conn.execute(
                "SELECT seq, detail FROM findings WHERE gateway = ? AND kind = ?"
                " ORDER BY seq, n LIMIT ?",
                (gateway, kind, LISTED),
            )
        ]
        for kind in counts
    }
    gaps: list[dict[str, Any]] = []
    covers: list[tuple[int, int]] = []
    flagged: list[tuple[int, int]] = []
    explained: list[tuple[int, int]] = []
    for first, last, info in conn.execute(
        "SELECT first_seq, last_seq, info FROM gap_ranges WHERE gateway = ? ORDER BY first_seq",
        (gateway,),
    ):
        detail = json.loads(info)
        is_flagged = any(detail["counts"].get(c) for c in FLAGGED_CLASSES)
        gaps.append({"first_seq": first, "last_seq": last, "flagged": is_flagged, **detail})
        covers.append((first, last))
        (flagged if is_flagged else explained).append((first, last))
    unexplained: list[tuple[int, int]] = []
    for hole in conn.execute(
        "SELECT first_seq, last_seq FROM holes WHERE gateway = ? ORDER BY first_seq", (gateway,)
    ):
        unexplained.extend(_subtract((int(hole[0]), int(hole[1])), covers))
    return ChainVerdict(
        gateway=gateway,
        registered=registered,
        records=int(records),
        first_seq=first_seq,
        last_seq=int(max_seq) or None,
        findings=counts,
        listed=listed,
        explained_gaps=explained,
        flagged_gaps=flagged,
        unexplained_gaps=unexplained,
        gaps=gaps,
        rejected=rejected,
        rotations=rotations or [],
    )
