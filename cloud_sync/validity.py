"""Completeness of hour and day records: which ones are valid, and how the wire says so.

Pure code (no I/O). A regulator uses an hourly or daily value only when it is complete:
GB 3095-2012 表4 asks for at least 45 minutes of data for an hourly value and at least
20 hourly values for a daily one. The gateway applies that rule to every hour and day it
sends (the profiles' own period rules judge exceedances in :mod:`sensors.periods`; the
records here carry the data, whatever the profile). For a day's Ld/Ln (GB 3096-2008 §3
periods) the profiles' 75 % rule of the day or night period is used, by analogy with the
same table (``configs/standards/gb3096-2008.yaml``).

A *valid minute* of a quantity is a minute with at least one evidence reading (flag N, or
T: above the measuring range, which is still a measurement); a minute holding only other
flags (maintenance, calibration, fault …) or nothing counts as missing. A *valid hour*
of a quantity is an hour whose record says that quantity is valid.

An incomplete hour or day is never dropped: its values go out as computed, marked invalid
(cloud records: ``valid: false``, ``coverage`` and the clause; HJ 212: the flag rule in
:func:`invalid_flags` and docs/protocol.md, "Flags of incomplete hours and days").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

HOUR_MIN_VALID_MINUTES = 45
DAY_MIN_VALID_HOURS = 20
PERIOD_MIN_COVERAGE = 0.75
HOUR_CLAUSE = "GB 3095-2012 表4: an hourly value needs at least 45 min of valid data"
DAY_CLAUSE = "GB 3095-2012 表4: a daily value needs at least 20 valid hourly values"
DAY_NIGHT_CLAUSE = (
    "GB 3096-2008 §3 periods; 75 % of the day (night) period's hours valid, by analogy with"
    " GB 3095-2012 表4 (GB 3096-2008 states no completeness rule)"
)

EVIDENCE = frozenset("NT")
INVALID_FLAG_RANK = "DBFCMS"
"""Flags that may explain missing data, worst first (HJ 212-2017 Table 8)."""
MISSING_FLAG = "B"
"""The flag of an incomplete period with no other explanation: the data logger did not
receive the instrument's data (HJ 212-2017 Table 8: B, communication abnormal)."""


def valid_minutes(
    rows: Iterable[tuple[str, str, str, int, int]],
) -> dict[tuple[str, int], dict[str, int]]:
    """Valid minutes per (sensor, hour start) and quantity.

    ``rows`` are ``(sensor_id, quantity, flag, minute, count)`` of minute aggregates.
    """
    seen: dict[tuple[str, int], dict[str, set[int]]] = {}
    for sensor, quantity, flag, minute, count in rows:
        if flag in EVIDENCE and count > 0:
            slot = seen.setdefault((sensor, minute // 3600 * 3600), {})
            slot.setdefault(quantity, set()).add(minute)
    return {key: {q: len(m) for q, m in qs.items()} for key, qs in seen.items()}


def hour_validity(quantities: Iterable[str], minutes: Mapping[str, int]) -> dict[str, Any]:
    """The validity fields of an hour record: ``valid``, ``coverage``, ``clause`` and per
    quantity ``validity: {q: {valid, valid_minutes, coverage}}``.

    ``coverage`` (0-1) is the lowest of the quantities: the hour is valid only when every
    quantity it carries is.
    """
    per: dict[str, dict[str, Any]] = {}
    for quantity in sorted(set(quantities)):
        n = int(minutes.get(quantity, 0))
        per[quantity] = {
            "valid": n >= HOUR_MIN_VALID_MINUTES,
            "valid_minutes": n,
            "coverage": round(n / 60, 4),
        }
    return {
        "valid": all(p["valid"] for p in per.values()),
        "coverage": min((p["coverage"] for p in per.values()), default=0.0),
        "min_valid_minutes": HOUR_MIN_VALID_MINUTES,
        "clause": HOUR_CLAUSE,
        "validity": per,
    }


def quantity_valid(body: Mapping[str, Any], quantity: str) -> bool:
    """Whether an hour (or day) record says ``quantity`` is valid (minute records, and
    records older than the rule, have no ``validity``: valid, nothing says otherwise)."""
    per = body.get("validity")
    if not isinstance(per, Mapping):
        return True
    entry = per.get(quantity)
    return bool(entry.get("valid", False)) if isinstance(entry, Mapping) else False


def day_valid(valid_hours: int) -> bool:
    """GB 3095-2012 表4: a daily value needs at least 20 valid hours."""
    return valid_hours >= DAY_MIN_VALID_HOURS


def period_valid(valid_hours: int, period_hours: int) -> bool:
    """A day or night period is valid with 75 % of its hours valid (12 of 16, 6 of 8)."""
    return period_hours > 0 and valid_hours >= math.ceil(PERIOD_MIN_COVERAGE * period_hours)


def invalid_flags(present: Iterable[str], eflag_chars: int = 4) -> tuple[str, str]:
    """``(Flag, EFlag)`` of an incomplete period from the flags of its readings.

    HJ 212-2017 Table 8 has no flag for "too little data". The period must not say N (a
    platform counts an N hourly value as valid), so the flag names why data is missing:
    the worst non-evidence flag present (D > B > F > C > M > S), else B (the logger did
    not get the instrument's data for the missing minutes). Every other flag present,
    N and T included, goes into ``EFlag`` (worst first), so a platform still sees that
    the value rests on normal readings.
    """
    flags = set(present)
    causes = [f for f in INVALID_FLAG_RANK if f in flags]
    flag = causes[0] if causes else MISSING_FLAG
    order = INVALID_FLAG_RANK + "TN"
    others = sorted(
        (f for f in flags if f != flag),
        key=lambda f: (order.find(f) if f in order else len(order), f),
    )
    return flag, "".join(others)[:eflag_chars]
