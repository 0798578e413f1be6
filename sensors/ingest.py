"""MQTT ingest with acknowledgement after commit.

paho-mqtt runs its network loop in its own thread (the fastest Python path on a Pi, see
the README's benchmark) with ``manual_ack=True``: a QoS 1 message is screened and
aggregated as it arrives, but its PUBACK is sent only after the batch holding it is
committed to SQLite. If the gateway dies before that, the broker still holds the message
in our persistent session and delivers it again, so nothing acknowledged is ever lost.
The cost is at-least-once: a crash between commit and PUBACK counts a message twice.

Ownership: :meth:`MqttIngest.run` owns the paho thread and the flush loop and returns
only after the last batch is committed, acknowledged and the client disconnected.

Nothing a sensor sends can stop it: an exception while screening one message (a bug the
decoders' guards missed) becomes that message's dead letter, because one that escaped
would end paho's network thread and intake with it, while the process looked healthy.
The one way :meth:`MqttIngest.run` fails is a database file deleted under the store
(:class:`~edge.store.StoreFileLostError`): then nothing may be acknowledged any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.batch import Batch
from edge.events import Event
from edge.mqtt import shut_down
from edge.store import StoreFileLostError
from edge.tls import client_ssl_context
from edge.waits import wait_any
from sensors.batch_builder import BatchBuilder
from sensors.config import BrokerConfig, SensorsSetup
from sensors.errors import BrokerSettingsError

log = logging.getLogger(__name__)

Committer = Callable[[Batch], Awaitable[object]]
Ticker = Callable[[float], list[Event]]


def _secret(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise BrokerSettingsError(f"environment variable {env_name} is not set")
    return value


def make_client(broker: BrokerConfig, client_id: str) -> mqtt.Client:
    """Create a paho client for a persistent session with manual acknowledgement."""
    v5 = broker.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    user = _secret(broker.username_env)
    if user is not None:
        client.username_pw_set(user, _secret(broker.password_env))
    if broker.tls.enabled:
        client.tls_set_context(client_ssl_context(broker.tls))
    client.reconnect_delay_set(1, max(1, int(broker.reconnect_max_s)))
    return client


def connect_properties(broker: BrokerConfig) -> Properties | None:
    """MQTT 5 CONNECT properties: keep the session while away, allow a deep in-flight window."""
    if broker.protocol != "5":
        return None
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = broker.session_expiry_s
    props.ReceiveMaximum = 65535
    return props


class MqttIngest:
    """Subscribes to the configured sensor topics and feeds an :class:`BatchBuilder`."""

    def __init__(
        self,
        config: SensorsSetup,
        builder: BatchBuilder,
        commit: Committer,
        *,
        tick: Ticker | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self._config = config
        self._builder = builder
        self._commit = commit
        self._tick = tick
        self._interval = config.store.commit_interval_ms / 1000.0
        self._max_batch = config.store.commit_max_readings
        # Guards the batch builder (and the monitors it feeds) between paho and asyncio.
        self._lock = lock or threading.Lock()
        self._acks: list[tuple[int, int]] = []
        self._generation = 0
        self._accepting = True
        self._unsaved: tuple[Batch, list[tuple[int, int]], int] | None = None
        self._failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._full = asyncio.Event()
        self._connected = asyncio.Event()
        self.client = make_client(config.broker, config.client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.topics = [s.topic for s in config.sensors] + list(config.ingest.catch_all)

    @property
    def connected(self) -> asyncio.Event:
        """Set while subscribed to the broker."""
        return self._connected

    # --- paho thread -------------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        del userdata, properties
        if reason.is_failure:
            log.warning("mqtt connect refused reason=%s", reason)
            return
        with self._lock:
            # PUBACKs for messages of an earlier connection would name the wrong packets.
            self._generation += 1
            self._acks.clear()
        log.info(
            "mqtt connected host=%s port=%d session_present=%s",
            self._config.broker.host,
            self._config.broker.port,
            flags.session_present,
        )
        if self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])
        self._signal(self._connected.set)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        del client, userdata
        # paho retries with its own backoff (1 s doubling up to broker.reconnect_max_s).
        log.warning(
            "mqtt connect failed host=%s port=%d; retrying",
            self._config.broker.host,
            self._config.broker.port,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        del client, userdata, flags, properties
        log.info("mqtt disconnected reason=%s", reason)
        self._signal(self._connected.clear)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        del client, userdata
        with self._lock:
            if not self._accepting:
                return  # not acknowledged: the broker keeps it for the next session
            payload = msg.payload
            if not isinstance(payload, bytes):
                payload = bytes(payload)
            now = time.time()
            try:
                # Monotonic too: corrects the receipt time if the wall clock is not trusted yet.
                self._builder.accept(msg.topic, payload, now, time.monotonic())
            except Exception as exc:  # noqa: BLE001 - one message must not end paho's thread
                self._internal_error(msg, payload, exc, now)
            if msg.qos:
                self._acks.append((msg.mid, msg.qos))
            full = len(self._acks) >= self._max_batch
        if full:
            self._signal(self._full.set)

    def _internal_error(
        self, msg: mqtt.MQTTMessage, payload: bytes, exc: Exception, now: float
    ) -> None:
        """Dead-letter a message whose screening raised (called under the lock)."""
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        reason = self._builder.internal_error(topic, payload, exc, now)
        log.error(
            "message dead-lettered sensor=%s topic=%s reason=%s",
            self._builder.sensor_of(topic),
            topic,
            reason,
            exc_info=exc,
        )

    def _signal(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                loop.call_soon_threadsafe(callback)

    # --- asyncio side ------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Receive until ``stop`` is set, then flush, acknowledge and disconnect."""
        self._loop = asyncio.get_running_loop()
        broker = self._config.broker
        self.client.connect_async(
            broker.host,
            broker.port,
            keepalive=broker.keepalive_s,
            clean_start=False if broker.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(broker),
        )
        self.client.loop_start()
        try:
            while not stop.is_set():
                await self._wait_for_flush(stop)
                if not await self.flush():
                    # A failing disk: back off (up to 30 s) instead of spinning.
                    delay = min(30.0, self._interval * 2**self._failures)
                    await wait_any(stop, at_most=delay)
        finally:
            with self._lock:
                self._accepting = False
            try:
                if not await self.flush():
                    log.error("shutdown with uncommitted messages; the broker will redeliver them")
            except StoreFileLostError:
                log.error("shutdown with uncommitted messages; the broker will redeliver them")
            finally:
                # DISCONNECT is queued behind the last PUBACKs, so they reach the broker first.
                await shut_down(self.client)

    async def _wait_for_flush(self, stop: asyncio.Event) -> None:
        await wait_any(stop, self._full, at_most=self._interval)
        self._full.clear()

    def _add_tick_events(self) -> None:
        """Judge the monitors (called under the lock); a failure costs this tick only."""
        assert self._tick is not None
        try:
            events = self._tick(time.time())
        except Exception:
            # Readings must keep being stored even if judging has a bug; say so loudly.
            log.exception("sensor monitors' tick failed; its judgements are lost")
            return
        self._builder.add_events(events)

    async def flush(self) -> bool:
        """Commit what has been received so far, then acknowledge it to the broker.

        Returns False when the commit failed: the batch is kept and retried with the next
        flush, and its PUBACKs wait for that (the broker keeps the messages meanwhile).
        """
        with self._lock:
            if self._tick is not None:
                self._add_tick_events()
            batch = self._builder.cut()
            acks, self._acks = self._acks, []
            generation = self._generation
        if self._unsaved is not None:
            older, older_acks, older_generation = self._unsaved
            older.absorb(batch)
            batch = older
            # PUBACKs of an earlier connection would name the wrong packets: drop them;
            # the broker redelivers those messages and they are counted again.
            acks = (older_acks if older_generation == generation else []) + acks
            self._unsaved = None
        if not batch and not acks:
            return True
        try:
            await self._commit(batch)
        except StoreFileLostError:
            # Retrying cannot help: stop (loudly) with nothing of it acknowledged.
            self._unsaved = (batch, acks, generation)
            raise
        except Exception:
            self._failures += 1
            log.exception(
                "commit failed; keeping %d messages for retry failures=%d",
                batch.messages,
                self._failures,
            )
            self._unsaved = (batch, acks, generation)
            return False
        self._failures = 0
        with self._lock:
            current = generation == self._generation
        if current:
            for mid, qos in acks:
                self.client.ack(mid, qos)
        return True
