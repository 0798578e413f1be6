"""Logging a technician can read: one line per record, every structured field on it.

Text lines are ``time level logger message key=value …``; ``--log-format json`` writes one
JSON object per line instead. The time is ISO 8601 with its UTC offset. Fields passed as
``extra={"camera": …, "reason": …}`` are always printed, so two failing cameras never log
the same anonymous line. :class:`EventLog` logs every event when it opens, closes or
happens, from inside the store's commit, so alarms and violations are in the log too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiosqlite

from edge.events import EventStatus, Severity
from edge.store import TransactionHook, Written

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")

# Every attribute a bare LogRecord has: anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def iso_time(created: float) -> str:
    """``created`` (Unix seconds) as local ISO 8601 with milliseconds and UTC offset."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed with ``extra``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _value(value: Any) -> str:
    text = str(value)
    return (
        json.dumps(text, ensure_ascii=False)
        if not text or not text.isprintable() or any(c in text for c in ' "=')
        else text
    )


class TextFormatter(logging.Formatter):
    """``2026-12-02T09:30:00.123+08:00 WARNING vision.camera camera open failed camera=k1``."""

    def format(self, record: logging.LogRecord) -> str:
        """One line; a traceback, when there is one, follows on the next lines."""
        fields = " ".join(f"{k}={_value(v)}" for k, v in extra_fields(record).items())
        line = f"{iso_time(record.created)} {record.levelname} {record.name} {record.getMessage()}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        data: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Log to stderr at ``level`` (any case) as text lines or JSON lines."""
    # OpenCV and FFmpeg print their own lines to stderr; camera problems are logged by
    # vision with the camera id, so keep theirs to errors (read when cv2 is imported).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # amqtt (demo broker) logs every packet at INFO.
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    logging.getLogger("transitions").setLevel(logging.WARNING)


_event_log = logging.getLogger("edge.app.events")
_EVENT_LEVEL = {Severity.ALARM: logging.WARNING, Severity.WARNING: logging.WARNING}
_VERB = {EventStatus.OPEN: "opened", EventStatus.CLOSED: "closed", EventStatus.INSTANT: "recorded"}
_DETAIL_KEYS = (
    "quantity",
    "standard_quantity",
    "period",
    "window_value",
    "unit",
    "limit_max",
    "limit_min",
    "peak",
    "value",
    "zone",
    "violation",
    "reason",
    "error",
    "mode",
    "who",
    "why",
    "valid",
)


def period_of(detail: Mapping[str, Any]) -> str | None:
    """The judged period as a local ISO 8601 interval ``start/end`` (None: not a period
    event), so a technician reads which Ld/Ln or hour an exceedance is about."""
    start, end = detail.get("period_start_local"), detail.get("period_end_local")
    return None if start is None or end is None else f"{start}/{end}"


class EventLog:
    """A store transaction hook that logs each event opening, closing or happening.

    It wraps the real hook (the outbox) and runs after it, so a line is logged only for
    events that are being committed. Updates of open events are not logged (they repeat).
    """

    def __init__(self, inner: TransactionHook | None) -> None:
        self.inner = inner

    async def in_transaction(self, db: aiosqlite.Connection, written: Written) -> None:
        """Run the wrapped hook, then log the events this commit writes."""
        if self.inner is not None:
            await self.inner.in_transaction(db, written)
        for seq, event in written.events:
            verb = _VERB.get(event.status)
            if verb is None:
                continue
            fields = {k: v for k in _DETAIL_KEYS if (v := event.detail.get(k)) is not None}
            if (span := period_of(event.detail)) is not None:
                fields["period_local"] = span
            # An alarm that opens wants attention; one that closes is good news.
            level = logging.INFO
            if event.status is not EventStatus.CLOSED:
                level = _EVENT_LEVEL.get(event.severity, logging.INFO)
            _event_log.log(
                level,
                "%s %s",
                event.kind,
                verb,
                extra={
                    "source": event.source,
                    "severity": str(event.severity),
                    **fields,
                    "seq": seq,
                    "event_id": event.event_id,
                },
            )
