"""The gateway's lifecycle: open the store, receive, judge, commit, shut down in order.

This is where the parts meet. Every long-running part is a task of one TaskGroup: MQTT
ingest (sensors), cloud sync (cloud_sync), the cameras (vision), the maintenance-mode desk
and housekeeping. Shutdown runs in reverse dependency order: stop intake, commit and
acknowledge what was received, then close the store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import aiosqlite

from cloud_sync.evidence_budget import EvidenceBudget
from cloud_sync.identity import load_or_create_key
from cloud_sync.outbox import Outbox
from cloud_sync.outbox_view import evidence_delivered
from cloud_sync.sync import CloudSync, key_path, make_outbox
from edge.app import systemd
from edge.app.audit import record_changes, running_digests
from edge.app.config import GatewayConfig
from edge.app.console.camera_feed import CameraFeed
from edge.app.health import CommitWatch
from edge.app.hj212_sensors import hj212_sensors
from edge.app.logs import EventLog
from edge.app.metrics import GatewayProbe, probe_for, serve_metrics
from edge.app.rates import rates_setup
from edge.app.remote_config import Control, RemoteConfig, confirm_or_roll_back, read_pending
from edge.app.runstate import publish_state
from edge.app.status_periods import monitor_periods
from edge.app.trusted_time import clock_view, monitors_tick, watch_clock
from edge.clock_watch import ClockWatch
from edge.events import Event, EventStatus, Severity
from edge.store import Store
from edge.waits import wait_any
from sensors.batch_builder import BatchBuilder
from sensors.ingest import MqttIngest
from sensors.modes import ModeDesk, ModeGuard, ModeLimits, ModeRequest, apply_request
from sensors.monitor import SensorMonitor, build_monitors
from sensors.standards import load_profiles

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
MODE_POLL_S = 1.0


def build_sensor_monitors(config: GatewayConfig) -> dict[str, SensorMonitor]:
    """One standards/health monitor per sensor, from the shipped standard profiles.

    Raises :class:`~sensors.errors.ProfileError` when a sensor's standard does not resolve.
    """
    return build_monitors(config.sensors, load_profiles(), site=config.site.name)


def hj212_codes(config: GatewayConfig) -> dict[str, str]:
    """Pollutant codes by quantity from the sensors' HJ 212 decoders (first sensor wins)."""
    codes: dict[str, str] = {}
    for sensor in config.sensors:
        for quantity, code in getattr(sensor.decoder, "codes", {}).items():
            codes.setdefault(quantity, code)
    return codes


async def resume_open_events(store: Store, monitors: Mapping[str, SensorMonitor]) -> None:
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


async def _prune_loop(store: Store, keep: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await wait_any(stop, at_most=PRUNE_EVERY_S)
        deleted = await store.prune_dead_letters(keep)
        if deleted:
            log.info("dead letters pruned deleted=%d kept=%d", deleted, keep)


def mode_limits(config: GatewayConfig) -> dict[str, ModeLimits]:
    """Each sensor's maximum maintenance duration and repeat limit, from its health config."""
    return {
        s.id: ModeLimits(
            max_s=s.health.maintenance_max_s,
            repeat_limit=s.health.maintenance_repeat_limit,
            repeat_window_s=s.health.maintenance_repeat_window_s,
        )
        for s in config.sensors
    }


async def seed_mode_guard(store: Store, guard: ModeGuard, now: float) -> None:
    """Count the maintenance entries of the repeat window that happened before this start."""
    since = now - guard.seed_window_s()

    async def op(db: aiosqlite.Connection) -> list[tuple[str, float]]:
        async with db.execute(
            "SELECT source, started_at FROM events WHERE kind = 'maintenance' AND started_at >= ?"
            " ORDER BY started_at LIMIT 10000",
            (since,),
        ) as cursor:
            return [(str(r[0]), float(r[1])) for r in await cursor.fetchall()]

    for sensor_id, started_at in await store.run(op):
        guard.seed(sensor_id, started_at)


async def _follow_modes(
    desk: ModeDesk,
    monitors: Mapping[str, SensorMonitor],
    lock: threading.Lock,
    store: Store,
    stop: asyncio.Event,
    *,
    guard: ModeGuard,
) -> None:
    """Apply maintenance requests as they arrive; a filed one is forgotten once committed.

    Every poll also ends the modes that have lasted their sensor's maximum duration.
    """
    while not stop.is_set():
        taken: list[tuple[Path | None, ModeRequest]] = await desk.take(stop, MODE_POLL_S)
        with lock:
            taken.extend((None, r) for r in guard.expired(monitors, time.time()))
        for path, request in taken:
            events: list[Event] = []
            # Monitors are fed from the MQTT thread: change their mode under its lock.
            with lock:
                subject = monitors.get(request.sensor_id)
                before = None if subject is None else subject.mode
                try:
                    event = apply_request(monitors, request)
                except ValueError as exc:
                    log.error("mode request refused sensor=%s reason=%s", request.sensor_id, exc)
                    event = None
            if event is not None and before is not None:
                events = [event, *guard.after(event, before, request)]
            for item in events:
                if item.kind != "maintenance":
                    log.warning("%s sensor=%s detail=%s", item.kind, item.source, item.detail)
                await store.emit(item)
            desk.done(path)


async def _run_vision(
    config: GatewayConfig,
    store: Store,
    stop: asyncio.Event,
    probe: GatewayProbe | None = None,
    feed: CameraFeed | None = None,
    *,
    outbox: Outbox | None = None,
) -> None:
    """Run the kitchen cameras; a model that cannot be loaded disables video, not the gateway."""
    # Imported here: OpenCV, numpy and onnxruntime cost memory a camera-less gateway need not pay.
    from vision.errors import VisionError
    from vision.service import VisionService

    assert config.vision is not None
    # With a cloud, the evidence quota may use the outbox's room before deleting a snapshot
    # no receiver confirmed, and records each one it must delete anyway.
    budget = None
    if outbox is not None and config.cloud is not None:
        budget = EvidenceBudget(store, outbox, asyncio.get_running_loop())
    try:
        async with VisionService(
            config.vision,
            store,
            data_dir=config.store.path.parent,
            is_delivered=evidence_delivered(config.store.path),
            borrow=None if budget is None else budget.borrow,
            on_lost=None if budget is None else budget.lost,
        ) as service:
            if probe is not None:  # the metrics read the cameras' counters at scrape time
                probe.cameras = service.stats
            if feed is not None:  # the console shows each camera's counters and last frame
                feed.stats = service.stats
            await stop.wait()
    except (VisionError, OSError) as exc:
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


def _owner_only(db_path: Path) -> None:
    """Make the database and its WAL files owner-only, also when an older run made them."""
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        try:
            os.chmod(path, 0o600)
        except FileNotFoundError:
            continue
        except PermissionError as exc:  # another user's file: say so, keep running
            log.warning("cannot make owner-only file=%s reason=%s", path, exc)


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    *,
    control: Control | None = None,
    trigger: str = "start",
    config_text: str | None = None,
    clock: ClockWatch | None = None,
) -> None:
    """Run the gateway until ``stop`` is set; return after a clean shutdown.

    With a ``control`` (see ``edge.app.supervisor``), remote config commands are applied to
    its file and a pending change is confirmed or rolled back. ``trigger`` (``start`` or
    ``reload``; ``remote`` when a cloud command installed the file) goes into the audit
    record of a config or model change; ``config_text`` is the validated text of the
    config file, whose SHA-256 is the config's digest. ``clock`` replaces the clock watch
    made from ``config.clock`` (tests drive a fake sync flag and wall clock through it).

    Raises :class:`~cloud_sync.identity.MissingKeyError` (a SetupError) when the signing
    key is gone while the outbox holds records it signed.
    """
    monitors = build_sensor_monitors(config)
    config_path = None if control is None else control.config_path
    digests = await asyncio.to_thread(running_digests, config, config_path, config_text)
    if config_path is not None and read_pending(config_path) is not None:
        trigger = "remote"  # a cloud command installed this file; it awaits confirmation
    if config.cloud is not None:
        # Refuse before anything is written: a new key would break the signed backlog.
        await asyncio.to_thread(
            load_or_create_key,
            key_path(config.cloud, config.store.path),
            db_path=config.store.path,
        )
        for name in config.cloud.plaintext_uplinks():
            log.warning("uplink sends without TLS uplink=%s reason=tls.enabled is false", name)
    log.info(
        "gateway starting id=%s sensors=%d judged=%d db=%s",
        config.gateway.id,
        len(config.sensors),
        sum(1 for s in config.sensors if s.standard is not None),
        config.store.path,
    )
    outbox = make_outbox(config.gateway.id, config.cloud, config.store.path)
    outbox.rates = rates_setup(config)
    watch = clock or ClockWatch.from_config(config.clock)
    async with await Store.open(
        config.store.path, hook=EventLog(outbox), clock=watch.synced
    ) as store:
        await asyncio.to_thread(_owner_only, config.store.path)
        await record_changes(
            store,
            digests,
            trigger=trigger,
            backups=config.store.path.parent / "config-backups",
        )
        await resume_open_events(store, monitors)
        builder = BatchBuilder(
            config, monitors=monitors, clock=watch, hold_limit=config.clock.hold_max_readings
        )
        # Everything built so far (config, profiles, modules) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which the ingest's many small
        # allocations would otherwise trigger over the whole heap.
        gc.freeze()
        # Monitors are fed from the MQTT thread; tick and mode changes take the same lock.
        lock = threading.Lock()
        desk = ModeDesk(config.store.path, frozenset(monitors))
        guard = ModeGuard(mode_limits(config))
        await seed_mode_guard(store, guard, time.time())

        commits = CommitWatch(store.commit)  # times commits for /metrics and /healthz
        # The monitors' tick judges nothing until the clock is trusted.
        ingest = MqttIngest(
            config, builder, commits, tick=monitors_tick(watch, monitors), lock=lock
        )
        probe = probe_for(config, store, builder, commits, ingest.connected)

        async with asyncio.TaskGroup() as tasks:
            # cameras: filled by the vision task, read by the console
            connected, cameras = asyncio.Event(), CameraFeed()
            if config.cloud is not None:
                sync = CloudSync(
                    store,
                    outbox,
                    config.cloud,
                    modes=desk,
                    configs=None
                    if control is None
                    else RemoteConfig(control, config.gateway.id, config.cloud.rollback_timeout_s),
                    hj212_codes=hj212_codes(config),
                    hj212_sensors=hj212_sensors(config),
                    status_fields=digests.status_fields(),
                )
                # Confirmation needs the cloud to acknowledge a record, not just a connect.
                connected = sync.acknowledged
                tasks.create_task(sync.run(stop), name="offsite-edge.cloud")
            if control is not None:
                tasks.create_task(
                    confirm_or_roll_back(store, control, connected, stop),
                    name="offsite-edge.config-watchdog",
                )
            if config.vision is not None:
                tasks.create_task(
                    _run_vision(config, store, stop, probe, cameras, outbox=outbox),
                    name="offsite-edge.vision",
                )
            if probe is not None:
                tasks.create_task(serve_metrics(probe, stop), name="offsite-edge.metrics")
            tasks.create_task(
                _follow_modes(desk, monitors, lock, store, stop, guard=guard),
                name="offsite-edge.modes",
            )
            tasks.create_task(ingest.run(stop), name="offsite-edge.ingest")
            tasks.create_task(
                publish_state(
                    config.store.path,
                    ingest.connected,
                    stop,
                    uplinks=sync.uplink_states if config.cloud is not None else None,
                    clock=clock_view(watch, builder),
                    periods=monitor_periods(monitors, lock),
                ),
                name="offsite-edge.state",
            )
            tasks.create_task(
                watch_clock(
                    watch, builder, lock, store, stop, interval_s=config.clock.check_interval_s
                ),
                name="offsite-edge.clock",
            )
            tasks.create_task(
                _prune_loop(store, config.store.dead_letter_keep, stop),
                name="offsite-edge.prune",
            )
            if config.console is not None and config.console.enabled:
                from edge.app.console import run_console
                from edge.app.console.live import GatewayParts

                parts = GatewayParts(
                    config=config,
                    store=store,
                    builder=builder,
                    monitors=monitors,
                    lock=lock,
                    desk=desk,
                    broker_connected=ingest.connected,
                    digests=digests,
                    cloud=sync if config.cloud is not None else None,
                    control=control,
                    cameras=cameras,
                )
                tasks.create_task(run_console(parts, stop), name="offsite-edge.console")
            # systemd (Type=notify): the store is open and every task is running.
            systemd.notify(
                "READY=1",
                f"STATUS=running: {len(config.sensors)} sensors, database {config.store.path}",
            )
    log.info(
        "gateway stopped readings=%d dead_letters=%d",
        builder.reading_total,
        builder.dead_letter_total,
    )
