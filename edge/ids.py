"""Time-ordered identifiers (UUIDv7, RFC 9562) for records that leave the device."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_counter = 0


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """Return a UUIDv7: 48-bit Unix milliseconds, then a counter and random bits.

    Identifiers made in the same process sort in creation order even within one
    millisecond (RFC 9562 method 1, a 12-bit counter seeded randomly each millisecond).
    """
    global _last_ms, _last_counter  # noqa: PLW0603 - process-wide monotonic state
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_counter += 1
            if _last_counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                ms += 1
                _last_counter = int.from_bytes(os.urandom(2)) & 0x7FF
        else:
            _last_counter = int.from_bytes(os.urandom(2)) & 0x7FF
        _last_ms = ms
        counter = _last_counter
    rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """Return a fresh UUIDv7 as its canonical string."""
    return str(uuid7())
