# A fake `network` for tests/test_extras.py, copied into a device folder as network.py.
# FAKE_WIFI=down: the WLAN never connects (the updater must time out and try the next
# transport); otherwise it connects when asked. Calls are recorded in LOG.
import os

STA_IF = 0
LOG = {"active": None, "connect": None, "polls": 0}


class WLAN:
    def __init__(self, interface):
        pass

    def active(self, on):
        LOG["active"] = on

    def isconnected(self):
        LOG["polls"] += 1
        return LOG["connect"] is not None and os.getenv("FAKE_WIFI") != "down"

    def connect(self, ssid, password):
        LOG["connect"] = [ssid, password]
