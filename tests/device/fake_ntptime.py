# A fake `ntptime` for the device tests, copied into a device folder as ntptime.py: settime()
# writes the real time to machine.RTC as micropython-lib's ntptime does (with the fake machine and
# tests/device/field_drive.py, that sets the faked clock). FAKE_NTP=down: no answer (OSError).
import os
import time

LOG = {"calls": 0}


def settime():
    LOG["calls"] += 1
    if os.getenv("FAKE_NTP") == "down":
        raise OSError(110)  # ETIMEDOUT, as a real NTP query without an answer
    import machine

    tm = time.gmtime(getattr(time, "real_time", time.time)())
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
