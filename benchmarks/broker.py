"""The test suite's mosquitto launcher (tests/mosquitto.py), for the benchmarks.

Loaded by file path on purpose: a benchmark never puts tests/ on sys.path, where its
cloud_sync/ and vision/ folders would shadow the installed packages.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "tests" / "mosquitto.py"
_spec = importlib.util.spec_from_file_location("offsite_edge_bench_mosquitto", _PATH)
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)

Mosquitto = _module.Mosquitto
free_port = _module.free_port
