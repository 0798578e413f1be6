"""When a sensor counts as unhealthy, and how long maintenance may hide it.

The ``health:`` block of a sensor (``sensors.config.SensorConfig.health``): offline and
stuck checks, the self-declared-flag limit and the maintenance-mode limits.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.config import StrictModel

__all__ = ["HealthConfig"]


class HealthConfig(StrictModel):
    """When a sensor counts as offline or stuck."""

    expected_interval_s: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="How often the sensor normally reports (HJ 212 RtdInterval)."
    )
    offline_multiple: Annotated[float, Field(ge=1)] = Field(
        default=3.0, description="Offline after this many expected intervals without a reading."
    )
    stuck_after_s: Annotated[float, Field(gt=0)] | None = Field(
        default=3600.0,
        description="A quantity repeating one value this long is stuck (None disables).",
    )
    stuck_tolerance: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="Values within this of the run's first value count as equal."
    )
    stuck_tolerances: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Per-quantity stuck tolerance."
    )
    stuck_exempt: tuple[str, ...] = Field(
        default=(), description="Quantities allowed to stay constant (e.g. status codes)."
    )
    self_flag_limit_s: Annotated[float, Field(gt=0, le=7 * 86_400)] | None = Field(
        default=2 * 3600.0,
        description="A quantity the device itself flags (M, C, D, …: never judged) for this "
        "long without a valid reading raises a sensor_self_flagged alarm (None disables).",
    )
    self_flags: tuple[str, ...] = Field(
        default=("F", "M", "S", "D", "C", "B"),
        description="HJ 212 data flags that count as the device declaring itself out of "
        "service (for self_flag_limit_s).",
    )
    maintenance_max_s: float = Field(
        default=4 * 3600.0,
        ge=1,
        le=24 * 3600.0,
        description="Maintenance or calibration mode ends by itself after this long (at most "
        "24 h); the end raises a maintenance_expired warning.",
    )
    maintenance_repeat_limit: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Entering maintenance/calibration more often than this within "
        "maintenance_repeat_window_s raises a maintenance_repeated warning.",
    )
    maintenance_repeat_window_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        le=30 * 86_400,
        description="The window over which maintenance entries are counted.",
    )
