"""The reference receiver's MQTT intake: subscribe to the cloud broker, store, then PUBACK.

The subscriber keeps a persistent session (``clean_session=False``) and acknowledges a
message only after the batch that holds it is committed to the receiver's SQLite, so the
broker keeps redelivering whatever the receiver has not stored yet. A message whose
records are malformed is still acknowledged once its rejects are stored: the broker must
not redeliver it at every start. The topic's gateway must be the records' gateway.
TLS (server verification, optional client certificate) and a username/password are
optional; connection failures are logged, once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloud_sync.receiver_store import ReceiverDB, parse_batch
from edge.mqtt import shut_down
from edge.tls import TLSConfig, client_ssl_context

__all__ = ["MqttIntake"]

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
    ) -> None:
        self.db = db
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

    def start(self) -> None:
        """Connect (asynchronously, with reconnects) and subscribe; call in the event loop."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        loop = asyncio.get_running_loop()
        topic = f"{self.topic_prefix}/+/up/#"
        # manual_ack: PUBACK only after our commit, so the broker keeps what we have not stored.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            manual_ack=True,
        )

        where = f"{self.host}:{self.port}"

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            del u, flags, props
            if rc.is_failure:
                if not self._outage:
                    log.error("cloud broker refused the receiver broker=%s reason=%s", where, rc)
                self._outage = True
                return
            log.info("receiver connected broker=%s topic=%s", where, topic)
            self._outage = False
            c.subscribe(topic, qos=1)

        def on_connect_fail(c: Any, u: Any) -> None:
            del c, u
            if not self._outage:
                log.error("cloud broker unreachable broker=%s; retrying every few seconds", where)
            self._outage = True

        def on_disconnect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            del c, u, flags, props
            if rc.is_failure:
                log.warning("receiver lost the cloud broker broker=%s reason=%s", where, rc)

        def on_message(c: Any, u: Any, message: Any) -> None:
            del c, u
            loop.call_soon_threadsafe(
                self._messages.put_nowait,
                (str(message.topic), bytes(message.payload), message.mid, message.qos),
            )

        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None and self.tls.enabled:
            client.tls_set_context(client_ssl_context(self.tls))
        client.on_connect = on_connect
        client.on_connect_fail = on_connect_fail
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.reconnect_delay_set(1, 5)
        client.connect_async(str(self.host), self.port, keepalive=30)
        client.loop_start()
        self._client = client

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
            for topic, payload, _, _ in items:
                # <prefix>/<gateway>/up/<class>: the topic vouches for the gateway.
                gateway, _, kind = topic.removeprefix(self.topic_prefix + "/").partition("/up/")
                if kind == "reply":
                    continue  # a command reply, not records: for whoever sent the command
                try:
                    batches.append((gateway, parse_batch(payload)[1]))
                except (ValueError, UnicodeDecodeError) as exc:
                    self.db.reject_message(gateway, f"message: {exc}", payload, "mqtt")
            self.db.ingest_batches(batches, "mqtt")
            for _, _, mid, qos in items:
                if qos:
                    self._client.ack(mid, qos)

    async def close(self) -> None:
        """Disconnect the client, if :meth:`start` made one."""
        if self._client is not None:
            await shut_down(self._client)
