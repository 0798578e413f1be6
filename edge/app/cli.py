"""The `offsite-edge` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from edge.app.config import GatewayConfig
from edge.app.config_file import load_config
from edge.app.logs import FORMATS, LEVELS, setup_logging
from edge.errors import SetupError

log = logging.getLogger(__name__)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_config_check(args: argparse.Namespace) -> int:
    """Check a config file exactly as ``run`` does before it starts; print OK or refuse.

    Every problem is a line on stderr and the exit code is 2, as ``run`` would give.
    """
    from edge.app.preflight import prepare

    prepare(args.file)
    print(f"{args.file}: OK")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the gateway config."""
    del args
    print(json.dumps(GatewayConfig.model_json_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGINT/SIGTERM; SIGHUP reloads the config file."""
    from edge.app import systemd
    from edge.app.last_good import boot
    from edge.app.supervisor import supervise

    # The checks of `config check`; a refused file starts on the last good config if any.
    booted = boot(Path(args.config))
    # Owner-only from here on: database, WAL, key, config backups and evidence files.
    os.umask(0o077)

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        _install_stop(stop)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload.set)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(systemd.serve(stop), name="offsite-edge.systemd")
            await supervise(
                Path(args.config),
                booted.config,
                stop,
                reload,
                text=booted.text,
                refused=booted.refused,
            )

    asyncio.run(main())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish simulated readings for every configured sensor."""
    from sensors.simulate import Scenario, Simulator, publish_forever

    config = load_config(args.config)
    scenario = Scenario(
        exceed=set(args.exceed),
        exceed_after=args.exceed_after,
        stuck=set(args.stuck),
        silent=set(args.silent),
        silent_after=args.silent_after,
        malformed_fraction=args.malformed,
    )
    known = {s.id for s in config.sensors}
    unknown = (scenario.exceed | scenario.stuck | scenario.silent) - known
    if unknown:
        print(
            f"unknown sensor ids: {sorted(unknown)}; configured: {sorted(known)}", file=sys.stderr
        )
        return 2
    simulator = Simulator(config=config, scenario=scenario, seed=args.seed)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        # Ctrl-C cancels the publisher, which disconnects cleanly on its way out.
        with contextlib.suppress(asyncio.CancelledError):
            await publish_forever(
                simulator,
                host=host,
                port=port,
                interval_s=args.interval,
                duration_s=args.duration,
            )

    host, port = args.host or config.broker.host, args.port or config.broker.port
    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"cannot reach the broker at {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print whether the gateway runs and is connected, sensors, cameras, clock and events."""
    from edge.app.status import read_status
    from edge.app.status_view import read_liveness, status_json, status_lines

    config = load_config(args.config)
    try:
        status = read_status(config, dead_letter_limit=args.dead_letters)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    live = read_liveness(config, status)
    if args.json:
        print(json.dumps(status_json(config, status, live), indent=2, ensure_ascii=False))
    else:
        print("\n".join(status_lines(config, status, live)))
    return 0


def cmd_sensor_mode(args: argparse.Namespace) -> int:
    """Put a sensor into maintenance/calibration or back to normal."""
    from sensors.modes import ModeRequest, file_request

    config = load_config(args.config)
    if args.sensor_id not in {s.id for s in config.sensors}:
        print(f"unknown sensor {args.sensor_id!r}", file=sys.stderr)
        return 2
    mode = args.mode if args.state == "on" else "normal"
    try:
        file_request(config.store.path, ModeRequest.make(args.sensor_id, mode, args.who, args.why))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.sensor_id}: {mode} requested by {args.who}; the gateway applies it within 1 s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run broker, simulator and gateway together and show what happens."""
    from edge.app.demo import run_demo

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        await run_demo(stop, duration_s=args.duration, data_dir=args.data_dir)

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `offsite-edge`."""
    parser = argparse.ArgumentParser(prog="offsite-edge", description=__doc__)
    _add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check a config file or print its schema")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_config_check)
    schema = config_commands.add_parser("schema", help="print the config's JSON Schema")
    schema.set_defaults(func=cmd_config_schema)

    run = commands.add_parser("run", help="run the gateway until SIGTERM/SIGINT")
    run.add_argument("--config", required=True)
    run.set_defaults(func=cmd_run)

    _add_simulate_command(commands)

    _add_status_command(commands)

    sensors = commands.add_parser("sensors", help="technician actions on sensors")
    sensor_commands = sensors.add_subparsers(dest="sensors_command", required=True)
    maintenance = sensor_commands.add_parser(
        "maintenance", help="flag a sensor's readings as maintenance (M) or calibration (C)"
    )
    maintenance.add_argument("sensor_id")
    maintenance.add_argument("state", choices=["on", "off"])
    maintenance.add_argument("--config", required=True)
    maintenance.add_argument("--who", required=True, help="technician's name or id")
    maintenance.add_argument("--why", required=True, help="reason, kept in the audit trail")
    maintenance.add_argument(
        "--mode", choices=["maintenance", "calibration"], default="maintenance"
    )
    maintenance.set_defaults(func=cmd_sensor_mode)

    demo = commands.add_parser("demo", help="embedded broker + simulator + gateway, live")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--data-dir", type=Path, help="keep the demo database here")
    demo.set_defaults(func=cmd_demo)

    from edge.app.broker_config import add_broker_command
    from edge.app.cloud_cli import add_cloud_commands
    from edge.app.console.cli import add_console_commands
    from edge.app.install import add_install_command

    add_broker_command(commands)
    add_install_command(commands)
    add_cloud_commands(commands)
    add_console_commands(commands)
    return parser


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        help="DEBUG, INFO, WARNING or ERROR (any case)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS, help="text lines or JSON lines"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of setup errors too"
    )


def _add_simulate_command(commands: Any) -> None:
    sim = commands.add_parser("simulate", help="publish realistic readings for every sensor")
    sim.add_argument("--config", required=True)
    sim.add_argument("--host", help="broker host (default: the config's)")
    sim.add_argument("--port", type=int, help="broker port (default: the config's)")
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    sim.add_argument("--duration", type=float, help="stop after this many seconds")
    sim.add_argument("--seed", type=int, help="random seed for repeatable traffic")
    sim.add_argument("--exceed", action="append", default=[], metavar="SENSOR")
    sim.add_argument("--exceed-after", type=float, default=0.0, metavar="S")
    sim.add_argument("--stuck", action="append", default=[], metavar="SENSOR")
    sim.add_argument("--silent", action="append", default=[], metavar="SENSOR")
    sim.add_argument("--silent-after", type=float, default=0.0, metavar="S")
    sim.add_argument("--malformed", type=float, default=0.0, metavar="FRACTION")
    sim.set_defaults(func=cmd_simulate)


def _add_status_command(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="is the gateway running and connected; sensors, cameras, clock, events"
    )
    status.add_argument("--config", required=True)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--dead-letters", type=int, default=5, metavar="N", help="show the newest N dead letters"
    )
    status.set_defaults(func=cmd_status)


def _version() -> str:
    try:
        return metadata.version("offsite-edge")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `offsite-edge` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `status | head`: the reader has gone, which is not an error. Point stdout at
        # /dev/null so that the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (SetupError, BaseExceptionGroup) as exc:
        # What the user must fix (bad config, missing secret, unreadable key, broker
        # settings): say it plainly; the traceback helps only developers.
        problem = _setup_error(exc)
        if problem is None:
            raise
        if args.debug:
            log.error("setup error", exc_info=exc)
        print(problem, file=sys.stderr)
        return 2


def _setup_error(exc: BaseException) -> SetupError | None:
    """The SetupError behind ``exc``, also when a TaskGroup wrapped it in a group."""
    if isinstance(exc, SetupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _setup_error(inner)) is not None:
                return found
    return None


if __name__ == "__main__":
    raise SystemExit(main())
