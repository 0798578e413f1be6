"""`offsite-edge cloud keygen` and `offsite-edge cloud command`: the regulator's tools.

keygen creates a regulator key and prints the ``regulator_keys`` entry to put in each
gateway's config at commissioning; command signs one command with that key, publishes it
on the cloud broker and prints the gateway's reply (exit 0 only when the gateway says ok).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from edge.errors import SetupError
from edge.tls import TLSConfig


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create a regulator key and print its public half as a config entry."""
    from cloud_sync.chain import public_key_hex
    from cloud_sync.envelope import key_fingerprint
    from cloud_sync.receiver_commands import create_regulator_key

    key = create_regulator_key(args.key)
    public = public_key_hex(key.public_key())
    print(f"regulator key {args.key} (keep it secret; mode 0600)")
    print(f"fingerprint {key_fingerprint(public)}")
    print("add to each gateway's config at commissioning:")
    print("cloud:")
    print("  regulator_keys:")
    print(f"    - {{name: {args.name}, public_key: {public}}}")
    return 0


def _command_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command's ``args`` from the command line."""
    if args.args is not None:
        try:
            value = json.loads(args.args)
        except ValueError as exc:
            raise SetupError(f"--args is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise SetupError("--args must be a JSON object")
        return value
    if args.type == "maintenance":
        if args.sensor is None or args.on is None:
            raise SetupError("maintenance needs --sensor and --on or --off")
        out: dict[str, Any] = {"sensor_id": args.sensor, "on": args.on, "mode": args.mode}
        if args.why:
            out["why"] = args.why
        return out
    if args.type == "config":
        if args.config_file is None:
            raise SetupError("config needs --config-file (the whole new gateway config)")
        try:
            config = yaml.safe_load(args.config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SetupError(f"cannot read {args.config_file}: {exc}") from None
        if not isinstance(config, dict):
            raise SetupError(f"{args.config_file} does not hold a YAML mapping")
        return {"config": config}
    return {}


def mqtt_client_options(args: argparse.Namespace) -> tuple[str | None, TLSConfig | None]:
    """The cloud broker password (from ``--mqtt-password-env``) and TLS settings given on
    the command line (``--mqtt-tls``/``--mqtt-ca``/``--mqtt-cert``/``--mqtt-key``)."""
    password = None
    if args.mqtt_password_env:
        from cloud_sync.config import read_secret

        password = read_secret(args.mqtt_password_env)
    tls = None
    if args.mqtt_tls or args.mqtt_ca:
        tls = TLSConfig(
            enabled=True, ca_file=args.mqtt_ca, cert_file=args.mqtt_cert, key_file=args.mqtt_key
        )
    return password, tls


def cmd_command(args: argparse.Namespace) -> int:
    """Sign a command, send it over the cloud broker, print the gateway's reply."""
    from cloud_sync.receiver_commands import load_regulator_key, send_command, signed_payload

    key = load_regulator_key(args.key)
    command_id, payload = signed_payload(
        key,
        gateway=args.gateway,
        command_type=args.type,
        args=_command_args(args),
        ttl_s=args.ttl,
        command_id=args.id,
    )
    if args.print_only:
        print(payload.decode("utf-8"))
        return 0
    password, tls = mqtt_client_options(args)
    reply = send_command(
        payload,
        command_id,
        host=args.mqtt_host,
        port=args.mqtt_port,
        prefix=args.prefix,
        gateway=args.gateway,
        wait_s=args.wait,
        username=args.mqtt_username,
        password=password,
        tls=tls,
    )
    if reply is None:
        print(f"command {command_id} sent; no reply within {args.wait:g} s", file=sys.stderr)
        return 1
    print(json.dumps(reply, ensure_ascii=False, indent=2))
    return 0 if reply.get("ok") is True else 1


def add_regulator_commands(cloud_commands: Any) -> None:
    """Register `keygen` and `command` under `offsite-edge cloud`."""
    keygen = cloud_commands.add_parser("keygen", help="create a regulator signing key")
    keygen.add_argument("--key", type=Path, required=True, help="key file to create (0600)")
    keygen.add_argument("--name", default="regulator", help="name gateways record as issuer")
    keygen.set_defaults(func=cmd_keygen)

    command = cloud_commands.add_parser(
        "command", help="sign a command with a regulator key and send it to a gateway"
    )
    command.add_argument("type", choices=["ping", "status", "maintenance", "config"])
    command.add_argument("--key", type=Path, required=True, help="regulator key file")
    command.add_argument("--gateway", required=True, help="gateway id")
    command.add_argument("--mqtt-host", default="127.0.0.1", help="cloud broker")
    command.add_argument("--mqtt-port", type=int, default=1883)
    command.add_argument("--prefix", default="offsite", help="topic prefix")
    command.add_argument("--mqtt-username")
    command.add_argument("--mqtt-password-env", help="environment variable with the password")
    command.add_argument("--mqtt-tls", action="store_true", help="connect with TLS")
    command.add_argument("--mqtt-ca", type=Path, help="CA of the broker (implies --mqtt-tls)")
    command.add_argument("--mqtt-cert", type=Path, help="client certificate for the broker")
    command.add_argument("--mqtt-key", type=Path, help="key of --mqtt-cert")
    command.add_argument("--ttl", type=int, default=300, help="seconds the command stays valid")
    command.add_argument("--id", help="command id (default: a new UUID)")
    command.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a reply")
    command.add_argument("--args", help="the command's args as a JSON object")
    command.add_argument("--sensor", help="maintenance: sensor id")
    on = command.add_mutually_exclusive_group()
    on.add_argument("--on", dest="on", action="store_true", default=None, help="maintenance on")
    on.add_argument("--off", dest="on", action="store_false", help="maintenance off")
    command.add_argument(
        "--mode", default="maintenance", choices=["maintenance", "calibration"], help="with --on"
    )
    command.add_argument("--why", help="maintenance: the reason recorded")
    command.add_argument("--config-file", type=Path, help="config: the new gateway config (YAML)")
    command.add_argument(
        "--print-only", action="store_true", help="print the signed envelope instead of sending"
    )
    command.set_defaults(func=cmd_command)
