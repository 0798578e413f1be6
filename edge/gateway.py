"""The gateway's lifecycle: open the store, receive, judge, commit, shut down in order.

Shutdown runs in reverse dependency order: stop intake, commit and acknowledge what was
received, then close the store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from cloud_sync.sync import CloudSync, make_outbox
from edge.config import GatewayConfig
from edge.events import Event, EventStatus, Severity
from edge.sensor_modes import ModeRequest, read_requests
from edge.status import connect_read_only, query_optional
from edge.store import Store
from edge.supervisor import Control, confirm, read_pending, roll_back
from edge.waits import wait_any
from sensors.intake import Intake
from sensors.maintenance import Mode
from sensors.monitor import SensorMonitor, build_monitors
from sensors.mqtt_ingest import MqttIngest
from sensors.standards import load_profiles

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
MODE_POLL_S = 1.0


class GatewaySetupError(RuntimeError):
    """The config is valid but cannot be put to work (e.g. a standard profile mismatch)."""


def build_sensor_monitors(config: GatewayConfig) -> dict[str, SensorMonitor]:
    """One standards/health monitor per sensor, from the shipped standard profiles."""
    try:
        return build_monitors(config.sensors, load_profiles(), site=config.site.name)
    except ValueError as exc:
        raise GatewaySetupError(str(exc)) from exc


async def _prune_loop(store: Store, keep: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await wait_any(stop, at_most=PRUNE_EVERY_S)
        deleted = await store.prune_dead_letters(keep)
        if deleted:
            log.info("dead letters pruned deleted=%d kept=%d", deleted, keep)


class _ModeFollower:
    """Applies technicians' maintenance requests (see ``edge.sensor_modes``)."""

    def __init__(self, config: GatewayConfig, monitors: dict[str, SensorMonitor]) -> None:
        self._config = config
        self._monitors = monitors
        self._applied: dict[str, ModeRequest] = {}

    def changes(self, requests: dict[str, ModeRequest]) -> list[Event]:
        events = []
        for sensor_id, request in requests.items():
            monitor = self._monitors.get(sensor_id)
            if monitor is None or self._applied.get(sensor_id) == request:
                continue
            self._applied[sensor_id] = request
            if monitor.mode.mode is Mode(request.mode):
                continue  # e.g. "normal" for a sensor that never left it
            events.append(
                monitor.set_mode(request.mode, request.who, request.why, request.requested_at)
            )
            log.info(
                "sensor mode sensor=%s mode=%s who=%s why=%r",
                sensor_id,
                request.mode,
                request.who,
                request.why,
            )
        return events


async def resume_open_events(store: Store, monitors: dict[str, SensorMonitor]) -> None:
    """Resume the events a previous run left open; close those no monitor can continue.

    A sensor condition that lasts across a restart (a power cut) must stay one event, not
    a false recovery followed by a duplicate alarm, so each open event is offered to its
    source's monitor. What nobody adopts (vision events, which need fresh confirmation,
    or a limit the new config no longer has) is closed as before.
    """
    now = time.time()
    adopted = closed = 0
    for event in await store.open_events():
        monitor = monitors.get(event.source)
        if monitor is not None and monitor.adopt(event):
            adopted += 1
            continue
        detail = {**event.detail, "closed_by": "gateway restart"}
        await store.emit(replace(event, status=EventStatus.CLOSED, ended_at=now, detail=detail))
        closed += 1
    log.info("open events at start adopted=%d closed=%d", adopted, closed)


async def _confirm_or_roll_back(
    store: Store, control: Control, connected: asyncio.Event, stop: asyncio.Event
) -> None:
    """After a remote config change: confirm it once an uplink connects, else roll back."""
    pending = read_pending(control.config_path)
    if pending is None:
        return
    timeout = float(str(pending.get("timeout_s", 60.0)))
    await wait_any(connected, stop, at_most=timeout)
    if stop.is_set() and not connected.is_set():
        return  # stopped before the verdict: decide after the next start
    detail = {"command_id": pending.get("command_id"), "file": str(control.config_path)}
    if connected.is_set():
        await asyncio.to_thread(confirm, control.config_path)
        kind, severity = "config_confirmed", Severity.INFO
        log.info("config confirmed file=%s", control.config_path)
    else:
        restored = await asyncio.to_thread(roll_back, control.config_path)
        kind, severity = "config_rolled_back", Severity.WARNING
        detail |= {"reason": f"no uplink connected within {timeout:g} s", "restored": restored}
        log.warning("config rolled back file=%s timeout_s=%g", control.config_path, timeout)
        control.restart.set()
    await store.emit(
        Event(
            kind=kind,
            source=control.config_path.name,
            severity=severity,
            status=EventStatus.INSTANT,
            started_at=time.time(),
            detail=detail,
        )
    )


def evidence_delivered(db_path: Path) -> Callable[[str], bool]:
    """Whether the violation event bound to a snapshot hash has reached the cloud.

    Used by the evidence quota to delete delivered snapshots first; it runs only when the
    quota is exceeded, so a scan of the outbox is acceptable.
    """

    def delivered(sha256: str) -> bool:
        try:
            with closing(connect_read_only(db_path)) as db:
                rows = query_optional(
                    db,
                    "SELECT 1 FROM outbox WHERE delivered_at IS NOT NULL AND instr(body, ?) > 0"
                    " LIMIT 1",
                    sha256,
                )
        except (sqlite3.Error, FileNotFoundError):
            return False
        return bool(rows)

    return delivered


async def _run_vision(config: GatewayConfig, store: Store, stop: asyncio.Event) -> None:
    """Run the kitchen cameras; a model that cannot be loaded disables video, not the gateway."""
    # Imported here: OpenCV, numpy and onnxruntime cost memory a camera-less gateway need not pay.
    from vision.detector import DetectorError
    from vision.layouts import LayoutError
    from vision.service import VisionService

    assert config.vision is not None
    try:
        async with VisionService(
            config.vision,
            store,
            data_dir=config.store.path.parent,
            is_delivered=evidence_delivered(config.store.path),
        ):
            await stop.wait()
    except (DetectorError, LayoutError, OSError) as exc:
        log.error("vision disabled: %s", exc)
        await store.emit(
            Event(
                kind="vision_fault",
                source="vision",
                severity=Severity.WARNING,
                status=EventStatus.INSTANT,
                started_at=time.time(),
                detail={"error": str(exc), "model": config.vision.detector.model_path},
            )
        )
        await stop.wait()


async def run_gateway(
    config: GatewayConfig, stop: asyncio.Event, *, control: Control | None = None
) -> None:
    """Run the gateway until ``stop`` is set; return after a clean shutdown.

    With a ``control`` (see ``edge.supervisor``), remote config commands are applied to its
    file and a pending change is confirmed or rolled back.
    """
    monitors = build_sensor_monitors(config)
    log.info(
        "gateway starting id=%s sensors=%d judged=%d db=%s",
        config.gateway.id,
        len(config.sensors),
        sum(1 for s in config.sensors if s.standard is not None),
        config.store.path,
    )
    outbox = make_outbox(config.gateway.id, config.cloud, config.store.path)
    async with await Store.open(config.store.path, outbox=outbox) as store:
        await resume_open_events(store, monitors)
        intake = Intake(config, monitors=monitors)
        # Everything built so far (config, profiles, modules) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which the ingest's many small
        # allocations would otherwise trigger over the whole heap.
        gc.freeze()
        # Monitors are fed from the MQTT thread; tick and mode changes take the same lock.
        lock = threading.Lock()
        modes = _ModeFollower(config, monitors)

        def tick(now: float) -> list[Event]:
            events: list[Event] = []
            for monitor in monitors.values():
                events.extend(monitor.tick(now))
            return events

        ingest = MqttIngest(config, intake, store.commit, tick=tick, lock=lock)

        async def follow_modes() -> None:
            while not stop.is_set():
                requests = await asyncio.to_thread(read_requests, config.store.path)
                with lock:
                    intake.add_events(modes.changes(requests))
                await wait_any(stop, at_most=MODE_POLL_S)

        async with asyncio.TaskGroup() as tasks:
            connected = asyncio.Event()
            if config.cloud is not None:
                sync = CloudSync(
                    store,
                    config.cloud,
                    config.gateway.id,
                    gateway_config=config,
                    config_path=None if control is None else control.config_path,
                    on_config_applied=None if control is None else control.restart.set,
                )
                connected = sync.connected
                tasks.create_task(sync.run(stop), name="offsite-edge.cloud")
            if control is not None:
                tasks.create_task(
                    _confirm_or_roll_back(store, control, connected, stop),
                    name="offsite-edge.config-watchdog",
                )
            if config.vision is not None:
                tasks.create_task(_run_vision(config, store, stop), name="offsite-edge.vision")
            tasks.create_task(follow_modes(), name="offsite-edge.modes")
            tasks.create_task(ingest.run(stop), name="offsite-edge.ingest")
            tasks.create_task(
                _prune_loop(store, config.store.dead_letter_keep, stop),
                name="offsite-edge.prune",
            )
    log.info(
        "gateway stopped readings=%d dead_letters=%d",
        intake.reading_total,
        intake.dead_letter_total,
    )
