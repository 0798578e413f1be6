"""Check that every runtime dependency (and theirs) has a wheel a Raspberry Pi can install:
Linux aarch64, glibc 2.28 (Raspberry Pi OS Bookworm has 2.36), CPython 3.11. Runtime means
the base dependencies and the extras a site may install on the Pi (EXTRAS: the camera stack
and the technician console).

Resolves against the package registry with pip; prints the wheels it found, exits 1 if
pip could not find a wheel for one of them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "manylinux_2_28_aarch64"
# A glibc 2.28 system also installs wheels built for older glibc; pip does not infer that
# from one --platform, so every tag it may take is named.
PLATFORMS = ["manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 29))]
PYTHON = "3.11"
EXTRAS = ("vision", "console")


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements.extend(project["optional-dependencies"][extra])
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                *(arg for tag in PLATFORMS for arg in ("--platform", tag)),
                "--python-version",
                PYTHON,
                "--implementation",
                "cp",
                "--dest",
                folder,
                *requirements,
            ],
            check=False,
        )
        wheels = sorted(path.name for path in Path(folder).glob("*.whl"))
    for wheel in wheels:
        print(f"  {wheel}")
    if done.returncode != 0:
        print(f"FAIL: a runtime dependency has no {PLATFORM} wheel for Python {PYTHON}")
        return 1
    print(f"OK: {len(wheels)} wheels for {PLATFORM}, Python {PYTHON}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
