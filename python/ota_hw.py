# ota_hw.py: the hardware layer of the updater: watchdog, status LED, battery, and what adapts to
# the hardware (retries to the WiFi signal, the transfer buffer to the free memory).
# A feature module (see ota._FEATURES): imported only when the configuration has one of its
# keys; copy it to the board then. Off a board (CPython, or the unix port, whose `machine` has
# no Pin) every call is a no-op; the tests put a fake machine.py in the device folder, which
# records every call. docs/fields.md has the LED patterns and the keys.
import time
from ota import OTAError, Kind, _board, _free_memory

_WDT_MAX_MS = 8388  # the RP2040 watchdog's longest period
_hw = None  # the Hardware of the OTA object (the battery gate's)

# key, type, default (README "Configuration"); the earlier names are aliases (check() folds them)
KEYS = (
    "watchdog_timeout_ms", Kind.WHOLE, None,  # machine.WDT period (0 or absent: none)
    "watchdog_sec", Kind.NUMBER, None,  # earlier name, in seconds
    "status_led_pin", Kind.ANY, None,  # the status LED, e.g. 25, or "LED" on a Pico W
    "led_pin", Kind.ANY, None,  # earlier name
    "battery_adc_pin", Kind.WHOLE, 29,  # the ADC reading the battery (through the divider)
    "battery_divider_ratio", Kind.NUMBER, None,  # battery volts per volt at the ADC (default 1.0)
    "battery_divider", Kind.NUMBER, None,  # earlier name
    "battery_v_max", Kind.NUMBER, 4.2,  # a full battery (100 %)
    "battery_v_min", Kind.NUMBER, 3.0,  # an empty battery (0 %)
    "min_battery_percent", Kind.NUMBER, 0,  # defer the update below this charge
    "min_battery_v", Kind.NUMBER, 0,  # earlier: defer below this voltage
)


def fold(cfg, path, key, alias, scale=1):
    # cfg[key] from its earlier name alias (times scale) when only that one is given (the alias is
    # then consumed: None); both given and different is an error naming both
    v, a = cfg[key], cfg[alias]
    if a is not None:
        a = a * scale
        if v is not None and v != a:
            raise OTAError("%s: '%s' and its earlier name '%s' disagree: give one" % (path, key, alias))
        cfg[key] = a
        cfg[alias] = None
    return cfg[key]


def check(cfg, path):
    ms = fold(cfg, path, "watchdog_timeout_ms", "watchdog_sec", 1000)
    if ms:
        ms = int(ms)
        if ms < 1000:
            raise OTAError("%s: 'watchdog_timeout_ms' must be 0 (off) or at least 1000, got %d" % (path, ms))
        cfg["watchdog_timeout_ms"] = ms = min(ms, _WDT_MAX_MS)
        # a blocking socket call must end before the watchdog bites: the timeouts stay under it
        t = max(0.5, ms / 1000 - 1)
        for k in ("connect_timeout_sec", "http_timeout_sec"):
            cfg[k] = min(cfg[k], t)
    led = fold(cfg, path, "status_led_pin", "led_pin")
    if led is not None and not (type(led) is int and led >= 0 or type(led) is str and led):
        raise OTAError('%s: \'status_led_pin\' must be a pin number or name (e.g. 25 or "LED"), got %r' % (path, led))
    if fold(cfg, path, "battery_divider_ratio", "battery_divider") is None:
        cfg["battery_divider_ratio"] = 1.0
    if not cfg["battery_divider_ratio"]:
        raise OTAError("%s: 'battery_divider_ratio' must be above 0" % path)
    if cfg["battery_v_max"] <= cfg["battery_v_min"]:
        raise OTAError("%s: 'battery_v_max' must be above 'battery_v_min'" % path)
    if cfg["min_battery_percent"] > 100:
        raise OTAError("%s: 'min_battery_percent' must be <= 100, got %r" % (path, cfg["min_battery_percent"]))


def attach(u):
    global _hw
    _hw = h = Hardware(u)
    h.prev, u.hw = u.hw, h  # OTA.feed() calls u.hw.feed(event, arg); each feature's handler the one before
    c = u.cfg
    if c["min_battery_percent"] or c["min_battery_v"]:
        u.gates.append(battery_gate)
    # the transfer buffer to the free memory: smaller when memory is short, larger for the default
    # when there is plenty (fewer, faster chunks)
    free = _free_memory()
    n = c["chunk"]
    want = n if free >= 16 * n else max(256, free // 16 & ~255)
    if n == 1024 and free > 131072:
        want = 4096
    if want != n:
        c["chunk"] = want
        u.buf = memoryview(bytearray(want))
        u.log("chunk %d bytes for %d free", want, free)


def battery_gate(u):
    # the reason to wait (its key) while the battery is low, recorded in ota_error.json; None off a
    # board (no ADC) or when it is charged enough
    c = u.cfg
    v = _hw.battery_volts()
    if v is None:
        return None
    p = percent(c, v)
    for key, low in (("min_battery_percent", p < c["min_battery_percent"]), ("min_battery_v", v < c["min_battery_v"])):
        if low:
            u.record("battery %d%% (%.2f V) is below %s %s: update deferred" % (p, v, key, c[key]))
            return key
    return None


def percent(c, v):
    # the charge in percent (0..100) of a battery at v volts, linear between battery_v_min and _max
    p = (v - c["battery_v_min"]) * 100 / (c["battery_v_max"] - c["battery_v_min"])
    return max(0, min(100, p))


def _ms():
    return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000)


def _since(t):
    # milliseconds since _ms() was t (ticks wrap around)
    return time.ticks_diff(_ms(), t) if hasattr(time, "ticks_diff") else _ms() - t


class Hardware:
    # The LED patterns (docs/fields.md): 2 quick blinks on the WiFi attempt, solid while connected
    # and processing, brief pulses while bytes arrive, a quick blink per completed file, 3 quick
    # blinks on success, a 500 ms long blink on failure, off at the end.
    def __init__(self, u):
        self.u = u
        c = u.cfg
        self.machine = m = _board()
        self.wdt = self.led = None
        self.lit = None  # the LED's state while connected (None: not connected, no pulses)
        self.seen = 0  # u.bytes at the last feed: more means a download is running
        self.since = 0  # when the LED last changed during pulses (ms)
        self.prev = None  # the handler of another feature, fed first (OTA.feed)
        if m:
            if c["watchdog_timeout_ms"]:
                self.wdt = m.WDT(0, c["watchdog_timeout_ms"])
            if c["status_led_pin"] is not None:
                self.led = m.Pin(c["status_led_pin"], m.Pin.OUT)
                self.led.value(0)

    def feed(self, event=None, arg=0):
        # OTA.feed(): per chunk and during every wait, it feeds the watchdog, and the LED pulses
        # while bytes arrive (50 ms on, 200 ms off) and is solid otherwise; an event of the update
        # shows its LED pattern
        if self.prev:
            self.prev.feed(event, arg)
        if self.wdt:
            self.wdt.feed()
        if event:
            self.signal(self.u, event)
        elif self.led and self.lit is not None:
            d = _since(self.since)
            if self.u.bytes != self.seen:
                self.seen = self.u.bytes
                if d >= 50 if self.lit else d >= 200:
                    self._set(not self.lit)
            elif not self.lit and d >= 200:
                self._set(1)

    def _set(self, on):
        self.lit = on
        self.led.value(1 if on else 0)
        self.since = _ms()

    def wait(self, ms):
        # about ms milliseconds, the watchdog fed every 10 ms
        for _ in range(ms // 10):
            if self.wdt:
                self.wdt.feed()
            time.sleep(0.01)

    def blink(self, n, on_ms):
        # n blinks: on for on_ms, then off for 100 ms (from a lit LED: dark for 100 ms first)
        led = self.led
        if self.lit:
            led.value(0)
            self.wait(100)
        for _ in range(n):
            led.value(1)
            self.wait(on_ms)
            led.value(0)
            self.wait(100)

    def signal(self, u, event):
        # an event of the update: the LED pattern, and the retries for the WiFi signal
        if event == "connect" and u.transport == "wifi":
            self.adapt_retries(u)
        led = self.led
        if not led:
            return
        if event == "wifi":
            self.lit = None
            self.blink(2, 100)
        elif event == "connect":
            self._set(1)
        elif event == "staged" and self.lit is not None:
            led.value(0)  # a quick blink of a lit LED: dark for 100 ms
            self.wait(100)
            self._set(1)
        elif event == "updated":
            self.blink(3, 100)
            self.lit = None
        elif event == "failed":
            self.blink(1, 500)
            self.lit = None
        elif event == "close":
            led.value(0)
            self.lit = None

    def adapt_retries(self, u):
        # more attempts on a weak WiFi link: RSSI below -70 dBm: +1, below -80 dBm: +2
        try:
            import network

            rssi = network.WLAN(network.STA_IF).status("rssi")
        except Exception:  # no such status on this port
            return
        extra = 2 if rssi < -80 else 1 if rssi < -70 else 0
        u.cfg["retries"] += extra
        u.log("wifi: RSSI %d dBm, %d retries", rssi, u.cfg["retries"])

    def battery_volts(self):
        # the battery voltage: the ADC reading (16 bit of 3.3 V) times the divider; None off a board
        m = self.machine
        if not m:
            return None
        c = self.u.cfg
        return m.ADC(c["battery_adc_pin"]).read_u16() * 3.3 / 65535 * c["battery_divider_ratio"]
