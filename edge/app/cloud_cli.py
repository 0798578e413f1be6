"""The `offsite-edge identity` and `offsite-edge cloud` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cloud_sync.receiver_extension import ReceiverExtension


def cmd_identity(args: argparse.Namespace) -> int:
    """Print the gateway's public key, creating the key on first use.

    Works without a ``cloud:`` section too (the key then lives next to the database,
    where the gateway will look once an uplink is added), so a technician can register
    the gateway before its uplink exists. A key lost while the outbox holds records it
    signed is never silently replaced (see ``cloud_sync.identity``).
    """
    from cloud_sync.chain import public_key_hex
    from cloud_sync.identity import load_or_create_key
    from cloud_sync.sync import key_path
    from edge.app.config_file import load_config

    config = load_config(args.config)
    if config.cloud is not None:
        path = key_path(config.cloud, config.store.path)
    else:
        path = config.store.path.parent / "gateway.key"
    existed = path.exists()
    # reconcile=False: this may run beside the gateway, and only the holder of the
    # database's lock may finish or discard an interrupted key rotation.
    key = load_or_create_key(path, db_path=config.store.path, reconcile=False)
    print(f"gateway {config.gateway.id}")
    print(f"key file {path} ({'existing' if existed else 'created now'})")
    print(f"public key (Ed25519, hex) {public_key_hex(key.public_key())}")
    from cloud_sync.identity import next_key_path

    if next_key_path(path).exists():
        print(
            f"an interrupted key rotation left {next_key_path(path)}: the gateway finishes or "
            "discards it at its next start (or run `offsite-edge identity rotate` again)"
        )
    return 0


def cmd_identity_rotate(args: argparse.Namespace) -> int:
    """Hand the gateway's signed chain to a new key (the gateway service must be stopped).

    Takes the database's gateway lock, so it refuses while the gateway runs: the running
    gateway signs with the key it loaded, and only one process writes the database.
    """
    from cloud_sync.key_rotation import rotate
    from cloud_sync.outbox import classes_of
    from cloud_sync.sync import key_path
    from edge.app.config_file import load_config
    from edge.app.lock import AlreadyRunningError, GatewayLock
    from edge.errors import SetupError

    config = load_config(args.config)
    if config.cloud is None:
        raise SetupError(
            f"{args.config} has no cloud: section, so the gateway signs nothing: there is no "
            "chain to hand to a new key"
        )
    db = config.store.path
    path = key_path(config.cloud, db)
    try:
        lock = GatewayLock.acquire(db)
    except AlreadyRunningError as exc:
        raise AlreadyRunningError(
            f"{exc}: stop the gateway service (`sudo systemctl stop offsite-edge`), run "
            "`offsite-edge identity rotate` again, then start it"
        ) from None
    with lock:
        done = rotate(path, db, config.gateway.id, config.cloud)
    carriers = [u.name for u in config.cloud.uplinks if "event" in classes_of(u.classes)]
    # Without an uplink for events no receiver learns the new key: say so plainly.
    uplinks = ", ".join(carriers) or "NO uplink carries events: no receiver will learn the key"
    print(f"gateway {config.gateway.id}: key rotated")
    print(
        f"key_rotation record seq {done.seq} (id {done.record_id}), signed with the old key, "
        f"queued for: {uplinks}"
    )
    print(f"old public key (retired) {done.old_public_key}")
    print(f"new public key (Ed25519, hex) {done.new_public_key}")
    print(f"key file {path} now holds the new key: back it up (the old key is deleted)")
    print(
        "receiver: nothing to do. It learns the new key from the signed key_rotation record; "
        "do NOT run `cloud register --replace` (the registered key must stay the one the "
        "chain starts with)"
    )
    print("start the gateway again: sudo systemctl start offsite-edge")
    return 0


def _identity_print(args: argparse.Namespace) -> int:
    """`identity` without a subcommand: needs --config."""
    if args.config is None:
        from edge.errors import SetupError

        raise SetupError("offsite-edge identity: --config FILE is required")
    return cmd_identity(args)


def cmd_cloud(args: argparse.Namespace) -> int:
    """Run the reference supervision-cloud receiver until SIGINT/SIGTERM."""
    from cloud_sync.receiver import ReceiverConfig, run_receiver
    from edge.app.regulator_cli import mqtt_client_options
    from edge.errors import SetupError

    trust = _keys_from(args.trust, args.keys_file)
    token = _token(args)
    if token is None and args.client_ca is None:
        raise SetupError(
            "the receiver API needs authentication: --token-env/--token-file (bearer token)"
            " or --client-ca (client certificates)"
        )
    mqtt_password, mqtt_tls = mqtt_client_options(args)
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
        token=token,
        max_body=args.max_body,
        clock_tolerance_s=args.clock_tolerance_s,
        mqtt_username=args.mqtt_username,
        mqtt_password=mqtt_password,
        mqtt_tls=mqtt_tls,
    )

    receipt_key = None
    if args.receipt_key is not None:
        from cloud_sync.receiver_commands import load_regulator_key

        receipt_key = load_regulator_key(args.receipt_key)
    extensions = receiver_extensions(
        regulator_console=args.regulator_console,
        regulator_config=args.regulator_config,
        receipt_key=receipt_key,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_receiver(config, stop, extensions=extensions)

    asyncio.run(main())
    return 0


def receiver_extensions(
    *,
    regulator_console: bool,
    regulator_config: Path | None = None,
    receipt_key: Ed25519PrivateKey | None = None,
) -> list[ReceiverExtension]:
    """The receiver's parts beyond the record API: evidence always, the console on request.

    ``receipt_key`` signs the evidence receipts sent to gateways over MQTT: a regulator key
    their ``cloud.regulator_keys`` list (without it, MQTT evidence is kept but never
    confirmed, so gateways keep their snapshots).
    """
    from cloud_sync.receiver_evidence import EvidenceVault

    extensions: list[ReceiverExtension] = [EvidenceVault(receipt_key=receipt_key)]
    if regulator_console or regulator_config is not None:
        from cloud_sync.regulator_console.config import RegulatorConsoleConfig
        from cloud_sync.regulator_console.server import RegulatorConsole
        from edge.app.config_file import parse_model, read_text

        console_config = (
            parse_model(read_text(regulator_config), RegulatorConsoleConfig, file=regulator_config)
            if regulator_config is not None
            else RegulatorConsoleConfig()
        )
        extensions.append(RegulatorConsole(console_config))
    return extensions


def cmd_cloud_add_user(args: argparse.Namespace) -> int:
    """Create a regulator console account (or reset one) and print its one-time password."""
    from cloud_sync.regulator_console.accounts import add_user

    password = add_user(args.db, args.name, args.role, reset=args.reset)
    print(f"regulator {args.name} ({args.role}): one-time password {password}")
    print("log in at /regulator/ on the receiver; the password must be changed at first login")
    return 0


def _keys_from(items: list[str], keys_file: Path | None) -> dict[str, str]:
    """Gateway → hex key from ``GATEWAY=HEX`` items and a keys file (``GATEWAY HEX`` lines)."""
    from edge.errors import SetupError

    lines = [item.replace("=", " ", 1) for item in items]
    if keys_file is not None:
        try:
            lines += keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SetupError(f"keys file {keys_file}: {exc.strerror}") from None
    keys: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].replace("=", " ").split()
        if not words:
            continue
        if len(words) != 2:
            raise SetupError(f"key line {n} {line!r}: expected GATEWAY HEXKEY")
        keys[words[0]] = words[1]
    return keys


def _token(args: argparse.Namespace) -> str | None:
    """The API bearer token from --token-file or --token-env (None: neither given)."""
    from edge.errors import SetupError

    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SetupError(f"token file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise SetupError(f"token file {args.token_file} is empty")
        return str(token)
    if args.token_env:
        from cloud_sync.config import read_secret

        return read_secret(args.token_env)
    return None


def cmd_cloud_register(args: argparse.Namespace) -> int:
    """Register gateways' public keys in the receiver database (commissioning).

    Each gateway also gets its own HTTPS bearer token (printed once, only its SHA-256 is
    kept), when it has none yet or with ``--new-token``: it may POST that gateway's
    records and nothing else.
    """
    from cloud_sync.receiver_store import ReceiverDB
    from edge.errors import SetupError

    items = [f"{args.gateway}={args.public_key}"] if args.gateway and args.public_key else []
    if (args.gateway is None) != (args.public_key is None):
        raise SetupError("--gateway and --public-key go together")
    keys = _keys_from(items, args.keys_file)
    if not keys:
        raise SetupError("nothing to register: give --gateway and --public-key, or --keys-file")
    db = ReceiverDB(args.db)
    try:
        for gateway, key in keys.items():
            new = db.register(gateway, key, replace=args.replace)
            print(f"{gateway}: {'registered' if new else 'already registered'} ({key[:16]}…)")
            if args.new_token or not db.has_token(gateway):
                token = db.issue_token(gateway)
                # Shown once: only its hash is kept. It goes into the variable that the
                # gateway's HTTPS uplink names with token_env.
                print(f"{gateway}: HTTPS token (shown once, keep it secret): {token}")
    finally:
        db.close()
    return 0


def _add_identity_commands(commands: Any) -> None:
    """`identity` (print the key) and `identity rotate`."""
    identity = commands.add_parser(
        "identity", help="create (if needed) and print the gateway's public signing key"
    )
    identity.add_argument("--config", type=Path)
    identity.set_defaults(func=_identity_print)
    identity_commands = identity.add_subparsers(dest="identity_command", metavar="SUBCOMMAND")
    rotate = identity_commands.add_parser(
        "rotate",
        help="hand the signed chain to a new key (a signed key_rotation record; gateway stopped)",
    )
    rotate.add_argument("--config", type=Path, required=True)
    rotate.set_defaults(func=cmd_identity_rotate)


def add_cloud_commands(commands: Any) -> None:
    """Register `identity` and `cloud` on the CLI's subparsers."""
    _add_identity_commands(commands)

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
        help="register a gateway's public key at start (as `cloud register` does)",
    )
    cloud.add_argument(
        "--keys-file", type=Path, help="register the keys of this file (GATEWAY HEXKEY lines)"
    )
    cloud.add_argument("--token-env", help="environment variable holding the API bearer token")
    cloud.add_argument("--token-file", type=Path, help="file holding the API bearer token")
    cloud.add_argument("--max-body", type=int, default=1024 * 1024, help="largest POST body")
    cloud.add_argument(
        "--clock-tolerance-s",
        type=float,
        default=300.0,
        help="report created_at going backwards by more than this",
    )
    cloud.add_argument("--mqtt-username")
    cloud.add_argument("--mqtt-password-env", help="environment variable with the password")
    cloud.add_argument("--mqtt-tls", action="store_true", help="connect to the broker with TLS")
    cloud.add_argument("--mqtt-ca", type=Path, help="CA of the broker (implies --mqtt-tls)")
    cloud.add_argument("--mqtt-cert", type=Path, help="client certificate for the broker")
    cloud.add_argument("--mqtt-key", type=Path, help="key of --mqtt-cert")
    cloud.add_argument(
        "--receipt-key",
        type=Path,
        help="regulator key (`cloud keygen`) that signs evidence receipts sent over MQTT",
    )
    cloud.add_argument(
        "--regulator-console",
        action="store_true",
        help="serve the regulator console under /regulator/ (accounts: `cloud add-user`)",
    )
    cloud.add_argument(
        "--regulator-config",
        type=Path,
        help="YAML of the regulator console (webhooks, enterprise grades…); implies it",
    )
    cloud.set_defaults(func=cmd_cloud)
    cloud_commands = cloud.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND")

    register = cloud_commands.add_parser(
        "register", help="register gateway public keys in the receiver database"
    )
    register.add_argument("--db", type=Path, default=Path("offsite-cloud.db"))
    register.add_argument("--gateway", help="gateway id")
    register.add_argument("--public-key", help="its key, as `offsite-edge identity` prints it")
    register.add_argument("--keys-file", type=Path, help="GATEWAY HEXKEY lines ('#' comments)")
    register.add_argument(
        "--replace", action="store_true", help="replace a different registered key (rotation)"
    )
    register.add_argument(
        "--new-token",
        action="store_true",
        help="issue a new HTTPS token (the old one stops working at once)",
    )
    register.set_defaults(func=cmd_cloud_register)

    add_user = cloud_commands.add_parser(
        "add-user", help="create a regulator console account and print its one-time password"
    )
    add_user.add_argument("--db", type=Path, default=Path("offsite-cloud.db"))
    add_user.add_argument("name", help="login name")
    add_user.add_argument(
        "--role",
        choices=["read-only", "handling"],
        default="read-only",
        help="read-only sees everything; handling may also take alerts through their trail",
    )
    add_user.add_argument(
        "--reset", action="store_true", help="re-issue the password (and role) of an account"
    )
    add_user.set_defaults(func=cmd_cloud_add_user)

    from edge.app.regulator_cli import add_regulator_commands

    add_regulator_commands(cloud_commands)
