"""The smallest sensor config a SensorMonitor accepts (the shape of sensors.config's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sensors.config import HealthConfig, StandardRef


@dataclass(frozen=True)
class Q:
    """A quantity: its name and unit."""

    name: str
    unit: str


@dataclass(frozen=True)
class Sensor:
    """A sensor: id, quantities, optional standard and health settings."""

    id: str
    quantities: list[Q]
    standard: StandardRef | None = None
    health: HealthConfig = field(default_factory=HealthConfig)
    location: str = ""
