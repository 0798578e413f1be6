"""Helpers shared by every paho-mqtt client the gateway runs (ingest, uplink, receiver)."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt

_CALLBACKS = (
    "on_connect",
    "on_connect_fail",
    "on_disconnect",
    "on_message",
    "on_publish",
    "on_subscribe",
)


async def shut_down(client: mqtt.Client) -> None:
    """Disconnect, stop paho's network thread and let go of the client.

    paho closes its wake-up socket pair only when the client is finalised. Our callbacks
    are bound methods of objects that hold the client, a reference cycle that the cyclic
    collector breaks in no particular order, so the sockets could be finalised first
    ("unclosed socket"). Clearing the callbacks breaks the cycle: the client is freed as
    soon as its owner is.
    """
    client.disconnect()
    await asyncio.to_thread(client.loop_stop)
    for name in _CALLBACKS:
        setattr(client, name, None)
