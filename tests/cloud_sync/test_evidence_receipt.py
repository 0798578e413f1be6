"""Signed evidence receipts: only a trusted key's receipt for this gateway counts."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.chain import public_key_hex
from cloud_sync.envelope import open_envelope, sign_command, trusted_keys
from cloud_sync.errors import CommandRefusedError
from cloud_sync.evidence_receipt import open_receipt, sign_receipt

SHA = "ab" * 32
REGULATOR = Ed25519PrivateKey.generate()
KEYS = trusted_keys([("bureau", public_key_hex(REGULATOR.public_key()))])


def _bytes(envelope: dict) -> bytes:
    return json.dumps(envelope).encode()


def test_a_signed_receipt_for_this_gateway_verifies():
    receipt = open_receipt(
        _bytes(sign_receipt(REGULATOR, gateway="gw-1", sha256=SHA, size=10, stored_at=1.5)),
        gateway_id="gw-1",
        keys=KEYS,
    )
    assert (receipt.sha256, receipt.accepted, receipt.size) == (SHA, True, 10)
    assert "bureau" in receipt.key.who
    refusal = open_receipt(
        _bytes(sign_receipt(REGULATOR, gateway="gw-1", sha256=SHA, reason="hash_mismatch")),
        gateway_id="gw-1",
        keys=KEYS,
    )
    assert (refusal.accepted, refusal.reason) == (False, "hash_mismatch")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        # someone on the broker with their own key
        (lambda: sign_receipt(Ed25519PrivateKey.generate(), gateway="gw-1", sha256=SHA, size=1),
         "unknown_key"),
        # a genuine receipt for another gateway
        (lambda: sign_receipt(REGULATOR, gateway="gw-2", sha256=SHA, size=1), "wrong_gateway"),
        # a genuine receipt with another hash pasted in
        (lambda: {**(e := sign_receipt(REGULATOR, gateway="gw-1", sha256=SHA, size=1)),
                  "signed": {**e["signed"], "sha256": "cd" * 32}}, "bad_signature"),
        # unsigned
        (lambda: {"type": "evidence_receipt", "gateway": "gw-1", "sha256": SHA}, "unsigned"),
    ],
)  # fmt: skip
def test_forged_receipts_are_refused(forge, reason):
    with pytest.raises(CommandRefusedError) as refused:
        open_receipt(_bytes(forge()), gateway_id="gw-1", keys=KEYS)
    assert refused.value.reason == reason


def test_a_receipt_and_a_command_cannot_stand_for_each_other():
    command = sign_command(
        REGULATOR,
        gateway="gw-1",
        command_id="c1",
        command_type="ping",
        args={},
        issued_at=1_767_225_600,
        expires_at=1_767_225_900,
    )
    with pytest.raises(CommandRefusedError):
        open_receipt(_bytes(command), gateway_id="gw-1", keys=KEYS)
    receipt = sign_receipt(REGULATOR, gateway="gw-1", sha256=SHA, size=1)
    with pytest.raises(CommandRefusedError):
        open_envelope(_bytes(receipt), gateway_id="gw-1", keys=KEYS, now=1_767_225_700)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=600))
def test_garbage_is_refused_with_a_reason(payload):
    with pytest.raises(CommandRefusedError):
        open_receipt(payload, gateway_id="gw-1", keys=KEYS)
