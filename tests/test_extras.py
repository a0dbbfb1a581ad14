"""The headless and scheduling features (python/ota_hw.py, ota_schedule.py, ota_time.py), for real
through the GitHub-compatible server, under CPython and inside the MicroPython unix interpreter.

Only what cannot exist here is faked (tests/sim/field.py): tests/device/fake_machine.py,
fake_network.py and fake_ntptime.py are copied into the device folder as machine.py, network.py
and ntptime.py (a `machine` with Pin is what makes ota.OTA drive hardware; without them its
hardware calls are no-ops). They record every call: the watchdog's longest unfed gap, each value
written to a pin with its time, the ADC pin. tests/device/field_drive.py gives the device a board's
unset wall clock (FAKE_EPOCH). Transports other than wifi in the old style are user modules
ota_<name>.py in the device folder.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import time

from conftest import DELTA_CHANGED, DELTA_V3, MICROPYTHON, PY, V1, at_v1, check_installed, dev_branch
from sim.field import NOT_APP, FieldDevice, add_fakes

# every configuration key of the documentation we follow (issue 10), with the documented values
DOCUMENTED = {
    "watchdog_timeout_ms": 8000, "status_led_pin": "LED", "battery_adc_pin": 26, "battery_divider_ratio": 2.0,
    "battery_v_max": 4.2, "battery_v_min": 3.0, "min_battery_percent": 20,
    "update_scheduling": {"min_update_interval_sec": 3600, "update_window_start_hour": 10, "update_window_end_hour": 15,
                          "power_source": "solar", "min_battery_percent": 20, "max_crashes_before_delay": 3,
                          "rollout_percent": 20},
    "cellular_enabled": True, "cellular_apn": "your.apn.com", "cellular_uart": 1, "cellular_tx_pin": 4,
    "cellular_rx_pin": 5, "cellular_baud": 115200, "cellular_tech": "nbiot", "cellular_cost_per_mb": 0.50,
    "lora_enabled": True, "lora_spi_pins": [18, 19, 16], "lora_cs_pin": 17, "lora_rst_pin": 20, "lora_freq": 915000000,
}
# our earlier names: alias -> (documented key, the value the alias gives it)
ALIASES = {"watchdog_sec": ("watchdog_timeout_ms", 4000), "led_pin": ("status_led_pin", 25),
           "min_battery_v": ("min_battery_v", 3.3), "battery_divider": ("battery_divider_ratio", 3),
           "min_interval_sec": ("update_scheduling.min_update_interval_sec", 600),
           "canary_percent": ("update_scheduling.rollout_percent", 30),
           "windows": ("windows", ["22:00-06:00"])}
ALIAS_CFG = {"watchdog_sec": 4, "led_pin": 25, "min_battery_v": 3.3, "battery_divider": 3, "min_interval_sec": 600,
             "canary_percent": 30, "windows": ["22:00-06:00"]}


def hwdev(tmp_path, kind, srv, repo, name, **cfg):
    d = FieldDevice(tmp_path / name, kind, srv)
    cfg = dict({"ssid": "net", "password": "pw"}, **cfg)
    d.config(channel="developer", branch=dev_branch(repo, d, name, repo[1][1]), **cfg)
    srv.clear_log()
    return d


def reconfig(d, **cfg):
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", password="pw", **cfg)


def deferred(d, reason, env=None):
    """One run that must be deferred for `reason` without any HTTP request."""
    d.srv.clear_log()
    r = d.update(env=env)
    assert r["updated"] is False and r["result"]["deferred"] == reason and "error" not in r, r
    assert d.srv.requests == [] and r["requests"] == 0, d.srv.requests
    return r


def hhmm(minute):
    return "%02d:%02d" % divmod(minute % 1440, 60)


def run_script(kind, cwd, script):
    exe = [sys.executable] if kind == "cpython" else [str(MICROPYTHON)]
    p = subprocess.run(exe + ["-c", "import sys\nsys.path.insert(0, '')\n" + script], cwd=cwd, capture_output=True,
                       text=True, timeout=60, env={"MICROPYPATH": "", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


# ------------------------------------------------------------------ the documented keys
def test_documented_keys_and_aliases_load(tmp_path, kind, srv, repo):
    """Every documented key loads with no unknown key (main() prints none), each alias gives its
    documented key the same meaning, and an alias that disagrees with its key is an error."""
    d = hwdev(tmp_path, kind, srv, repo, "keys")
    (d.path / "documented.json").write_text(json.dumps(dict(DOCUMENTED, owner="o", repo="r")))
    (d.path / "aliases.json").write_text(json.dumps(dict(ALIAS_CFG, owner="o", repo="r")))
    out = run_script(kind, d.path, (
        "import json, ota\n"
        "c = ota.load_config('documented.json')\n"
        "print(json.dumps([c['_unknown'], c['_features'], c['transports'], c['update_scheduling'], c['watchdog_timeout_ms'],"
        " c['http_timeout_sec']]))\n"
        "c = ota.load_config('aliases.json')\n"
        "print(json.dumps([c['_unknown'], c['watchdog_timeout_ms'], c['status_led_pin'], c['battery_divider_ratio'],"
        " c['update_scheduling'], c['windows'], c['min_battery_v']]))\n"
        "for k, v in (('watchdog_timeout_ms', 5000), ('status_led_pin', 7), ('battery_divider_ratio', 2)):\n"
        "    x = json.load(open('aliases.json'))\n"
        "    x[k] = v\n"
        "    try:\n"
        "        ota.check_config(x)\n"
        "        print('accepted', k)\n"
        "    except ota.OTAError as e:\n"
        "        print(e)\n"))
    lines = out.splitlines()
    unknown, features, transports, sched, wdt, timeout = json.loads(lines[0])
    assert unknown == [] and features == ["ota_cellular", "ota_hw", "ota_lora", "ota_schedule"], lines[0]
    assert transports == ["wifi", "cellular", "lora"]  # the documented fallback order
    assert sched == DOCUMENTED["update_scheduling"] and wdt == 8000 and timeout == 7, lines[0]
    unknown, wdt, led, divider, sched, windows, min_v = json.loads(lines[1])
    assert unknown == [] and wdt == 4000 and led == 25 and divider == 3 and windows == ["22:00-06:00"] and min_v == 3.3
    assert sched["min_update_interval_sec"] == 600 and sched["rollout_percent"] == 30, sched
    assert lines[2:] == ["ota_config.json: 'watchdog_timeout_ms' and its earlier name 'watchdog_sec' disagree: give one",
                         "ota_config.json: 'status_led_pin' and its earlier name 'led_pin' disagree: give one",
                         "ota_config.json: 'battery_divider_ratio' and its earlier name 'battery_divider' disagree: "
                         "give one"], lines

    # main() with every documented key (WiFi up: cellular and LoRa are not needed; the scheduling
    # keys set so that they let the update through now): no "unknown" line, the update done
    now = time.localtime().tm_hour
    cfg = json.loads(json.dumps(DOCUMENTED))
    cfg["update_scheduling"].update(update_window_start_hour=now, update_window_end_hour=(now + 1) % 24,
                                    power_source="mains", rollout_percent=100, min_battery_percent=20)
    reconfig(d, **cfg)
    shutil.copy(PY / "main.py", d.path / "main.py")
    for n in ("documented.json", "aliases.json"):
        (d.path / n).unlink()
    r = d.run("main")
    assert r["updated"] is True and "OTA: updated" in d.out and "unknown" not in d.out, d.out
    check_installed(d, V1, repo[1][1])


BAD = [  # (key: value, the error's text): each one OTAError naming the key
    ({"watchdog_timeout_ms": "8000"}, "'watchdog_timeout_ms' must be a whole number >= 0"),
    ({"watchdog_timeout_ms": 500}, "'watchdog_timeout_ms' must be 0 (off) or at least 1000"),
    ({"status_led_pin": -1}, "'status_led_pin' must be a pin number or name"),
    ({"battery_adc_pin": 26.5}, "'battery_adc_pin' must be a whole number"),
    ({"battery_divider_ratio": 0}, "'battery_divider_ratio' must be above 0"),
    ({"battery_v_max": 3.0}, "'battery_v_max' must be above 'battery_v_min'"),
    ({"min_battery_percent": 120}, "'min_battery_percent' must be <= 100"),
    ({"update_scheduling": [1]}, "'update_scheduling' must be a mapping"),
    ({"update_scheduling": {"min_update_interval_sec": -5}}, "'update_scheduling.min_update_interval_sec' must be a whole"),
    ({"update_scheduling": {"update_window_start_hour": 10}}, "'update_scheduling.update_window_start_hour' (0-23) and"),
    ({"update_scheduling": {"update_window_start_hour": 25, "update_window_end_hour": 3}}, "(0-23) and"),
    ({"update_scheduling": {"power_source": "wind"}}, "'update_scheduling.power_source' must be one of solar|battery|mains"),
    ({"update_scheduling": {"max_crashes_before_delay": True}}, "'update_scheduling.max_crashes_before_delay' must be a whole"),
    ({"update_scheduling": {"rollout_percent": 101}}, "'rollout_percent' must be <= 100"),
    ({"update_scheduling": {"min_battery_percent": "low"}}, "'update_scheduling.min_battery_percent' must be a number"),
    ({"update_scheduling": {"rollout_percent": 10}, "canary_percent": 20}, "'canary_percent' and 'update_scheduling.rollout_percent' disagree"),
    ({"cellular_enabled": "yes"}, "'cellular_enabled' must be true or false"),
    ({"cellular_apn": 5}, "'cellular_apn' must be a string"),
    ({"cellular_uart": -1}, "'cellular_uart' must be a whole number"),
    ({"cellular_baud": 10}, "'cellular_baud' must be a baud rate"),
    ({"cellular_tech": "5g"}, "'cellular_tech' must be one of auto|gsm|lte|catm|nbiot"),
    ({"cellular_cost_per_mb": -1}, "'cellular_cost_per_mb' must be a number >= 0"),
    ({"lora_enabled": 1}, "'lora_enabled' must be true or false"),
    ({"lora_spi_pins": [18, 19]}, "'lora_spi_pins' must be [SCK, MOSI, MISO]"),
    ({"lora_cs_pin": "17"}, "'lora_cs_pin' must be a whole number"),
    ({"lora_freq": 915}, "'lora_freq' must be in Hz"),
]


def test_wrong_values_name_the_key(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "bad")
    (d.path / "bad.json").write_text(json.dumps([b for b, _ in BAD]))
    out = run_script(kind, d.path, (
        "import json, ota\n"
        "for x in json.load(open('bad.json')):\n"
        "    x.update(owner='o', repo='r')\n"
        "    try:\n"
        "        ota.check_config(x)\n"
        "        print('accepted', x)\n"
        "    except ota.OTAError as e:\n"
        "        print(e)\n")).splitlines()
    assert len(out) == len(BAD)
    for line, (_, want) in zip(out, BAD):
        assert line.startswith("ota_config.json: ") and want in line, (line, want)


# ------------------------------------------------------------------ watchdog
def test_watchdog_longest_gap_under_the_timeout(tmp_path, kind, srv, repo):
    """A slow update with retries: two 500s (backoff waits), a tree that trickles in (three
    0.8 s pauses: 2.4 s in all, within one JSON document), a file that stalls 2.5 s (longer than the
    watchdog: the socket timeout stays under it, the read fails and is retried with a Range). The
    fake WDT records the longest time between two feeds: under the timeout."""
    d = hwdev(tmp_path, kind, srv, repo, "wdt", watchdog_timeout_ms=2000, backoff_sec=0.6, retries=4, chunk=512)
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    for at in (400, 1200, 2000):
        srv.add_fault("/git/trees/", "stall", after=at, seconds=0.8)
    srv.add_fault("data/big.bin", "stall", after=6000, seconds=2.5)
    t = time.time()
    r = d.update()
    assert r["updated"] is True and "error" not in r, r
    check_installed(d, V1, repo[1][1])
    hw = r["hw"]
    assert hw["wdt"] == [0, 2000], hw
    assert hw["max_gap_ms"] < 2000, hw  # never long enough for the watchdog to reset the board
    assert time.time() - t > 0.6 + 1.2 + 2.4 + 1.0  # it was slow: backoffs, pauses, a timeout
    big = [x for x in srv.requests if x["path"].endswith("/data/big.bin")]
    assert len(big) >= 2 and big[-1]["headers"].get("Range"), big  # resumed
    assert r["requests"] == 3 + 1 + 14 + 1, r

    # the RP2040's longest period (8388 ms) caps a longer one; the earlier watchdog_sec too
    reconfig(d, watchdog_sec=30)
    assert d.update()["hw"]["wdt"] == [0, 8388]
    reconfig(d)  # off by default
    assert d.update()["hw"]["wdt"] is None


# ------------------------------------------------------------------ status LED
def segments(io):
    """[(value, ms it lasted)] of a pin's recorded values (the last one: until the end, -1)."""
    out = []
    for i, (v, t) in enumerate(io):
        if out and out[-1][0] == v:
            continue
        out.append([v, t])
    return [(v, (out[i + 1][1] - t) if i + 1 < len(out) else -1) for i, (v, t) in enumerate(out)]


def quick(seg):
    return 80 <= seg[1] <= 450


def test_status_led_patterns(tmp_path, kind, srv, repo):
    """The documented patterns, as the recorded values of the LED pin: 2 quick blinks on the WiFi
    attempt, solid once connected, brief pulses while bytes arrive, a quick blink per completed
    file, 3 quick blinks on success, off at the end; a 500 ms blink on a failure."""
    d = hwdev(tmp_path, kind, srv, repo, "led", status_led_pin="LED", chunk=256)
    for at in range(2000, 40000, 2000):  # big.bin arrives over about 1.2 s
        srv.add_fault("data/big.bin", "stall", after=at, seconds=0.06)
    r = d.update()
    assert r["updated"] is True, r
    s = segments(r["hw"]["io"]["LED"])
    assert s[0][0] == 0  # off at the start
    # the WiFi attempt: on, off, on, off, 100 ms each, then solid once connected
    assert [v for v, _ in s[1:5]] == [1, 0, 1, 0] and all(quick(x) for x in s[1:5]), s[:6]
    assert s[5][0] == 1
    # success: 3 quick blinks (after 100 ms dark), then off
    tail = s[-7:]
    assert [v for v, _ in tail] == [0, 1, 0, 1, 0, 1, 0] and all(quick(x) for x in tail[:-1]), tail
    # in between: lit, with a quick blink (100 ms dark) per file, and while big.bin trickles in,
    # pulses: 200 ms dark, 50 ms lit
    mid = s[5:-7]
    dark = [x for x in mid if x[0] == 0]
    assert len([x for x in dark if 80 <= x[1] < 190]) >= 12, mid  # one per file (14)
    assert len([x for x in dark if x[1] >= 190]) >= 2, mid  # pulses
    assert len([x for x in mid if x[0] == 1 and x[1] < 150]) >= 2, mid

    # up to date: no success blinks, off at the end
    r = d.update()
    s = segments(r["hw"]["io"]["LED"])
    assert r["updated"] is False and s[-1][0] == 0 and [v for v, _ in s[-3:]] != [1, 0, 1], s
    # a failure (the branch is gone): one long blink of 500 ms, then off
    reconfig(d, status_led_pin="LED", retries=0)
    d.cfg["branch"] = "no-such-branch"
    (d.path / "ota_config.json").write_text(json.dumps(d.cfg))
    r = d.update()
    assert "404" in r.get("error", ""), r
    s = segments(r["hw"]["io"]["LED"])
    assert s[-2][0] == 1 and 450 <= s[-2][1] <= 1000 and s[-1][0] == 0, s


# ------------------------------------------------------------------ battery
def adc(volts, divider):
    return str(int(volts / divider / 3.3 * 65535))


def test_battery_percent_gate(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "bat", battery_adc_pin=26, battery_divider_ratio=2.0, battery_v_max=4.2,
              battery_v_min=3.0, min_battery_percent=50)
    r = deferred(d, "min_battery_percent", env={"FAKE_ADC": adc(3.5, 2.0)})  # 41 %
    assert r["hw"]["adc"] == 26 and d.files() == {} and d.version() is None
    reason = d.errors()[-1]["reason"]
    assert reason.startswith("battery 41% (3.50 V) is below min_battery_percent 50"), reason
    r = d.update(env={"FAKE_ADC": adc(4.0, 2.0)})  # 83 %
    assert r["updated"] is True, r
    check_installed(d, V1, repo[1][1])
    # the divider's default is 1.0: the same reading is half the voltage, an empty battery
    reconfig(d, battery_adc_pin=26, min_battery_percent=50, force=True)
    deferred(d, "min_battery_percent", env={"FAKE_ADC": adc(4.0, 2.0)})
    assert "battery 0% (2.00 V)" in d.errors()[-1]["reason"]


def test_battery_voltage_gate_earlier_name(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "batv", min_battery_v=3.4, battery_adc_pin=26, battery_divider=2)
    r = deferred(d, "min_battery_v", env={"FAKE_ADC": "30000"})  # 30000 / 65535 * 3.3 V * 2 = 3.02 V
    assert r["hw"]["adc"] == 26
    assert d.files() == {} and d.version() is None
    r = d.update(env={"FAKE_ADC": "40000"})  # 4.03 V
    assert r["updated"] is True, r
    check_installed(d, V1, repo[1][1])


def test_deferred_is_printed_by_main(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "mainbat", min_battery_v=3.0)
    shutil.copy(PY / "main.py", d.path / "main.py")
    r = d.run("main", env={"FAKE_ADC": "1000"})
    assert r["updated"] is False and "OTA: deferred (min_battery_v)" in d.out, d.out
    assert srv.requests == [] and r["hw"]["reset"] == 0


# ------------------------------------------------------------------ adaptation
def test_retries_adapt_to_the_wifi_signal(tmp_path, kind, srv, repo):
    """retries 0 and two 500s: on a weak link (-85 dBm: +2 retries) the check gets through; on a
    strong one it gives up after its one attempt."""
    d = hwdev(tmp_path, kind, srv, repo, "rssi", status_led_pin=25, retries=0, backoff_sec=0.05)
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    r = d.update(env={"FAKE_RSSI": "-85"})
    assert r["updated"] is True and r["requests"] == 2 + 1 + 1 + 14, r
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    r = d.update(env={"FAKE_RSSI": "-50"})
    assert r["error"].endswith("(gave up after 1 attempts)"), r


def test_chunk_adapts_to_free_memory(tmp_path, kind, srv, repo):
    """The transfer buffer: the default 1024 grows to 4096 with plenty of memory; one too big for
    the free memory shrinks (MicroPython's default heap is 2 MB: 1 MB chunks do not fit)."""
    d = hwdev(tmp_path, kind, srv, repo, "chunk", status_led_pin=25, debug=True)
    assert d.update()["updated"] is True
    assert "ota: chunk 4096 bytes for " in d.out
    reconfig(d, status_led_pin=25, debug=True, chunk=1 << 20, force=True)
    assert d.update()["updated"] is True
    if kind == "micropython":
        n = int(d.out.split("ota: chunk ")[1].split()[0])
        assert 4096 <= n <= 131072 and n % 256 == 0, d.out[:2000]
    else:
        assert "ota: chunk " not in d.out  # 1 MB is fine with CPython's memory


# ------------------------------------------------------------------ the update_scheduling block
def test_min_update_interval_persisted_across_runs(tmp_path, kind, srv, repo):
    for name, cfg, reason in (("interval", {"update_scheduling": {"min_update_interval_sec": 3600}}, "min_update_interval_sec"),
                              ("interval_old", {"min_interval_sec": 3600}, "min_interval_sec")):
        d = hwdev(tmp_path, kind, srv, repo, name, **cfg)
        assert d.update()["updated"] is True
        last = d.state()["last"]
        assert abs(last - time.time()) < 30
        deferred(d, reason)  # a new process: the interval comes from flash
        (d.path / "ota_state.json").write_text(json.dumps({"last": last - 4000}))  # over an hour ago: due
        r = d.update()
        assert r["updated"] is False and r["result"]["deferred"] is None and r["requests"] == 1, r
        assert d.state()["last"] >= last
        (d.path / "ota_state.json").write_text(json.dumps({"last": last + 10 ** 6}))  # the clock went back: due
        assert d.update()["requests"] == 1


WINDOW_CASES = [  # (windows, minute of the day, open?)
    ([], 0, True), ([], 1439, True),
    (["09:00-17:00"], 9 * 60, True), (["09:00-17:00"], 17 * 60 - 1, True),
    (["09:00-17:00"], 17 * 60, False), (["09:00-17:00"], 8 * 60 + 59, False),
    (["22:30-06:00"], 23 * 60, True), (["22:30-06:00"], 0, True), (["22:30-06:00"], 5 * 60 + 59, True),
    (["22:30-06:00"], 6 * 60, False), (["22:30-06:00"], 22 * 60 + 29, False), (["22:30-06:00"], 12 * 60, False),
    (["01:00-02:00", "13:00-14:00"], 13 * 60 + 30, True), (["01:00-02:00", "13:00-14:00"], 12 * 60, False),
    (["03:00-03:00"], 17 * 60, True),  # start == end: the whole day
    (["22:00-00:00"], 23 * 60 + 59, True), (["22:00-00:00"], 0, False),  # update_window_end_hour 24
]


def test_windows_logic_on_both_interpreters(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "wlogic")
    (d.path / "cases.json").write_text(json.dumps(WINDOW_CASES))
    out = run_script(kind, d.path, (
        "import json, ota, ota_schedule\n"
        "print(json.dumps([ota_schedule.in_windows(w, m) for w, m, _ in json.load(open('cases.json'))]))\n"
        "print(json.dumps([ota_schedule._hours({'update_window_start_hour': a, 'update_window_end_hour': b})"
        " for a, b in ((10, 15), (22, 6), (22, 24), (0, 0))]))\n"
        "for w in ('9:00-17:00', '09:00-24:00', '09:00', '09:00-10:00-11:00', 'ab:cd-10:00'):\n"
        "    try:\n        ota.check_config({'owner': 'o', 'repo': 'r', 'windows': [w]})\n"
        "        print('accepted', w)\n    except ota.OTAError as e:\n        print(e)\n"))
    lines = out.splitlines()
    assert json.loads(lines[0]) == [c[2] for c in WINDOW_CASES], out
    assert json.loads(lines[1]) == [["10:00-15:00"], ["22:00-06:00"], ["22:00-00:00"], ["00:00-00:00"]]
    assert len(lines) == 7 and all('\'windows\' entries must be "HH:MM-HH:MM"' in x for x in lines[2:]), lines


def test_update_window_hours_end_to_end(tmp_path, kind, srv, repo):
    """update_window_start_hour/end_hour: closed in the next hours, open around now (crossing
    midnight when now is near it), and the earlier "windows" alike."""
    h = time.localtime().tm_hour
    d = hwdev(tmp_path, kind, srv, repo, "hours", update_scheduling={"update_window_start_hour": (h + 2) % 24,
                                                                      "update_window_end_hour": (h + 4) % 24})
    deferred(d, "update_window_start_hour")
    # open from the hour after the closed one round to the present hour: crosses midnight unless h >= 23
    reconfig(d, update_scheduling={"update_window_start_hour": (h + 5) % 24, "update_window_end_hour": (h + 1) % 24})
    assert d.update()["updated"] is True
    check_installed(d, V1, repo[1][1])
    t = time.localtime()
    now = t.tm_hour * 60 + t.tm_min
    later = "%s-%s" % (hhmm(now + 60), hhmm(now + 120))
    reconfig(d, windows=[later])
    deferred(d, "windows")
    reconfig(d, windows=[later, "%s-%s" % (hhmm(now + 150), hhmm(now + 60))])
    r = d.update()
    assert r["result"]["deferred"] is None and r["requests"] == 1, r


def at_local(hour):
    """Unix time of today at `hour`:00 local time (a FAKE_EPOCH for a clock that is set)."""
    t = time.localtime()
    return str(int(time.mktime((t.tm_year, t.tm_mon, t.tm_mday, hour, 0, 0, 0, 0, -1))))


def test_power_source_solar(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "solar", update_scheduling={"power_source": "solar"})
    for hour in (9, 16, 20, 3):
        deferred(d, "power_source", env={"FAKE_EPOCH": at_local(hour)})
    r = d.update(env={"FAKE_EPOCH": at_local(12)})
    assert r["updated"] is True, r
    reconfig(d, update_scheduling={"power_source": "battery"})  # no solar window
    assert d.update(env={"FAKE_EPOCH": at_local(20)})["result"]["deferred"] is None


def test_min_battery_percent_in_the_block(tmp_path, kind, srv, repo):
    """update_scheduling.min_battery_percent brings in the battery gate (ota_hw.py) by itself."""
    d = hwdev(tmp_path, kind, srv, repo, "blockbat", update_scheduling={"min_battery_percent": 60})
    deferred(d, "min_battery_percent", env={"FAKE_ADC": adc(3.6, 1.0)})  # 50 %
    assert "below min_battery_percent 60" in d.errors()[-1]["reason"]
    assert d.update(env={"FAKE_ADC": adc(3.8, 1.0)})["updated"] is True  # 66 %


def test_crashes_delay_updates(tmp_path, kind, srv, repo):
    """max_crashes_before_delay: boots after a watchdog reset, and a release whose trial failed,
    are counted across boots (ota_state.json); more than the limit in 24 h defers the update."""
    d = hwdev(tmp_path, kind, srv, repo, "crash", update_scheduling={"max_crashes_before_delay": 2})
    assert d.update()["updated"] is True  # v1 installed, on trial
    run_script(kind, d.path, "import ota\nota.confirm('the application raised')\n")  # the trial fails
    d.run("recover")  # the next boot: a crash (the trial failed), and the rollback
    assert len(d.state()["crashes"]) == 1
    for _ in range(2):
        d.run("recover", env={"FAKE_RESET_CAUSE": "3"})  # machine.WDT_RESET
    d.run("recover", env={"FAKE_RESET_CAUSE": "1"})  # a power-on: no crash
    assert len(d.state()["crashes"]) == 3
    deferred(d, "max_crashes_before_delay")
    crashes = d.state()["crashes"]
    assert all(abs(t - time.time()) < 60 for t in crashes), crashes  # timed once the clock was known
    s = d.state()
    s["crashes"] = [t - 90000 for t in crashes[:2]] + crashes[2:]  # two of them over a day ago
    (d.path / "ota_state.json").write_text(json.dumps(s))
    r = d.update()
    assert r["result"]["deferred"] is None and r["result"]["checked"] and "error" not in r, r


# ------------------------------------------------------------------ the clock
def test_clock_from_ntp_or_the_date_header(tmp_path, kind, srv, repo):
    """A board's clock starts unset (2000-01-01 here). A window around the real hour and an
    interval need the time: from NTP when it answers (no extra request), else from the Date header
    of one request to the API server; never 2000-01-01."""
    h = time.localtime().tm_hour
    unset = 946684800  # 2000-01-01 00:00 UTC, or an hour of that day outside the window
    while time.localtime(unset).tm_hour == h:
        unset += 3600
    unset = {"FAKE_EPOCH": str(unset)}
    sched = {"update_window_start_hour": h, "update_window_end_hour": h + 1, "min_update_interval_sec": 60}
    d = hwdev(tmp_path, kind, srv, repo, "clock", update_scheduling=sched, debug=True)
    r = d.update(env=unset)  # NTP answers
    assert r["updated"] is True and r["hw"]["rtc"][0] >= 2024, r
    assert "clock set by NTP" in d.out and not [x for x in srv.requests if x["path"].endswith("/rate_limit")]
    assert abs(d.state()["last"] - time.time()) < 60

    srv.clear_log()
    (d.path / "ota_state.json").unlink()
    r = d.update(env=dict(unset, FAKE_NTP="down"))  # no NTP: the Date header
    assert r["result"]["deferred"] is None and "clock set from the Date header" in d.out, d.out
    assert srv.requests[0]["path"] == "/rate_limit" and r["requests"] == 2, srv.requests
    assert abs(d.state()["last"] - time.time()) < 60 and r["hw"]["rtc"][0] >= 2024
    # a window at the hour of the unset clock: closed, as the real time is outside it
    fake_hour = time.localtime(int(unset["FAKE_EPOCH"])).tm_hour
    reconfig(d, debug=True, update_scheduling=dict(sched, update_window_start_hour=fake_hour,
                                                   update_window_end_hour=fake_hour + 1))
    srv.clear_log()
    r = d.update(env=dict(unset, FAKE_NTP="down"))
    assert r["result"]["deferred"] == "update_window_start_hour" and r["requests"] == 1, r


# ------------------------------------------------------------------ rollout
def _share(dev_id, repo_name="app"):
    h = hashlib.sha1(dev_id + repo_name.encode()).digest()
    return (h[0] * 256 + h[1]) % 100


def test_rollout_percent_split_by_device_id(tmp_path, kind, srv, repo):
    for name, cfg in (("rollout", {"update_scheduling": {"rollout_percent": 30}}), ("rollout_top", {"rollout_percent": 30}),
                      ("canary", {"canary_percent": 30})):
        d = hwdev(tmp_path, kind, srv, repo, name, **cfg)
        r = d.run("canary")
        want = [i for i in range(200) if _share(b"dev%d" % i) < 30]
        assert r["through"] == want, r  # deterministic: the same ids on both interpreters
        assert 40 <= len(want) <= 80
    reconfig(d, update_scheduling={"rollout_percent": 0})
    assert d.run("canary")["through"] == []
    reconfig(d, update_scheduling={"rollout_percent": 100})
    assert d.run("canary")["through"] == list(range(200))
    assert srv.requests == []  # the gate itself asks nobody


def test_rollout_percent_end_to_end(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "rollout0", update_scheduling={"rollout_percent": 0}, device_id="dev1")
    deferred(d, "rollout_percent")
    # no device_id: machine.unique_id() decides
    ids = [b"board%d" % i for i in range(40)]
    inside = next(i for i in ids if _share(i) < 50)
    outside = next(i for i in ids if _share(i) >= 50)
    reconfig(d, canary_percent=50)
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


# ------------------------------------------------------------------ transports as user modules
CELLULAR = "def connect(cfg):\n    open('cell.txt', 'w').write(cfg['repo'])\n    return %s\n"


def test_transport_fallback_order(tmp_path, kind, srv, repo):
    d = hwdev(tmp_path, kind, srv, repo, "net", transports=["wifi", "cellular", "lora"],
              connect_timeout_sec=0.3, watchdog_sec=5)
    d.module("ota_cellular", CELLULAR % "True")  # a user's own module (no cellular_* key)
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
