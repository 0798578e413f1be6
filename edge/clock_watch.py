"""Trusted time: whether the wall clock can be believed, and when it jumped (no I/O of its own).

A Raspberry Pi has no real-time clock: at boot the wall clock is whatever fake-hwclock
saved at the last shutdown (hours or months behind) until NTP syncs it, and then it
*steps*. A reading stamped with that wall clock lands in the wrong minute, and a judgement
made with it (an exceedance at night that happened by day) is a false legal statement.

:class:`ClockWatch` owns the clock state:

* ``synced`` / ``unsynced`` / ``unknown``: what the sync source says (the kernel's NTP
  flag, :func:`edge.clock.clock_synchronised`; ``unknown`` where it cannot be asked);
* **steps**: every :meth:`ClockWatch.check` compares how far the wall clock moved with how
  far the monotonic clock moved since the last check; a difference beyond
  ``step_tolerance_s`` either way is a step (NTP's slew is at most 0.5 ms/s, far below);
* **trusted**: until the first sync of this run the clock is not trusted when
  ``hold_until_synced`` is on, and readings are held back from judgement (the batch
  builder keeps them with their monotonic receipt time). Once synced, a receipt time is
  corrected with :meth:`ClockWatch.corrected`: ``wall_at_sync − (mono_at_sync − mono)``,
  and the owner replays them and calls :meth:`ClockWatch.trust`.
  A later loss of sync does not take trust away again: the clock was right and free-runs
  with a drift of seconds per day; records say ``clock_synced=false`` meanwhile.

The sync source and both clocks are injected, so tests drive a fake wall clock and a fake
sync flag (the one thing a test machine cannot really do without root).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from edge.clock import clock_synchronised
from edge.config import StrictModel

ClockState = Literal["synced", "unsynced", "unknown"]
SyncSource = Callable[[], bool | None]


class ClockConfig(StrictModel):
    """How the gateway decides that its wall clock can be trusted."""

    hold_until_synced: bool = Field(
        default=False,
        description="Hold readings back from judgement (they are still stored and "
        "acknowledged) until the kernel reports the clock NTP-synchronised for the first "
        "time, then judge them with corrected times. Turn on for a device without a "
        "battery-backed clock (a Raspberry Pi) that has NTP; off, readings are judged with "
        "the clock as it is and records say clock_synced=false.",
    )
    hold_max_readings: int = Field(
        default=50_000,
        ge=0,
        le=1_000_000,
        description="At most this many readings are held back in memory while the clock "
        "is not trusted; beyond it the oldest are dropped from judgement (still stored) "
        "and counted as not judged.",
    )
    step_tolerance_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="A wall-clock jump larger than this (either way) between two checks, "
        "beyond what the monotonic clock moved, is recorded as a clock step.",
    )
    check_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the clock is checked (seconds)."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockChange:
    """Something that happened to the clock, found by one :meth:`ClockWatch.check`."""

    kind: Literal["clock_step", "clock_synchronised", "clock_unsynchronised"]
    at: float
    """Wall time when it was found (after a step: the new, stepped time)."""
    detail: dict[str, Any]


@dataclass(slots=True, kw_only=True)
class ClockWatch:
    """The gateway's clock state; :meth:`check` is called periodically by one owner."""

    source: SyncSource = clock_synchronised
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    hold_until_synced: bool = False
    step_tolerance_s: float = 1.0
    state: ClockState = "unknown"
    trusted: bool = True
    """Read on the ingest's hot path (a plain attribute): may readings be judged now."""
    since: float | None = None
    """Wall time of the last state change (None: the state has not changed in this run)."""
    last_step: dict[str, Any] | None = None
    synced_at: tuple[float, float] | None = None
    """(wall, mono) sampled when the clock was first found synced (the correction anchor)."""
    steps: int = 0
    _last: tuple[float, float] | None = field(default=None, repr=False)

    @classmethod
    def from_config(
        cls, config: ClockConfig, source: SyncSource = clock_synchronised
    ) -> ClockWatch:
        """A watch with the configured policy, sampled once."""
        watch = cls(
            source=source,
            hold_until_synced=config.hold_until_synced,
            step_tolerance_s=config.step_tolerance_s,
        )
        watch.start()
        return watch

    def start(self) -> None:
        """Take the first sample: the state at start, trusted or not (no change reported)."""
        wall, mono = self.wall(), self.mono()
        self.state = _state_of(self.source())
        self._last = (wall, mono)
        if self.state == "synced":
            self.synced_at = (wall, mono)
        # Unknown (not Linux, no adjtimex): there is nothing to wait for.
        self.trusted = not (self.hold_until_synced and self.state == "unsynced")

    def synced(self) -> bool | None:
        """The state as records carry it (``clock_synced``): True, False or None."""
        return None if self.state == "unknown" else self.state == "synced"

    def check(self) -> list[ClockChange]:
        """Sample the clocks and the sync source; return what changed since the last check.

        A step is reported before a sync found in the same check (NTP steps, then says
        synced), so the audit trail reads in the order it happened.
        """
        if self._last is None:
            self.start()
            return []
        wall, mono = self.wall(), self.mono()
        last_wall, last_mono = self._last
        self._last = (wall, mono)
        changes: list[ClockChange] = []
        jump = (wall - last_wall) - (mono - last_mono)
        if abs(jump) > self.step_tolerance_s:
            self.steps += 1
            self.last_step = {
                "at": wall,
                "step_s": round(jump, 6),
                "direction": "forward" if jump > 0 else "back",
                "from": last_wall + (mono - last_mono),
                "synced": self.source() is True,
            }
            changes.append(ClockChange(kind="clock_step", at=wall, detail=dict(self.last_step)))
        now = _state_of(self.source())
        if now != self.state:
            before, self.state, self.since = self.state, now, wall
            if now == "synced":
                first = self.synced_at is None
                if first:
                    self.synced_at = (wall, mono)
                changes.append(
                    ClockChange(
                        kind="clock_synchronised",
                        at=wall,
                        detail={"before": before, "first": first, "trusted_before": self.trusted},
                    )
                )
            elif now == "unsynced" and before == "synced":
                changes.append(
                    ClockChange(kind="clock_unsynchronised", at=wall, detail={"before": before})
                )
        return changes

    def trust(self) -> None:
        """Judge from now on; the owner calls this, under the ingest's lock, right after
        replaying what was held (so no new reading overtakes a held one)."""
        self.trusted = True

    def corrected(self, wall_at_receipt: float, mono_at_receipt: float) -> float:
        """The true wall time of a receipt, now that the clock is synced.

        ``wall_at_sync − (mono_at_sync − mono_at_receipt)``; before any sync the receipt's
        own wall time is all there is.
        """
        if self.synced_at is None:
            return wall_at_receipt
        wall_sync, mono_sync = self.synced_at
        return wall_sync - (mono_sync - mono_at_receipt)

    def view(self) -> dict[str, Any]:
        """JSON-ready state for the status file and the status command."""
        return {
            "state": self.state,
            "trusted": self.trusted,
            "since": self.since,
            "steps": self.steps,
            "last_step": self.last_step,
            "hold_until_synced": self.hold_until_synced,
        }


def _state_of(value: bool | None) -> ClockState:
    return "unknown" if value is None else "synced" if value else "unsynced"
