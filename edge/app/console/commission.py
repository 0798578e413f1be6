"""Commissioning a sensor from its first messages: unknown topics, a mapping, a preview.

A device that publishes where no sensor is configured is caught by ``ingest.catch_all``
and its messages are kept as dead letters (reason "no sensor is configured for this
topic", ``sensor_id`` NULL). The console lists those topics with their last payloads; the
technician picks a decoder and maps fields to quantities, and sees each last payload
decoded, calibrated and range-checked exactly as the gateway would (the same decoders,
``raw × gain + offset``, the physical range), before the sensor is written into the
config. Pure functions over the form and the payloads, plus one bounded read-only query.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge import hj212, readonly
from edge.app.console.config_save import EditRefusedError
from edge.app.status import printable
from edge.json_depth import nesting_depth
from sensors.config import SensorConfig
from sensors.decoders import MAX_JSON_DEPTH, decoder_for
from sensors.errors import DecodeError

TOPICS_SHOWN = 30
PAYLOADS_PER_TOPIC = 5
ROWS = 4
"""Quantity rows on the form (a multi-parameter probe rarely reports more at once)."""
PATHS_SHOWN = 60
KINDS = ("noise", "gas", "water", "soil")
DECODERS = ("json", "number", "hj212")
TIMESTAMP_FORMATS = ("", "epoch_s", "epoch_ms", "iso8601")


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message kept from an unknown topic."""

    received_at: float
    payload: bytes

    @property
    def text(self) -> str:
        """The payload as printable text (bytes that are not UTF-8 escaped)."""
        return printable(self.payload.decode("utf-8", errors="backslashreplace"), 4096)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownTopic:
    """A topic no sensor is configured for, with its newest messages."""

    topic: str
    count: int
    last_at: float
    messages: list[Message]


def unknown_topics(
    db_path: Path, configured: frozenset[str], topic: str | None = None
) -> list[UnknownTopic]:
    """Topics of the unrouted dead letters (newest first), without those now configured.

    With ``topic``, only that one. The table holds at most ``store.dead_letter_keep`` rows.
    """
    out: list[UnknownTopic] = []
    try:
        with closing(readonly.connect_read_only(db_path)) as db:
            rows = db.execute(
                "SELECT topic, count(*), max(received_at), max(id) FROM dead_letters"
                " WHERE sensor_id IS NULL AND (? IS NULL OR topic = ?)"
                " GROUP BY topic ORDER BY max(id) DESC LIMIT ?",
                (topic, topic, TOPICS_SHOWN + len(configured)),
            ).fetchall()
            for name, count, last_at, _ in rows:
                if name in configured or len(out) >= TOPICS_SHOWN:
                    continue
                messages = [
                    Message(received_at=r[0], payload=bytes(r[1]))
                    for r in db.execute(
                        "SELECT received_at, payload FROM dead_letters"
                        " WHERE sensor_id IS NULL AND topic = ? ORDER BY id DESC LIMIT ?",
                        (name, PAYLOADS_PER_TOPIC),
                    )
                ]
                out.append(
                    UnknownTopic(topic=name, count=count, last_at=last_at, messages=messages)
                )
    except (sqlite3.Error, FileNotFoundError):
        return []
    return out


def guess_decoder(payload: bytes) -> str:
    """The decoder a payload looks like it needs: hj212, json or number."""
    text = payload.lstrip()
    if text.startswith(b"##"):
        return "hj212"
    if text.startswith(b"{"):
        return "json"
    return "number"


def _leaves(node: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    if len(out) >= PATHS_SHOWN:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            _leaves(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _leaves(value, f"{prefix}.{index}" if prefix else str(index), out)
    else:
        out.append((prefix, json.dumps(node, ensure_ascii=False)[:40]))


def fields_of(payload: bytes) -> list[tuple[str, str]]:
    """What a payload offers to map: JSON leaf paths or HJ 212 CP keys, with their values."""
    kind = guess_decoder(payload)
    out: list[tuple[str, str]] = []
    if kind == "json":
        try:
            text = payload.decode("utf-8")
            if nesting_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                return []
            _leaves(json.loads(text), "", out)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return []
    elif kind == "hj212":
        try:
            frame = hj212.parse_frame(payload)
        except hj212.FrameError:
            return []
        out = [(key, value[:40]) for key, value in list(frame.cp.items())[:PATHS_SHOWN]]
    return [(printable(path, 80), printable(value, 40)) for path, value in out]


class FormError(ValueError):
    """What is wrong with the commissioning form, one line per field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _text(form: Mapping[str, Any], name: str, limit: int = 256) -> str:
    return str(form.get(name, "")).strip()[:limit]


def _number(form: Mapping[str, Any], name: str, label: str, problems: list[str]) -> float | None:
    text = _text(form, name, 40).replace(",", ".")
    if not text:
        problems.append(f"{label}: a number is required")
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{label}: {text!r} is not a number")
        return None
    if not math.isfinite(value):
        problems.append(f"{label}: must be a finite number")
        return None
    return value


def sensor_entry(form: Mapping[str, Any]) -> dict[str, Any]:
    """The new sensor's config entry (as it goes into the YAML) from the form.

    Raises :class:`FormError` naming each incomplete row; the entry is validated by
    :func:`sensor_of` and, with the whole file, by ``config check``.
    """
    problems: list[str] = []
    decoder_type = _text(form, "decoder", 10)
    decoder: dict[str, Any] = {"type": decoder_type}
    mapping: dict[str, str] = {}
    quantities: list[dict[str, Any]] = []
    for row in range(ROWS):
        name = _text(form, f"q{row}_name", 32)
        if not name:
            continue
        label = f"quantity {name}"
        low = _number(form, f"q{row}_low", f"{label}: range min", problems)
        high = _number(form, f"q{row}_high", f"{label}: range max", problems)
        gain = _number(form, f"q{row}_gain", f"{label}: gain", problems)
        offset = _number(form, f"q{row}_offset", f"{label}: offset", problems)
        source = _text(form, f"q{row}_source", 128)
        if decoder_type != "number" and not source:
            what = "JSON path" if decoder_type == "json" else "pollutant code"
            problems.append(f"{label}: the {what} is required")
        mapping[name] = source
        quantities.append(
            {
                "name": name,
                "unit": _text(form, f"q{row}_unit", 16),
                "range": [low, high],
                "calibration": {"gain": gain, "offset": offset},
            }
        )
    if not quantities:
        problems.append("map at least one quantity (a name, unit, range and source)")
    if problems:
        raise FormError(problems)
    if decoder_type == "json":
        decoder["fields"] = mapping
        if timestamp := _text(form, "timestamp", 128):
            decoder["timestamp"] = timestamp
            decoder["timestamp_format"] = _text(form, "timestamp_format", 10) or "epoch_s"
    elif decoder_type == "hj212":
        decoder["codes"] = mapping
        if value_field := _text(form, "value_field", 12):
            decoder["value_field"] = value_field
    entry: dict[str, Any] = {
        "id": _text(form, "id", 64),
        "kind": _text(form, "kind", 10),
        "topic": _text(form, "topic"),
        "decoder": decoder,
        "quantities": quantities,
    }
    if location := _text(form, "location", 200):
        entry["location"] = location
    return entry


def sensor_of(entry: Mapping[str, Any]) -> SensorConfig:
    """The validated sensor config of an entry; FormError with each field's reason."""
    try:
        return SensorConfig.model_validate(entry)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"] if p not in DECODERS)
            problems.append(f"{loc or 'sensor'}: {error['msg'].removeprefix('Value error, ')}")
        raise FormError(problems) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewValue:
    """One quantity of one payload as the gateway would store it."""

    name: str
    raw: float
    value: float
    unit: str
    flag: str
    in_range: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviewRow:
    """One last payload, decoded and calibrated with the form's mapping."""

    message: Message
    device_time: float | None
    values: list[PreviewValue]
    problems: list[str]
    """What would make (part of) the message a dead letter, as its reason would say."""


def preview(sensor: SensorConfig, messages: list[Message]) -> list[PreviewRow]:
    """Decode, calibrate and range-check each message as the batch builder does."""
    decode = decoder_for(sensor)
    quantities = {q.name: q for q in sensor.quantities}
    rows: list[PreviewRow] = []
    for message in messages:
        try:
            timestamp, decoded, problems = decode(message.payload)
        except DecodeError as exc:
            rows.append(
                PreviewRow(message=message, device_time=None, values=[], problems=[str(exc)])
            )
            continue
        values: list[PreviewValue] = []
        problems = list(problems)
        for name, raw, flag in decoded:
            q = quantities[name]
            value = raw * q.calibration.gain + q.calibration.offset
            low, high = q.range
            in_range = math.isfinite(value) and low <= value <= high
            if not in_range:
                problems.append(
                    f"{name}: calibrated value {value:g} outside the physical range "
                    f"[{low:g}, {high:g}]"
                )
            values.append(
                PreviewValue(
                    name=name, raw=raw, value=value, unit=q.unit, flag=flag, in_range=in_range
                )
            )
        rows.append(
            PreviewRow(message=message, device_time=timestamp, values=values, problems=problems)
        )
    return rows


def add_sensor(data: Any, entry: Mapping[str, Any]) -> None:
    """Append the sensor entry to the config data (an ``edit`` for ``config_save.propose``)."""
    sensors = data.setdefault("sensors", [])
    if not isinstance(sensors, list):
        raise EditRefusedError(["sensors: the file's sensors are not a list"])
    sensors.append(dict(entry))
