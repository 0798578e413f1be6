"""The camera stack is an extra: a sensor-only install has no OpenCV, onnxruntime or numpy.

A real throwaway venv gets a real, non-editable ``pip install`` of this repository without
extras (from a copy of its sources, so that the shared tree gets no build folder). Slow-ish
(a minute or two, mostly pip): the venv is made once per test session and shared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict, sensor

from edge.app.config import GatewayConfig
from edge.app.preflight import require_camera_stack

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "edge", "sensors", "vision", "cloud_sync", "configs")
ONE_LINE = (
    "vision: cameras are configured but the camera stack is not installed: "
    "pip install 'offsite-edge[vision]'"
)
VISION = {
    "cameras": [{"id": "cam-01", "source": "rtsp://127.0.0.1:8554/kitchen"}],
    "detector": {"model_path": "model.onnx"},
    "rules": [{"class_name": "no_hat", "violation": "no_hat", "tier": "routine"}],
}


@pytest.fixture(scope="session")
def novision_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install <copy of this repo>`` and no extras."""
    base = tmp_path_factory.mktemp("novision")
    source = base / "src"
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(path, source / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(source)],
        check=True,
        timeout=900,
    )
    return venv


def _write(path: Path, **sections: object) -> Path:
    data = gateway_dict(path.parent / "g.db", sensors=[sensor("noise-01", "t/noise")], **sections)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.timeout(1200)
def test_sensor_only_install_has_no_camera_stack(novision_venv):
    found = subprocess.run(
        [
            str(novision_venv / "bin" / "python"),
            "-c",
            "import importlib.util as u, edge.app.cli, edge.app.gateway, edge.app.metrics;"
            "print([m for m in ('cv2', 'onnxruntime', 'numpy') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


@pytest.mark.timeout(1200)
def test_config_check_without_the_extra(novision_venv, tmp_path):
    cli = str(novision_venv / "bin" / "offsite-edge")
    sensors_only = _write(tmp_path / "sensors.yaml")
    done = subprocess.run(
        [cli, "config", "check", str(sensors_only)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": OK")

    with_cameras = _write(tmp_path / "cameras.yaml", vision=VISION)
    for command in (["config", "check", str(with_cameras)], ["run", "--config", str(with_cameras)]):
        refused = subprocess.run(
            [cli, *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert refused.returncode == 2, (command, refused.stderr)
        assert refused.stderr.strip() == ONE_LINE, command


def test_with_the_extra_cameras_pass_this_check(tmp_path):
    # The suite's own venv has the extra: the config is not refused for it.
    config = GatewayConfig.model_validate(gateway_dict(tmp_path / "g.db", vision=VISION))
    require_camera_stack(config)
