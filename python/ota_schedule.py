# ota_schedule.py: when an update may run. A feature module (see ota._FEATURES): imported only
# when the configuration has one of its keys; copy it to the board then.
import time
from ota import OTAError, STATE, Kind, _board, _load_json, _save_json

# key, type, default (README "Configuration")
KEYS = (
    "windows", Kind.STR_LIST, [],  # allowed local-time windows "HH:MM-HH:MM"
    "health_hook", Kind.STR_OR_NULL, None,  # module whose healthy() must return true
    "canary_percent", Kind.WHOLE, 100,  # the share of devices that update
    "device_id", Kind.STR_OR_NULL, None,  # the canary's id (default machine.unique_id())
    "min_interval_sec", Kind.WHOLE, 0,  # at most one check per interval
)


def check(cfg, path):
    if cfg["canary_percent"] > 100:
        raise OTAError("%s: 'canary_percent' must be <= 100" % path)
    check_windows(cfg["windows"], path)


def attach(u):
    u.gates.append(deferral)


def deferral(u):
    # The reason the update of OTA u must wait (its config key), or None. Cheapest checks first;
    # the rate limit comes last, so that a deferral for another reason does not use up the interval.
    c = u.cfg
    t = time.localtime()
    if not in_windows(c["windows"], t[3] * 60 + t[4]):
        return "windows"
    if c["health_hook"] and not __import__(c["health_hook"]).healthy():
        return "health_hook"
    if c["canary_percent"] < 100 and device_share(c) >= c["canary_percent"]:
        return "canary_percent"
    if c["min_interval_sec"]:
        now = int(time.time())
        # a clock that went back (unset after a reboot) counts as due
        s = _load_json(STATE) or {}
        if 0 <= now - s.get("last", 0) < c["min_interval_sec"]:
            return "min_interval_sec"
        s["last"] = now
        _save_json(STATE, s)
    return None


def device_share(c):
    # this device's place in the fleet, 0..99, stable across runs: SHA1 of its id and the repo
    import hashlib

    m = _board()
    d = (c["device_id"] or "").encode() or (m.unique_id() if m else b"")
    d = hashlib.sha1(d + c["repo"].encode()).digest()
    return (d[0] * 256 + d[1]) % 100


def in_windows(windows, minute):
    # True if minute (of the local day) is inside one of windows, "HH:MM-HH:MM" (end < start
    # crosses midnight, start == end is the whole day); [] is always open. ValueError for a
    # malformed window.
    for w in windows:
        m = []
        for x in w.split("-"):
            if len(x) != 5 or x[2] != ":" or int(x[:2]) > 23 or int(x[3:]) > 59:
                raise ValueError
            m.append(int(x[:2]) * 60 + int(x[3:]))
        a, b = m
        if a <= minute < b or b <= a and (minute >= a or minute < b):
            return True
    return not windows


def check_windows(windows, path):
    # config check: every window parses
    for w in windows:
        try:
            in_windows([w], 0)
        except ValueError:
            raise OTAError('%s: \'windows\' entries must be "HH:MM-HH:MM" (24 h), got %r' % (path, w))
