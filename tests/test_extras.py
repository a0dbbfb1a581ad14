"""The mission's device extras, for real through the GitHub-compatible server, under CPython
and inside the MicroPython unix interpreter.

Only what cannot exist here is faked: tests/device/fake_machine.py and fake_network.py are
copied into the device folder as machine.py / network.py (a `machine` with Pin is what makes
ota.OTA drive hardware; without them its hardware calls are no-ops). They record every call, and
tests/device/drive.py returns the records as "hw" and "net". Transports other than wifi are
user modules ota_<name>.py in the device folder, as on a real device.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import time

from conftest import DELTA_CHANGED, DELTA_V3, MICROPYTHON, PY, TESTS, V1, Device, at_v1, check_installed, dev_branch

FAKES = TESTS / "device"
NOT_APP = {"machine.py", "network.py", "main.py", "ota_cellular.py", "ota_lora.py", "health.py", "healthy.txt", "cell.txt"}


def add_fakes(path):
    """tests/device/fake_machine.py and fake_network.py as the device's machine.py and network.py."""
    for n in ("machine", "network"):
        shutil.copy(FAKES / ("fake_%s.py" % n), path / (n + ".py"))


class HWDevice(Device):
    """A device folder with the fake machine/network modules."""

    def __init__(self, path, kind, srv):
        super().__init__(path, kind, srv)
        add_fakes(self.path)

    def files(self):
        return {p: d for p, d in super().files().items() if p not in NOT_APP}

    def module(self, name, text):
        (self.path / (name + ".py")).write_text(text)


def hwdev(tmp_path, kind, srv, repo, name, **cfg):
    d = HWDevice(tmp_path / name, kind, srv)
    cfg = dict({"ssid": "net", "password": "pw"}, **cfg)
    d.config(channel="developer", branch=dev_branch(repo, d, name, repo[1][1]), **cfg)
    srv.clear_log()
    return d


def deferred(d, reason, env=None):
    """One run that must be deferred for `reason` without any HTTP request."""
    d.srv.clear_log()
    r = d.update(env=env)
    assert r["updated"] is False and r["result"]["deferred"] == reason and "error" not in r, r
    assert d.srv.requests == [] and r["requests"] == 0, d.srv.requests
    return r


def hhmm(minute):
    return "%02d:%02d" % divmod(minute % 1440, 60)


# ------------------------------------------------------------------ watchdog and LED
def test_watchdog_and_led_fed_during_downloads_and_backoff(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "wdt", watchdog_sec=30, led_pin="LED", chunk=256)
    r = d.update()
    assert r["updated"] is True, r
    check_installed(d, V1, repo[1][1])
    hw = r["hw"]
    assert hw["wdt"] == [0, 8388]  # capped at the RP2040's longest watchdog period
    assert hw["pin"] == ["LED", 1]
    assert hw["feed"] >= len(V1["data/big.bin"]) // 256 and hw["toggle"] == hw["feed"], hw

    # an up-to-date check (no download at all) behind two 500s: fed during the backoff waits
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", watchdog_sec=4, led_pin=25, backoff_sec=0.4)
    t = time.time()
    r = d.update()
    assert r["updated"] is False and "error" not in r and r["requests"] == 3, r
    assert time.time() - t >= 1.2  # 0.4 s + 0.8 s of backoff
    assert r["hw"]["wdt"] == [0, 4000] and r["hw"]["pin"] == [25, 1]
    assert r["hw"]["feed"] >= 10 and r["hw"]["toggle"] == r["hw"]["feed"], r["hw"]

    d.config(channel="developer", branch=d.cfg["branch"], ssid="net")  # off by default: no WDT, no LED
    r = d.update()
    assert r["hw"]["wdt"] is None and r["hw"]["pin"] is None and r["hw"]["feed"] == 0


# ------------------------------------------------------------------ battery gate
def test_battery_gate(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "bat", min_battery_v=3.4, battery_adc_pin=26, battery_divider=2)
    r = deferred(d, "min_battery_v", env={"FAKE_ADC": "30000"})  # 30000 / 65535 * 3.3 V * 2 = 3.02 V
    assert r["hw"]["adc"] == 26
    assert d.files() == {} and d.version() is None
    r = d.update(env={"FAKE_ADC": "40000"})  # 4.03 V
    assert r["updated"] is True, r
    check_installed(d, V1, repo[1][1])


# ------------------------------------------------------------------ rate limit
def test_min_interval_persisted_across_runs(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "interval", min_interval_sec=3600)
    assert d.update()["updated"] is True
    state = d.path / "ota_state.json"
    last = json.loads(state.read_text())["last"]
    assert abs(last - time.time()) < 30
    deferred(d, "min_interval_sec")  # a new process: the interval comes from flash
    state.write_text(json.dumps({"last": last - 4000}))  # an hour and more ago: due
    r = d.update()
    assert r["updated"] is False and r["result"]["deferred"] is None and r["requests"] == 1, r
    assert json.loads(state.read_text())["last"] >= last
    state.write_text(json.dumps({"last": last + 10 ** 6}))  # the clock went back (reset after reboot): due
    assert d.update()["requests"] == 1


# ------------------------------------------------------------------ canary share
def _share(dev_id, repo_name="app"):
    h = hashlib.sha1(dev_id + repo_name.encode()).digest()
    return (h[0] * 256 + h[1]) % 100


def test_canary_percent_split_by_device_id(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "canary", canary_percent=30)
    r = d.run("canary")
    want = [i for i in range(200) if _share(b"dev%d" % i) < 30]
    assert r["through"] == want, r  # deterministic: the same ids on both interpreters
    assert 40 <= len(want) <= 80
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", canary_percent=0)
    assert d.run("canary")["through"] == []
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", canary_percent=100)
    assert d.run("canary")["through"] == list(range(200))
    assert srv.requests == []  # the gate itself asks nobody


def test_canary_percent_end_to_end(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "canary0", canary_percent=0, device_id="dev1")
    deferred(d, "canary_percent")
    # no device_id: machine.unique_id() decides
    ids = [b"board%d" % i for i in range(40)]
    inside = next(i for i in ids if _share(i) < 50)
    outside = next(i for i in ids if _share(i) >= 50)
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", canary_percent=50)
    deferred(d, "canary_percent", env={"FAKE_UID": outside.decode()})
    r = d.update(env={"FAKE_UID": inside.decode()})
    assert r["updated"] is True, r
    check_installed(d, V1, repo[1][1])


# ------------------------------------------------------------------ health hook
def test_health_hook_defers(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "health", health_hook="health")
    d.module("health", "def healthy():\n    try:\n        open('healthy.txt').close()\n        return True\n"
                       "    except OSError:\n        return False\n")
    deferred(d, "health_hook")
    (d.path / "healthy.txt").write_text("1")
    assert d.update()["updated"] is True
    check_installed(d, V1, repo[1][1])


# ------------------------------------------------------------------ windows
WINDOW_CASES = [  # (windows, minute of the day, open?)
    ([], 0, True), ([], 1439, True),
    (["09:00-17:00"], 9 * 60, True), (["09:00-17:00"], 17 * 60 - 1, True),
    (["09:00-17:00"], 17 * 60, False), (["09:00-17:00"], 8 * 60 + 59, False),
    (["22:30-06:00"], 23 * 60, True), (["22:30-06:00"], 0, True), (["22:30-06:00"], 5 * 60 + 59, True),
    (["22:30-06:00"], 6 * 60, False), (["22:30-06:00"], 22 * 60 + 29, False), (["22:30-06:00"], 12 * 60, False),
    (["01:00-02:00", "13:00-14:00"], 13 * 60 + 30, True), (["01:00-02:00", "13:00-14:00"], 12 * 60, False),
    (["03:00-03:00"], 17 * 60, True),  # start == end: the whole day
]


def test_windows_logic_on_both_interpreters(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "wlogic")
    (d.path / "cases.json").write_text(json.dumps(WINDOW_CASES))
    script = ("import sys, json\nsys.path.insert(0, '')\nimport ota, ota_schedule\n"
              "print(json.dumps([ota_schedule.in_windows(w, m) for w, m, _ in json.load(open('cases.json'))]))\n"
              "for w in ('9:00-17:00', '09:00-24:00', '09:00', '09:00-10:00-11:00', 'ab:cd-10:00'):\n"
              "    try:\n        ota.check_config({'owner': 'o', 'repo': 'r', 'windows': [w]})\n"
              "        print('accepted', w)\n    except ota.OTAError as e:\n        print(e)\n")
    exe = [sys.executable] if kind == "cpython" else [str(MICROPYTHON)]
    p = subprocess.run(exe + ["-c", script], cwd=d.path, capture_output=True, text=True, timeout=30)
    lines = p.stdout.splitlines()
    assert json.loads(lines[0]) == [c[2] for c in WINDOW_CASES], p.stdout + p.stderr
    assert len(lines) == 6 and all('\'windows\' entries must be "HH:MM-HH:MM"' in x for x in lines[1:]), lines


def test_windows_end_to_end(tmp_path, kind, srv, repo):
    t = time.localtime()
    now = t.tm_hour * 60 + t.tm_min
    later = "%s-%s" % (hhmm(now + 60), hhmm(now + 120))  # closed now
    d = hwdev(tmp_path, kind, srv, repo, "win", windows=[later])
    deferred(d, "windows")
    # a window around now (it crosses midnight when now is near it), and one that crosses midnight
    # the other way: open everywhere but in the next hour or two
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", windows=[later, "%s-%s" % (hhmm(now + 150), hhmm(now + 60))])
    assert d.update()["updated"] is True
    check_installed(d, V1, repo[1][1])
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", windows=[])  # empty: always
    r = d.update()
    assert r["result"]["deferred"] is None and r["requests"] == 1, r


# ------------------------------------------------------------------ connectivity
CELLULAR = "def connect(cfg):\n    open('cell.txt', 'w').write(cfg['repo'])\n    return %s\n"


def test_transport_fallback_order(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "net", transports=["wifi", "cellular", "lora"],
              connect_timeout_sec=0.3, watchdog_sec=5)
    d.module("ota_cellular", CELLULAR % "True")
    t = time.time()
    r = d.update(env={"FAKE_WIFI": "down"})
    assert r["transport"] == "cellular" and r["updated"] is True, r
    assert time.time() - t >= 0.3  # waited connect_timeout_sec for the WLAN
    assert r["net"]["active"] is True and r["net"]["connect"] == ["net", "pw"] and r["net"]["polls"] > 2
    assert r["hw"]["feed"] > 2  # the watchdog is fed while waiting for the WLAN
    assert (d.path / "cell.txt").read_text() == "app"
    check_installed(d, V1, repo[1][1])

    d.module("ota_cellular", CELLULAR % "False")  # cellular fails too: the user's LoRa module
    d.module("ota_lora", "def connect(cfg):\n    return True\n")
    assert d.update(env={"FAKE_WIFI": "down"})["transport"] == "lora"
    r = d.update()  # WiFi up: first in the order
    assert r["transport"] == "wifi" and r["net"]["connect"] == ["net", "pw"], r

    (d.path / "ota_lora.py").unlink()  # nothing works: one clear error, no request
    srv.clear_log()
    r = d.update(env={"FAKE_WIFI": "down"})
    assert r["error"] == "no network: wifi, cellular, lora failed", r
    assert srv.requests == []


def test_metered_transport_turns_on_deltas(tmp_path, dsrv, drepo, kind):
    cfg = dict(transports=["wifi", "cellular"], ssid="net", connect_timeout_sec=0.2)
    for link, want in (("cellular", "delta"), ("wifi", "gzip")):
        d = at_v1(tmp_path / link, kind, dsrv, drepo, 3, **cfg)  # enable_delta_updates is off
        add_fakes(d.path)
        (d.path / "ota_cellular.py").write_text(CELLULAR % "True")
        r = d.update(env={"FAKE_WIFI": "down" if link == "cellular" else "up"})
        assert r["transport"] == link and r["updated"] is True, r
        (d.path / "cell.txt").unlink(missing_ok=True)
        for n in NOT_APP:
            (d.path / n).unlink(missing_ok=True)
        check_installed(d, DELTA_V3, drepo[1][3])
        m = r["result"]["methods"]
        assert {m[p][0] for p in DELTA_CHANGED} == {want}, m


# ------------------------------------------------------------------ reset_mode (through main.main)
def test_reset_mode(tmp_path, kind, srv, repo):
    for mode, want in (("hard", {"reset": 1, "soft_reset": 0}), ("soft", {"reset": 0, "soft_reset": 1}),
                       ("none", {"reset": 0, "soft_reset": 0})):
        d = hwdev(tmp_path, kind, srv, repo, "reset" + mode, reset_mode=mode)
        shutil.copy(PY / "main.py", d.path / "main.py")
        r = d.run("main")
        assert r["updated"] is True and "OTA: updated" in d.out, d.out
        assert {k: r["hw"][k] for k in want} == want, (mode, r["hw"])
        r = d.run("main")  # up to date: no reset
        assert r["updated"] is False and r["hw"]["reset"] == r["hw"]["soft_reset"] == 0, r
        check_installed(d, V1, repo[1][1])


def test_deferred_is_printed_by_main(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "mainbat", min_battery_v=3.0)
    shutil.copy(PY / "main.py", d.path / "main.py")
    r = d.run("main", env={"FAKE_ADC": "1000"})
    assert r["updated"] is False and "OTA: deferred (min_battery_v)" in d.out, d.out
    assert srv.requests == [] and r["hw"]["reset"] == 0
