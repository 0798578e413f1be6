"""Memory of a running gateway: sensors only, and with one camera, as `offsite-edge run`.

Each gateway is a real `offsite-edge run` process on a loopback mosquitto, fed readings
for --seconds; its peak RSS (VmHWM) is read from /proc just before it is stopped. The
baseline, measured in the same run, is a bare Python process that imports nothing.

    python benchmarks/memory.py --model ../shared/models/yolov8n-random-320.onnx

The last line printed is one JSON object (MB): baseline_mb, sensors_only_mb,
one_camera_mb, and their ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from broker import Mosquitto
from paho.mqtt.enums import CallbackAPIVersion

SENSORS = 4


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def config(folder: Path, port: int, vision: dict | None) -> Path:
    sensors = [
        {
            "id": f"noise-{i:02d}",
            "kind": "noise",
            "topic": f"bench/noise/{i:02d}",
            "decoder": {"type": "json", "fields": {"LA": "la"}, "timestamp": "ts"},
            "quantities": [{"name": "LA", "unit": "dB(A)", "range": [20, 140]}],
            "standard": {"profile": "gb3096-2008", "params": {"zone": "1"}},
        }
        for i in range(SENSORS)
    ]
    data = {
        "gateway": {"id": "gw-mem"},
        "site": {"name": "bench", "credit_code": "91350100M000100Y43"},
        "broker": {"host": "127.0.0.1", "port": port},
        "store": {"path": str(folder / "gateway.db")},
        "sensors": sensors,
    }
    if vision is not None:
        data["vision"] = vision
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def vision_section(model: Path, folder: Path) -> dict:
    """One replayed 320x240 camera on the demo clip, the demo's rules (as the demo runs it)."""
    # benchmarks/vision.py would shadow the vision package: leave this folder off the path.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from vision.synthetic import demo_config, kitchen_frames, write_clip

    clip = write_clip(
        folder / "kitchen.mp4", kitchen_frames(600, width=320, height=240), fps=10, fourcc="mp4v"
    )
    section = demo_config(model, clip).model_dump(mode="json")
    section["cameras"][0]["realtime"] = True  # paced like a live camera, looping forever
    return section


def run_gateway(config_path: Path, port: int, seconds: float) -> float:
    """Run the gateway, publish a reading per sensor per second, return its peak RSS."""
    cli = Path(sys.executable).with_name("offsite-edge")
    with (config_path.parent / "gateway.log").open("wb") as log:
        proc = subprocess.Popen([str(cli), "run", "--config", str(config_path)], stderr=log)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-mem-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((config_path.parent / "gateway.log").read_text()[-2000:])
            for i in range(SENSORS):
                payload = json.dumps({"la": 50.0 + i, "ts": time.time()})
                client.publish(f"bench/noise/{i:02d}", payload, qos=1)
            time.sleep(1.0)
        return peak_rss_mb(proc.pid)
    finally:
        client.loop_stop()
        client.disconnect()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def baseline_mb() -> float:
    code = "import pathlib,re;print(re.search(r'VmHWM:\\s+(\\d+)',pathlib.Path('/proc/self/status').read_text())[1])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True, type=Path, help="ONNX detector for the camera")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long each gateway runs")
    args = ap.parse_args()
    base = baseline_mb()
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "sensors"
        plain.mkdir()
        sensors_only = run_gateway(config(plain, broker.port, None), broker.port, args.seconds)
        cam = Path(tmp) / "camera"
        cam.mkdir()
        section = vision_section(args.model.resolve(), cam)
        one_camera = run_gateway(config(cam, broker.port, section), broker.port, args.seconds)
    print(f"bare python          {base:6.1f} MB")
    print(f"gateway, {SENSORS} sensors   {sensors_only:6.1f} MB peak RSS")
    print(f"gateway + 1 camera   {one_camera:6.1f} MB peak RSS ({args.model.name})")
    print(
        json.dumps(
            {
                "baseline_mb": round(base, 1),
                "sensors_only_mb": round(sensors_only, 1),
                "one_camera_mb": round(one_camera, 1),
                "sensors_only_ratio": round(sensors_only / base, 2),
                "one_camera_ratio": round(one_camera / base, 2),
                "model": args.model.name,
            }
        )
    )


if __name__ == "__main__":
    main()
