"""The regulator's side of signed commands: its key, signing, sending, waiting for the reply.

Used by ``offsite-edge cloud keygen`` and ``offsite-edge cloud command`` (reference tools,
like the rest of the receiver). The key is an Ed25519 private key in a PKCS#8 PEM file of
mode 0600; its public half goes into each gateway's ``cloud.regulator_keys`` at
commissioning. A command is signed (:func:`cloud_sync.envelope.sign_command`), published
at QoS 1 on ``<prefix>/<gateway>/down/command``, and the gateway's answer is taken from
``<prefix>/<gateway>/up/reply``: the reply with the command's id, or a refusal carrying
the SHA-256 of exactly the bytes sent (a refusal before the signature verified has no id).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from cloud_sync.envelope import MAX_LIFETIME_S, sign_command
from cloud_sync.errors import IdentityError
from edge.errors import SetupError
from edge.tls import TLSConfig, client_ssl_context


def create_regulator_key(path: Path) -> Ed25519PrivateKey:
    """Create a new regulator key at ``path`` (0600 from the start); never overwrite one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SetupError(f"{path} exists; a regulator key is never overwritten") from None
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_regulator_key(path: Path) -> Ed25519PrivateKey:
    """Load a regulator key; refuse one that others can read or that is not Ed25519."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"regulator key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise IdentityError(f"regulator key {path} has mode {mode:o}; it must be 0600")
    try:
        key = load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise IdentityError(f"regulator key {path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"regulator key {path} does not hold an Ed25519 key")
    return key


def signed_payload(
    key: Ed25519PrivateKey,
    *,
    gateway: str,
    command_type: str,
    args: dict[str, Any],
    ttl_s: int = 300,
    command_id: str | None = None,
    now: float | None = None,
) -> tuple[str, bytes]:
    """(command id, the bytes to publish) of a command signed now, valid ``ttl_s``."""
    if not 0 < ttl_s <= MAX_LIFETIME_S:
        raise SetupError(f"the lifetime must be 1-{MAX_LIFETIME_S} s")
    issued = int(time.time() if now is None else now)
    command_id = command_id or str(uuid.uuid4())
    envelope = sign_command(
        key,
        gateway=gateway,
        command_id=command_id,
        command_type=command_type,
        args=args,
        issued_at=issued,
        expires_at=issued + ttl_s,
    )
    return command_id, json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def send_command(
    payload: bytes,
    command_id: str,
    *,
    host: str,
    port: int,
    prefix: str,
    gateway: str,
    wait_s: float,
    username: str | None = None,
    password: str | None = None,
    tls: TLSConfig | None = None,
) -> dict[str, Any] | None:
    """Publish a signed command and return the gateway's reply (None: none in ``wait_s``)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    digest = hashlib.sha256(payload).hexdigest()
    replies: queue.Queue[dict[str, Any]] = queue.Queue()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        del client, userdata
        try:
            reply = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(reply, dict) and (
            reply.get("id") == command_id or reply.get("payload_sha256") == digest
        ):
            replies.put(reply)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"offsite-regulator-{uuid.uuid4().hex[:12]}"
    )
    if username:
        client.username_pw_set(username, password)
    if tls is not None and tls.enabled:
        client.tls_set_context(client_ssl_context(tls))
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        raise SetupError(f"cannot reach the cloud broker {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        _, mid = client.subscribe(f"{prefix}/{gateway}/up/reply", qos=1)
        del mid
        info = client.publish(f"{prefix}/{gateway}/down/command", payload, qos=1)
        info.wait_for_publish(timeout=wait_s)
        try:
            return replies.get(timeout=wait_s)
        except queue.Empty:
            return None
    finally:
        client.disconnect()
        client.loop_stop()
        client.on_message = None  # break the reference cycle so paho's sockets close now
