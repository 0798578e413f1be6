"""MQTT uplink: QoS 1 to the cloud broker over a persistent session; PUBACK = delivered.

Records of one data class are packed into messages on ``<prefix>/<gateway>/up/<class>``
(see docs/protocol.md). paho runs its network loop in its own thread; its callbacks only
hand events to the asyncio loop (``call_soon_threadsafe``), so every piece of delivery
bookkeeping happens on the event loop, and a PUBACK can never race the registration of
its message id.

Evidence snapshots go as chunks on ``<prefix>/<gateway>/up/evidence``
(:mod:`cloud_sync.evidence_wire`), a few PUBACKs in flight at a time. A PUBACK only says
the broker has a chunk; the snapshot is delivered when a receipt signed by a trusted
regulator key arrives on ``<prefix>/<gateway>/down/evidence``
(:mod:`cloud_sync.evidence_receipt`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_sync.config import MqttUplinkConfig, read_secret
from cloud_sync.envelope import TrustedKey
from cloud_sync.errors import CommandRefusedError, UplinkError
from cloud_sync.evidence_receipt import EvidenceReceipt, open_receipt
from cloud_sync.evidence_wire import chunk_messages
from cloud_sync.outbox import OutRecord, wire_batch
from edge.mqtt import shut_down
from edge.tls import client_ssl_context

log = logging.getLogger(__name__)

CommandHandler = Callable[[bytes], None]

EVIDENCE_IN_FLIGHT = 8
"""Chunks of a snapshot published before waiting for their PUBACKs (bounds memory)."""


def uplink_topic(prefix: str, gateway_id: str, data_class: str) -> str:
    """Topic of a batch of records of one class."""
    return f"{prefix}/{gateway_id}/up/{data_class}"


def command_topic(prefix: str, gateway_id: str) -> str:
    """Topic the gateway receives commands on."""
    return f"{prefix}/{gateway_id}/down/command"


def reply_topic(prefix: str, gateway_id: str) -> str:
    """Topic the gateway answers commands on."""
    return f"{prefix}/{gateway_id}/up/reply"


def receipt_topic(prefix: str, gateway_id: str) -> str:
    """Topic the gateway receives signed evidence receipts on."""
    return f"{prefix}/{gateway_id}/down/evidence"


def chunk_by_class(
    records: Sequence[OutRecord], per_message: int
) -> list[tuple[str, list[OutRecord]]]:
    """Split records (already in send order) into runs of one class, at most ``per_message``."""
    chunks: list[tuple[str, list[OutRecord]]] = []
    for record in records:
        if chunks and chunks[-1][0] == record.data_class and len(chunks[-1][1]) < per_message:
            chunks[-1][1].append(record)
        else:
            chunks.append((record.data_class, [record]))
    return chunks


class MqttUplink:
    """One persistent MQTT session to the cloud broker."""

    def __init__(
        self,
        config: MqttUplinkConfig,
        gateway_id: str,
        *,
        on_command: CommandHandler | None = None,
        receipt_keys: Mapping[str, TrustedKey] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.gateway_id = gateway_id
        self.connected = False
        self.far_acks = 0
        self._on_command = on_command
        self._loop = asyncio.get_running_loop()
        self._connected_event = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._client: mqtt.Client | None = None
        # Keys whose signed receipts confirm evidence (None: this uplink sends no evidence).
        self._receipt_keys = None if receipt_keys is None else dict(receipt_keys)
        self.on_receipt: Callable[[EvidenceReceipt], None] | None = None
        """Called on the event loop with every receipt whose signature verified."""

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"offsite-edge-up-{self.gateway_id}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # 3.1.1: a persistent session is clean_session=False (v5 uses clean_start).
            clean_session=None if v5 else False,
        )
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(1, 30)
        if cfg.username_env:
            client.username_pw_set(
                read_secret(cfg.username_env),
                read_secret(cfg.password_env) if cfg.password_env else None,
            )
        if cfg.tls.enabled:
            client.tls_set_context(client_ssl_context(cfg.tls))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = cfg.session_expiry_s
        connect_kwargs: dict[str, Any] = {"keepalive": cfg.keepalive_s}
        if v5:
            connect_kwargs["clean_start"] = False
            connect_kwargs["properties"] = properties
        client.connect_async(cfg.host, cfg.port, **connect_kwargs)
        client.loop_start()
        return client

    # paho thread → event loop
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        del userdata, flags, props
        if rc.is_failure:
            self._loop.call_soon_threadsafe(self._set_connected, False, str(rc))
            return
        if self._on_command is not None:
            client.subscribe(command_topic(self.config.topic_prefix, self.gateway_id), qos=1)
        if self._receipt_keys is not None:
            client.subscribe(receipt_topic(self.config.topic_prefix, self.gateway_id), qos=1)
        self._loop.call_soon_threadsafe(self._set_connected, True, "")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        del client, userdata, flags, props
        self._loop.call_soon_threadsafe(self._set_connected, False, str(rc))

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any
    ) -> None:
        del client, userdata, props
        self._loop.call_soon_threadsafe(self._acked, mid, not rc.is_failure)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        del client, userdata
        if message.topic == receipt_topic(self.config.topic_prefix, self.gateway_id):
            self._loop.call_soon_threadsafe(self._on_receipt, bytes(message.payload))
        elif self._on_command is not None:
            self._loop.call_soon_threadsafe(self._on_command, bytes(message.payload))

    # event loop side
    def _set_connected(self, up: bool, reason: str) -> None:
        if up and not self.connected:
            log.info(
                "uplink connected uplink=%s host=%s port=%d",
                self.name,
                self.config.host,
                self.config.port,
            )
        elif not up and self.connected:
            # close() clears _client first: our own clean shutdown is no warning.
            level = logging.INFO if self._client is None else logging.WARNING
            log.log(level, "uplink disconnected uplink=%s reason=%s", self.name, reason)
        self.connected = up
        if up:
            self._connected_event.set()
        else:
            self._connected_event.clear()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(UplinkError(f"disconnected: {reason}"))
            self._waiting.clear()

    def _on_receipt(self, payload: bytes) -> None:
        if self._receipt_keys is None:
            return
        try:
            receipt = open_receipt(payload, gateway_id=self.gateway_id, keys=self._receipt_keys)
        except CommandRefusedError as exc:
            # Anyone on the cloud broker can publish here: an unverified receipt changes nothing.
            log.warning("evidence receipt ignored uplink=%s reason=%s", self.name, exc)
            return
        if self.on_receipt is not None:
            self.on_receipt(receipt)

    def _acked(self, mid: int, ok: bool) -> None:
        future = self._waiting.pop(mid, None)
        if future is None or future.done():
            return  # a retransmission of a message we already gave up on
        if ok:
            self.far_acks += 1  # a PUBACK of a record message (replies are not registered)
            future.set_result(None)
        else:
            future.set_exception(UplinkError(f"broker refused message {mid}"))

    async def connect(self) -> None:
        """Start the session (once) and wait until the broker accepted it."""
        if self._client is None:
            self._client = self._make_client()
        try:
            await asyncio.wait_for(self._connected_event.wait(), self.config.ack_timeout_s)
        except TimeoutError:
            raise UplinkError(f"no connection to {self.config.host}:{self.config.port}") from None

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Publish records at QoS 1 and wait for every PUBACK."""
        client = self._client
        if client is None or not self.connected:
            raise UplinkError("not connected")
        pending: list[tuple[asyncio.Future[None], list[int]]] = []
        for data_class, chunk in chunk_by_class(records, self.config.records_per_message):
            info = client.publish(
                uplink_topic(self.config.topic_prefix, self.gateway_id, data_class),
                wire_batch(self.gateway_id, chunk),
                qos=1,
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            future: asyncio.Future[None] = self._loop.create_future()
            self._waiting[info.mid] = future
            pending.append((future, [r.seq for r in chunk]))
        acked: list[int] = []
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                for future, seqs in pending:
                    await future
                    acked.extend(seqs)
        except (TimeoutError, UplinkError) as exc:
            for future, _ in pending:
                future.cancel()
            raise UplinkError(f"PUBACK missing: {exc or 'timeout'}", acked=acked) from None
        if len(acked) < len(records):
            raise UplinkError("publish refused while disconnected", acked=acked)
        return acked

    async def send_evidence(self, sha256: str, data: bytes, *, event_id: str) -> str | None:
        """Publish a snapshot's chunks at QoS 1, a few PUBACKs in flight; None once all are in.

        A PUBACK proves only that the broker holds a chunk: the snapshot is delivered when
        the receiver's signed receipt reaches :attr:`on_receipt`, later. Not waiting for it
        here keeps alarms flowing on this uplink meanwhile.
        """
        del sha256  # named by the chunks' headers (the hash of ``data``)
        if self._receipt_keys is None:
            raise UplinkError("this uplink carries no evidence")
        topic = uplink_topic(self.config.topic_prefix, self.gateway_id, "evidence")
        window: list[asyncio.Future[None]] = []
        for message in chunk_messages(data, event_id=event_id):
            client = self._client
            if client is None or not self.connected:
                raise UplinkError("not connected")
            info = client.publish(topic, message, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise UplinkError(f"publish refused: {mqtt.error_string(info.rc)}")
            future: asyncio.Future[None] = self._loop.create_future()
            self._waiting[info.mid] = future
            window.append(future)
            if len(window) >= EVIDENCE_IN_FLIGHT:
                await self._settle(window)
        await self._settle(window)
        return None

    async def _settle(self, window: list[asyncio.Future[None]]) -> None:
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                for future in window:
                    await future
        except TimeoutError:
            raise UplinkError("PUBACK missing for an evidence chunk") from None
        finally:
            for future in window:
                future.cancel()
            window.clear()

    def reply(self, payload: dict[str, Any]) -> None:
        """Publish a command reply (QoS 1; the audit record in the outbox is the durable copy)."""
        if self._client is not None:
            self._client.publish(
                reply_topic(self.config.topic_prefix, self.gateway_id),
                json.dumps(payload, ensure_ascii=False),
                qos=1,
            )

    async def close(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        client, self._client = self._client, None
        if client is not None:
            await shut_down(client)
        self.connected = False
        self._connected_event.clear()
