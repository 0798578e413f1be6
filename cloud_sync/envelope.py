"""Signed downlink commands: the envelope, its limits and its verification (pure).

A command acts on a gateway only inside an envelope signed by a regulator key that the
gateway was commissioned with (``cloud.regulator_keys``)::

    {"signed": {"v": 1, "gateway": "...", "id": "...", "issued_at": 1767225600,
                "expires_at": 1767225900, "command": {"type": "...", "args": {...}}},
     "key": "<regulator public key, 64 hex>",
     "sig": "<base64 Ed25519 signature of canonical_json(signed)>"}

:func:`open_envelope` turns untrusted bytes into a :class:`SignedCommand` or raises
:class:`~cloud_sync.errors.CommandRefusedError` with a reason code, and never anything
else: size and nesting are bounded before the JSON parser runs. Replay protection needs
the gateway's memory of executed ids and lives in :mod:`cloud_sync.command_ids`.
docs/protocol.md ("Signed commands") is the specification, with a test vector.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_sync.chain import canonical_json, public_key_from_hex, public_key_hex
from cloud_sync.errors import CommandRefusedError
from edge.json_depth import nesting_depth as json_nesting_depth

ENVELOPE_VERSION = 1
MAX_ENVELOPE_BYTES = 256 * 1024
"""Larger payloads are refused unread (a whole gateway config is a few kB)."""
MAX_DEPTH = 32
"""Deeper JSON nesting is refused before parsing (no recursion on attacker input)."""
MAX_LIFETIME_S = 86400
"""Longest allowed ``expires_at - issued_at``; also the replay window below the high-water mark."""
CLOCK_SKEW_S = 300
"""A command issued up to this far in the gateway's future is still accepted."""
COMMAND_TYPES = ("ping", "status", "maintenance", "config")

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")
_OUTER_FIELDS = {"signed", "key", "sig"}
_SIGNED_FIELDS = {"v", "gateway", "id", "issued_at", "expires_at", "command"}


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A regulator public key the gateway was commissioned with."""

    name: str
    public_hex: str
    public: Ed25519PublicKey

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 of the raw key: short, printable, unambiguous enough."""
        return key_fingerprint(self.public_hex)

    @property
    def who(self) -> str:
        """How an executed command's issuer is recorded (never free text from the command)."""
        return f"regulator {self.name} (key {self.fingerprint})"


@dataclass(frozen=True, slots=True)
class SignedCommand:
    """A command whose envelope verified: signature, gateway, lifetime."""

    id: str
    type: str
    args: dict[str, Any]
    issued_at: int
    expires_at: int
    key: TrustedKey


def key_fingerprint(public_hex: str) -> str:
    """Fingerprint of a hex public key (see :attr:`TrustedKey.fingerprint`)."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def trusted_keys(keys: Iterable[tuple[str, str]]) -> dict[str, TrustedKey]:
    """Trusted keys by hex from (name, hex) pairs; raise ValueError on a malformed key."""
    trusted: dict[str, TrustedKey] = {}
    for name, hex_key in keys:
        if not _HEX_KEY.match(hex_key):
            raise ValueError(f"regulator key {name!r} is not 64 lower-case hex digits")
        trusted[hex_key] = TrustedKey(name, hex_key, public_key_from_hex(hex_key))
    return trusted


def sign_command(
    key: Ed25519PrivateKey,
    *,
    gateway: str,
    command_id: str,
    command_type: str,
    args: Mapping[str, Any],
    issued_at: int,
    expires_at: int,
) -> dict[str, Any]:
    """Build a signed envelope (what the regulator's side sends)."""
    signed = {
        "v": ENVELOPE_VERSION,
        "gateway": gateway,
        "id": command_id,
        "issued_at": issued_at,
        "expires_at": expires_at,
        "command": {"type": command_type, "args": dict(args)},
    }
    signature = key.sign(canonical_json(signed))
    return {
        "signed": signed,
        "key": public_key_hex(key.public_key()),
        "sig": base64.b64encode(signature).decode("ascii"),
    }


def nesting_depth(text: str) -> int:
    """Deepest ``[``/``{`` nesting of JSON text (exact up to :data:`MAX_DEPTH`)."""
    return json_nesting_depth(text, MAX_DEPTH)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in an object")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(payload: bytes) -> Any:
    """Parse untrusted JSON within the limits; raise CommandRefusedError otherwise."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise CommandRefusedError("too_large", f"{len(payload)} bytes > {MAX_ENVELOPE_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandRefusedError("malformed", f"not UTF-8: {exc}") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise CommandRefusedError("too_deep", f"JSON nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as exc:  # JSONDecodeError, duplicates, NaN, over-long integers
        raise CommandRefusedError("malformed", f"not JSON: {exc}") from None


def _verify(envelope: dict[str, Any], keys: Mapping[str, TrustedKey]) -> TrustedKey:
    if not envelope.keys() >= _OUTER_FIELDS:
        raise CommandRefusedError("unsigned", "not a signed envelope {signed, key, sig}")
    if envelope.keys() != _OUTER_FIELDS:
        raise CommandRefusedError("malformed", "unknown envelope fields")
    signed, key_hex, sig = envelope["signed"], envelope["key"], envelope["sig"]
    if not isinstance(key_hex, str) or not isinstance(sig, str) or not isinstance(signed, dict):
        raise CommandRefusedError("malformed", "signed must be an object, key and sig strings")
    trusted = keys.get(key_hex)
    if trusted is None:
        raise CommandRefusedError("unknown_key", f"key {key_hex[:64]!r} is not a regulator key")
    try:
        signature = base64.b64decode(sig, validate=True)
        message = canonical_json(signed)
    except ValueError as exc:  # bad base64; inf from 1e999 in the payload
        raise CommandRefusedError("bad_signature", f"cannot check the signature: {exc}") from None
    try:
        trusted.public.verify(signature, message)
    except InvalidSignature:
        raise CommandRefusedError("bad_signature", "signature does not verify") from None
    return trusted


def _fields(signed: dict[str, Any]) -> tuple[str, str, int, int, str, dict[str, Any]]:
    if signed.keys() != _SIGNED_FIELDS or type(signed["v"]) is not int or signed["v"] != 1:
        raise CommandRefusedError(
            "malformed", f"signed needs exactly {sorted(_SIGNED_FIELDS)}, v=1"
        )
    gateway, cid = signed["gateway"], signed["id"]
    issued, expires, command = signed["issued_at"], signed["expires_at"], signed["command"]
    if not isinstance(gateway, str) or not isinstance(cid, str) or not _ID.match(cid):
        raise CommandRefusedError(
            "malformed", "gateway must be a string, id 1-64 of [A-Za-z0-9._:-]"
        )
    for value in (issued, expires):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise CommandRefusedError("malformed", "issued_at and expires_at must be Unix seconds")
    if not isinstance(command, dict) or command.keys() != {"type", "args"}:
        raise CommandRefusedError("malformed", "command must be {type, args}")
    ctype, args = command["type"], command["args"]
    if ctype not in COMMAND_TYPES or not isinstance(args, dict):
        raise CommandRefusedError("invalid_command", f"type must be one of {COMMAND_TYPES}")
    return gateway, cid, issued, expires, str(ctype), args


def check_args(command_type: str, args: Mapping[str, Any]) -> None:
    """Check a command's arguments; raise CommandRefusedError("invalid_command") if wrong."""
    if command_type == "maintenance" and (
        not isinstance(args.get("sensor_id"), str) or not isinstance(args.get("on"), bool)
    ):
        raise CommandRefusedError(
            "invalid_command", "maintenance needs args.sensor_id (string) and args.on (bool)"
        )
    if command_type == "config" and not isinstance(args.get("config"), dict):
        raise CommandRefusedError(
            "invalid_command", "config needs args.config (the whole gateway config as an object)"
        )


def open_envelope(
    payload: bytes, *, gateway_id: str, keys: Mapping[str, TrustedKey], now: float
) -> SignedCommand:
    """Verify an envelope for this gateway at time ``now``; raise CommandRefusedError if refused.

    Checks, in order: size, nesting, JSON, envelope shape, trusted key, signature, fields,
    gateway, lifetime, expiry, arguments. Replay is checked afterwards against the store.
    """
    envelope = parse_json(payload)
    if not isinstance(envelope, dict):
        raise CommandRefusedError("unsigned", "a command must be a signed envelope object")
    trusted = _verify(envelope, keys)
    gateway, cid, issued, expires, ctype, args = _fields(envelope["signed"])
    try:
        _check(gateway, issued, expires, gateway_id=gateway_id, now=now)
        check_args(ctype, args)
    except CommandRefusedError as exc:
        exc.command_id = cid
        raise
    return SignedCommand(cid, ctype, args, issued, expires, trusted)


def _check(gateway: str, issued: int, expires: int, *, gateway_id: str, now: float) -> None:
    if gateway != gateway_id:
        raise CommandRefusedError("wrong_gateway", f"command is for gateway {gateway[:64]!r}")
    if not 0 < expires - issued <= MAX_LIFETIME_S:
        raise CommandRefusedError(
            "malformed", f"expires_at must be after issued_at by at most {MAX_LIFETIME_S} s"
        )
    if now >= expires:
        raise CommandRefusedError("expired", f"expired {now - expires:.0f} s ago")
    if issued > now + CLOCK_SKEW_S:
        raise CommandRefusedError(
            "not_yet_valid", f"issued {issued - now:.0f} s in the gateway's future"
        )
