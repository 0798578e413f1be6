"""Evaluation periods of the standards: alignment, accumulation, validity and certainty.

Pure code (no I/O, no clock): the stateful shell is :mod:`sensors.period_events`.

A standard does not judge a 60 s value: GB 3096-2008 judges the day (Ld) and night (Ln)
Leq over the period, DB11/1488-2018 any 1-hour mean, GB 18483-2001 the mean of five
consecutive ~10 min samples (a sample below ¼ of the largest discarded). The monitor still
seals short *base windows* (``StandardRef.window_s``, aligned in the profile's local time
zone and never straddling a day/night boundary or local midnight); a period is the sum
of the base windows whose start falls in it, so alignment is all that decides which
period (and so which limit) a value belongs to.

Coverage is the time of base windows holding at least one valid reading (N or T);
flagged-only windows count as missing. A period is *valid* when its coverage reaches
``min_coverage`` of its length (GB 18483 blocks: when at least ``min_samples`` samples
survive the ¼ rule). An invalid period is never an exceedance.

*Certainty* (exceedance known before the period ends): for an upper limit, assume the
rest of the period is silence / zero. For an Leq the energy so far already exceeds the
limit's energy over the full period length; for a mean, the mass so far the limit times
the full length; for a maximum, the maximum so far the limit. Validity must be certain
too (coverage only grows), so the final value, over the covered time, is then above the
limit whatever follows. A GB 18483 block is certain only when its last sample is in:
one later, much larger sample could discard all earlier ones and leave fewer than
``min_samples``, which invalidates the block.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from edge.aggregate import level_from_energy
from sensors.rules import Aggregate, Limit, WindowStats

__all__ = [
    "Calendar",
    "Evaluation",
    "PeriodAcc",
    "PeriodKind",
    "Verdict",
    "contribution",
    "is_certain",
    "local_iso",
    "period_bounds",
    "period_value",
    "projected_breach",
    "samples_mean",
    "validity_record",
    "verdict",
    "window_bounds",
]


class PeriodKind(enum.StrEnum):
    """What a quantity is judged over."""

    WINDOW = "window"  # each base window on its own (steady noise, GB 12348/22337)
    DAY_NIGHT = "day_night"  # the whole day or night period (Ld, Ln)
    HOUR = "hour"  # clock hours (or rolling hours with ``rolling``)
    SAMPLES = "samples"  # blocks of consecutive samples, mean with the ¼ rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """How one quantity of one sensor is evaluated (a profile's spec plus overrides)."""

    kind: PeriodKind = PeriodKind.WINDOW
    clause: str = ""
    names: tuple[tuple[str, str], ...] = ()  # period label -> the standard's name (Ld …)
    rolling: bool = False
    sample_s: float = 600.0
    samples: int = 5
    discard_below: float = 0.25
    min_samples: int = 3
    min_coverage: float = 0.75
    coverage_clause: str = ""
    coverage_note: str = ""
    warn_after: float = 0.25
    early_warning: bool = True
    override_clause: str | None = None

    def name(self, label: str, quantity: str) -> str:
        """The standard's name of ``quantity`` in a period labelled ``label``."""
        names = dict(self.names)
        return names.get(label, names.get("any", quantity))


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local day/night boundaries of a profile (``day_night=False``: one period a day)."""

    tz: tzinfo
    day_start_s: float = 6 * 3600.0
    night_start_s: float = 22 * 3600.0
    day_night: bool = True

    def _at(self, day: date, seconds: float) -> float:
        hours, rest = divmod(int(seconds), 3600)
        return datetime(day.year, day.month, day.day, hours, rest // 60, tzinfo=self.tz).timestamp()

    def midnight(self, ts: float) -> tuple[float, float]:
        """Local midnight at or before ``ts`` and the next one (epoch seconds)."""
        day = datetime.fromtimestamp(ts, self.tz).date()
        return self._at(day, 0), self._at(day + timedelta(days=1), 0)

    def segment(self, ts: float) -> tuple[float, float, str]:
        """The day or night period containing ``ts``: ``(start, end, "day"|"night")``.

        Without day/night (``day_night=False``) it is the local day, labelled ``"any"``.
        """
        if not self.day_night:
            start, end = self.midnight(ts)
            return start, end, "any"
        day = datetime.fromtimestamp(ts, self.tz).date()
        marks = sorted(
            (self._at(day + timedelta(days=k), s), label)
            for k in (-1, 0, 1)
            for s, label in ((self.day_start_s, "day"), (self.night_start_s, "night"))
        )
        start, label = max((m for m in marks if m[0] <= ts), default=marks[0])
        end = min(m[0] for m in marks if m[0] > ts)
        return start, end, label


def window_bounds(ts: float, window_s: float, cal: Calendar) -> tuple[float, float]:
    """The base window containing ``ts``: aligned to the start of its day or night period.

    No window straddles a day/night boundary (or, without day/night, local midnight), so
    each one belongs to exactly one period: with 45 min windows the last day window is
    21:45-22:00; an 8 h window at night is 22:00-06:00.
    """
    seg_start, seg_end, _ = cal.segment(ts)
    start = seg_start + math.floor((ts - seg_start) / window_s) * window_s
    return start, min(start + window_s, seg_end)


def period_bounds(ts: float, ev: Evaluation, cal: Calendar) -> tuple[float, float, str]:
    """The evaluation period containing ``ts``: ``(start, end, label)``.

    Clock hours are aligned to local midnight, sample blocks to the start of the day,
    night or (without day/night) local day; both are clipped to it, so none straddles
    a boundary.
    """
    seg_start, seg_end, label = cal.segment(ts)
    if ev.kind is PeriodKind.DAY_NIGHT:
        return seg_start, seg_end, label
    if ev.kind is PeriodKind.HOUR:
        length = 3600.0
        origin, next_midnight = cal.midnight(ts)  # clock hours
    else:
        length = ev.sample_s * ev.samples
        origin, next_midnight = seg_start, seg_end  # blocks from the period's start
    start = origin + math.floor((ts - origin) / length) * length
    end = min(start + length, seg_end, next_midnight)
    return max(start, seg_start), end, label


def local_iso(ts: float, cal: Calendar) -> str:
    """``ts`` as local ISO 8601 time with its UTC offset (for event records)."""
    return datetime.fromtimestamp(ts, cal.tz).isoformat(timespec="seconds")


def contribution(aggregate: Aggregate, stats: WindowStats, value: float | None) -> float:
    """What one base window adds per second of coverage: mean energy for an Leq, else value.

    ``value`` is the window's value as the window path computes it (normalised fume, …).
    """
    if stats.n == 0 or value is None:
        return math.nan  # no valid reading: the window adds no coverage
    if aggregate is Aggregate.LEQ:
        return stats.energy / stats.n
    return value


@dataclass(slots=True, kw_only=True)
class PeriodAcc:
    """Running sums of one quantity over one evaluation period (base windows folded in)."""

    start: float
    end: float
    label: str
    weighted: float = 0.0  # Σ contribution × covered seconds
    covered: float = 0.0  # seconds of base windows with valid readings
    vmax: float = -math.inf
    n: int = 0  # valid readings
    flags: dict[str, int] = field(default_factory=dict)
    resumed: bool = False  # the run began after the period did: earlier data not seen
    samples: dict[int, tuple[float, float]] = field(default_factory=dict)  # slot -> (w, cov)

    @property
    def length(self) -> float:
        """Full length of the period in seconds."""
        return self.end - self.start

    def fold(
        self, w_start: float, w_end: float, per_s: float, stats: WindowStats, ev: Evaluation
    ) -> None:
        """Add one base window (``per_s``: its contribution per covered second)."""
        for flag, count in stats.flags:
            self.flags[flag] = self.flags.get(flag, 0) + count
        if stats.n == 0 or math.isnan(per_s):
            return
        dur = w_end - w_start
        self.weighted += per_s * dur
        self.covered += dur
        self.n += stats.n
        self.vmax = max(self.vmax, stats.vmax)
        if ev.kind is PeriodKind.SAMPLES:
            slot = int((w_start - self.start) // ev.sample_s)
            w, cov = self.samples.get(slot, (0.0, 0.0))
            self.samples[slot] = (w + per_s * dur, cov + dur)

    def state(self) -> dict[str, Any]:
        """JSON-able snapshot, carried in events so a restart can resume the period."""
        return {
            "start": self.start,
            "end": self.end,
            "label": self.label,
            "weighted": self.weighted,
            "covered": self.covered,
            "vmax": self.vmax if math.isfinite(self.vmax) else None,
            "n": self.n,
            "flags": dict(self.flags),
            "resumed": self.resumed,
            "samples": {str(k): list(v) for k, v in self.samples.items()},
        }

    @classmethod
    def from_state(cls, raw: object) -> PeriodAcc | None:
        """Rebuild from :meth:`state` as read back from JSON; None when unreadable."""
        if not isinstance(raw, dict):
            return None
        try:
            vmax = raw.get("vmax")
            samples = raw.get("samples") or {}
            return cls(
                start=float(raw["start"]),
                end=float(raw["end"]),
                label=str(raw["label"]),
                weighted=float(raw["weighted"]),
                covered=float(raw["covered"]),
                vmax=-math.inf if vmax is None else float(vmax),
                n=int(raw["n"]),
                flags={str(k): int(v) for k, v in dict(raw.get("flags") or {}).items()},
                resumed=bool(raw.get("resumed", False)),
                samples={int(k): (float(v[0]), float(v[1])) for k, v in dict(samples).items()},
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """A period's value and whether its data are complete enough to judge."""

    value: float | None
    valid: bool
    coverage: float  # share of the period with valid data (samples: of the sample slots)
    reason: str = ""
    kept: tuple[float, ...] = ()  # GB 18483: samples kept by the ¼ rule
    discarded: tuple[float, ...] = ()


def samples_mean(
    acc: PeriodAcc, ev: Evaluation
) -> tuple[float | None, tuple[float, ...], tuple[float, ...], int]:
    """GB 18483 block: (mean of kept samples, kept, discarded, valid samples).

    A sample is valid when its coverage reaches ``min_coverage`` of ``sample_s``; a valid
    sample below ``discard_below`` × the largest is discarded (§6.5).
    """
    values = [
        w / cov
        for _slot, (w, cov) in sorted(acc.samples.items())
        if cov >= ev.min_coverage * ev.sample_s - 1e-9 and cov > 0
    ]
    if not values:
        return None, (), (), 0
    top = max(values)
    kept = tuple(v for v in values if v >= ev.discard_below * top)
    discarded = tuple(v for v in values if v < ev.discard_below * top)
    return sum(kept) / len(kept), kept, discarded, len(values)


def period_value(aggregate: Aggregate, acc: PeriodAcc, ev: Evaluation) -> float | None:
    """The period's value so far (over its covered time); None without valid data."""
    if ev.kind is PeriodKind.SAMPLES:
        return samples_mean(acc, ev)[0]
    if acc.covered <= 0.0:
        return None
    if aggregate is Aggregate.MAX:
        return acc.vmax
    if aggregate is Aggregate.LEQ:
        return level_from_energy(acc.weighted, acc.covered)
    return acc.weighted / acc.covered


def verdict(aggregate: Aggregate, acc: PeriodAcc, ev: Evaluation) -> Verdict:
    """The verdict on a finished period: its value and validity (never judged if invalid)."""
    if ev.kind is PeriodKind.SAMPLES:
        mean, kept, discarded, valid_samples = samples_mean(acc, ev)
        slots = max(1, math.ceil(acc.length / ev.sample_s - 1e-9))
        ok = len(kept) >= ev.min_samples
        return Verdict(
            value=mean,
            valid=ok,
            coverage=valid_samples / slots,
            reason="" if ok else f"{len(kept)} samples kept, at least {ev.min_samples} needed",
            kept=kept,
            discarded=discarded,
        )
    coverage = acc.covered / acc.length if acc.length > 0 else 0.0
    ok = coverage >= ev.min_coverage - 1e-9 and acc.covered > 0
    return Verdict(
        value=period_value(aggregate, acc, ev),
        valid=ok,
        coverage=coverage,
        reason="" if ok else f"coverage {coverage:.0%} below {ev.min_coverage:.0%}",
    )


def is_certain(aggregate: Aggregate, acc: PeriodAcc, ev: Evaluation, limit: Limit) -> bool:
    """Whether the finished period must exceed ``limit`` whatever the rest brings.

    Only upper limits can be certain early (the rest of the period is assumed to be
    silence or zero, the lowest readings there are); everything else waits for the end.
    """
    if limit.upper is None or limit.lower is not None or ev.kind is PeriodKind.SAMPLES:
        return False
    if acc.covered < ev.min_coverage * acc.length - 1e-9 or acc.covered <= 0:
        return False
    if aggregate is Aggregate.MAX:
        return acc.vmax > limit.upper
    # The lowest final value: what is in, spread over the whole period (silence after).
    # Computed as the final value is, so that rounding cannot make "certain" a period
    # whose final value then equals the limit (which is not an exceedance).
    if aggregate is Aggregate.LEQ:
        return acc.weighted > 0 and level_from_energy(acc.weighted, acc.length) > limit.upper
    if aggregate is Aggregate.MEAN:
        return acc.weighted / acc.length > limit.upper
    return False


def projected_breach(aggregate: Aggregate, acc: PeriodAcc, ev: Evaluation, limit: Limit) -> bool:
    """Whether the period's value so far, carried on to its end, would break ``limit``.

    Projected only once ``warn_after`` of the period has valid data (a GB 18483 block:
    once ``min_samples`` samples are in).
    """
    if ev.kind is PeriodKind.SAMPLES:
        mean, kept, _d, _n = samples_mean(acc, ev)
        if len(kept) < ev.min_samples or mean is None:
            return False
        value: float | None = mean
    else:
        if acc.covered < ev.warn_after * acc.length or acc.covered <= 0:
            return False
        value = period_value(aggregate, acc, ev)
    if value is None:
        return False
    return bool(
        (limit.upper is not None and value > limit.upper)
        or (limit.lower is not None and value < limit.lower)
    )


def validity_record(
    ev: Evaluation,
    v: Verdict | None,
    final: bool,
    *,
    coverage: float | None = None,
    valid: bool | None = None,
) -> dict[str, Any]:
    """The valid-data verdict and the rule behind it, as an event records it.

    ``final``: the verdict is known (the period ended, or its exceedance is certain);
    otherwise it is ``pending``. Without a :class:`Verdict`, ``coverage``/``valid`` give it.
    """
    out: dict[str, Any] = {
        "rule": (
            f"at least {ev.min_samples} samples kept after the 1/4 rule"
            if ev.kind is PeriodKind.SAMPLES
            else f"coverage >= {ev.min_coverage:.0%} of the period"
        ),
        "min_coverage": ev.min_coverage,
        "clause": ev.coverage_clause,
        "note": ev.coverage_note,
        "verdict": "pending",
    }
    if v is not None:
        coverage, valid = v.coverage, (v.valid if final else None)
    out["coverage"] = coverage
    if valid is not None:
        out["verdict"] = "valid" if valid else "invalid"
    if v is not None and v.reason and final:
        out["reason"] = v.reason
    return out
