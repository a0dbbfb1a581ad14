"""The demo (`make demo`, tests/demo.py) as a test: from source at the interpreter's default
heap (every step, v1.2.0 by delta), and with the .mpy files of `make device` under
-X heapsize=52k (the 48k target is not met since trial boots, HTTPS verification and the hostile-input
checks landed: every step; no delta fits there, so v1.2.0 comes in full without
fetching the delta index or even loading ota_delta)."""
import demo
from conftest import basic_code


def test_demo_from_source(capsys):
    assert demo.main([]) == 0
    assert "(by delta) v1.2.0" in capsys.readouterr().out


def test_demo_precompiled_at_52k(tmp_path, capsys):
    code = basic_code(tmp_path, True, ("ota", "main", "ota_delta"))
    assert demo.main(["--heap", "52k", "--device-src", str(code)]) == 0
    out = capsys.readouterr().out
    assert "(in full) v1.2.0" in out and "no delta fits" in out
