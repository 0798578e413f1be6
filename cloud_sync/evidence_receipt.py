"""Signed evidence receipts: what lets a gateway count a snapshot as delivered over MQTT.

Anyone who may publish on the cloud broker could publish on a gateway's downlink topic,
so an unsigned "I hold it" would let the supervised site (or anyone) make the gateway
delete evidence the regulator never received. A receipt is therefore signed with a key
the gateway already trusts for commands (``cloud.regulator_keys``), in the same envelope
as a signed command (:mod:`cloud_sync.envelope`)::

    {"signed": {"v": 1, "type": "evidence_receipt", "gateway": "gw-1",
                "sha256": "<64 hex>", "size": 81234, "stored_at": 1767225600.5},
     "key": "<regulator public key, 64 hex>",
     "sig": "<base64 Ed25519 signature of canonical_json(signed)>"}

A refusal has ``type: evidence_rejected`` and a ``reason`` instead of ``size``. The
signed fields differ from a command's, so a receipt can never be opened as a command nor
a command as a receipt. A receipt has no expiry: it states that bytes with this hash are
held, which stays true (content addressing); replaying it tells nothing new.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import canonical_json, public_key_hex
from cloud_sync.envelope import TrustedKey, parse_json
from cloud_sync.errors import CommandRefusedError

__all__ = ["EvidenceReceipt", "ReceiptError", "open_receipt", "sign_receipt"]

RECEIPT_TYPES = ("evidence_receipt", "evidence_rejected")
_SHA = re.compile(r"[0-9a-f]{64}")
_OUTER = {"signed", "key", "sig"}


class ReceiptError(CommandRefusedError):
    """A receipt that is not signed by a trusted key, or not for this gateway."""


@dataclass(frozen=True, slots=True)
class EvidenceReceipt:
    """A verified receipt (``accepted``) or refusal (``reason``) of one snapshot."""

    sha256: str
    accepted: bool
    size: int | None
    reason: str | None
    key: TrustedKey


def sign_receipt(
    key: Ed25519PrivateKey,
    *,
    gateway: str,
    sha256: str,
    size: int | None = None,
    stored_at: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A signed receipt (``reason`` None) or refusal of ``sha256`` for ``gateway``."""
    signed: dict[str, Any] = {
        "v": 1,
        "type": "evidence_receipt" if reason is None else "evidence_rejected",
        "gateway": gateway,
        "sha256": sha256,
    }
    if reason is None:
        signed["size"] = size
        signed["stored_at"] = stored_at
    else:
        signed["reason"] = reason[:200]
    signature = key.sign(canonical_json(signed))
    return {
        "signed": signed,
        "key": public_key_hex(key.public_key()),
        "sig": base64.b64encode(signature).decode("ascii"),
    }


def open_receipt(
    payload: bytes, *, gateway_id: str, keys: Mapping[str, TrustedKey]
) -> EvidenceReceipt:
    """Verify a receipt for this gateway; raise ReceiptError (or CommandRefusedError) if not."""
    envelope = parse_json(payload)  # bounded size and nesting before parsing
    if not isinstance(envelope, dict) or envelope.keys() != _OUTER:
        raise ReceiptError("unsigned", "not a signed envelope {signed, key, sig}")
    signed, key_hex, sig = envelope["signed"], envelope["key"], envelope["sig"]
    if not isinstance(signed, dict) or not isinstance(key_hex, str) or not isinstance(sig, str):
        raise ReceiptError("malformed", "signed must be an object, key and sig strings")
    trusted = keys.get(key_hex)
    if trusted is None:
        raise ReceiptError("unknown_key", f"key {key_hex[:64]!r} is not a regulator key")
    try:
        trusted.public.verify(base64.b64decode(sig, validate=True), canonical_json(signed))
    except (ValueError, InvalidSignature):
        raise ReceiptError("bad_signature", "receipt signature does not verify") from None
    kind, sha = signed.get("type"), signed.get("sha256")
    if signed.get("v") != 1 or kind not in RECEIPT_TYPES:
        raise ReceiptError("malformed", f"type must be one of {RECEIPT_TYPES}")
    if signed.get("gateway") != gateway_id:
        raise ReceiptError("wrong_gateway", "receipt is for another gateway")
    if not isinstance(sha, str) or _SHA.fullmatch(sha) is None:
        raise ReceiptError("malformed", "sha256 is not 64 lower-case hex digits")
    if kind == "evidence_rejected":
        reason = signed.get("reason")
        return EvidenceReceipt(sha, False, None, str(reason)[:200], trusted)
    size = signed.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ReceiptError("malformed", "size is not a positive integer")
    return EvidenceReceipt(sha, True, size, None, trusted)
