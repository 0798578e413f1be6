"""The calibration page: zero/span references → gain and offset, previewed, then saved."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from edge.app.console.calibration import (
    CalibrationError,
    Fit,
    TwoPoint,
    calibrated_text,
    fit,
    raw_of,
)
from edge.app.console.pages import sensor_of, technician
from edge.app.console.state import ConsoleState, audit, log, render, state_of
from edge.app.preflight import prepare_text
from edge.app.remote_config import read_pending, write_atomically
from edge.errors import SetupError
from edge.events import Severity
from sensors.config import QuantityConfig, SensorConfig

FIELDS = ("zero_ref", "zero_raw", "span_ref", "span_raw")
RESTART_AFTER_S = 0.3
"""The reload waits this long, so the page that saved gets its answer first."""


def _quantity(sensor: SensorConfig, name: str | None) -> QuantityConfig:
    for quantity in sensor.quantities:
        if name is None or quantity.name == name:
            return quantity
    raise web.HTTPNotFound(text=f"sensor {sensor.id} has no quantity {name!r}")


async def _context(
    state: ConsoleState, sensor: SensorConfig, quantity: QuantityConfig
) -> dict[str, Any]:
    live = (await state.feed.snapshot())[sensor.id]
    value = live["quantities"][quantity.name]["value"]
    current = quantity.calibration
    return {
        "s": sensor,
        "q": quantity,
        "live": live,
        "current": current,
        "raw_now": None if value is None else raw_of(value, current.gain, current.offset),
        "can_save": state.parts.control is not None,
        "form": {},
        "fit": None,
    }


async def calibrate_page(request: web.Request) -> web.StreamResponse:
    """The form: current calibration and reading, four numbers to fill in."""
    state = state_of(request)
    technician(request)
    sensor = sensor_of(state, request.match_info["sensor_id"])
    quantity = _quantity(sensor, request.query.get("quantity"))
    return render(request, "calibrate.html", **await _context(state, sensor, quantity))


def _points(form: Mapping[str, Any]) -> TwoPoint:
    numbers: dict[str, float] = {}
    for name in FIELDS:
        text = str(form.get(name, "")).strip().replace(",", ".")
        try:
            numbers[name] = float(text)
        except ValueError:
            raise CalibrationError(
                f"{name.replace('_', ' ')}: {text[:20]!r} is not a number"
            ) from None
        if not math.isfinite(numbers[name]):
            raise CalibrationError(f"{name.replace('_', ' ')} must be a finite number")
    return TwoPoint(**numbers)


async def calibrate(request: web.Request) -> web.StreamResponse:
    """Preview the calibration the references give, or save it (``action=save``)."""
    state = state_of(request)
    session, user = technician(request)
    sensor = sensor_of(state, request.match_info["sensor_id"])
    form = await request.post()
    quantity = _quantity(sensor, str(form.get("quantity", "")) or None)
    context = await _context(state, sensor, quantity)
    context["form"] = {name: str(form.get(name, ""))[:40] for name in FIELDS}
    try:
        points = _points(form)
        new = fit(points)
    except CalibrationError as exc:
        return render(request, "calibrate.html", status=400, error=str(exc), **context)
    context["fit"] = new
    if form.get("action") != "save":
        return render(request, "calibrate.html", **context)
    control = state.parts.control
    if control is None:
        return render(
            request,
            "calibrate.html",
            status=409,
            error="This gateway runs without a config file (not `offsite-edge run`): "
            "enter the gain and offset into its config instead.",
            **context,
        )
    path = control.config_path
    try:
        await asyncio.to_thread(_save, path, sensor.id, quantity.name, new)
    except (CalibrationError, OSError) as exc:
        log.error("calibration not saved sensor=%s reason=%s", sensor.id, exc)
        return render(request, "calibrate.html", status=409, error=str(exc), **context)
    current = quantity.calibration
    await audit(
        request,
        "console_calibration",
        user,
        severity=Severity.WARNING,
        sensor=sensor.id,
        quantity=quantity.name,
        zero_ref=points.zero_ref,
        zero_raw=points.zero_raw,
        span_ref=points.span_ref,
        span_raw=points.span_raw,
        old_gain=current.gain,
        old_offset=current.offset,
        gain=new.gain,
        offset=new.offset,
        file=str(path),
    )
    session.notice = (
        f"Calibration of {sensor.id} {quantity.name} saved (gain {new.gain:.6g}, offset "
        f"{new.offset:.6g}); the gateway is reloading its config."
    )
    asyncio.get_running_loop().call_later(RESTART_AFTER_S, control.restart.set)
    raise web.HTTPSeeOther(f"/sensors/{sensor.id}")


def _save(path: Path, sensor_id: str, quantity: str, new: Fit) -> None:
    """Write the calibration into the config file (blocking; keeps the old one as .bak)."""
    if read_pending(path) is not None:
        raise CalibrationError(
            "a remote config change is waiting for confirmation: save the calibration after it"
        )
    text = calibrated_text(path.read_text(encoding="utf-8"), sensor_id, quantity, new)
    try:
        prepare_text(path, text)  # what `config check` and the reload check
    except SetupError as exc:
        raise CalibrationError(
            f"the calibrated config would not pass config check: {exc}"
        ) from None
    write_atomically(path, text)
