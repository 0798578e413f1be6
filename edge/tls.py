"""TLS settings shared by every outgoing connection (local broker, cloud uplinks)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from edge.config import StrictModel


class TLSConfig(StrictModel):
    """TLS, optionally with a client certificate (mutual TLS)."""

    enabled: bool = Field(default=False, description="Connect with TLS.")
    ca_file: Path | None = Field(
        default=None,
        description="CA bundle that signs the server's certificate; system CAs when empty.",
    )
    cert_file: Path | None = Field(
        default=None, description="Client certificate for mutual TLS (with key_file)."
    )
    key_file: Path | None = Field(
        default=None, description="Private key of the client certificate."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


def client_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A verifying client TLS context, with the client certificate for mutual TLS."""
    context = ssl.create_default_context(cafile=None if tls.ca_file is None else str(tls.ca_file))
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context
