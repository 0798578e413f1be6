"""The reference receiver's MQTT intake: subscribe to the cloud broker, store, then PUBACK.

The subscriber keeps a persistent session (``clean_session=False``) and acknowledges a
message only after the batch that holds it is committed to the receiver's SQLite, so the
broker keeps redelivering whatever the receiver has not stored yet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cloud_sync.receiver_store import ReceiverDB, parse_batch
from edge.mqtt import shut_down

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
    ) -> None:
        self.db = db
        self.host = host
        self.port = port
        self.topic_prefix = topic_prefix
        self.client_id = client_id
        # (payload, mid, qos) handed over from paho's network thread to the event loop.
        self._messages: asyncio.Queue[tuple[bytes, int, int]] = asyncio.Queue()
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

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            del u, flags, props
            if not rc.is_failure:
                c.subscribe(topic, qos=1)

        def on_message(c: Any, u: Any, message: Any) -> None:
            del c, u
            loop.call_soon_threadsafe(
                self._messages.put_nowait, (bytes(message.payload), message.mid, message.qos)
            )

        client.on_connect = on_connect
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
            records: list[dict[str, Any]] = []
            for payload, _, _ in items:
                try:
                    records.extend(parse_batch(payload))
                except (ValueError, UnicodeDecodeError) as exc:
                    log.warning("message rejected reason=%s", exc)
            self.db.ingest(records, "mqtt")
            for _, mid, qos in items:
                if qos:
                    self._client.ack(mid, qos)

    async def close(self) -> None:
        """Disconnect the client, if :meth:`start` made one."""
        if self._client is not None:
            await shut_down(self._client)
