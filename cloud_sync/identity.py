"""The gateway's Ed25519 identity: generated on first start, kept in a 0600 file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from cloud_sync.chain import public_key_hex
from cloud_sync.errors import IdentityError

log = logging.getLogger(__name__)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Load the key at ``path``; create it (mode 0600, atomically) if it does not exist."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(f"key file {path} has mode {mode:o}; it must be 0600")
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise IdentityError(f"key file {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"key file {path} does not hold an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("gateway key created path=%s public_key=%s", path, public_key_hex(key.public_key()))
    return key
