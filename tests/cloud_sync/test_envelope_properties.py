"""Property tests of the command envelope parser: whatever arrives, a refusal or a command.

Arbitrary bytes, arbitrary JSON, arbitrary content signed by the regulator's own key, and
nesting around the limit: the parser raises nothing but CommandRefusedError.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.chain import canonical_json, public_key_hex
from cloud_sync.envelope import (
    MAX_DEPTH,
    SignedCommand,
    nesting_depth,
    open_envelope,
    trusted_keys,
)
from cloud_sync.errors import CommandRefusedError

REGULATOR = Ed25519PrivateKey.generate()
KEYS = trusted_keys([("eeb", public_key_hex(REGULATOR.public_key()))])
NOW = 1_767_225_700
GW = "gw-demo-01"


def wire(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def refusal(payload: bytes) -> CommandRefusedError:
    with pytest.raises(CommandRefusedError) as caught:
        open_envelope(payload, gateway_id=GW, keys=KEYS, now=NOW)
    return caught.value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_ever_raise_a_refusal(payload):
    with pytest.raises(CommandRefusedError):
        open_envelope(payload, gateway_id=GW, keys=KEYS, now=NOW)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_ever_raises_a_refusal(value):
    try:
        payload = json.dumps(value).encode()
    except ValueError:
        return
    with pytest.raises(CommandRefusedError):
        open_envelope(payload, gateway_id=GW, keys=KEYS, now=NOW)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "gateway", "id", "issued_at", "command", "x"]), json_values
    ),
    st.booleans(),
)
def test_signed_arbitrary_content_is_a_command_or_a_refusal(signed, honest):
    """Even content the regulator's key signed cannot crash the parser."""
    try:
        message = canonical_json(signed)
    except ValueError:
        return
    sig = base64.b64encode(REGULATOR.sign(message if honest else b"x")).decode()
    env = {"signed": signed, "key": public_key_hex(REGULATOR.public_key()), "sig": sig}
    if not honest:
        with pytest.raises(CommandRefusedError, match=r"^bad_signature"):
            open_envelope(wire(env), gateway_id=GW, keys=KEYS, now=NOW)
        return
    try:
        result = open_envelope(wire(env), gateway_id=GW, keys=KEYS, now=NOW)
    except CommandRefusedError:
        return  # signed junk: refused for what it holds, not crashed on
    assert isinstance(result, SignedCommand)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=3 * MAX_DEPTH), st.sampled_from(["[", '{"k":']))
def test_nesting_beyond_the_limit_is_refused_and_within_it_is_parsed(depth, opener):
    closer = "]" if opener == "[" else "}"
    payload = (opener * depth + "1" + closer * depth).encode()
    error = refusal(payload)
    assert error.reason == ("too_deep" if depth > MAX_DEPTH else "unsigned")


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """JSON nested up to three times the limit, with brackets and quotes inside strings."""
    value: Any = draw(st.text(alphabet='[]{}"\\ab', max_size=12))
    for _ in range(draw(st.integers(min_value=0, max_value=3 * MAX_DEPTH))):
        siblings = draw(st.lists(st.text(alphabet='[{"\\', max_size=3), max_size=2))
        value = [value, *siblings] if draw(st.booleans()) else {"[k{": value}
    return value


@settings(max_examples=300, deadline=None)
@given(nested())
def test_the_nesting_scan_agrees_with_the_real_depth_at_the_limit(value):
    text = json.dumps(value)
    assert (nesting_depth(text) > MAX_DEPTH) == (_depth(value) > MAX_DEPTH)
    reason = refusal(text.encode()).reason
    assert reason == ("too_deep" if _depth(value) > MAX_DEPTH else "unsigned")
