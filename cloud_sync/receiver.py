"""`offsite-edge cloud`: a small reference supervision cloud (demo and tests, not production).

It subscribes to the cloud broker (persistent session; PUBACK only after its own SQLite
commit), accepts the HTTPS uplink, keeps every record once (deduplicated by id), verifies
each gateway's hash chain and signatures, and serves a JSON API:

- ``GET /api/gateways``  last seen, record and duplicate counts per gateway
- ``GET /api/records?gateway=&class=&type=&after=&limit=``  records in arrival order
- ``GET /api/chain[?gateway=]``  chain verification report per gateway
- ``POST /v1/records``  HTTPS uplink ingest (``Idempotency-Key`` per batch)

This module wires the parts together: storage and chain verification in
:mod:`cloud_sync.receiver_store`, the MQTT intake in :mod:`cloud_sync.receiver_mqtt`, the
HTTP(S) API in :mod:`cloud_sync.receiver_http`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync.receiver_http import HttpApi, server_ssl_context
from cloud_sync.receiver_mqtt import MqttIntake

# Re-exported: the database and batch parser were importable from here before the split.
from cloud_sync.receiver_store import ReceiverDB, parse_batch

__all__ = ["Receiver", "ReceiverConfig", "ReceiverDB", "parse_batch", "run_receiver"]

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class ReceiverConfig:
    """Where the receiver listens and what it trusts."""

    db: Path
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    topic_prefix: str = "offsite"
    client_id: str = "offsite-cloud-receiver"
    http_host: str = "127.0.0.1"
    http_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    trust: dict[str, str] = field(default_factory=dict)


class Receiver:
    """The running reference cloud: MQTT subscriber, HTTP(S) server, database."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.db = ReceiverDB(config.db, config.trust)
        self.http_port = config.http_port
        self.ready = asyncio.Event()
        self._mqtt = MqttIntake(
            self.db,
            host=config.mqtt_host,
            port=config.mqtt_port,
            topic_prefix=config.topic_prefix,
            client_id=config.client_id,
        )
        self._api = HttpApi(self.db)
        self._server: asyncio.Server | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        context = server_ssl_context(
            self.config.tls_cert, self.config.tls_key, self.config.client_ca
        )
        self._server = await asyncio.start_server(
            self._api.handle, self.config.http_host, self.config.http_port, ssl=context
        )
        self.http_port = int(self._server.sockets[0].getsockname()[1])
        log.info("receiver listening http_port=%d tls=%s", self.http_port, context is not None)
        try:
            async with asyncio.TaskGroup() as tasks:
                if self.config.mqtt_host:
                    self._mqtt.start()
                    tasks.create_task(self._mqtt.write(stop), name="offsite-cloud.mqtt-writer")
                self.ready.set()
                await stop.wait()
        finally:
            self._server.close()
            await self._server.wait_closed()
            await self._mqtt.close()
            self.db.close()


async def run_receiver(config: ReceiverConfig, stop: asyncio.Event) -> None:
    """Run the reference cloud until ``stop``."""
    await Receiver(config).run(stop)
