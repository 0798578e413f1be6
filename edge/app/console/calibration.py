"""Two-point (zero/span) calibration: gain and offset from reference values, and saving them.

A technician applies a zero reference (zero gas, a quiet calibrator) and a span reference
(span gas, a 94 dB calibrator) and notes what the sensor reports raw, before any
calibration. The line through the two points gives ``calibrated = raw × gain + offset``
(``sensors.config.Calibration``). Saving writes the quantity's calibration into the
config file the gateway runs on (the previous file kept as ``.bak``); the gateway then
reloads, which records a ``config_changed`` audit event beside the console's own
``console_calibration`` event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from edge.app.config import GatewayConfig
from edge.errors import OffsiteEdgeError


class CalibrationError(OffsiteEdgeError, ValueError):
    """Reference points that give no usable calibration, or a config it cannot go into."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TwoPoint:
    """Two reference values and the raw readings the sensor gave for them."""

    zero_ref: float
    zero_raw: float
    span_ref: float
    span_raw: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Fit:
    """The calibration the two points give."""

    gain: float
    offset: float

    def apply(self, raw: float) -> float:
        """The calibrated value of a raw reading."""
        return raw * self.gain + self.offset


def fit(points: TwoPoint) -> Fit:
    """Gain and offset of the line through both points.

    Raises CalibrationError for non-finite numbers, equal raw readings (no line), equal
    references, or a negative gain (the sensor would read backwards: swapped points).
    """
    values = (points.zero_ref, points.zero_raw, points.span_ref, points.span_raw)
    if not all(math.isfinite(v) for v in values):
        raise CalibrationError("every reference value and reading must be a finite number")
    if points.span_ref == points.zero_ref:
        raise CalibrationError("the span reference must differ from the zero reference")
    raw_step = points.span_raw - points.zero_raw
    if raw_step == 0 or abs(raw_step) < 1e-9 * max(abs(points.span_raw), abs(points.zero_raw)):
        raise CalibrationError("the span and zero readings are equal: no calibration follows")
    gain = (points.span_ref - points.zero_ref) / raw_step
    if not math.isfinite(gain) or gain <= 0:
        raise CalibrationError(
            f"the gain would be {gain:.6g}: the readings go the other way from the references "
            "(zero and span swapped?)"
        )
    offset = points.zero_ref - gain * points.zero_raw
    if not math.isfinite(offset):
        raise CalibrationError("the offset would not be a finite number")
    return Fit(gain=gain, offset=offset)


def raw_of(value: float, gain: float, offset: float) -> float:
    """The raw reading behind a calibrated ``value`` under the current calibration."""
    return (value - offset) / gain


def calibrated_text(text: str, sensor_id: str, quantity: str, new: Fit) -> str:
    """The config file's text with one quantity's calibration replaced, validated.

    The YAML is rewritten from its data: comments in the file are not kept (the previous
    file is). Raises CalibrationError when the sensor or quantity is not in the file or
    the result is not a valid config.
    """
    data: Any = yaml.safe_load(text)
    try:
        sensor = next(s for s in data["sensors"] if s.get("id") == sensor_id)
        entry = next(q for q in sensor["quantities"] if q.get("name") == quantity)
    except (KeyError, TypeError, StopIteration) as exc:
        raise CalibrationError(
            f"the config file has no quantity {quantity!r} of sensor {sensor_id!r}"
        ) from exc
    entry["calibration"] = {
        **(entry.get("calibration") or {}),
        "gain": float(new.gain),
        "offset": float(new.offset),
    }
    try:
        GatewayConfig.model_validate(data)
    except ValueError as exc:
        raise CalibrationError(f"the calibrated config is not valid: {exc}") from exc
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
