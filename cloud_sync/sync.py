"""The sync service: one delivery loop per uplink plus housekeeping, owned by one TaskGroup.

Each delivery loop repeats: acknowledge what the last send got acknowledged and pop the
next batch (one writer operation, so both ride in one commit), send it, back off with
jitter on failure. Once an uplink has no alarm or event records left to send, it sends
one evidence snapshot due for upload (``cloud_sync.evidence_queue``, sent by
``cloud_sync.evidence_sender``) before the next batch of status and minute records: the
regulator sees the picture before the routine data.
Housekeeping appends gateway status records, closes idle minutes, expires records past
their TTL and prunes delivered ones past the retention time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from cloud_sync.chain import public_key_hex
from cloud_sync.command_ids import consume
from cloud_sync.commands import CommandProcessor, ConfigChanges, SensorModes
from cloud_sync.config import CloudConfig, Hj212UplinkConfig, HttpsUplinkConfig, MqttUplinkConfig
from cloud_sync.envelope import SignedCommand, trusted_keys
from cloud_sync.errors import UplinkError
from cloud_sync.evidence_queue import (
    Upload,
    carries_evidence,
    claim,
    evidence_due,
    uploads,
    urgent_count,
)
from cloud_sync.evidence_sender import EvidenceSender
from cloud_sync.identity import check_signing_key, load_or_create_key
from cloud_sync.outbox import Outbox, OutRecord, classes_of
from cloud_sync.policy import backoff_delay
from cloud_sync.transport import EvidenceTransport, Transport
from edge.clock import clock_synchronised
from edge.store import Store
from edge.waits import wait_any

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.2
HOUSEKEEPING_S = 5.0


def key_path(cloud: CloudConfig, db_path: Path) -> Path:
    """Where the gateway key lives: configured, else next to the database."""
    return cloud.key_file or db_path.parent / "gateway.key"


def make_outbox(gateway_id: str, cloud: CloudConfig | None, db_path: Path) -> Outbox:
    """The outbox for a gateway config (unsigned, no uplinks, without a cloud section)."""
    if cloud is None:
        return Outbox(gateway_id=gateway_id)
    key = load_or_create_key(key_path(cloud, db_path))
    # The gateway reconciled an interrupted key rotation under its lock before this;
    # still, never sign with a key the chain was handed away from.
    check_signing_key(key, db_path)
    return Outbox(
        gateway_id=gateway_id,
        key=key,
        uplinks={u.name: classes_of(u.classes) for u in cloud.uplinks},
        settings=cloud.outbox,
    )


class CloudSync:
    """Delivers the outbox over every configured uplink until stopped.

    Downlink commands (on MQTT uplinks with ``commands: true``) act on the gateway only
    through ``modes`` and ``configs``, which the gateway wires in.
    """

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        cloud: CloudConfig,
        *,
        transports: Sequence[Transport] | None = None,
        seed: int | None = None,
        modes: SensorModes | None = None,
        configs: ConfigChanges | None = None,
        hj212_codes: Mapping[str, str] | None = None,
        hj212_sensors: Mapping[str, Any] | None = None,
        status_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.cloud = cloud
        self.gateway_id = outbox.gateway_id
        self._transports = list(transports) if transports is not None else None
        self._rng = random.Random(seed)
        self._started = time.monotonic()
        self.delivered: dict[str, int] = {}
        self.commands: CommandProcessor | None = None
        self._modes = modes
        self._configs = configs
        self._hj212_codes = dict(hj212_codes or {})
        # sensor id -> cloud_sync.hj212_frames.Hj212Sensor (kind, profile, codes: ST and codes)
        self._hj212_sensors = dict(hj212_sensors or {})
        # Carried by every status record, e.g. the running config's and model's digests.
        self._status_fields = dict(status_fields or {})
        # Set once any uplink has connected (a TCP connect or a CONNACK: no proof of a cloud).
        self.connected = asyncio.Event()
        # Set once the far end of any uplink acknowledged a real record (PUBACK, HTTP 2xx,
        # 9014): the proof that a new config still reaches the cloud.
        self.acknowledged = asyncio.Event()
        self._running: list[Transport] = []
        self.evidence = EvidenceSender(store, cloud.uplinks)

    def uplink_states(self) -> dict[str, bool]:
        """Whether each running uplink is connected now (empty before :meth:`run`)."""
        return {transport.name: transport.connected for transport in self._running}

    def build_transports(self) -> list[Transport]:
        """One transport per configured uplink."""
        transports: list[Transport] = []
        for uplink in self.cloud.uplinks:
            if isinstance(uplink, MqttUplinkConfig):
                from cloud_sync.mqtt_uplink import MqttUplink

                processor = (
                    CommandProcessor(
                        self.append_audit,
                        self.append_status,
                        gateway_id=self.gateway_id,
                        keys=trusted_keys(
                            (k.name, k.public_key) for k in self.cloud.regulator_keys
                        ),
                        consume=self.consume_command,
                        modes=self._modes,
                        configs=self._configs,
                    )
                    if uplink.commands
                    else None
                )
                evidence = carries_evidence({uplink.name: classes_of(uplink.classes)})
                mqtt = MqttUplink(
                    uplink,
                    self.gateway_id,
                    on_command=None if processor is None else processor.submit,
                    # Receipts are trusted only when signed by a commissioned regulator key.
                    receipt_keys=trusted_keys(
                        (k.name, k.public_key) for k in self.cloud.regulator_keys
                    )
                    if evidence
                    else None,
                )
                if evidence and not self.cloud.regulator_keys:
                    log.warning(
                        "evidence over MQTT cannot be confirmed: no cloud.regulator_keys to"
                        " check the receiver's signed receipts; snapshots are sent but kept"
                        " as undelivered uplink=%s",
                        uplink.name,
                    )
                if processor is not None:
                    if not self.cloud.regulator_keys:
                        log.info(
                            "commands refused: no cloud.regulator_keys configured uplink=%s",
                            uplink.name,
                        )
                    processor.reply = mqtt.reply
                    self.commands = processor
                mqtt.on_receipt = self.evidence.take_receipt
                transports.append(mqtt)
            elif isinstance(uplink, HttpsUplinkConfig):
                from cloud_sync.https_uplink import HttpsUplink

                transports.append(HttpsUplink(uplink, self.gateway_id))
            elif isinstance(uplink, Hj212UplinkConfig):
                from cloud_sync.hj212_uplink import Hj212Uplink

                hj = Hj212Uplink(
                    uplink, self.gateway_id, on_audit=self.append_audit, db_path=self.store.path
                )
                hj.default_codes(self._hj212_codes)
                hj.default_sensors(self._hj212_sensors)
                transports.append(hj)
        return transports

    async def run(self, stop: asyncio.Event) -> None:
        """Run all loops until ``stop`` is set, then close the uplinks."""
        transports = self._transports or self.build_transports()
        self._running = transports
        await self.append_status("start")
        try:
            async with asyncio.TaskGroup() as tasks:
                for transport in transports:
                    tasks.create_task(
                        self._deliver_loop(transport, stop),
                        name=f"offsite-edge.cloud[{transport.name}].deliver",
                    )
                tasks.create_task(self._housekeeping(stop), name="offsite-edge.cloud.housekeeping")
                tasks.create_task(
                    self.evidence.record_receipts(stop), name="offsite-edge.cloud.receipts"
                )
                if self.commands is not None:
                    tasks.create_task(self.commands.run(stop), name="offsite-edge.cloud.commands")
        finally:
            for transport in transports:
                await transport.close()

    async def append_status(self, event: str, extra: dict[str, Any] | None = None) -> None:
        """Append a gateway status record (class ``status``)."""
        outbox = self.outbox

        async def op(db: aiosqlite.Connection) -> None:
            body: dict[str, Any] = {
                "type": "status",
                "event": event,
                "uptime_s": round(time.monotonic() - self._started, 1),
                "backlog": await outbox.backlog(db),
                "evicted_total": outbox.evicted_total,
                # snapshots pending, confirmed by a receiver, and lost before confirmation
                "evidence": await uploads(db),
                "public_key": None
                if outbox.key is None
                else public_key_hex(outbox.key.public_key()),
                **self._status_fields,
                **(extra or {}),
            }
            await outbox.put_bodies(db, [("status", body)], time.time(), clock_synchronised())

        await self.store.run(op)

    async def append_audit(self, body: dict[str, Any]) -> None:
        """Append an audit record (class ``event``), e.g. a command and its outcome."""
        outbox = self.outbox

        async def op(db: aiosqlite.Connection) -> None:
            await outbox.put_bodies(db, [("event", body)], time.time(), clock_synchronised())

        await self.store.run(op)

    async def consume_command(self, command: SignedCommand) -> None:
        """Mark a verified command's id as used (committed); raise CommandRefusedError on replay."""
        await self.store.run(lambda db: consume(db, command))

    async def _done_and_pop(
        self, uplink: str, acked: list[int], limit: int, *, evidence: bool = False
    ) -> tuple[list[OutRecord], Upload | None]:
        outbox = self.outbox

        async def op(db: aiosqlite.Connection) -> tuple[list[OutRecord], Upload | None]:
            now = time.time()
            await outbox.done(db, uplink, acked, now)
            take = limit
            if evidence and limit:
                urgent = await urgent_count(db, uplink, limit)
                if not urgent:
                    upload = await claim(db, now, self.evidence.sending)
                    if upload is not None:
                        self.evidence.sending.add(
                            upload.sha256
                        )  # until this uplink is done with it
                        return [], upload
                elif await evidence_due(db, now, self.evidence.sending):
                    take = urgent  # only alarms and events before the waiting snapshot
            return await outbox.pop(db, uplink, take), None

        result: tuple[list[OutRecord], Upload | None] = await self.store.run(op)
        return result

    def _carries_evidence(self, transport: Transport) -> bool:
        classes = self.outbox.uplinks.get(transport.name, frozenset())
        return isinstance(transport, EvidenceTransport) and carries_evidence({"": classes})

    async def _deliver_loop(self, transport: Transport, stop: asyncio.Event) -> None:
        name = transport.name
        limit = next(u.batch_records for u in self.cloud.uplinks if u.name == name)
        backoff = self.cloud.backoff
        acked: list[int] = []
        failures = 0
        evidence = self._carries_evidence(transport)
        while True:
            if stop.is_set():
                # Commit acknowledgements we already have before leaving.
                if acked:
                    await self._done_and_pop(name, acked, 0)
                return
            far_acks = transport.far_acks
            try:
                if not transport.connected:
                    await transport.connect()
                self.connected.set()
                records, upload = await self._done_and_pop(name, acked, limit, evidence=evidence)
                acked = []
                if upload is not None:
                    assert isinstance(transport, EvidenceTransport)
                    await self.evidence.send(transport, upload, stop)
                    failures = 0
                    continue
                if not records:
                    await wait_any(stop, at_most=IDLE_POLL_S)
                    continue
                acked = await transport.send(records)
                self.delivered[name] = self.delivered.get(name, 0) + len(acked)
                failures = 0
                if transport.far_acks > far_acks:
                    self.acknowledged.set()
            except UplinkError as exc:
                if transport.far_acks > far_acks:
                    self.acknowledged.set()
                acked = exc.acked
                delay = backoff_delay(failures, backoff.initial_s, backoff.max_s, self._rng)
                failures += 1
                log.warning(
                    "uplink send failed uplink=%s error=%s acked=%d retry_in_s=%.1f",
                    name,
                    exc,
                    len(acked),
                    delay,
                )
                await wait_any(stop, at_most=delay)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        interval = self.cloud.outbox.status_interval_s
        next_status = time.monotonic() + interval
        outbox = self.outbox

        async def op(db: aiosqlite.Connection) -> tuple[int, int]:
            now = time.time()
            # The commit itself closes finished minutes, so this op also ticks the minutes.
            return await outbox.expire(db, now, clock_synchronised()), await outbox.prune(db, now)

        while not stop.is_set():
            await wait_any(stop, at_most=HOUSEKEEPING_S)
            expired, pruned = await self.store.run(op)
            if expired or pruned:
                log.info("outbox housekeeping expired=%d pruned=%d", expired, pruned)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + interval
                await self.append_status("periodic")
        await self.append_status("stop")
