"""The reference receiver with its evidence vault and regulator console, as its own process.

Run: python console_receiver_proc.py --db F --mqtt-port P --http-port P --token T
[--trust GW=HEX …] [--console-json JSON]. It builds exactly what the receiver runs
(:class:`cloud_sync.receiver.Receiver` with extensions) until SIGTERM, logging to stderr.
Until ``offsite-edge cloud`` mounts the console itself, tests start it this way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from cloud_sync.receiver import Receiver, ReceiverConfig
from cloud_sync.receiver_evidence import EvidenceVault
from cloud_sync.regulator_console import RegulatorConsole, RegulatorConsoleConfig


async def main(args: argparse.Namespace) -> None:
    """Run until SIGTERM/SIGINT."""
    config = ReceiverConfig(
        db=Path(args.db),
        mqtt_host="127.0.0.1",
        mqtt_port=args.mqtt_port,
        http_port=args.http_port,
        token=args.token,
        client_id=f"offsite-cloud-{args.http_port}",
        trust=dict(pair.split("=", 1) for pair in args.trust),
    )
    console = RegulatorConsole(RegulatorConsoleConfig.model_validate_json(args.console_json))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Receiver(config, extensions=[EvidenceVault(), console]).run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--trust", action="append", default=[])
    parser.add_argument("--console-json", default="{}")
    asyncio.run(main(parser.parse_args()))
