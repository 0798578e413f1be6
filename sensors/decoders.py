"""Payload decoders: bytes from a sensor → (device time, [(quantity, value, flag)], problems).

Pure functions over bytes and a decoder config; no I/O. A problem that spoils the whole
message raises :class:`DecodeError`; a problem with one quantity (missing, wrong type,
not finite) is returned in ``problems`` while the other quantities are kept, so one broken
electrode of a multi-parameter probe does not discard the good ones. A decoder raises
nothing but :class:`DecodeError`, whatever the bytes (deep nesting, 400-digit numbers,
dates outside what ``datetime`` can hold): a sensor's payload must never stop the ingest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from edge import hj212
from edge.json_depth import nesting_depth
from sensors.config import (
    Hj212DecoderConfig,
    JsonDecoderConfig,
    NumberDecoderConfig,
    SensorConfig,
)
from sensors.errors import DecodeError

DATA_FLAGS = frozenset("NFMSDCTB")

MAX_JSON_DEPTH = 32
"""A sensor payload nested deeper is a dead letter (real ones nest a few levels)."""


class Decoded(NamedTuple):
    """What a decoder found in one payload."""

    timestamp: float | None
    values: list[tuple[str, float, str]]
    problems: list[str]


Decoder = Callable[[bytes], Decoded]


def _number(value: object) -> float | None:
    # bool is an int subclass, but a True reading is a device bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits: report it as not finite
        return math.inf if value > 0 else -math.inf


def _compile_path(path: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def _lookup(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for key in path:
        if isinstance(key, int) and isinstance(node, list):
            if key >= len(node):
                raise LookupError
            node = node[key]
        elif isinstance(node, dict):
            node = node[str(key)]
        else:
            raise LookupError
    return node


def _json_timestamp(value: Any, fmt: str) -> float:
    if fmt == "iso8601":
        if not isinstance(value, str):
            raise DecodeError("timestamp is not an ISO 8601 string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeError(f"timestamp {value[:40]!r} is not ISO 8601") from None
        if parsed.tzinfo is None:
            raise DecodeError("timestamp has no time zone offset")
        try:
            return parsed.timestamp()
        except (OverflowError, ValueError):  # year 1 or 9999 pushed past the range by its offset
            raise DecodeError(f"timestamp {value[:40]!r} is out of range") from None
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise DecodeError("timestamp is not a finite number")
    return number / 1000.0 if fmt == "epoch_ms" else number


def _json_object(payload: bytes) -> dict[str, Any]:
    """The JSON object in ``payload``, or a DecodeError saying why there is none."""
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16/32.
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"payload is not UTF-8: {exc.reason}") from None
    # Measured before parsing: the parser's own recursion limit differs between versions.
    if nesting_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise DecodeError(f"invalid JSON: nested too deeply (over {MAX_JSON_DEPTH} levels)")
    try:
        document = json.loads(text)
    except ValueError as exc:  # also an integer of more than 4300 digits
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DecodeError(f"JSON payload is a {type(document).__name__}, not an object")
    return document


def json_decoder(config: JsonDecoderConfig) -> Decoder:
    """Build a decoder for JSON objects with the configured field paths."""
    fields = [(name, _compile_path(path)) for name, path in config.fields.items()]
    flags = {name: _compile_path(path) for name, path in config.flags.items()}
    ts_path = _compile_path(config.timestamp) if config.timestamp else None
    ts_format = config.timestamp_format

    def decode(payload: bytes) -> Decoded:
        document = _json_object(payload)
        timestamp = None
        if ts_path is not None:
            try:
                raw_ts = _lookup(document, ts_path)
            except LookupError:
                raise DecodeError(f"timestamp field {config.timestamp!r} missing") from None
            timestamp = _json_timestamp(raw_ts, ts_format)
        values: list[tuple[str, float, str]] = []
        problems: list[str] = []
        for name, path in fields:
            try:
                raw = _lookup(document, path)
            except LookupError:
                problems.append(f"{name}: field missing")
                continue
            number = _number(raw)
            if number is None:
                problems.append(f"{name}: {type(raw).__name__} is not a number")
            elif not math.isfinite(number):
                problems.append(f"{name}: value {number} is not finite")
            else:
                flag = "N"
                flag_path = flags.get(name)
                if flag_path is not None:
                    try:
                        flag = _lookup(document, flag_path)
                    except LookupError:
                        flag = "N"
                    if not isinstance(flag, str) or flag not in DATA_FLAGS:
                        problems.append(f"{name}: data flag {flag!r:.8} is not N/F/M/S/D/C/T/B")
                        continue
                values.append((name, number, flag))
        return Decoded(timestamp, values, problems)

    return decode


def number_decoder(config: NumberDecoderConfig, quantity: str) -> Decoder:
    """Build a decoder for a bare numeric payload such as ``b"52.3"``."""
    del config  # nothing to configure yet; kept for a uniform factory signature

    def decode(payload: bytes) -> Decoded:
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"payload is not UTF-8: {exc.reason}") from None
        try:
            value = float(text)
        except ValueError:
            raise DecodeError(f"payload {text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise DecodeError(f"value {text[:40]!r} is not finite")
        return Decoded(None, [(quantity, value, "N")], [])

    return decode


def _data_time(text: str, tz: timezone) -> float:
    """Epoch seconds of an HJ 212 DataTime: exactly 14 ASCII digits, a valid local time."""
    # strptime alone would read 10 or 13 digits as some other time (%m, %d take one digit).
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise DecodeError(f"HJ 212: DataTime {text[:20]!r} is not 14 digits YYYYMMDDhhmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=tz).timestamp()
    except ValueError:
        raise DecodeError(f"HJ 212: DataTime {text!r} is not a valid date and time") from None
    except OverflowError:  # 00010101000000 east of UTC lies before year 1
        raise DecodeError(f"HJ 212: DataTime {text!r} is out of range") from None


def hj212_decoder(config: Hj212DecoderConfig) -> Decoder:
    """Build a decoder for HJ 212-2017 frames carrying the configured pollutant codes."""
    keys = [
        (name, f"{code}-{config.value_field}", f"{code}-Flag")
        for name, code in config.codes.items()
    ]
    tz = timezone(timedelta(hours=config.utc_offset_hours))
    wanted_mn = config.mn

    def decode(payload: bytes) -> Decoded:
        try:
            frame = hj212.parse_frame(payload)
        except hj212.FrameError as exc:
            raise DecodeError(f"HJ 212: {exc}") from None
        if wanted_mn is not None and frame.mn != wanted_mn:
            raise DecodeError(f"HJ 212: MN {frame.mn[:30]!r} is not this sensor's {wanted_mn!r}")
        timestamp = None
        data_time = frame.cp.get("DataTime")
        if data_time is not None:
            timestamp = _data_time(data_time, tz)
        values: list[tuple[str, float, str]] = []
        problems: list[str] = []
        for name, value_key, flag_key in keys:
            text = frame.cp.get(value_key)
            if text is None:
                problems.append(f"{name}: {value_key} missing")
                continue
            try:
                value = float(text)
            except ValueError:
                problems.append(f"{name}: {value_key}={text[:20]!r} is not a number")
                continue
            if not math.isfinite(value):
                problems.append(f"{name}: {value_key}={text[:20]!r} is not finite")
                continue
            flag = frame.cp.get(flag_key, "N")
            if flag not in DATA_FLAGS:
                problems.append(f"{name}: data flag {flag[:8]!r} is not N/F/M/S/D/C/T/B")
                continue
            values.append((name, value, flag))
        return Decoded(timestamp, values, problems)

    return decode


def decoder_for(sensor: SensorConfig) -> Decoder:
    """Return the decoder a sensor's config asks for."""
    config = sensor.decoder
    if isinstance(config, JsonDecoderConfig):
        return json_decoder(config)
    if isinstance(config, Hj212DecoderConfig):
        return hj212_decoder(config)
    return number_decoder(config, sensor.quantities[0].name)
