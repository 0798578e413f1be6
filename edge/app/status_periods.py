"""Evaluation periods in ``offsite-edge status``: each sensor's latest period verdicts.

The running gateway copies its monitors' :attr:`sensors.monitor.SensorMonitor.periods`
(per quantity: counts of valid, invalid and exceeded periods, and the latest finished
period) into the state file (:mod:`edge.app.runstate`); status shows them. They are facts
about finished periods, so status shows the last ones a stopped gateway wrote too, and
says they are not current.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class HasPeriods(Protocol):
    """A sensor monitor (``sensors.monitor.SensorMonitor``), as far as status needs it."""

    @property
    def periods(self) -> dict[str, Any]:
        """``{"counts": {quantity: {...}}, "latest": {quantity: {...}}}`` or ``{}``."""
        ...


def monitor_periods(
    monitors: Mapping[str, HasPeriods], lock: threading.Lock
) -> Callable[[], dict[str, Any]]:
    """A view of every monitor's periods for the state file (sensors without any left out).

    The monitors are fed from the MQTT thread under ``lock``; the copy is taken under it
    so the state writer never reads a dict being changed.
    """

    def view() -> dict[str, Any]:
        with lock:
            return {
                sensor_id: copy.deepcopy(periods)
                for sensor_id, monitor in monitors.items()
                if (periods := monitor.periods)
            }

    return view


def _bounds(limit: Mapping[str, Any]) -> str:
    parts = []
    if limit.get("limit_min") is not None:
        parts.append(f">= {limit['limit_min']:g}")
    if limit.get("limit_max") is not None:
        parts.append(f"<= {limit['limit_max']:g}")
    return " and ".join(parts)


def _limit(latest: Mapping[str, Any]) -> str:
    """`` (limit <= 50)`` or, with several severities, `` (limit warning <= 45, alarm <= 50)``."""
    limits = [lim for lim in latest.get("limits") or [] if isinstance(lim, Mapping)]
    limits = [lim for lim in limits if _bounds(lim)]
    if not limits:
        return ""
    if len(limits) == 1:
        return f" (limit {_bounds(limits[0])})"
    return " (limit " + ", ".join(f"{lim.get('severity')} {_bounds(lim)}" for lim in limits) + ")"


def _verdict(latest: Mapping[str, Any]) -> str:
    coverage = latest.get("coverage")
    cover = "" if coverage is None else f", coverage {100 * float(coverage):.0f}%"
    if not latest.get("valid"):
        why = latest.get("reason") or "incomplete"
        return f"INVALID: {why} (never an exceedance)"
    return ("EXCEEDED" if latest.get("exceeded") else "within") + f"; valid{cover}"


def period_lines(periods: Mapping[str, Any], *, current: bool) -> list[str]:
    """Text lines: per sensor and quantity the latest period's name, time, value, limit
    and verdict, and the counts of valid, invalid and exceeded periods."""
    if not periods:
        return []
    head = "evaluation periods (latest verdict; periods valid/invalid/exceeded)"
    lines = [head + (":" if current else ", last written by a gateway no longer running:")]
    for sensor_id, data in sorted(periods.items()):
        counts = data.get("counts", {}) if isinstance(data, Mapping) else {}
        latest = data.get("latest", {}) if isinstance(data, Mapping) else {}
        for quantity in sorted(set(counts) | set(latest)):
            c = counts.get(quantity, {})
            tally = f"{c.get('valid', 0)}/{c.get('invalid', 0)}/{c.get('exceeded', 0)}"
            warn = "  WARNING invalid periods" if c.get("invalid") else ""
            last = latest.get(quantity)
            if last is None:
                lines.append(f"  {sensor_id} {quantity}: no period finished yet; {tally}{warn}")
                continue
            value = last.get("value")
            shown = "n/a" if value is None else f"{float(value):.1f}"
            lines.append(
                f"  {sensor_id} {quantity}: {last.get('standard_quantity', quantity)} "
                f"{last.get('period_start_local')} to {last.get('period_end_local')} = "
                f"{shown}{_limit(last)} {_verdict(last)}; periods {tally}{warn}"
            )
    return lines
