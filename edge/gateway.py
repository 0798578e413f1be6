"""The gateway's lifecycle: open the store, receive, commit, shut down in order.

Shutdown runs in reverse dependency order: stop intake, commit and acknowledge what was
received, then close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cloud_sync.sync import CloudSync, make_outbox
from edge.config import GatewayConfig
from edge.store import Store
from sensors.intake import Intake
from sensors.mqtt_ingest import MqttIngest

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0


async def _prune_loop(store: Store, keep: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PRUNE_EVERY_S)
        deleted = await store.prune_dead_letters(keep)
        if deleted:
            log.info("dead letters pruned deleted=%d kept=%d", deleted, keep)


async def run_gateway(config: GatewayConfig, stop: asyncio.Event) -> None:
    """Run the gateway until ``stop`` is set; return after a clean shutdown."""
    log.info(
        "gateway starting id=%s sensors=%d db=%s",
        config.gateway.id,
        len(config.sensors),
        config.store.path,
    )
    outbox = make_outbox(config.gateway.id, config.cloud, config.store.path)
    async with await Store.open(config.store.path, outbox=outbox) as store:
        intake = Intake(config)
        ingest = MqttIngest(config, intake, store.commit)
        async with asyncio.TaskGroup() as tasks:
            if config.cloud is not None:
                sync = CloudSync(store, config.cloud, config.gateway.id, gateway_config=config)
                tasks.create_task(sync.run(stop), name="offsite-edge.cloud")
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
