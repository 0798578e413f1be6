"""Pure maintenance/calibration mode state of a sensor.

While a technician has a sensor in maintenance or calibration, its readings are stored
with the HJ 212 flag ``M`` or ``C`` and never raise an exceedance. The mode is one event
(kind ``maintenance``) that opens when the mode starts, updates when it changes, and
closes when the sensor returns to normal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge.events import EventStatus

__all__ = ["Mode", "ModeState", "change_mode"]


class Mode(enum.StrEnum):
    """Operating mode of a sensor, as set from the CLI."""

    NORMAL = "normal"
    MAINTENANCE = "maintenance"
    CALIBRATION = "calibration"

    @property
    def flag(self) -> str | None:
        """The HJ 212-2017 Table 8 data flag forced onto readings in this mode."""
        return {Mode.NORMAL: None, Mode.MAINTENANCE: "M", Mode.CALIBRATION: "C"}[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeState:
    """The current mode, who set it, why and when."""

    mode: Mode = Mode.NORMAL
    who: str = ""
    why: str = ""
    since: float = 0.0


def change_mode(
    state: ModeState, mode: Mode, who: str, why: str, at: float
) -> tuple[ModeState, EventStatus]:
    """Return the new state and the status of the ``maintenance`` event to emit.

    OPEN when leaving normal, CLOSED when returning to it, UPDATE when switching between
    maintenance and calibration (or re-stating who/why). Raises ValueError for normal →
    normal, which is a technician's mistake worth reporting rather than recording.
    """
    if not who.strip() or not why.strip():
        raise ValueError("who and why are required to change a sensor's mode")
    if mode is Mode.NORMAL:
        if state.mode is Mode.NORMAL:
            raise ValueError("sensor is not in maintenance or calibration")
        return ModeState(mode=mode, who=who, why=why, since=at), EventStatus.CLOSED
    if state.mode is Mode.NORMAL:
        return ModeState(mode=mode, who=who, why=why, since=at), EventStatus.OPEN
    return ModeState(mode=mode, who=who, why=why, since=state.since), EventStatus.UPDATE
