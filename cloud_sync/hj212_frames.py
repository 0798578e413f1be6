"""HJ 212-2017 data frames from minute and hour records (pure functions, no I/O).

What a provincial platform expects, per HJ 212-2017 and its Annex B (see
docs/protocol.md, "HJ 212 mapping"):

- ``ST`` per sensor: configured, else by profile (catering fume → 31, surface water → 21),
  else by kind (noise → 23, water → 21, soil → 25, gas → 22).
- Pollutant codes per reading: configured, else the sensor's profile/decoder code
  (pH → ``w01001``), else the reading name (for quantities without a national code).
- Noise: a sound-level reading (one with an energy sum) goes out as the standard's noise
  items ``Leq-Data``, ``LMx-Data``, ``LMn-Data``; other readings as ``-Min/-Avg/-Max``
  (2051/2061) and ``-Rtd`` (2011).
- Values printed with each code's decimals (Annex B data type ``Nm.n``: noise 1, pH 2 …).

**Flags never vanish.** A minute (or hour) keeps its readings per data flag. Per code the
frame carries one value set and one ``-Flag``:

1. evidence readings exist (``N``, or ``T`` = above the measuring range): the values come
   from the N and T readings; the flag is ``T`` if any T reading exists, else ``N``;
2. otherwise the values come from the readings of the worst flag present
   (D > B > F > C > M > S) and the flag is that flag;
3. every other flag present goes into ``-EFlag`` (C4 in the standard, so at most four;
   worst first). The outbox record keeps every flag with its reading count.

**Incomplete hours and days** (record ``validity`` says a quantity is not valid, see
:mod:`cloud_sync.validity`): the values are sent as computed, but the flag is never N or
T: :func:`cloud_sync.validity.invalid_flags` (worst other flag present, else B) with N/T
moved to ``-EFlag``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.validity import invalid_flags, quantity_valid
from edge.aggregate import level_from_energy
from edge.hj212 import MAX_DATA_SEGMENT, packetise

MAX_SEGMENT = MAX_DATA_SEGMENT

FLAG_RANK = "DBFTCMSN"
"""Data flags (HJ 212-2017 Table 8), worst first: fault, comms fault, stopped, over range,
calibrating, maintenance, manual, normal. Orders ``-EFlag`` and picks rule 2's flag."""

EVIDENCE = frozenset("NT")
EFLAG_CHARS = 4  # HJ 212-2017 Table 4: -EFlag is C4

NOISE_ITEMS = (("Leq", "leq"), ("LMx", "max"), ("LMn", "min"))
"""Noise codes of HJ 212-2017 Annex B.3 sent for a sound-level reading, and their value."""

# Decimals of HJ 212-2017 Annex B data types (Nm.n → n); codes not listed use the
# uplink's default. Noise: B.3 (all N3.1). Water: B.1. Air and meteorology: B.2.
DECIMALS: Mapping[str, int] = {
    **dict.fromkeys(
        ("LA", "L5", "L10", "L50", "L90", "L95", "Leq", "Ld", "Ln", "Ldn", "LMx", "LMn"), 1
    ),
    "w01001": 2,  # pH N2.2
    "w01009": 1,  # DO N3.1
    "w01010": 1,  # water temperature N3.1
    "w01014": 1,  # conductivity N3.1
    "w01017": 1,  # BOD5 N5.1
    "w01018": 1,  # COD N5.1
    "w01019": 1,  # permanganate index N3.1
    "w21001": 2,  # TN N4.2
    "w21003": 2,  # NH3-N N4.2
    "w21011": 2,  # TP N3.2
    "a01001": 1,  # temperature N3.1
    "a01002": 1,  # humidity N3.1
    "a01006": 3,  # pressure N5.3
    "a01007": 1,  # wind speed N4.1
    "a01008": 0,  # wind direction N4
    "a21026": 2,  # SO2 N5.2
    "a21002": 1,  # NOx N5.1
    "a21005": 3,  # CO N3.3
    "a24087": 2,  # hydrocarbons N5.2
    "a24088": 3,  # NMHC N7.3
    "a25002": 3,  # benzene N7.3
    "a25003": 2,  # toluene N4.2
    "a25005": 2,  # xylene N4.2
    "a34001": 3,  # TSP N4.3
    "a34002": 3,  # PM10 N3.3
    "a34004": 3,  # PM2.5 N3.3
    "a34005": 3,  # PM1.0 N3.3
    "a34013": 0,  # smoke dust N4
}

# HJ 212-2017 Table 5 system codes.
ST_BY_PROFILE: Mapping[str, str] = {
    "gb18483-2001": "31",  # catering fume: air pollution source
    "db11-1488-2018": "31",
    "gb3838-2002": "21",  # surface-water quality
    "gb3096-2008": "23",  # acoustic-environment quality
    "gb12348-2008": "23",
    "gb22337-2008": "23",
    "gb15618-2018": "25",  # soil quality
    "soil-probe": "25",
    "particulate-voc": "22",  # air quality
}
ST_BY_KIND: Mapping[str, str] = {"noise": "23", "water": "21", "soil": "25", "gas": "22"}
ST_FALLBACK = "22"


@dataclass(frozen=True, slots=True)
class Hj212Sensor:
    """What the uplink knows about one sensor: kind, profile, pollutant codes, day/night.

    ``day_start_s``/``night_start_s`` are local seconds after midnight (GB 3096-2008 §3:
    06:00 and 22:00 unless the local government moved them); they split a day's Ld/Ln.
    """

    kind: str = ""
    profile: str | None = None
    codes: Mapping[str, str] = field(default_factory=dict)  # reading name → code
    day_start_s: float = 6 * 3600.0
    night_start_s: float = 22 * 3600.0


def default_st(kind: str, profile: str | None) -> str:
    """The system code ``ST`` for a sensor: by profile, else by kind, else 22 (air)."""
    if profile is not None and profile in ST_BY_PROFILE:
        return ST_BY_PROFILE[profile]
    return ST_BY_KIND.get(kind, ST_FALLBACK)


def format_value(value: float, decimals: int) -> str:
    """Print ``value`` with a code's decimals; never ``-0.0``, ``nan`` or ``inf``."""
    if not math.isfinite(value):
        raise ValueError(f"value {value!r} cannot be sent")
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def local_stamp(ts: float, utc_offset_hours: float, *, millis: bool = False) -> str:
    """``YYYYMMDDhhmmss`` (``zzz`` milliseconds too) in the platform's time zone."""
    zone = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    when = dt.datetime.fromtimestamp(ts, zone)
    stamp = when.strftime("%Y%m%d%H%M%S")
    return f"{stamp}{when.microsecond // 1000:03d}" if millis else stamp


class QnClock:
    """Request numbers ``QN`` = local ``YYYYMMDDhhmmsszzz``, strictly increasing.

    Two frames in the same millisecond (a 2011 and its 2051) get consecutive
    milliseconds, so every frame the gateway originates has its own QN.
    """

    def __init__(self, utc_offset_hours: float) -> None:
        self.utc_offset_hours = utc_offset_hours
        self._last_ms = 0

    def next(self, now: float) -> str:
        """A QN for a new frame created at ``now`` (seconds since the epoch)."""
        ms = max(int(now * 1000), self._last_ms + 1)
        self._last_ms = ms
        return local_stamp(ms / 1000, self.utc_offset_hours, millis=True)


@dataclass(frozen=True, slots=True)
class Combined:
    """One quantity of one minute/hour as a frame carries it."""

    flag: str
    eflag: str
    count: int
    lo: float
    hi: float
    avg: float
    leq: float | None


def _rank(flag: str) -> int:
    index = FLAG_RANK.find(flag)
    return index if index >= 0 else -1  # an unknown flag sorts as the worst


def combine(items: Sequence[Mapping[str, Any]], eflag_chars: int = EFLAG_CHARS) -> Combined:
    """Fold one quantity's per-flag items into the values and flags one code carries.

    See the module docstring for the rule. ``items`` are minute/hour body items of one
    quantity (``flag``, ``count``, ``min``, ``max``, ``avg`` and, for sound, ``leq``).
    """
    if not items:
        raise ValueError("no items to combine")
    present = sorted({str(i["flag"]) for i in items}, key=_rank)
    evidence = [i for i in items if i["flag"] in EVIDENCE]
    if evidence:
        flag = "T" if any(i["flag"] == "T" for i in evidence) else "N"
        chosen = evidence
    else:
        flag = present[0]
        chosen = [i for i in items if i["flag"] == flag]
    count = sum(int(i["count"]) for i in chosen)
    total = math.fsum(float(i["avg"]) * int(i["count"]) for i in chosen)
    leq: float | None = None
    if all("leq" in i for i in chosen):
        energy = math.fsum(int(i["count"]) * 10.0 ** (float(i["leq"]) / 10.0) for i in chosen)
        leq = level_from_energy(energy, count)
    lo = min(float(i["min"]) for i in chosen)
    hi = max(float(i["max"]) for i in chosen)
    others = "".join(f for f in present if f != flag)[:eflag_chars]
    return Combined(
        flag=flag,
        eflag=others,
        count=count,
        lo=lo,
        hi=hi,
        avg=min(max(total / count, lo), hi),
        leq=None if leq is None else min(max(leq, lo), hi),
    )


@dataclass(frozen=True, slots=True)
class CodeBook:
    """How one sensor's readings become CP items: codes, decimals and the EFlag width."""

    codes: Mapping[str, str] = field(default_factory=dict)  # reading → code
    decimals: Mapping[str, int] = field(default_factory=dict)  # code → decimals (overrides)
    default_decimals: int = 3
    eflag_chars: int = EFLAG_CHARS

    def code(self, reading: str) -> str:
        """The pollutant code of ``reading`` (the reading name when none is known)."""
        return self.codes.get(reading, reading)

    def fmt(self, code: str, value: float) -> str:
        """``value`` printed with ``code``'s decimals."""
        decimals = self.decimals.get(code, DECIMALS.get(code, self.default_decimals))
        return format_value(value, decimals)


def _by_quantity(items: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        grouped.setdefault(str(item["quantity"]), []).append(item)
    return dict(sorted(grouped.items()))


def flag_items(code: str, c: Combined) -> list[tuple[str, str]]:
    """``<code>-Flag`` and, when other flags were present, ``<code>-EFlag``."""
    out = [(f"{code}-Flag", c.flag)]
    if c.eflag:
        out.append((f"{code}-EFlag", c.eflag))
    return out


def invalidate(c: Combined, items: Sequence[Mapping[str, Any]], eflag_chars: int) -> Combined:
    """``c`` with the flags of an incomplete period (values unchanged)."""
    flag, eflag = invalid_flags({str(i["flag"]) for i in items}, eflag_chars)
    return dataclasses.replace(c, flag=flag, eflag=eflag)


def data_items(body: Mapping[str, Any], book: CodeBook) -> list[tuple[str, str]]:
    """CP items of a 2051 (minute) or 2061 (hour) frame for one sensor's record.

    A quantity the record's ``validity`` marks invalid (an incomplete hour or day) keeps
    its values and gets the flags of :func:`invalidate`. The first sound-level reading
    (one with a ``leq``) becomes the noise items ``Leq/LMx/LMn-Data``; a second one
    would collide with those codes, so it goes out like any other reading (``-Avg`` = its
    Leq).
    """
    out: list[tuple[str, str]] = []
    noise_done = False
    for quantity, items in _by_quantity(body["items"]).items():
        c = combine(items, book.eflag_chars)
        if not quantity_valid(body, quantity):
            c = invalidate(c, items, book.eflag_chars)
        if c.leq is not None and not noise_done:
            noise_done = True
            values = {"leq": c.leq, "max": c.hi, "min": c.lo}
            for code, key in NOISE_ITEMS:
                out += [(f"{code}-Data", book.fmt(code, values[key])), *flag_items(code, c)]
            continue
        code = book.code(quantity)
        out += [
            (f"{code}-Min", book.fmt(code, c.lo)),
            (f"{code}-Avg", book.fmt(code, c.avg if c.leq is None else c.leq)),
            (f"{code}-Max", book.fmt(code, c.hi)),
            *flag_items(code, c),
        ]
    return out


def realtime_items(body: Mapping[str, Any], book: CodeBook) -> list[tuple[str, str]]:
    """CP items of a 2011 frame from a minute record (``-Rtd`` = the minute's value).

    Sound levels are left out: a minute's Leq is not an instantaneous ``LA`` value, and
    the 2051 frame carries it as ``Leq-Data``.
    """
    out: list[tuple[str, str]] = []
    for quantity, items in _by_quantity(body["items"]).items():
        c = combine(items, book.eflag_chars)
        if c.leq is not None:
            continue
        code = book.code(quantity)
        out += [(f"{code}-Rtd", book.fmt(code, c.avg)), *flag_items(code, c)]
    return out


def build_packets(
    *,
    cn: str,
    qn: str,
    st: str,
    pw: str,
    mn: str,
    when: str,
    items: Sequence[tuple[str, str]],
    ack: bool,
) -> list[bytes]:
    """Frames for one data record, split with PNUM/PNO when longer than 1024 bytes.

    The packets of one record share its QN (they are one upload) and each repeats
    ``DataTime``; ``Flag`` is 5 (2017, answer required) or 4, plus D=2 when split
    (:func:`edge.hj212.packetise`).
    """
    header = {"QN": qn, "ST": st, "CN": cn, "PW": pw, "MN": mn, "Flag": "5" if ack else "4"}
    return packetise(header, items, lead=[("DataTime", when)], limit=MAX_SEGMENT)
