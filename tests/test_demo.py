"""The demo (`make demo`, tests/demo.py) as a test: from source at the interpreter's default
heap (every step, v1.2.0 by delta), and with the .mpy files of `make device` under
-X heapsize=54k (the 48k target is not met since trial boots, HTTPS verification, the hostile-input
checks, conditional checks and keep-alive landed: docs/design.md, Memory): every step; no delta
fits there, so v1.2.0 comes in full without asking for a patch or even loading ota_delta)."""
import demo
from conftest import basic_code


def test_demo_from_source(capsys):
    assert demo.main([]) == 0
    assert "(by delta) v1.2.0" in capsys.readouterr().out


def test_demo_precompiled_at_54k(tmp_path, capsys):
    code = basic_code(tmp_path, True, ("ota", "main", "ota_delta"))
    assert demo.main(["--heap", "54k", "--device-src", str(code)]) == 0
    out = capsys.readouterr().out
    assert "(in full) v1.2.0" in out and "no delta fits" in out
