# tests/device/drive.py with a board's wall clock: with FAKE_EPOCH (Unix time, e.g. 946684800 =
# 2000-01-01, a board whose clock is unset), `time` is a copy of the time module whose time()
# starts there and runs on, until machine.RTC().datetime() sets it (the fake machine.py; the fake
# ntptime.py writes the real time through it). Same arguments and output as drive.py; its "clock"
# is the faked time at the end. Runs under CPython and MicroPython.
import sys
import os

if os.getenv("FAKE_EPOCH"):
    import time as _real

    class _Clock:
        pass

    T = _Clock()
    for _k in dir(_real):
        if not _k.startswith("__"):
            setattr(T, _k, getattr(_real, _k))
    _base = [_real.time(), float(os.getenv("FAKE_EPOCH"))]

    def _time():
        return _base[1] + (_real.time() - _base[0])

    def _set(t):
        _base[0] = _real.time()
        _base[1] = t

    T.time = _time
    T.set_fake = _set
    T.real_time = _real.time
    T.localtime = lambda t=None: _real.localtime(int(_time() if t is None else t))
    T.gmtime = lambda t=None: _real.gmtime(int(_time() if t is None else t))
    sys.modules["time"] = T

_here = sys.argv[0]
_here = _here[:_here.rfind("/") + 1]
with open(_here + "drive.py") as _f:
    _src = _f.read()
exec(_src)
