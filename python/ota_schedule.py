# ota_schedule.py: when an update may run (the update_scheduling block and the earlier keys).
# A feature module (see ota._FEATURES): imported only when the configuration has one of its keys;
# copy it to the board then, with ota_time.py (the clock) and, for min_battery_percent, ota_hw.py.
import time
import ota
from ota import OTAError, STATE, JOURNAL, Kind, _board, _load_json, _save_json

# key, type, default (README "Configuration"); the earlier names are aliases (check() folds them)
KEYS = (
    "update_scheduling", Kind.ANY, None,  # the block below (SCHEDULE)
    "rollout_percent", Kind.WHOLE, None,  # also accepted outside the block
    "canary_percent", Kind.WHOLE, None,  # earlier name of rollout_percent
    "min_interval_sec", Kind.WHOLE, None,  # earlier name of min_update_interval_sec
    "windows", Kind.STR_LIST, [],  # earlier: allowed local-time windows "HH:MM-HH:MM"
    "health_hook", Kind.STR_OR_NULL, None,  # module whose healthy() must return true
    "device_id", Kind.STR_OR_NULL, None,  # the rollout's id (default machine.unique_id())
)

# the keys of the update_scheduling block
SCHEDULE = (
    "min_update_interval_sec", Kind.WHOLE, None,  # at most one check per interval
    "update_window_start_hour", Kind.WHOLE, None,  # updates only from this hour (local time) ...
    "update_window_end_hour", Kind.WHOLE, None,  # ... until this one (may cross midnight)
    "power_source", Kind.STR_OR_NULL, None,  # "solar": only in the solar window (10:00-16:00)
    "min_battery_percent", Kind.NUMBER, None,  # as the top-level key (ota_hw.py)
    "max_crashes_before_delay", Kind.WHOLE, None,  # more crashes than this in 24 h: wait
    "rollout_percent", Kind.WHOLE, None,  # the share of devices that update (stable by device id)
)
SOLAR = "10:00-16:00"
_DAY = 86400
_CRASHES_KEPT = 20


def check(cfg, path):
    # The block checked, with its defaults, in cfg["update_scheduling"], and the earlier names
    # folded into it. Unknown keys in the block are printed, as main() does for the top level.
    s = cfg["update_scheduling"]
    if s is None:
        s = {}
    if type(s) is not dict:
        raise OTAError("%s: 'update_scheduling' must be a mapping of keys to values, got %r" % (path, s))
    named = {}
    for k in s:
        named["update_scheduling." + k] = s[k]
    keys = []
    for i in range(0, len(SCHEDULE), 3):
        keys += ["update_scheduling." + SCHEDULE[i], SCHEDULE[i + 1], SCHEDULE[i + 2]]
    block = {}
    ota._check_keys(keys, named, block, path)  # errors name "update_scheduling.<key>"
    unknown = [k for k in named if k not in block and named[k] is not None]
    if unknown:
        print("OTA: ignoring unknown config keys:", ", ".join(unknown))
    cfg["update_scheduling"] = s = {}
    for k in block:
        s[k[18:]] = block[k]
    # the earlier names, and rollout_percent outside the block
    for key, alias in (("min_update_interval_sec", "min_interval_sec"), ("rollout_percent", "canary_percent"),
                       ("rollout_percent", "rollout_percent")):
        v = cfg[alias]
        if v is not None:
            if s[key] is not None and s[key] != v:
                raise OTAError("%s: '%s' and 'update_scheduling.%s' disagree: give one" % (path, alias, key))
            s[key] = v
    if s["rollout_percent"] is not None and s["rollout_percent"] > 100:
        raise OTAError("%s: 'rollout_percent' must be <= 100, got %d" % (path, s["rollout_percent"]))
    a, b = s["update_window_start_hour"], s["update_window_end_hour"]
    if (a is None) != (b is None) or a is not None and (a > 23 or b > 24):
        raise OTAError("%s: 'update_scheduling.update_window_start_hour' (0-23) and "
                       "'update_scheduling.update_window_end_hour' (0-24) go together" % path)
    if s["power_source"] not in (None, "solar", "battery", "mains"):
        raise OTAError("%s: 'update_scheduling.power_source' must be one of solar|battery|mains, got %r"
                       % (path, s["power_source"]))
    check_windows(cfg["windows"], path)
    p = s["min_battery_percent"]
    if p is not None:  # the battery gate of ota_hw.py, which this brings in
        import ota_hw

        if "ota_hw" not in cfg["_features"]:
            ota._check_keys(ota_hw.KEYS, {}, cfg, path)
            cfg["_features"] = cfg["_features"] + ["ota_hw"]  # a new list: attached, not checked again
        if cfg["min_battery_percent"] and cfg["min_battery_percent"] != p:
            raise OTAError("%s: 'min_battery_percent' and 'update_scheduling.min_battery_percent' disagree: "
                           "give one" % path)
        cfg["min_battery_percent"] = p
        ota_hw.check(cfg, path)


def attach(u):
    u.gates.append(deferral)
    if u.cfg["update_scheduling"]["max_crashes_before_delay"] is not None:
        count_crash(u)


def count_crash(u):
    # At boot (OTA(), before the recovery): was the last run a crash? A watchdog reset
    # (machine.reset_cause()), or a release on trial that failed (the journal of the trial boots,
    # ota.py). Its time is set by the gate, once the clock is known (0 until then).
    why = None
    m = _board()
    if m and hasattr(m, "reset_cause") and m.reset_cause() == getattr(m, "WDT_RESET", -1):
        why = "watchdog reset"
    j = _load_json(JOURNAL)
    if j and j.get("state") == "trial" and j.get("failed"):
        why = "trial failed: %s" % j["failed"]
    if why:
        s = _load_json(STATE) or {}
        s["crashes"] = (s.get("crashes") or [])[-_CRASHES_KEPT + 1:] + [0]
        _save_json(STATE, s)
        u.log("crash counted: %s", why)


def deferral(u):
    # The reason the update of OTA u must wait (the config key), or None. Cheapest checks first;
    # the interval comes last, so that a deferral for another reason does not use it up.
    c = u.cfg
    s = c["update_scheduling"]
    t = None
    crashes = s["max_crashes_before_delay"]
    if c["windows"] or s["update_window_start_hour"] is not None or s["power_source"] == "solar" \
            or s["min_update_interval_sec"] or crashes is not None:
        import ota_time

        t = ota_time.now(u)  # None: the clock could not be set
        if t is not None:
            lt = ota_time.localtime(t)
            minute = lt[3] * 60 + lt[4]
    for key, windows in (("windows", c["windows"]), ("update_window_start_hour", _hours(s)),
                         ("power_source", [SOLAR] if s["power_source"] == "solar" else [])):
        if windows and (t is None or not in_windows(windows, minute)):
            u.log("%s: outside %s (clock %s)", key, windows, t)
            return key
    if crashes is not None:
        n = recent_crashes(t)
        if n > crashes:
            u.log("%d crashes in 24 h > %d", n, crashes)
            return "max_crashes_before_delay"
    if c["health_hook"] and not __import__(c["health_hook"]).healthy():
        return "health_hook"
    p = s["rollout_percent"]
    if p is not None and p < 100 and device_share(c) >= p:
        return "canary_percent" if c["canary_percent"] is not None else "rollout_percent"
    if s["min_update_interval_sec"] and t is not None:
        # a clock that went back counts as due
        st = _load_json(STATE) or {}
        if 0 <= t - st.get("last", 0) < s["min_update_interval_sec"]:
            return "min_interval_sec" if c["min_interval_sec"] is not None else "min_update_interval_sec"
        st["last"] = t
        _save_json(STATE, st)
    return None


def _hours(s):
    a = s["update_window_start_hour"]
    return [] if a is None else ["%02d:00-%02d:00" % (a, s["update_window_end_hour"] % 24)]


def recent_crashes(t):
    # the crashes of the last 24 hours (ota_state.json); those counted before the clock was known
    # get the time t now (None: not known yet, they count as recent)
    s = _load_json(STATE) or {}
    old = s.get("crashes") or []
    if t is not None and 0 in old:
        s["crashes"] = old = [x or t for x in old if not x or 0 <= t - x < _DAY]
        _save_json(STATE, s)
    return len([x for x in old if t is None or 0 <= t - x < _DAY])


def _device_hash(c):
    # SHA1 of the device's id (device_id, else machine.unique_id()) and the repo: stable across runs
    import hashlib

    m = _board()
    d = (c.get("device_id") or "").encode() or (m.unique_id() if m else b"")
    return hashlib.sha1(d + c["repo"].encode()).digest()


def device_share(c):
    # this device's place in the fleet, 0..99 (rollout_percent)
    d = _device_hash(c)
    return (d[0] * 256 + d[1]) % 100


def next_check_in(cfg, interval=None, now=None):
    # Seconds (0 < s <= interval) until this device's next check: one per interval (default
    # update_scheduling.min_update_interval_sec, else an hour) at a stable offset inside it, taken
    # from the device's id. A fleet that boots together, or sees a release land, then spreads its
    # checks over the interval instead of meeting GitHub's secondary limits together. For the
    # application's loop: while True: main.main(); time.sleep(ota_schedule.next_check_in(cfg))
    n = interval or (cfg.get("update_scheduling") or {}).get("min_update_interval_sec") or 3600
    d = _device_hash(cfg)
    offset = ((d[2] << 24) | (d[3] << 16) | (d[4] << 8) | d[5]) % n
    t = int(time.time() if now is None else now)
    return n - (t - offset) % n


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
