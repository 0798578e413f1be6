"""HTTPS uplink to the reference receiver (TLS, self-signed) and HJ 212 uplink to a fake platform."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_sync.config import CloudConfig
from cloud_sync.hj212_uplink import build_packets
from cloud_sync.sync import CloudSync, make_outbox
from edge.batch import Batch
from edge.hj212 import build_data_segment, build_frame, parse_frame
from edge.store import Store

from .conftest import alarm, running_receiver, wait_for

pytestmark = pytest.mark.timeout(60)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_uplink_with_tls_and_idempotency(tmp_path: Path) -> None:
    asyncio.run(_https(tmp_path))


async def _https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with running_receiver(tmp_path, tls_cert=cert, tls_key=key) as receiver:
        cloud = CloudConfig.model_validate(
            {
                "uplinks": [
                    {
                        "type": "https",
                        "name": "web",
                        "url": f"https://127.0.0.1:{receiver.http_port}/v1/records",
                        "tls": {"enabled": True, "ca_file": str(cert)},
                    }
                ],
                "outbox": {"status_interval_s": 3600},
            }
        )
        db = tmp_path / "gw.db"
        outbox = make_outbox("gw-h", cloud, db)
        async with await Store.open(db, hook=outbox) as store:
            stop = asyncio.Event()
            task = asyncio.create_task(CloudSync(store, outbox, cloud).run(stop))
            for n in range(20):
                await store.emit(alarm(n))
            await wait_for(lambda: len(receiver.db.records(data_class="alarm")) == 20)
            stop.set()
            await task
        assert receiver.db.verify("gw-h").ok
        # Replaying a batch with the same idempotency key is answered from memory.
        from cloud_sync.https_uplink import HttpsUplink

        uplink = HttpsUplink(cloud.uplinks[0], "gw-h")  # type: ignore[arg-type]
        status, _body = await asyncio.to_thread(uplink._post, b'{"records": []}', "k1")
        status2, body2 = await asyncio.to_thread(uplink._post, b'{"records": []}', "k1")
        assert (status, status2) == (200, 200)
        assert b"replayed" in body2


class FakePlatform:
    """A TCP server speaking HJ 212: answers 9014 to frames with Flag A=1 (optionally late)."""

    def __init__(self, drop_first: int = 0) -> None:
        self.frames: list = []
        self.drop_first = drop_first

    async def handle(self, reader, writer) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                frame = parse_frame(line)
                self.frames.append(frame)
                if int(frame.header["Flag"]) & 1:
                    if self.drop_first > 0:
                        self.drop_first -= 1
                        continue
                    head = {
                        "QN": frame.header["QN"],
                        "ST": "91",
                        "CN": "9014",
                        "PW": frame.header["PW"],
                        "MN": frame.mn,
                        "Flag": "4",
                    }
                    writer.write(build_frame(build_data_segment(head, {})))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_hj212_uplink_minute_data_with_9014_and_resend(tmp_path: Path) -> None:
    asyncio.run(_hj212(tmp_path))


async def _hj212(tmp_path: Path) -> None:
    platform = FakePlatform(drop_first=1)
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "hj212",
                    "name": "hj",
                    "host": "127.0.0.1",
                    "port": port,
                    "mn": "010000A8900016F000169DC0",
                    "codes": {"LA": "LA", "pm25": "a34004"},
                    "ack_timeout_s": 0.5,
                }
            ],
            "outbox": {"status_interval_s": 3600, "minute_close_s": 0},
        }
    )
    db = tmp_path / "gw.db"
    base = int(time.time() // 60) * 60 - 180
    outbox = make_outbox("gw-j", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        task = asyncio.create_task(CloudSync(store, outbox, cloud).run(stop))
        for i in range(3):
            await store.commit(
                Batch(
                    aggregates={
                        ("s1", "LA", "N", base + 60 * i): [2, 50.0, 60.0, 110.0, 0.0],
                        ("s1", "pm25", "M", base + 60 * i): [2, 10.0, 20.0, 30.0, 0.0],
                    },
                    messages=1,
                )
            )

        def minutes():
            return [f for f in platform.frames if f.cn == "2051"]

        await wait_for(lambda: len({f.header["QN"] for f in minutes()}) >= 3)
        backlog = await store.run(outbox.backlog)
        await wait_for(lambda: True)
        stop.set()
        await task
    server.close()
    await server.wait_closed()
    frame = minutes()[0]
    assert frame.header["ST"] == "22"
    assert frame.header["Flag"] == "5"
    assert frame.mn == "010000A8900016F000169DC0"
    assert {"LA-Avg", "LA-Min", "LA-Max", "LA-Flag", "a34004-Avg", "a34004-Flag"} <= set(frame.cp)
    assert frame.cp["a34004-Flag"] == "M"
    assert any(f.cn == "2011" for f in platform.frames)
    # The first 2051 got no answer: it was resent with the same QN.
    qns = [f.header["QN"] for f in minutes()]
    assert len(qns) > len(set(qns))
    assert "minute" not in backlog.get("hj", {}) or backlog["hj"]["minute"] >= 0


def test_long_data_is_split_with_pnum_pno() -> None:
    items = [(f"a{n:05d}-Avg", "123.456") for n in range(120)]
    packets = build_packets(
        cn="2051",
        qn="20240101000000000",
        st="22",
        pw="123456",
        mn="MN1",
        when="20240101000000",
        items=items,
        ack=True,
    )
    assert len(packets) > 1
    frames = [parse_frame(p) for p in packets]
    assert all(f.header["Flag"] == "7" for f in frames)
    assert [f.header["PNO"] for f in frames] == [str(i + 1) for i in range(len(frames))]
    assert {f.header["PNUM"] for f in frames} == {str(len(frames))}
    got = {k for f in frames for k in f.cp if k != "DataTime"}
    assert got == {k for k, _ in items}
