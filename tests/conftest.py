"""Shared pytest fixtures (keep small; test files own their own helpers).

- ``micropython``: runs the real MicroPython unix interpreter (.venv/bin/micropython)
  with build/x64 (ota_native.mpy) and tests/ on its module path.
- ``natmod_x64``: path of build/x64/ota_native.mpy (built by ``make natmod ARCH=x64``).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / "python"
# The device's modules (python/): a basic update needs ota.py (+ main.py); the others are
# optional features, imported only when the configuration uses them.
DEVICE_OPTIONAL = ("ota_flatconfig.py", "ota_delta.py", "ota_hw.py", "ota_schedule.py")
BUILD_X64 = ROOT / "build" / "x64"
MICROPYTHON = Path(sys.executable).parent / "micropython"


class MicroPython:
    """Runs scripts in the MicroPython unix port; `path` entries go first on sys.path."""

    exe = MICROPYTHON

    def __init__(self, path=()):
        self.path = [str(p) for p in path]

    def run(self, *args, path=(), cwd=None, timeout=300, check=False, input=None):
        """Run ``micropython *args``; returns subprocess.CompletedProcess (text)."""
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(p) for p in path] + self.path + [".frozen"])
        return subprocess.run(
            [str(self.exe), *map(str, args)], cwd=cwd, env=env, input=input,
            capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def natmod_x64():
    mpy = BUILD_X64 / "ota_native.mpy"
    assert mpy.is_file(), f"{mpy} missing: run `make natmod ARCH=x64`"
    return mpy


@pytest.fixture(scope="session")
def micropython(natmod_x64):
    assert MICROPYTHON.exists(), "MicroPython unix port missing: run `make venv`"
    return MicroPython(path=[natmod_x64.parent, ROOT / "tests"])
