"""`offsite-edge cloud`: a small reference supervision cloud (demo and tests, not production).

It subscribes to the cloud broker (persistent session; PUBACK only after its own SQLite
commit), accepts the HTTPS uplink, checks every record against the protocol schema and
its gateway's *registered* key (`offsite-edge cloud register`), keeps each distinct record
once, verifies each chain incrementally as records arrive, and serves a JSON API (bearer
token, or client certificates, required for all but ``/health``):

- ``GET /health``  liveness and the MQTT intake's state, no authentication
- ``GET /api/gateways``  last seen, record, duplicate and rejected counts per gateway
- ``GET /api/records?gateway=&class=&type=&after=&limit=``  admitted records, arrival order
- ``GET /api/rejected?gateway=&after=&limit=``  rejected records with the reason
- ``GET /api/chain[?gateway=]``  the verdict per gateway (docs/protocol.md)
- ``POST /v1/records``  HTTPS uplink ingest (``Idempotency-Key`` per batch); names each
  accepted record, 422 with a reason per rejected one; a gateway's own token may only
  post that gateway's records (and read nothing)

This module wires the parts together: storage and chain verification in
:mod:`cloud_sync.receiver_store`, the MQTT intake in :mod:`cloud_sync.receiver_mqtt`, the
HTTP(S) API (aiohttp) in :mod:`cloud_sync.receiver_http`, and the extensions
(:mod:`cloud_sync.receiver_extension`: more routes on the same application, more MQTT
uplink topics through the same intake).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from cloud_sync.receiver_extension import ReceiverContext, ReceiverExtension
from cloud_sync.receiver_http import DEFAULT_MAX_BODY, HttpApi, server_ssl_context
from cloud_sync.receiver_mqtt import MqttIntake

# Re-exported: the database and batch parser were importable from here before the split.
from cloud_sync.receiver_store import ReceiverDB, parse_batch
from edge.tls import TLSConfig
from edge.waits import wait_any

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
    """Gateway id → public key (hex), registered at start (as `cloud register` does)."""
    token: str | None = None
    """Bearer token of the HTTP API; without it (and without client_ca) only /health answers."""
    max_body: int = DEFAULT_MAX_BODY
    clock_tolerance_s: float = 300.0
    """How far created_at may go backwards along the chain before it is reported."""
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: TLSConfig | None = None


def data_dir_of(db: Path) -> Path:
    """The extensions' directory beside the receiver database: ``<dir>/<stem>-data``."""
    return db.parent / f"{db.stem}-data"


class Receiver:
    """The running reference cloud: MQTT subscriber, HTTP(S) server, database."""

    def __init__(
        self, config: ReceiverConfig, *, extensions: Sequence[ReceiverExtension] = ()
    ) -> None:
        self.config = config
        self.extensions = tuple(extensions)
        self.db = ReceiverDB(config.db, config.trust, clock_tolerance_s=config.clock_tolerance_s)
        self.http_port = config.http_port
        self.ready = asyncio.Event()
        """Set once the API is served and, with a broker, the subscription is confirmed:
        from then on nothing published to the receiver's topics is lost."""
        self._mqtt = MqttIntake(
            self.db,
            host=config.mqtt_host,
            port=config.mqtt_port,
            topic_prefix=config.topic_prefix,
            client_id=config.client_id,
            username=config.mqtt_username,
            password=config.mqtt_password,
            tls=config.mqtt_tls,
            extensions=self.extensions,
        )
        mtls = bool(config.client_ca and config.tls_cert and config.tls_key)
        self._api = HttpApi(
            self.db,
            token=config.token,
            client_certs=mtls,
            max_body=config.max_body,
            mqtt_state=lambda: self._mqtt.state,
        )

    def application(self) -> web.Application:
        """The aiohttp application: the record API, then every extension's routes."""
        app = self._api.application()
        data_dir = data_dir_of(self.config.db)
        data_dir.mkdir(parents=True, exist_ok=True)
        context = ReceiverContext(
            db=self.db,
            data_dir=data_dir,
            authorize=self._api.authorize,
            topic_prefix=self.config.topic_prefix,
            # The intake's client exists once run() started it, before anything is served.
            publish=self._mqtt.publish if self.config.mqtt_host else None,
        )
        for extension in self.extensions:
            extension.setup(app, context)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        runner: web.AppRunner | None = None
        try:
            context = server_ssl_context(
                self.config.tls_cert, self.config.tls_key, self.config.client_ca
            )
            runner = web.AppRunner(self.application(), access_log=None, shutdown_timeout=2.0)
            if self.config.mqtt_host:
                # Before serving: an extension's handler may publish through the client.
                self._mqtt.start()
            await runner.setup()
            site = web.TCPSite(
                runner, self.config.http_host, self.config.http_port, ssl_context=context
            )
            await site.start()
            self.http_port = int(runner.addresses[0][1])
            log.info("receiver listening http_port=%d tls=%s", self.http_port, context is not None)
            async with asyncio.TaskGroup() as tasks:
                if self.config.mqtt_host:
                    tasks.create_task(self._mqtt.write(stop), name="offsite-cloud.mqtt-writer")
                    # Ready only once subscribed: a new session's messages published before
                    # the SUBACK are not kept for the receiver.
                    await wait_any(self._mqtt.subscribed, stop)
                self.ready.set()
                await stop.wait()
        finally:
            if runner is not None:
                await runner.cleanup()  # the app's on_cleanup hooks (extensions) run here
            await self._mqtt.close()
            self.db.close()


async def run_receiver(
    config: ReceiverConfig,
    stop: asyncio.Event,
    *,
    extensions: Sequence[ReceiverExtension] = (),
) -> None:
    """Run the reference cloud (with ``extensions`` plugged in) until ``stop``."""
    await Receiver(config, extensions=extensions).run(stop)
