"""The demo (`make demo`, tests/demo.py) as a test: from source at the interpreter's default
heap (every step, v1.2.0 by delta), and precompiled by mpy-cross under -X heapsize=48k, the issue's
target (every step; no delta fits there, so v1.2.0 comes in full without fetching the index)."""
import subprocess

import demo
from conftest import MPY_CROSS, PY


def test_demo_from_source(capsys):
    assert demo.main([]) == 0
    assert "(by delta) v1.2.0" in capsys.readouterr().out


def test_demo_precompiled_at_48k(tmp_path, capsys):
    for n in ("ota", "main", "ota_delta"):
        subprocess.run([str(MPY_CROSS), str(PY / (n + ".py")), "-o", str(tmp_path / (n + ".mpy"))],
                       check=True)
    assert demo.main(["--heap", "48k", "--device-src", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(in full) v1.2.0" in out and "no delta fits" in out
