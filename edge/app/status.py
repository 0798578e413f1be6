"""What `offsite-edge status` and the demo report: a read-only look at the gateway database."""

from __future__ import annotations

import dataclasses
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from cloud_sync import outbox_view
from edge import readonly
from edge.app.config import GatewayConfig
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

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


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
        recent = readonly.recent_dead_letters(db, dead_letter_limit)
        open_events = readonly.open_events(db)
        events_total = readonly.events_total(db)
        # A sensor's mode is its open ``maintenance`` event (see sensors.modes).
        modes: dict[str, dict[str, Any]] = {
            e["source"]: {
                "mode": e["detail"].get("mode"),
                "who": e["detail"].get("who"),
                "why": e["detail"].get("why"),
                "since": e["started_at"],
                "pending": False,
            }
            for e in open_events
            if e["kind"] == "maintenance"
        }
        backlog = outbox_view.backlog(db)
        delivered = outbox_view.last_delivered_at(db)
    for _, request in filed_requests(path):
        modes[request.sensor_id] = {
            "mode": str(request.mode),
            "who": request.who,
            "why": request.why,
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
    )
