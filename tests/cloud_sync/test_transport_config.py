"""Secrets and transport fail closed: TLS by default, no PW default, no token over http://."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from cloud_forge import self_signed
from pydantic import ValidationError

from cloud_sync.config import CloudConfig, read_secret
from cloud_sync.errors import SecretError, UplinkError
from cloud_sync.hj212_uplink import Hj212Uplink
from edge.errors import SetupError

MN = "010000A8900016F000169DC0"


def _cloud(**uplink: Any) -> CloudConfig:
    return CloudConfig.model_validate({"uplinks": [{"name": "u", **uplink}]})


def _error(**uplink: Any) -> str:
    with pytest.raises(ValidationError) as info:
        _cloud(**uplink)
    return str(info.value)


def test_every_cloud_uplink_uses_tls_unless_the_config_says_otherwise() -> None:
    mqtt = _cloud(type="mqtt", host="cloud.example")
    https = _cloud(type="https", url="https://cloud.example/v1")
    hj = _cloud(type="hj212", host="10.1.2.3", port=6000, mn=MN, pw_env="HJ_PW")
    for cloud in (mqtt, https, hj):
        assert cloud.uplinks[0].tls.enabled
        assert cloud.plaintext_uplinks() == []
    # A CA file alone does not turn TLS off.
    assert _cloud(type="mqtt", host="h", tls={"ca_file": "ca.pem"}).uplinks[0].tls.enabled
    plain = _cloud(type="mqtt", host="h", tls={"enabled": False})
    assert plain.plaintext_uplinks() == ["u"]


def test_hj212_password_has_no_default() -> None:
    assert "pw_env" in _error(type="hj212", host="h", port=6000, mn=MN)


def test_http_urls_never_carry_a_token_and_need_tls_off_explicitly() -> None:
    assert "in clear" in _error(
        type="https", url="http://c.example/v1", token_env="TOKEN", tls={"enabled": False}
    )
    assert "enabled: false" in _error(type="https", url="http://c.example/v1")
    assert "tls.enabled is false" in _error(
        type="https", url="https://c.example/v1", tls={"enabled": False}
    )
    ok = _cloud(type="https", url="http://127.0.0.1:8080/v1", tls={"enabled": False})
    assert ok.plaintext_uplinks() == ["u"]


def test_env_names_are_validated() -> None:
    assert "token_env" in _error(type="https", url="https://c/v1", token_env="$(rm -rf)")


def test_an_unset_or_empty_secret_is_an_error_not_an_empty_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OFFSITE_TEST_UNSET", raising=False)
    monkeypatch.setenv("OFFSITE_TEST_EMPTY", "")
    monkeypatch.setenv("OFFSITE_TEST_SET", "s3cret")
    for name in ("OFFSITE_TEST_UNSET", "OFFSITE_TEST_EMPTY"):
        with pytest.raises(SecretError, match=name) as info:
            read_secret(name)
        assert isinstance(info.value, SetupError)
    assert read_secret("OFFSITE_TEST_SET") == "s3cret"


def test_hj212_uplink_speaks_tls_by_default(tmp_path: Path) -> None:
    asyncio.run(_hj212_tls(tmp_path))


async def _hj212_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(str(cert), str(key))
    handshakes: list[bool] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handshakes.append(writer.get_extra_info("ssl_object") is not None)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        trusted = _cloud(
            type="hj212", host="127.0.0.1", port=port, mn=MN, pw_env="P", tls={"ca_file": cert}
        )
        uplink = Hj212Uplink(trusted.uplinks[0], "gw")  # type: ignore[arg-type]
        await uplink.connect()
        assert uplink.connected
        await uplink.close()
        # Without the CA the platform's certificate is not trusted: no connection.
        untrusted = _cloud(type="hj212", host="127.0.0.1", port=port, mn=MN, pw_env="P")
        with pytest.raises(UplinkError):
            await Hj212Uplink(untrusted.uplinks[0], "gw").connect()  # type: ignore[arg-type]
    assert handshakes[0] is True
