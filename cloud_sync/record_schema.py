"""The protocol's record schema, checked before a receiver does anything else (pure).

:func:`record_problem` answers why a decoded JSON value is not a well-formed record
(``None`` when it is). It never raises, whatever the input, so one malformed record can
only ever be rejected with a reason: it cannot crash the receiver or make the broker
redeliver it forever. The schema is the table in ``docs/protocol.md`` ("Records").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = [
    "DATA_CLASSES",
    "MAX_ID_CHARS",
    "RecordResult",
    "id_problem",
    "parse_batch",
    "record_problem",
]

DATA_CLASSES = frozenset({"alarm", "event", "status", "minute"})
"""The data classes of the protocol."""

MAX_ID_CHARS = 128
"""Longest gateway id or record id accepted (ids are short; a long one is an attack)."""

MAX_SEQ = 2**63 - 1
"""SQLite's integer range: a larger seq cannot be stored, so it cannot be a record."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass in Python, but `true` is not a sequence number.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    return (
        (isinstance(value, float) or _is_int(value))
        and math.isfinite(value)
        and 0 <= value < 10**11
    )


def id_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a usable gateway or record id (``None`` when it is)."""
    if not isinstance(value, str) or not value:
        return f"{name}: not a non-empty string"
    if len(value) > MAX_ID_CHARS or _ID.fullmatch(value) is None:
        return f"{name}: not an identifier (letters, digits, . _ : -, at most {MAX_ID_CHARS})"
    return None


def record_problem(record: Any, *, gateway: str | None = None) -> str | None:
    """Why ``record`` is not a protocol record (``None`` when it is).

    ``gateway`` is the gateway the transport says sent it (MQTT topic, HTTPS batch); the
    record must name the same one.
    """
    if not isinstance(record, Mapping):
        return "record: not a JSON object"
    for name in ("gateway", "id"):
        problem = id_problem(name, record.get(name))
        if problem:
            return problem
    if gateway is not None and record["gateway"] != gateway:
        return f"gateway: record says {record['gateway']!r}, transport says {gateway!r}"
    seq = record.get("seq")
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
        return "seq: not a positive integer"
    data_class = record.get("class")
    if not isinstance(data_class, str) or data_class not in DATA_CLASSES:
        return f"class: not one of {', '.join(sorted(DATA_CLASSES))}"
    if not _is_time(record.get("created_at")):
        return "created_at: not a Unix time in seconds"
    clock_synced = record.get("clock_synced")
    if not (clock_synced is None or isinstance(clock_synced, bool)):
        return "clock_synced: not true, false or null"
    body = record.get("body")
    if not isinstance(body, Mapping) or not isinstance(body.get("type"), str):
        return "body: not an object with a string type"
    for name in ("prev", "hash"):
        value = record.get(name)
        if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
            return f"{name}: not 64 lowercase hex digits"
    sig = record.get("sig")
    if not isinstance(sig, str) or len(sig) > 200 or _B64.fullmatch(sig) is None:
        return "sig: not base64"
    if not isinstance(record.get("resent", False), bool):
        return "resent: not a boolean"
    if body.get("type") == "gap":
        return _gap_problem(body)
    if body.get("type") == "key_rotation":
        new_key = body.get("new_public_key")
        if not isinstance(new_key, str) or _HEX64.fullmatch(new_key) is None:
            return "body.new_public_key: not 64 lowercase hex digits (an Ed25519 public key)"
    return None


def _gap_problem(body: Mapping[str, Any]) -> str | None:
    ranges = body.get("ranges")
    if not isinstance(ranges, list) or not ranges:
        return "body.ranges: a gap record needs a non-empty list of ranges"
    for r in ranges:
        if not isinstance(r, Mapping):
            return "body.ranges: not a list of objects"
        first, last = r.get("first_seq"), r.get("last_seq")
        if not (_is_int(first) and _is_int(last) and 1 <= first <= last <= MAX_SEQ):
            return "body.ranges: first_seq/last_seq not 1 <= first <= last"
        for name in ("prev", "last_hash"):
            value = r.get(name)
            if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
                return f"body.ranges.{name}: not 64 lowercase hex digits"
    counts = body.get("counts", {})
    if not isinstance(counts, Mapping) or not all(_is_int(n) for n in counts.values()):
        return "body.counts: not an object of class -> count"
    return None


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What became of one received record."""

    id: Any
    status: str
    """``accepted`` (stored now), ``duplicate`` (stored before) or ``rejected``."""
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form (HTTP responses)."""
        out = {"id": self.id, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out


def parse_batch(payload: bytes) -> tuple[str | None, list[Any]]:
    """The gateway and records of an uplink message/body (``{"gateway", "records": [...]}``).

    Raises ValueError (or UnicodeDecodeError) when the payload is not such a batch; the
    records themselves are not checked here (see :meth:`ReceiverDB.ingest`).
    """
    try:
        data = json.loads(payload)
    except RecursionError:
        raise ValueError("payload nested too deeply") from None
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError("payload has no records list")
    gateway = data.get("gateway")
    return (gateway if isinstance(gateway, str) else None), records
