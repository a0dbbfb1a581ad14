# A fake `machine` for tests/test_extras.py, copied into a device folder as machine.py: a
# module with Pin is what makes ota.OTA talk to the hardware. It records every call in LOG
# (drive.py returns it). FAKE_ADC (raw 16-bit reading) and FAKE_UID (device id) come from env.
import os

LOG = {"wdt": None, "feed": 0, "pin": None, "toggle": 0, "adc": None, "reset": 0, "soft_reset": 0}


class WDT:
    def __init__(self, id=0, timeout=5000):
        LOG["wdt"] = [id, timeout]

    def feed(self):
        LOG["feed"] += 1


class Pin:
    OUT = 1

    def __init__(self, pin, mode=-1):
        LOG["pin"] = [pin, mode]

    def toggle(self):
        LOG["toggle"] += 1


class ADC:
    def __init__(self, pin):
        LOG["adc"] = pin

    def read_u16(self):
        return int(os.getenv("FAKE_ADC") or "65535")


def unique_id():
    return (os.getenv("FAKE_UID") or "e6614103e7").encode()


def reset():
    LOG["reset"] += 1


def soft_reset():
    LOG["soft_reset"] += 1
