"""Mutual TLS on the receiver: the client certificate authenticates, and ties the sender.

A gateway's certificate carries its gateway id as common name; with ``--client-ca`` the
receiver takes records only from the gateway the certificate names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cloud_forge import CloudProcess, Signer, batch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

pytestmark = pytest.mark.timeout(120)


def _issue(
    directory: Path, name: str, ca: tuple[x509.Certificate, Any] | None, *, server: bool = False
) -> tuple[x509.Certificate, Any, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[0].subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        # What Python 3.13's strict X.509 verification asks of a CA and the certs it signs.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=ca is not None,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca is None,
                crl_sign=ca is None,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca[1] if ca else key, hashes.SHA256())
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key, cert_file, key_file


def _post(port: int, ca: Path, client: tuple[Path, Path] | None, body: bytes) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(ca))
    if client:
        context.load_cert_chain(str(client[0]), str(client[1]))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/v1/records",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_client_certificate_authenticates_and_names_the_only_gateway_it_may_send_for(
    mosquitto_factory: Callable[..., Any], tmp_path: Path
) -> None:
    ca_cert, ca_key, ca_file, _ = _issue(tmp_path, "site-ca", None)
    _, _, server_cert, server_key = _issue(tmp_path, "cloud", (ca_cert, ca_key), server=True)
    _, _, gw_cert, gw_key = _issue(tmp_path, "gw-tls", (ca_cert, ca_key))
    _, _, other_cert, other_key = _issue(tmp_path, "gw-other", (ca_cert, ca_key))
    gateway = Signer("gw-tls")
    proc = CloudProcess(tmp_path, mosquitto_factory(), server_cert, server_key)
    _, _, regulator_cert, regulator_key = _issue(tmp_path, "regulator", (ca_cert, ca_key))
    proc.context = ssl.create_default_context(cafile=str(ca_file))
    proc.context.load_cert_chain(str(regulator_cert), str(regulator_key))
    proc.start("--client-ca", str(ca_file), "--trust", f"gw-tls={gateway.public_hex}")
    try:
        records = gateway.chain(2)
        # No token is sent: the certificate is the credential.
        status, body = _post(proc.port, ca_file, (gw_cert, gw_key), batch("gw-tls", records))
        assert status == 200, body
        assert body["accepted"] == [r["id"] for r in records]
        # Another gateway's certificate may not send for gw-tls.
        forged = gateway.chain(3)[2:]
        status, body = _post(proc.port, ca_file, (other_cert, other_key), batch("gw-tls", forged))
        assert status == 403
        assert "may not send for 'gw-tls'" in body["error"]
        # Without a certificate the TLS handshake itself fails.
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _post(proc.port, ca_file, None, batch("gw-tls", forged))
        assert proc.chain("gw-tls")["records"] == 2
    finally:
        proc.stop()
