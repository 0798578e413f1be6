"""Realistic sensor traffic for demos, tests and field checks.

:func:`reading` gives a plausible value for a quantity at a time of day (noise follows a
day/night pattern, cooking fume peaks at meal times, water pH and DO drift, soil moisture
dries out); :func:`encode` writes values the way the sensor's decoder expects;
:class:`Scenario` injects exceedances, a stuck sensor, a silent sensor and malformed
payloads. :func:`publish_forever` is the only part that does I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import hj212
from edge.mqtt import shut_down
from sensors.config import (
    Hj212DecoderConfig,
    JsonDecoderConfig,
    QuantityConfig,
    SensorConfig,
    SensorsSetup,
)

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8))


def _hour(t: float) -> float:
    local = datetime.fromtimestamp(t, CHINA)
    return local.hour + local.minute / 60.0 + local.second / 3600.0


def _meal_peak(hour: float) -> float:
    """0..1, highest around lunch (12:00) and dinner (18:30)."""
    return max(math.exp(-((hour - 12.0) ** 2) / 0.8), math.exp(-((hour - 18.5) ** 2) / 1.2))


def reading(sensor_kind: str, quantity: QuantityConfig, t: float, rng: random.Random) -> float:
    """A plausible value of ``quantity`` at Unix time ``t``, inside its physical range."""
    name = quantity.name.lower()
    hour = _hour(t)
    low, high = quantity.range
    if quantity.energy_average or sensor_kind == "noise":
        daytime = 6.0 <= hour < 22.0
        value = (53.0 if daytime else 41.0) + rng.gauss(0, 2.5)
        if rng.random() < 0.02:  # a passing truck, a door slam
            value += rng.uniform(8, 20)
    elif name in {"fume", "oil_fume", "cooking_fume"}:
        value = 0.15 + 1.2 * _meal_peak(hour) + abs(rng.gauss(0, 0.05))
    elif name in {"ph"}:
        value = 7.4 + 0.3 * math.sin(t / 7200.0) + rng.gauss(0, 0.02)
    elif name in {"do", "dissolved_oxygen"}:
        value = 6.5 + 1.0 * math.sin(t / 43200.0 * math.pi) + rng.gauss(0, 0.05)
    elif name == "cod":
        value = 12.0 + 2.0 * math.sin(t / 5400.0) + rng.gauss(0, 0.3)
    elif name in {"nh3n", "nh3-n"}:
        value = 0.45 + 0.1 * math.sin(t / 6000.0) + abs(rng.gauss(0, 0.02))
    elif name in {"pm", "particulate"}:
        value = 1.2 + 1.5 * _meal_peak(hour) + abs(rng.gauss(0, 0.1))
    elif name == "nmhc":
        value = 2.5 + 3.0 * _meal_peak(hour) + abs(rng.gauss(0, 0.2))
    elif name in {"moisture", "soil_moisture"}:
        value = 28.0 - (t % 86400) / 86400.0 * 3.0 + rng.gauss(0, 0.2)
    elif name in {"temperature", "temp"}:
        value = 18.0 + 6.0 * math.sin((hour - 9.0) / 24.0 * 2 * math.pi) + rng.gauss(0, 0.2)
    else:
        # Anything else: a quiet level in the lower fifth of the instrument's range.
        value = low + (high - low) * (0.1 + 0.05 * math.sin(t / 3600.0)) * (1 + rng.gauss(0, 0.03))
    return min(max(value, low), high)


def exceeding(quantity: QuantityConfig, normal: float) -> float:
    """A value that breaks any sensible limit for ``quantity`` (for injected exceedances)."""
    low, high = quantity.range
    name = quantity.name.lower()
    if quantity.energy_average:
        value = normal + 25.0
    elif name in {"do", "dissolved_oxygen"}:
        value = 1.0  # dissolved oxygen is a lower bound
    elif name == "ph":
        value = 10.5
    else:
        value = normal * 6.0 + (high - low) * 0.05
    return min(max(value, low), high)


def _raw(quantity: QuantityConfig, calibrated: float) -> float:
    """Undo the calibration so the gateway's calibration gives ``calibrated`` back."""
    return (calibrated - quantity.calibration.offset) / quantity.calibration.gain


def _set_path(document: dict[str, object], path: str, value: object) -> None:
    parts = path.split(".")
    node = document
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        assert isinstance(child, dict)
        node = child
    node[parts[-1]] = value


def encode(
    sensor: SensorConfig, values: Mapping[str, float], t: float, *, flag: str = "N"
) -> bytes:
    """Encode calibrated ``values`` as the sensor's device would send them."""
    quantities = {q.name: q for q in sensor.quantities}
    decoder = sensor.decoder
    if isinstance(decoder, JsonDecoderConfig):
        document: dict[str, object] = {}
        for name, value in values.items():
            _set_path(document, decoder.fields[name], round(_raw(quantities[name], value), 4))
        if decoder.timestamp:
            stamp: object = {
                "epoch_s": round(t, 3),
                "epoch_ms": int(t * 1000),
                "iso8601": datetime.fromtimestamp(t, UTC).isoformat(),
            }[decoder.timestamp_format]
            _set_path(document, decoder.timestamp, stamp)
        for path in decoder.flags.values():
            _set_path(document, path, flag)
        return json.dumps(document, separators=(",", ":")).encode()
    if isinstance(decoder, Hj212DecoderConfig):
        local = datetime.fromtimestamp(t, timezone(timedelta(hours=decoder.utc_offset_hours)))
        cp = {"DataTime": local.strftime("%Y%m%d%H%M%S")}
        for name, value in values.items():
            code = decoder.codes[name]
            cp[f"{code}-{decoder.value_field}"] = f"{_raw(quantities[name], value):.3f}"
            cp[f"{code}-Flag"] = flag
        header = {
            "QN": local.strftime("%Y%m%d%H%M%S") + f"{int(t * 1000) % 1000:03d}",
            "ST": {"noise": "23", "gas": "31", "water": "21", "soil": "25"}[sensor.kind],
            "CN": "2011",
            "PW": "123456",
            "MN": decoder.mn or f"SIM{sensor.id.upper()[:21]}",
            "Flag": "4",
        }
        return hj212.build_frame(hj212.build_data_segment(header, cp))
    ((name, value),) = values.items()
    return f"{_raw(quantities[name], value):.4f}".encode()


MALFORMED: tuple[bytes, ...] = (
    b"\xff\xfe\x00 not utf-8",
    b"{not json",
    b'{"value": "NaN-ish"}',
    b"[1, 2, 3]",
    b"##0010garbage!!FFFF\r\n",
    b"",
)


@dataclass(kw_only=True)
class Scenario:
    """What to inject into the simulated traffic."""

    exceed: set[str] = field(default_factory=set)
    """Sensors whose values break their limits (after ``exceed_after`` seconds)."""
    exceed_after: float = 0.0
    stuck: set[str] = field(default_factory=set)
    """Sensors whose first quantity repeats one value (a frozen electrode, a flat line)."""
    silent: set[str] = field(default_factory=set)
    """Sensors that stop publishing (after ``silent_after`` seconds)."""
    silent_after: float = 0.0
    malformed_fraction: float = 0.0
    """Share of messages replaced by a malformed payload."""


@dataclass(kw_only=True)
class Simulator:
    """Produces (topic, payload) pairs for every configured sensor, one round at a time."""

    config: SensorsSetup
    scenario: Scenario = field(default_factory=Scenario)
    seed: int | None = None
    started_at: float = field(default_factory=time.time)
    _rng: random.Random = field(init=False)
    _stuck_values: dict[str, dict[str, float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def round(self, t: float) -> list[tuple[str, bytes]]:
        """One message per publishing sensor at time ``t``."""
        elapsed = t - self.started_at
        messages = []
        for sensor in self.config.sensors:
            if sensor.id in self.scenario.silent and elapsed >= self.scenario.silent_after:
                continue
            if self._rng.random() < self.scenario.malformed_fraction:
                messages.append((sensor.topic, self._rng.choice(MALFORMED)))
                continue
            values = {q.name: reading(sensor.kind, q, t, self._rng) for q in sensor.quantities}
            if sensor.id in self.scenario.stuck:
                frozen_name = sensor.quantities[0].name
                frozen = self._stuck_values.setdefault(
                    sensor.id, {frozen_name: values[frozen_name]}
                )
                values = {**values, **frozen}
            if sensor.id in self.scenario.exceed and elapsed >= self.scenario.exceed_after:
                first = sensor.quantities[0]
                values = {**values, first.name: exceeding(first, values[first.name])}
            messages.append((sensor.topic, encode(sensor, values, t)))
        return messages


async def publish_forever(
    simulator: Simulator,
    *,
    host: str,
    port: int,
    interval_s: float = 1.0,
    duration_s: float | None = None,
    qos: int = 1,
) -> int:
    """Publish a round every ``interval_s`` until cancelled or ``duration_s``; return count."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"offsite-sim-{random.randrange(1 << 30)}"
    )
    client.connect(host, port)
    client.loop_start()
    sent = 0
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            for topic, payload in simulator.round(time.time()):
                client.publish(topic, payload, qos=qos)
                sent += 1
            await asyncio.sleep(interval_s)
    finally:
        await shut_down(client)
    log.info("simulator stopped published=%d", sent)
    return sent
