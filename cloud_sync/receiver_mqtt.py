"""The reference receiver's MQTT intake: subscribe to the cloud broker, store, then PUBACK.

The subscriber keeps a persistent session (``clean_session=False``) and acknowledges a
message only after the batch that holds it is committed to the receiver's SQLite, so the
broker keeps redelivering whatever the receiver has not stored yet. A message whose
records are malformed is still acknowledged once its rejects are stored: the broker must
not redeliver it at every start. The topic's gateway must be the records' gateway.
TLS (server verification, optional client certificate) and a username/password are
optional; connection failures are logged, once per outage.

:attr:`MqttIntake.state` says where the intake stands (``off``, ``connecting``,
``subscribed``; ``/health`` reports it): a message published before the broker confirmed
the subscription (SUBACK) of a new session is not kept for the receiver, so whoever
starts a receiver and then publishes waits for ``subscribed``
(:attr:`MqttIntake.subscribed`). Messages on ``<prefix>/<gateway>/up/<suffix>`` that a
:class:`~cloud_sync.receiver_extension.ReceiverExtension` claims go to it, in the writer
task, and are acknowledged once it returned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Literal

from cloud_sync.receiver_extension import ReceiverExtension
from cloud_sync.receiver_store import ReceiverDB, parse_batch
from edge.mqtt import shut_down
from edge.tls import TLSConfig, client_ssl_context

__all__ = ["MqttIntake", "MqttState"]

MqttState = Literal["off", "connecting", "subscribed"]
"""``off``: no broker configured (or closed); ``subscribed``: the broker sent its SUBACK."""

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")


class MqttIntake:
    """paho subscriber on ``<prefix>/+/up/#`` feeding :meth:`ReceiverDB.ingest`."""

    def __init__(
        self,
        db: ReceiverDB,
        *,
        host: str | None,
        port: int,
        topic_prefix: str,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: TLSConfig | None = None,
        extensions: Sequence[ReceiverExtension] = (),
    ) -> None:
        self.db = db
        self.extensions = tuple(extensions)
        self.state: MqttState = "off"
        self.subscribed = asyncio.Event()
        """Set while the subscription is confirmed (SUBACK); cleared when the broker is lost."""
        self.username = username
        self.password = password
        self.tls = tls
        self._outage = False
        self.host = host
        self.port = port
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        # (topic, payload, mid, qos) handed over from paho's network thread to the event loop.
        self._messages: asyncio.Queue[tuple[str, bytes, int, int]] = asyncio.Queue()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop  # set by start(), before any callback

    @property
    def topic(self) -> str:
        """The subscription: every gateway's uplink topics."""
        return f"{self.topic_prefix}/+/up/#"

    def start(self) -> None:
        """Connect (asynchronously, with reconnects) and subscribe; call in the event loop."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._loop = asyncio.get_running_loop()
        # manual_ack: PUBACK only after our commit, so the broker keeps what we have not stored.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
        )
        self.state = "connecting"
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None and self.tls.enabled:
            client.tls_set_context(client_ssl_context(self.tls))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 5)
        client.connect_async(str(self.host), self.port, keepalive=30)
        client.loop_start()
        self._client = client

    # -- paho's network thread ------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _set_subscribed(self, value: bool) -> None:
        # Runs in the event loop: paho's thread only writes `state`, the Event is the loop's.
        if value:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        del u, flags, props
        if rc.is_failure:
            if not self._outage:
                log.error("cloud broker refused the receiver broker=%s reason=%s", self._where, rc)
            self._outage = True
            return
        log.info("receiver connected broker=%s topic=%s", self._where, self.topic)
        self._outage = False
        c.subscribe(self.topic, qos=1)

    def _on_connect_fail(self, c: Any, u: Any) -> None:
        del c, u
        if not self._outage:
            log.error("cloud broker unreachable broker=%s; retrying every few seconds", self._where)
        self._outage = True

    def _on_subscribe(self, c: Any, u: Any, mid: Any, codes: Any, props: Any) -> None:
        del c, u, mid, props
        refused = [code for code in codes if code.is_failure]
        if refused:
            log.error(
                "cloud broker refused the subscription broker=%s topic=%s reason=%s;"
                " check the receiver account's ACL",
                self._where, self.topic, refused[0],
            )  # fmt: skip
            return
        log.info("receiver subscribed broker=%s topic=%s", self._where, self.topic)
        self.state = "subscribed"
        self._loop.call_soon_threadsafe(self._set_subscribed, True)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        del c, u, flags, props
        if self.state == "subscribed":
            self.state = "connecting"
            self._loop.call_soon_threadsafe(self._set_subscribed, False)
        if rc.is_failure:
            log.warning("receiver lost the cloud broker broker=%s reason=%s", self._where, rc)

    def _on_message(self, c: Any, u: Any, message: Any) -> None:
        del c, u
        self._loop.call_soon_threadsafe(
            self._messages.put_nowait,
            (str(message.topic), bytes(message.payload), message.mid, message.qos),
        )

    # -- the event loop -------------------------------------------------------------------

    async def write(self, stop: asyncio.Event) -> None:
        """Store received messages in batches and acknowledge them, until ``stop``."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    first = await self._messages.get()
            except TimeoutError:
                continue
            items = [first]
            while not self._messages.empty() and len(items) < 500:
                items.append(self._messages.get_nowait())
            batches: list[tuple[str | None, list[Any]]] = []
            claimed: list[tuple[int, ReceiverExtension, str, str, bytes]] = []
            for n, (topic, payload, _, _) in enumerate(items):
                # <prefix>/<gateway>/up/<suffix>: the topic vouches for the gateway.
                gateway, _, suffix = topic.removeprefix(self.topic_prefix + "/").partition("/up/")
                owner = next((e for e in self.extensions if e.claims(suffix)), None)
                if owner is not None:
                    claimed.append((n, owner, gateway, suffix, payload))
                    continue
                if suffix == "reply":
                    continue  # a command reply, not records: for whoever sent the command
                try:
                    batches.append((gateway, parse_batch(payload)[1]))
                except (ValueError, UnicodeDecodeError) as exc:
                    self.db.reject_message(gateway, f"message: {exc}", payload, "mqtt")
            self.db.ingest_batches(batches, "mqtt")
            # Records first (committed above), then the extensions' messages in arrival
            # order: an evidence chunk may refer to the event record that came with it.
            failed = {
                n
                for n, owner, gateway, suffix, payload in claimed
                if not await self._hand_over(owner, gateway, suffix, payload)
            }
            for n, (_, _, mid, qos) in enumerate(items):
                if qos and n not in failed:
                    self._client.ack(mid, qos)

    @staticmethod
    async def _hand_over(
        owner: ReceiverExtension, gateway: str, suffix: str, payload: bytes
    ) -> bool:
        """Give a claimed message to its extension; False when it failed (no PUBACK)."""
        try:
            await owner.handle_mqtt(gateway, suffix, payload)
        except Exception:
            # Not committed: no PUBACK, the broker redelivers it on the next session.
            log.exception(
                "extension failed on a message; left unacknowledged gateway=%s suffix=%s"
                " extension=%s",
                gateway, suffix, type(owner).__name__,
            )  # fmt: skip
            return False
        return True

    def publish(self, topic: str, payload: bytes) -> object:
        """Publish at QoS 1 with the intake's client (e.g. an extension's receipt).

        Call after :meth:`start`; while the broker is away paho keeps the message and
        sends it once reconnected. Returns paho's ``MQTTMessageInfo``.
        """
        if self._client is None:
            raise RuntimeError("the MQTT intake has not started (no broker configured?)")
        return self._client.publish(topic, payload, qos=1)

    async def close(self) -> None:
        """Disconnect the client, if :meth:`start` made one."""
        if self._client is not None:
            await shut_down(self._client)
        self.state = "off"
        self.subscribed.clear()
