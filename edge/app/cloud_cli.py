"""The `offsite-edge identity` and `offsite-edge cloud` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any


def cmd_identity(args: argparse.Namespace) -> int:
    """Print the gateway's public key (creating the key on first use)."""
    from cloud_sync.chain import public_key_hex
    from cloud_sync.identity import load_or_create_key
    from cloud_sync.sync import key_path
    from edge.app.config_file import load_config

    config = load_config(args.config)
    if config.cloud is None:
        print("the config has no cloud: section", file=sys.stderr)
        return 2
    path = key_path(config.cloud, config.store.path)
    key = load_or_create_key(path)
    print(f"gateway {config.gateway.id}")
    print(f"key file {path}")
    print(f"public key (Ed25519, hex) {public_key_hex(key.public_key())}")
    return 0


def cmd_cloud(args: argparse.Namespace) -> int:
    """Run the reference supervision-cloud receiver until SIGINT/SIGTERM."""
    from cloud_sync.receiver import ReceiverConfig, run_receiver

    trust: dict[str, str] = {}
    for item in args.trust:
        gateway, _, key = item.partition("=")
        trust[gateway] = key
    config = ReceiverConfig(
        db=args.db,
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        topic_prefix=args.prefix,
        http_host=args.http_host,
        http_port=args.http_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        trust=trust,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_receiver(config, stop)

    asyncio.run(main())
    return 0


def add_cloud_commands(commands: Any) -> None:
    """Register `identity` and `cloud` on the CLI's subparsers."""
    identity = commands.add_parser("identity", help="print the gateway's public signing key")
    identity.add_argument("--config", required=True)
    identity.set_defaults(func=cmd_identity)

    cloud = commands.add_parser("cloud", help="run the reference supervision-cloud receiver")
    cloud.add_argument("--db", type=Path, default=Path("offsite-cloud.db"))
    cloud.add_argument("--mqtt-host", help="cloud broker to subscribe to (none: HTTP only)")
    cloud.add_argument("--mqtt-port", type=int, default=1883)
    cloud.add_argument("--prefix", default="offsite", help="topic prefix")
    cloud.add_argument("--http-host", default="127.0.0.1")
    cloud.add_argument("--http-port", type=int, default=8080)
    cloud.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate")
    cloud.add_argument("--tls-key", type=Path)
    cloud.add_argument("--client-ca", type=Path, help="require client certificates (mutual TLS)")
    cloud.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="GATEWAY=HEXKEY",
        help="pin a gateway's public key (else trust the key it announces first)",
    )
    cloud.set_defaults(func=cmd_cloud)
