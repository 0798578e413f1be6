"""Evidence integrity: canonical hashing, the per-gateway hash chain, Ed25519 (pure).

Every outbox record is an *envelope* (gateway, seq, id, class, created_at, clock_synced,
body, prev). Its hash is SHA-256 over the canonical JSON of the envelope; ``prev`` is the
hash of the record with the previous sequence number, so the records form one chain per
gateway. The gateway signs the hash with its Ed25519 key. A receiver that holds the
public key can then show that no record was altered (hash), forged (signature), inserted
or removed (``prev`` links and sequence numbers); records evicted on the device are
covered by signed gap records that carry the hashes at both ends of each evicted range.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64
"""``prev`` of a gateway's first record."""

ENVELOPE_FIELDS = ("gateway", "seq", "id", "class", "created_at", "clock_synced", "body", "prev")
"""The fields covered by a record's hash. Transport fields (hash, sig, resent) are not."""


def canonical_json(value: Any) -> bytes:
    """Canonical UTF-8 JSON: sorted keys, no spaces, no NaN, Python's shortest float repr."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def envelope_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed part of a record (drops hash, sig, resent and any other extra key)."""
    return {key: record.get(key) for key in ENVELOPE_FIELDS}


def record_hash(record: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical envelope of ``record``."""
    return hashlib.sha256(canonical_json(envelope_of(record))).hexdigest()


def sign_hash(key: Ed25519PrivateKey, digest_hex: str) -> str:
    """Base64 Ed25519 signature of a record hash."""
    return base64.b64encode(key.sign(bytes.fromhex(digest_hex))).decode("ascii")


def verify_signature(public_key: Ed25519PublicKey, digest_hex: str, sig_b64: str) -> bool:
    """Whether ``sig_b64`` is the gateway's signature of ``digest_hex``."""
    try:
        public_key.verify(base64.b64decode(sig_b64, validate=True), bytes.fromhex(digest_hex))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_hex(key: Ed25519PublicKey) -> str:
    """Raw 32-byte public key as hex (how it is printed and configured)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """Inverse of :func:`public_key_hex`; raises ValueError on a malformed key."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """The result of verifying one gateway's records."""

    records: int
    first_seq: int | None
    last_seq: int | None
    bad_hash: list[int] = field(default_factory=list)
    bad_signature: list[int] = field(default_factory=list)
    broken_links: list[int] = field(default_factory=list)
    """Seqs whose ``prev`` does not match the record (or gap) before them."""
    explained_gaps: list[tuple[int, int]] = field(default_factory=list)
    unexplained_gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing inserted, removed or altered, and every missing range is explained."""
        return not (
            self.bad_hash or self.bad_signature or self.broken_links or self.unexplained_gaps
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the receiver's API."""
        return {
            "ok": self.ok,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "bad_hash": self.bad_hash,
            "bad_signature": self.bad_signature,
            "broken_links": self.broken_links,
            "explained_gaps": [list(g) for g in self.explained_gaps],
            "unexplained_gaps": [list(g) for g in self.unexplained_gaps],
        }


def gap_ranges(records: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Evicted ranges announced by gap records: first_seq → range (with prev/last_hash)."""
    ranges: dict[int, Mapping[str, Any]] = {}
    for record in records:
        body = record.get("body") or {}
        if body.get("type") == "gap":
            for r in body.get("ranges", []):
                ranges[int(r["first_seq"])] = r
    return ranges


def verify_chain(
    records: Sequence[Mapping[str, Any]],
    public_key: Ed25519PublicKey | None,
    *,
    complete_from_genesis: bool = True,
) -> ChainReport:
    """Verify one gateway's records (any order, duplicates allowed).

    Missing sequence ranges are *explained* when a verified gap record announces them and
    the hashes at both ends of the range match; otherwise they are *unexplained*. With
    ``complete_from_genesis`` the chain must start at seq 1 with the genesis hash.
    Records not yet received at the end of the chain are not a gap.
    """
    by_seq: dict[int, Mapping[str, Any]] = {}
    for record in records:
        by_seq.setdefault(int(record["seq"]), record)
    seqs = sorted(by_seq)
    if not seqs:
        return ChainReport(records=0, first_seq=None, last_seq=None)
    bad_hash, bad_sig, broken = [], [], []
    valid: dict[int, Mapping[str, Any]] = {}
    for seq in seqs:
        record = by_seq[seq]
        digest = record_hash(record)
        if digest != record.get("hash"):
            bad_hash.append(seq)
            continue
        if public_key is not None and not verify_signature(
            public_key, digest, str(record.get("sig") or "")
        ):
            bad_sig.append(seq)
            continue
        valid[seq] = record
    ranges = gap_ranges(valid.values())
    explained: list[tuple[int, int]] = []
    unexplained: list[tuple[int, int]] = []
    expected_prev: str | None = GENESIS if complete_from_genesis else None
    seq = 1 if complete_from_genesis else seqs[0]
    last = seqs[-1]
    while seq <= last:
        present = by_seq.get(seq)
        if present is not None:
            if seq in valid and expected_prev is not None and present.get("prev") != expected_prev:
                broken.append(seq)
            expected_prev = str(present.get("hash")) if seq in valid else None
            seq += 1
            continue
        gap = ranges.get(seq)
        if gap is not None:
            end = int(gap["last_seq"])
            if expected_prev is not None and gap.get("prev") != expected_prev:
                broken.append(seq)
            explained.append((seq, end))
            expected_prev = str(gap.get("last_hash"))
            seq = end + 1
            continue
        end = seq
        while end + 1 <= last and end + 1 not in by_seq and end + 1 not in ranges:
            end += 1
        unexplained.append((seq, end))
        expected_prev = None
        seq = end + 1
    return ChainReport(
        records=len(seqs),
        first_seq=seqs[0],
        last_seq=last,
        bad_hash=bad_hash,
        bad_signature=bad_sig,
        broken_links=broken,
        explained_gaps=explained,
        unexplained_gaps=unexplained,
    )
