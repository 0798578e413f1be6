"""What `offsite-edge status` and the demo report: a read-only look at the gateway database.

Text that came from outside (dead-letter topics and reasons, who/why of remote mode
commands) is sanitised before anyone prints it: a control sequence in an MQTT topic must
not be able to rewrite a technician's terminal.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from cloud_sync import outbox_view
from cloud_sync.daily_rates import status_rates
from edge import readonly
from edge.app.audit import CONFIG_META, MODEL_META
from edge.app.config import GatewayConfig
from edge.app.rates import rate_plans
from edge.readonly import connect_read_only, database_bytes
from sensors.modes import filed_requests


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorStatus:
    """One sensor as the store last saw it."""

    sensor_id: str
    kind: str
    last_seen: float | None
    readings: int
    dead_letters: int
    last_values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStatus:
    """What `offsite-edge status` reports."""

    sensors: list[SensorStatus]
    dead_letters_total: int
    recent_dead_letters: list[dict[str, Any]]
    open_events: list[dict[str, Any]]
    events_total: int
    database_bytes: int
    modes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Sensors in maintenance or calibration (or asked to be): mode, who, why, since, and
    ``pending`` for a request the gateway has not applied yet."""
    cloud_backlog: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Records not yet acknowledged, per uplink and data class."""
    last_delivered_at: float | None = None
    running: dict[str, str | None] = dataclasses.field(default_factory=dict)
    """SHA-256 of the config and model the gateway last started with (``config_sha256``,
    ``model_sha256``), as its status records carry them."""
    rates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Per sensor: data rates (transmission, validity, effective) today so far, yesterday
    and this month so far (``cloud_sync.daily_rates``)."""
    last_clock_step: dict[str, Any] | None = None
    """The newest ``clock_step`` audit record: when, by how much, which way."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int = 200) -> str:
    """``text`` safe for a terminal: control and format characters escaped, length capped."""
    out = "".join(c if c.isprintable() else _escape(c) for c in str(text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def running_digests(db: sqlite3.Connection) -> dict[str, str | None]:
    """The digests the gateway recorded at its last start or reload (``edge.app.audit``)."""
    out: dict[str, str | None] = {"config_sha256": None, "model_sha256": None}
    try:
        rows = db.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (CONFIG_META, MODEL_META)
        ).fetchall()
    except sqlite3.OperationalError:
        return out
    for key, value in rows:
        try:
            sha = json.loads(value).get("sha256")
        except (ValueError, AttributeError):
            continue
        out["config_sha256" if key == CONFIG_META else "model_sha256"] = sha
    return out


def read_status(config: GatewayConfig, *, dead_letter_limit: int = 5) -> GatewayStatus:
    """Collect per-sensor state, dead letters, open events and database size."""
    path = config.store.path
    with closing(connect_read_only(path)) as db:
        state = readonly.sensor_states(db)
        sensors = [
            SensorStatus(
                sensor_id=sensor.id,
                kind=sensor.kind,
                last_seen=state.get(sensor.id, {}).get("last_seen"),
                readings=state.get(sensor.id, {}).get("readings", 0),
                dead_letters=state.get(sensor.id, {}).get("dead_letters", 0),
                last_values=state.get(sensor.id, {}).get("last_values", {}),
            )
            for sensor in config.sensors
        ]
        total = readonly.dead_letters_total(db)
        recent = [
            {**d, "topic": printable(d["topic"]), "reason": printable(d["reason"])}
            for d in readonly.recent_dead_letters(db, dead_letter_limit)
        ]
        open_events = [
            {**e, "kind": printable(e["kind"]), "source": printable(e["source"])}
            for e in readonly.open_events(db)
        ]
        events_total = readonly.events_total(db)
        # A sensor's mode is its open ``maintenance`` event (see sensors.modes).
        modes: dict[str, dict[str, Any]] = {
            e["source"]: {
                "mode": e["detail"].get("mode"),
                "who": printable(e["detail"].get("who")),
                "why": printable(e["detail"].get("why")),
                "since": e["started_at"],
                "pending": False,
            }
            for e in open_events
            if e["kind"] == "maintenance"
        }
        backlog = outbox_view.backlog(db)
        delivered = outbox_view.last_delivered_at(db)
        running = running_digests(db)
        rates = _rates(db, config)
        last_step = _last_clock_step(db)
    for _, request in filed_requests(path):
        modes[request.sensor_id] = {
            "mode": str(request.mode),
            "who": printable(request.who),
            "why": printable(request.why),
            "since": request.requested_at,
            "pending": True,
        }
    return GatewayStatus(
        sensors=sensors,
        dead_letters_total=int(total),
        recent_dead_letters=recent,
        open_events=open_events,
        events_total=int(events_total),
        database_bytes=database_bytes(path),
        modes=modes,
        cloud_backlog=backlog,
        last_delivered_at=delivered,
        running=running,
        rates=rates,
        last_clock_step=last_step,
    )


def _rates(db: sqlite3.Connection, config: GatewayConfig) -> dict[str, dict[str, Any]]:
    try:
        return status_rates(db, rate_plans(config), time.time())
    except sqlite3.OperationalError:  # a database older than the rates' table
        return {}


def _last_clock_step(db: sqlite3.Connection) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT started_at, detail FROM events WHERE kind = 'clock_step' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    try:
        detail = json.loads(row[1])
    except ValueError:
        detail = {}
    return {
        "at": row[0],
        "step_s": detail.get("step_s"),
        "direction": detail.get("direction"),
    }
