# A fake `network` for the device tests, copied into a device folder as network.py. Calls are
# recorded in LOG (drive.py returns it as "net").
# FAKE_WIFI=down: the WLAN never connects (the updater must time out and try the next
# transport); FAKE_WIFI=fail:N: the first N connect() calls never connect, later ones do;
# otherwise it connects when asked. FAKE_RSSI: the signal in dBm (status("rssi")).
import os

STA_IF = 0
LOG = {"active": None, "connect": None, "connects": 0, "polls": 0}


class WLAN:
    def __init__(self, interface):
        pass

    def active(self, on=None):
        if on is not None:
            LOG["active"] = on
        return LOG["active"]

    def isconnected(self):
        LOG["polls"] += 1
        w = os.getenv("FAKE_WIFI") or ""
        if LOG["connect"] is None or w == "down":
            return False
        return not (w.startswith("fail:") and LOG["connects"] <= int(w[5:]))

    def connect(self, ssid, password):
        LOG["connect"] = [ssid, password]
        LOG["connects"] += 1

    def status(self, what=None):
        if what == "rssi":
            return int(os.getenv("FAKE_RSSI") or "-50")
        return 3 if self.isconnected() else 1
