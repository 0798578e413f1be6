"""`offsite-edge status` as a technician reads it, and as a script reads it (``--json``).

Besides what the database holds (``edge.app.status``) it says whether a gateway runs on
this database (the lock holder, ``edge.app.lock``), whether that gateway is connected to
the broker (its state file, ``edge.app.runstate``), each camera's state (open
``camera_offline`` events), and whether the clock is synchronised, now and in the records
(a warning when not: every record's time is then in doubt). What nothing records is said
to be unknown. JSON times are ISO 8601 with their UTC offset.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.app.config import GatewayConfig
from edge.app.lock import lock_holder
from edge.app.runstate import read_state
from edge.app.status import GatewayStatus, printable
from edge.app.status_periods import period_lines
from edge.clock import clock_synchronised
from edge.readonly import connect_read_only

_STEP_KEYS = ("at", "step_s", "direction")
CLOCK_RECORDS = 1000
"""How many of the newest outbox records the clock check looks at."""

_TIME_KEYS = {
    "at",
    "last_seen",
    "started_at",
    "ended_at",
    "since",
    "broker_since",
    "last_delivered_at",
    "received_at",
    "requested_at",
}


def iso(t: float | None) -> str | None:
    """Unix seconds as local ISO 8601 with UTC offset (None stays None)."""
    return None if t is None else datetime.fromtimestamp(t).astimezone().isoformat("T", "seconds")


def iso_times(value: Any) -> Any:
    """``value`` with every known time field (Unix seconds) turned into ISO 8601."""
    if isinstance(value, dict):
        return {
            k: iso(v) if k in _TIME_KEYS and isinstance(v, int | float) else iso_times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [iso_times(v) for v in value]
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Liveness:
    """Whether the gateway runs and is connected, its cameras and its clock."""

    running: bool | None
    """None: unknown (the lock file cannot be read)."""
    pid: int | None
    broker: str
    """connected, disconnected, not running or unknown."""
    broker_since: float | None
    uplinks: dict[str, Any]
    """uplink name → {state, since} from the running gateway (empty when not running)."""
    cameras: list[dict[str, Any]]
    clock: dict[str, Any]
    periods: dict[str, Any] = field(default_factory=dict)
    """sensor → evaluation periods ``{counts, latest}`` from the state file (the last ones
    written, also when the gateway has stopped: they describe finished periods)."""


def read_liveness(config: GatewayConfig, status: GatewayStatus) -> Liveness:
    """Ask the lock, the state file, the open events and the outbox (read-only)."""
    db = config.store.path
    try:
        pid = lock_holder(db)
        running: bool | None = pid is not None
    except OSError:
        pid, running = None, None
    broker, since = ("not running", None) if running is False else ("unknown", None)
    state = read_state(db)
    # Only the lock holder's own state is current (pid 0: the holder has not written it yet).
    uplinks: dict[str, Any] = {}
    live_clock: dict[str, Any] | None = None
    periods = state.get("periods") if state is not None else None
    if running and state is not None and pid in {0, state.get("pid")}:
        if isinstance(state.get("clock"), dict):
            live_clock = state["clock"]
        broker, since = str(state.get("broker", "unknown")), state.get("broker_since")
        if isinstance(state.get("uplinks"), dict):
            uplinks = state["uplinks"]
    offline = {e["source"]: e for e in status.open_events if e["kind"] == "camera_offline"}
    cameras = []
    for camera in config.vision.cameras if config.vision is not None else []:
        event = offline.get(camera.id)
        if event is not None:
            reason = event["detail"].get("reason") or "no frames"
            cameras.append(
                {
                    "id": camera.id,
                    "state": "offline",
                    "since": event["started_at"],
                    "reason": reason,
                }
            )
        else:
            live = "online" if running else "not running" if running is False else "unknown"
            cameras.append({"id": camera.id, "state": live, "since": None, "reason": None})
    return Liveness(
        running=running,
        pid=pid,
        broker=broker,
        broker_since=since,
        uplinks=uplinks,
        cameras=cameras,
        clock=_clock(db, live_clock, status.last_clock_step),
        periods=periods if isinstance(periods, dict) else {},
    )


def _clock(
    db: Any, live: dict[str, Any] | None = None, last_step: dict[str, Any] | None = None
) -> dict[str, Any]:
    """This machine's clock now, how the newest records were stamped, and the running
    gateway's clock watch: its state, the last step, the readings held back."""
    records = unsynced = 0
    last: bool | None = None
    try:
        with closing(connect_read_only(db)) as conn:
            rows = conn.execute(
                "SELECT clock_synced FROM outbox ORDER BY seq DESC LIMIT ?", (CLOCK_RECORDS,)
            ).fetchall()
    except (sqlite3.Error, FileNotFoundError):
        rows = []
    for (synced,) in rows:
        records += 1
        unsynced += synced == 0
    if rows and rows[0][0] is not None:
        last = bool(rows[0][0])
    now = clock_synchronised()
    live = live or {}
    step = live.get("last_step") or last_step
    return {
        "synchronised": now,
        "last_record_synchronised": last,
        "records_checked": records,
        "records_unsynchronised": unsynced,
        "warning": now is False or unsynced > 0 or bool(live.get("held_back")),
        # From the running gateway (None: not running, or an older gateway).
        "state": live.get("state"),
        "trusted": live.get("trusted"),
        "held_back": live.get("held_back"),
        "not_judged": live.get("not_judged"),
        "steps": live.get("steps"),
        "last_step": None if step is None else {k: step.get(k) for k in _STEP_KEYS},
    }


def status_json(config: GatewayConfig, status: GatewayStatus, live: Liveness) -> dict[str, Any]:
    """The whole status as JSON-ready data, times in ISO 8601."""
    data = {
        "gateway_id": config.gateway.id,
        "database_path": str(config.store.path),
        "running": live.running,
        "pid": live.pid,
        "broker": {
            "host": config.broker.host,
            "port": config.broker.port,
            "state": live.broker,
            "since": live.broker_since,
        },
        "uplinks": _uplinks(config, status, live),
        "cameras": live.cameras,
        "clock": live.clock,
        "periods": live.periods,
        **{k: v for k, v in status.as_dict().items() if k != "running"},
        "running_digests": status.as_dict().get("running"),
    }
    return dict(iso_times(data))


def _uplinks(config: GatewayConfig, status: GatewayStatus, live: Liveness) -> list[dict[str, Any]]:
    """Every configured uplink: what it has not delivered yet, and its connection now."""
    uplinks = config.cloud.uplinks if config.cloud is not None else []
    idle = "not running" if live.running is False else "unknown"
    return [
        {
            "name": u.name,
            "type": u.type,
            "pending": status.cloud_backlog.get(u.name, {}),
            "connection": live.uplinks.get(u.name, {}).get("state", idle),
            "since": live.uplinks.get(u.name, {}).get("since"),
        }
        for u in uplinks
    ]


def _age(seen: float | None) -> str:
    return "never" if seen is None else f"{time.time() - seen:.0f}s ago"


def _head(config: GatewayConfig, status: GatewayStatus, live: Liveness) -> list[str]:
    if live.running is None:
        state = "state unknown (the lock file cannot be read)"
    elif live.running:
        state = f"RUNNING (pid {live.pid})" if live.pid else "RUNNING"
    else:
        state = "NOT RUNNING"
    broker = f"{config.broker.host}:{config.broker.port}"
    since = "" if live.broker_since is None else f" since {_age(live.broker_since)}"
    lines = [
        f"gateway {config.gateway.id}  {state}",
        f"database {config.store.path} ({status.database_bytes:,} B)",
        f"broker {broker}: {live.broker}{since}",
    ]
    clock = live.clock
    if clock["warning"]:
        lines.append(
            "WARNING clock not synchronised: record times may be wrong "
            f"(now: {_yes_no(clock['synchronised'])}; "
            f"{clock['records_unsynchronised']} of the newest {clock['records_checked']} "
            "records stamped unsynchronised); check NTP (timedatectl)"
        )
    else:
        lines.append(f"clock synchronised: {_yes_no(clock['synchronised'])}")
    lines.extend(_clock_lines(clock))
    return lines


def _clock_lines(clock: dict[str, Any]) -> list[str]:
    """The running gateway's clock watch: held readings, the last step."""
    lines = []
    if clock.get("state") is not None:
        trust = "trusted" if clock.get("trusted") else "NOT trusted (judgement held back)"
        lines.append(
            f"gateway clock: {clock['state']}, {trust}; {clock.get('steps') or 0} steps this run"
        )
    if clock.get("held_back") or clock.get("not_judged"):
        lines.append(
            f"WARNING clock not trusted yet: {clock.get('held_back') or 0} readings held back "
            f"from judgement until NTP syncs, {clock.get('not_judged') or 0} dropped from "
            "judgement (all stored)"
        )
    step = clock.get("last_step")
    if step is not None and step.get("step_s") is not None:
        lines.append(
            f"clock last stepped {step.get('direction')} by {float(step['step_s']):.3f} s "
            f"{_age(step.get('at'))}"
        )
    return lines


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}%"


def rates_lines(status: GatewayStatus) -> list[str]:
    """Data rates per sensor: transmission × validity = effective (数据传输有效率)."""
    lines = []
    if status.rates:
        lines.append("data rates (transmission × validity = effective):")
    for sensor_id, periods in status.rates.items():
        cells = []
        for name in ("today", "yesterday", "month"):
            p = periods.get(name, {})
            cells.append(
                f"{name} {_pct(p.get('transmission_rate'))} × {_pct(p.get('validity_rate'))}"
                f" = {_pct(p.get('effective_rate'))}"
            )
        lines.append(f"  {sensor_id:<12} " + "; ".join(cells))
    return lines


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else "yes" if value else "NO"


def status_lines(config: GatewayConfig, status: GatewayStatus, live: Liveness) -> list[str]:
    """The status as text lines for a terminal."""
    lines = _head(config, status, live)
    for s in status.sensors:
        values = ", ".join(
            f"{q}={v[0]:g}{'' if v[1] == 'N' else '/' + v[1]}" for q, v in s.last_values.items()
        )
        lines.append(
            f"  {s.sensor_id:<12} {s.kind:<6} last {_age(s.last_seen):>10}  "
            f"readings {s.readings:>8}  dead letters {s.dead_letters:>5}  {values}"
        )
    for sensor_id, mode in status.modes.items():
        pending = " (requested; the gateway applies it when running)" if mode["pending"] else ""
        lines.append(
            f"  {sensor_id}: {mode['mode']} since {_age(mode['since'])} by {mode['who']}: "
            f"{mode['why']}{pending}"
        )
    for camera in live.cameras:
        why = ""
        if camera["since"] is not None:
            why = f" since {_age(camera['since'])}: {printable(camera['reason'])}"
        lines.append(f"  camera {camera['id']:<12} {camera['state']}{why}")
    shown = len(status.recent_dead_letters)
    lines += period_lines(live.periods, current=bool(live.running))
    lines += rates_lines(status)
    lines.append(f"dead letters: {status.dead_letters_total} (newest {shown} below)")
    lines += [f"  {d['topic']}: {d['reason']}" for d in status.recent_dead_letters]
    for uplink in _uplinks(config, status, live):
        pending = ", ".join(f"{n} {c}" for c, n in sorted(uplink["pending"].items())) or "none"
        lines.append(
            f"cloud uplink {uplink['name']} ({uplink['type']}): pending {pending}; "
            f"connection {uplink['connection']}"
        )
    if config.cloud is not None:
        lines.append(f"cloud: last delivery {_age(status.last_delivered_at)}")
    lines.append(f"open events: {len(status.open_events)} (of {status.events_total} events)")
    lines += [
        f"  #{e['seq']} {e['severity']:<7} {e['kind']:<20} {e['source']:<12}"
        f" since {_age(e['started_at'])}"
        for e in status.open_events
    ]
    return lines
