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
import threading
import time
from collections.abc import Mapping
from dataclasses import replace

from cloud_sync.outbox_view import evidence_delivered
from cloud_sync.sync import CloudSync, make_outbox
from edge.app.config import GatewayConfig
from edge.app.remote_config import Control, RemoteConfig, confirm_or_roll_back
from edge.events import Event, EventStatus, Severity
from edge.store import Store
from edge.waits import wait_any
from sensors.batch_builder import BatchBuilder
from sensors.ingest import MqttIngest
from sensors.modes import ModeDesk, apply_request
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


async def _follow_modes(
    desk: ModeDesk,
    monitors: Mapping[str, SensorMonitor],
    lock: threading.Lock,
    store: Store,
    stop: asyncio.Event,
) -> None:
    """Apply maintenance requests as they arrive; a filed one is forgotten once committed."""
    while not stop.is_set():
        for path, request in await desk.take(stop, MODE_POLL_S):
            # Monitors are fed from the MQTT thread: change their mode under its lock.
            with lock:
                try:
                    event = apply_request(monitors, request)
                except ValueError as exc:
                    log.error("mode request refused sensor=%s reason=%s", request.sensor_id, exc)
                    event = None
            if event is not None:
                await store.emit(event)
            desk.done(path)


async def _run_vision(config: GatewayConfig, store: Store, stop: asyncio.Event) -> None:
    """Run the kitchen cameras; a model that cannot be loaded disables video, not the gateway."""
    # Imported here: OpenCV, numpy and onnxruntime cost memory a camera-less gateway need not pay.
    from vision.errors import VisionError
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


async def run_gateway(
    config: GatewayConfig, stop: asyncio.Event, *, control: Control | None = None
) -> None:
    """Run the gateway until ``stop`` is set; return after a clean shutdown.

    With a ``control`` (see ``edge.app.supervisor``), remote config commands are applied to
    its file and a pending change is confirmed or rolled back.
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
    async with await Store.open(config.store.path, hook=outbox) as store:
        await resume_open_events(store, monitors)
        builder = BatchBuilder(config, monitors=monitors)
        # Everything built so far (config, profiles, modules) lives as long as the process:
        # keep it out of the cyclic collector's full passes, which the ingest's many small
        # allocations would otherwise trigger over the whole heap.
        gc.freeze()
        # Monitors are fed from the MQTT thread; tick and mode changes take the same lock.
        lock = threading.Lock()
        desk = ModeDesk(config.store.path, frozenset(monitors))

        def tick(now: float) -> list[Event]:
            events: list[Event] = []
            for monitor in monitors.values():
                events.extend(monitor.tick(now))
            return events

        ingest = MqttIngest(config, builder, store.commit, tick=tick, lock=lock)

        async with asyncio.TaskGroup() as tasks:
            connected = asyncio.Event()
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
                )
                connected = sync.connected
                tasks.create_task(sync.run(stop), name="offsite-edge.cloud")
            if control is not None:
                tasks.create_task(
                    confirm_or_roll_back(store, control, connected, stop),
                    name="offsite-edge.config-watchdog",
                )
            if config.vision is not None:
                tasks.create_task(_run_vision(config, store, stop), name="offsite-edge.vision")
            tasks.create_task(
                _follow_modes(desk, monitors, lock, store, stop), name="offsite-edge.modes"
            )
            tasks.create_task(ingest.run(stop), name="offsite-edge.ingest")
            tasks.create_task(
                _prune_loop(store, config.store.dead_letter_keep, stop),
                name="offsite-edge.prune",
            )
    log.info(
        "gateway stopped readings=%d dead_letters=%d",
        builder.reading_total,
        builder.dead_letter_total,
    )
