"""Rolling (trailing) 1-hour means: DB11/1488-2018's "any 1-hour mean", read literally.

Each base window ends one trailing hour; :meth:`RollingHours.evaluate` returns it as a
window value for the usual lifecycle (:func:`sensors.rules.step`), so a run of breaching
hours is one event with hysteresis, as for per-window quantities. A trailing hour with
less coverage than the evaluation's ``min_coverage`` has no value (never judged).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from sensors.periods import Calendar, Evaluation, local_iso, validity_record
from sensors.rules import WindowStats, WindowValue
from sensors.window import SealedWindow

__all__ = ["HOUR_S", "RollingHours"]

HOUR_S = 3600.0


class RollingHours:
    """The last hour of base windows per quantity: (start, covered s, Σ value × s)."""

    def __init__(self, calendar: Calendar) -> None:
        self._cal = calendar
        self._hist: dict[str, deque[tuple[float, float, float]]] = {}

    def evaluate(
        self,
        quantity: str,
        ev: Evaluation,
        window: SealedWindow,
        stats: WindowStats,
        per_s: float,
    ) -> tuple[WindowValue, dict[str, Any]]:
        """Add ``window`` (``per_s``: its value per covered second, NaN: no data) and
        return the trailing hour ending with it, and the detail its events carry."""
        hist = self._hist.setdefault(quantity, deque())
        if stats.n and not math.isnan(per_s):
            dur = window.end - window.start
            hist.append((window.start, dur, per_s * dur))
        start = window.end - HOUR_S
        while hist and hist[0][0] < start:
            hist.popleft()
        # re-summed each time (at most one hour of windows): no drift from running sums
        covered = sum(h[1] for h in hist)
        coverage = covered / HOUR_S
        valid = covered > 0 and coverage >= ev.min_coverage - 1e-9
        mean = sum(h[2] for h in hist) / covered if covered > 0 else None
        extra = {
            "evaluation": "rolling_hour",
            "standard_quantity": ev.name("any", quantity),
            "period_clause": ev.clause,
            "period_start_local": local_iso(start, self._cal),
            "period_end_local": local_iso(window.end, self._cal),
            "coverage": coverage,
            "valid": valid,
            "validity": validity_record(ev, None, True, coverage=coverage, valid=valid),
        }
        value = mean if valid else None
        wv = WindowValue(start=start, end=window.end, value=value, n=stats.n, flags=stats.flags)
        return wv, extra
