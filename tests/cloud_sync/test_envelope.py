"""Signed command envelopes: the test vector, every refusal reason, replay across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import canonical_json, public_key_hex
from cloud_sync.command_ids import consume, high_water
from cloud_sync.commands import REFUSALS_PER_MINUTE as REFUSALS
from cloud_sync.commands import CommandProcessor
from cloud_sync.envelope import (
    MAX_DEPTH,
    MAX_ENVELOPE_BYTES,
    MAX_LIFETIME_S,
    SignedCommand,
    nesting_depth,
    open_envelope,
    sign_command,
    trusted_keys,
)
from cloud_sync.errors import CommandRefusedError
from edge.store import Store

# The test vector of docs/protocol.md ("Signed commands"): RFC 8032 test 1's key.
VECTOR_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
VECTOR_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
VECTOR_SIG = (
    "G7rV3Th4F3xeFdBKHeU35ygTjAejPRXHP8H1EOGuDOdFop2i546IL6WCN0GO4NPNidu4pQvcgBwRNZJtOC1YCg=="
)
VECTOR_CANONICAL = (
    '{"command":{"args":{"on":true,"sensor_id":"noise-01","why":"换传感器"},'
    '"type":"maintenance"},"expires_at":1767225900,"gateway":"gw-demo-01",'
    '"id":"0192f0c8-7e5a-7000-8000-000000000001","issued_at":1767225600,"v":1}'
)
PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

REGULATOR = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR_SEED))
KEYS = trusted_keys([("eeb", public_key_hex(REGULATOR.public_key()))])
NOW = 1_767_225_700
GW = "gw-demo-01"


def envelope(
    *,
    key: Ed25519PrivateKey = REGULATOR,
    gateway: str = GW,
    command_id: str = "c-1",
    command_type: str = "ping",
    args: dict[str, Any] | None = None,
    issued_at: int = NOW - 10,
    expires_at: int = NOW + 290,
) -> dict[str, Any]:
    return sign_command(
        key,
        gateway=gateway,
        command_id=command_id,
        command_type=command_type,
        args=args or {},
        issued_at=issued_at,
        expires_at=expires_at,
    )


def wire(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def refusal(payload: bytes, now: float = NOW) -> CommandRefusedError:
    with pytest.raises(CommandRefusedError) as caught:
        open_envelope(payload, gateway_id=GW, keys=KEYS, now=now)
    return caught.value


def test_the_documented_test_vector_verifies_and_is_in_the_protocol_document():
    env = envelope(
        command_id="0192f0c8-7e5a-7000-8000-000000000001",
        command_type="maintenance",
        args={"sensor_id": "noise-01", "on": True, "why": "换传感器"},
        issued_at=1767225600,
        expires_at=1767225900,
    )
    assert canonical_json(env["signed"]).decode() == VECTOR_CANONICAL
    assert env["key"] == VECTOR_PUBLIC
    assert env["sig"] == VECTOR_SIG
    command = open_envelope(wire(env), gateway_id=GW, keys=KEYS, now=1767225700)
    assert (command.id, command.type, command.args["sensor_id"]) == (
        "0192f0c8-7e5a-7000-8000-000000000001",
        "maintenance",
        "noise-01",
    )
    assert command.key.who == f"regulator eeb (key {command.key.fingerprint})"
    doc = PROTOCOL.read_text(encoding="utf-8")
    for text in (VECTOR_SEED, VECTOR_PUBLIC, VECTOR_SIG, VECTOR_CANONICAL):
        assert text in doc


def test_a_valid_envelope_opens_whatever_the_key_order_on_the_wire():
    env = envelope(command_type="status")
    reordered = {
        "sig": env["sig"],
        "key": env["key"],
        "signed": dict(reversed(env["signed"].items())),
    }
    command = open_envelope(wire(reordered), gateway_id=GW, keys=KEYS, now=NOW)
    assert (command.id, command.type, command.args) == ("c-1", "status", {})


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b'{"a":1,"a":2}', "malformed"),
        (b"[NaN]", "malformed"),
        (b"1" * 5000, "malformed"),
        (b"[" * 200_000, "too_deep"),
        (b'{"x":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "too_deep"),
        (b" " * (MAX_ENVELOPE_BYTES + 1), "too_large"),
        (b'{"id":"p1","type":"ping"}', "unsigned"),
        (b'"ping"', "unsigned"),
        (b"[]", "unsigned"),
    ],
)
def test_junk_is_refused_with_its_reason(payload, reason):
    assert refusal(payload).reason == reason


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"why": "[" * 10_000 + '\\"{' * 100})
    assert nesting_depth(text) == 1


def test_a_key_the_gateway_does_not_trust_is_refused():
    other = Ed25519PrivateKey.generate()
    assert refusal(wire(envelope(key=other))).reason == "unknown_key"


def test_a_wrong_signature_is_refused():
    env = envelope(command_type="maintenance", args={"sensor_id": "noise-01", "on": True})
    env["signed"]["command"]["args"]["on"] = False  # tampered after signing
    assert refusal(wire(env)).reason == "bad_signature"
    forged = envelope(key=Ed25519PrivateKey.generate())
    forged["key"] = public_key_hex(REGULATOR.public_key())  # claims the trusted key
    assert refusal(wire(forged)).reason == "bad_signature"
    garbled = envelope()
    garbled["sig"] = "not base64!"
    assert refusal(wire(garbled)).reason == "bad_signature"


def test_a_signed_infinity_is_refused_not_raised():
    env = envelope()
    text = wire(env).replace(b'"args": {}', b'"args": {"x": 1e999}')
    assert refusal(text).reason == "bad_signature"


def test_a_command_for_another_gateway_is_refused():
    error = refusal(wire(envelope(gateway="gw-other")))
    assert (error.reason, error.command_id) == ("wrong_gateway", "c-1")


def test_expired_and_future_commands_are_refused():
    assert refusal(wire(envelope(issued_at=NOW - 600, expires_at=NOW))).reason == "expired"
    early = envelope(issued_at=NOW + 3600, expires_at=NOW + 3900)
    assert refusal(wire(early)).reason == "not_yet_valid"
    too_long = envelope(issued_at=NOW - 10, expires_at=NOW - 10 + MAX_LIFETIME_S + 1)
    assert refusal(wire(too_long)).reason == "malformed"


def test_signed_but_invalid_commands_are_refused():
    bad_type = envelope(command_type="reboot")
    assert refusal(wire(bad_type)).reason == "invalid_command"
    no_sensor = envelope(command_type="maintenance", args={"on": True})
    assert refusal(wire(no_sensor)).reason == "invalid_command"
    extra = envelope()
    extra["extra"] = 1
    assert refusal(wire(extra)).reason == "malformed"


async def _consume_all(db: Path, commands: list[SignedCommand]) -> list[str]:
    outcomes = []
    async with await Store.open(db) as store:
        for command in commands:
            try:
                await store.run(lambda conn, c=command: consume(conn, c))
                outcomes.append("accepted")
            except CommandRefusedError as exc:
                outcomes.append(exc.reason)
    return outcomes


def _open(env: dict[str, Any], now: float = NOW) -> SignedCommand:
    return open_envelope(wire(env), gateway_id=GW, keys=KEYS, now=now)


def test_replays_are_refused_also_after_a_restart(tmp_path):
    db = tmp_path / "g.db"
    first = _open(envelope(command_id="a"))
    assert asyncio.run(_consume_all(db, [first, first])) == ["accepted", "replayed"]
    # A new process on the same database still remembers.
    second = _open(envelope(command_id="b"))
    assert asyncio.run(_consume_all(db, [first, second])) == ["replayed", "accepted"]


def test_commands_far_below_the_high_water_mark_are_stale_and_old_ids_are_pruned(tmp_path):
    db = tmp_path / "g.db"
    old = _open(envelope(command_id="old", issued_at=NOW - 10, expires_at=NOW + 290))
    later = NOW + 2 * MAX_LIFETIME_S
    new = _open(envelope(command_id="new", issued_at=later, expires_at=later + 60), now=later + 1)
    older = _open(envelope(command_id="older", issued_at=NOW - 20, expires_at=NOW + 280))
    assert asyncio.run(_consume_all(db, [old, new, older])) == ["accepted", "accepted", "stale"]
    with closing(sqlite3.connect(db)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM command_ids")]
    assert ids == ["new"]

    async def mark() -> int | None:
        async with await Store.open(db) as store:
            return await store.run(high_water)

    assert asyncio.run(mark()) == later


class _Modes:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, str]] = []

    async def set_sensor_mode(self, sensor_id: str, mode: str, who: str, why: str) -> None:
        if sensor_id != "noise-01":
            raise ValueError(f"unknown sensor {sensor_id!r}")
        self.requests.append((sensor_id, mode, who, why))


def _processor(db: Path, store: Store, audits: list[dict[str, Any]], modes: _Modes, **kw: Any):
    async def audit(body: dict[str, Any]) -> None:
        audits.append(body)

    async def status(event: str, extra: dict[str, Any]) -> None:
        del event, extra

    async def use(command: SignedCommand) -> None:
        await store.run(lambda conn: consume(conn, command))

    return CommandProcessor(audit, status, gateway_id=GW, keys=KEYS, consume=use, modes=modes, **kw)


def test_the_processor_records_who_signed_and_every_refusal_with_its_reason(tmp_path):
    db = tmp_path / "g.db"
    audits: list[dict[str, Any]] = []
    modes = _Modes()
    now = int(time.time())
    signed = envelope(
        command_id="m1",
        command_type="maintenance",
        args={"sensor_id": "noise-01", "on": True, "who": "Mallory", "why": "swap"},
        issued_at=now - 5,
        expires_at=now + 300,
    )

    async def run() -> list[dict[str, Any]]:
        async with await Store.open(db) as store:
            processor = _processor(db, store, audits, modes)
            return [
                await processor.handle(wire(signed)),
                await processor.handle(wire(signed)),
                await processor.handle(b"[" * 200_000),
                await processor.handle(b'{"id":"x","type":"config","args":{"config":{}}}'),
            ]

    outcomes = asyncio.run(run())
    assert outcomes[0] == {
        "id": "m1",
        "ok": True,
        "result": {"sensor_id": "noise-01", "mode": "maintenance"},
    }
    assert [o.get("refused") for o in outcomes[1:]] == ["replayed", "too_deep", "unsigned"]
    assert outcomes[1]["id"] == "m1"
    (_sensor, _mode, who, why) = modes.requests[0]
    assert who.startswith("regulator eeb (key ")
    assert "Mallory" not in who
    assert why == "swap"
    assert len(modes.requests) == 1
    assert audits[0]["who"] == who.removesuffix(" command m1")
    assert [a.get("refused") for a in audits] == [None, "replayed", "too_deep", "unsigned"]
    assert all(a["type"] == "command" and "payload_sha256" in a for a in audits[1:])
    assert len(audits[2]["command"]["raw"]) <= 256


def test_a_flood_of_refusals_is_counted_not_recorded_one_by_one(tmp_path):
    audits: list[dict[str, Any]] = []
    clock = [1000.0]

    async def run() -> list[dict[str, Any]]:
        async with await Store.open(tmp_path / "g.db") as store:
            processor = _processor(
                tmp_path / "g.db", store, audits, _Modes(), monotonic=lambda: clock[0]
            )
            replies = [await processor.handle(b"junk %d" % n) for n in range(REFUSALS + 5)]
            clock[0] += 61  # the next minute
            replies.append(await processor.handle(b"junk after"))
            return replies

    replies = asyncio.run(run())
    assert all(r["refused"] == "malformed" for r in replies)
    assert len(audits) == REFUSALS + 1
    assert [a["suppressed_before"] for a in audits[-2:]] == [0, 5]
