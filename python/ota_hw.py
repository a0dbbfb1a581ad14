# ota_hw.py: the hardware layer of the updater: watchdog, status LED, battery voltage.
# A feature module (see ota._FEATURES): imported only when the configuration has one of its
# keys; copy it to the board then. Off a board (CPython, or the unix port, whose `machine` has
# no Pin) every call is a no-op; the tests put a fake machine.py in the device folder, which
# records every call.
from ota import _board, Kind

_WDT_MAX_MS = 8388  # the RP2040 watchdog's longest period

# key, type, default (README "Configuration")
KEYS = (
    "watchdog_sec", Kind.WHOLE, 0,  # machine.WDT period (0: none)
    "led_pin", Kind.ANY, None,  # status LED pin, e.g. "LED" on a Pico W
    "min_battery_v", Kind.NUMBER, 0,  # defer the update below this battery voltage
    "battery_adc_pin", Kind.WHOLE, 29,  # the ADC reading the battery (Pico W: VSYS/3 on 29)
    "battery_divider", Kind.NUMBER, 3,  # the voltage divider in front of it
)


def attach(u):
    u.hw = Hardware(u.cfg)
    if u.cfg["min_battery_v"]:
        u.gates.append(battery_gate)


def battery_gate(u):
    v = u.hw.battery_volts()
    return "min_battery_v" if v is not None and v < u.cfg["min_battery_v"] else None


class Hardware:
    def __init__(self, cfg):
        self.cfg = cfg
        self.machine = m = _board()
        self.wdt = self.led = None
        if m:
            if cfg["watchdog_sec"]:
                self.wdt = m.WDT(0, min(cfg["watchdog_sec"] * 1000, _WDT_MAX_MS))
            if cfg["led_pin"] is not None:
                self.led = m.Pin(cfg["led_pin"], m.Pin.OUT)

    def feed(self):
        # called per chunk and during every wait: feeds the watchdog, blinks the LED
        if self.wdt:
            self.wdt.feed()
        if self.led:
            self.led.toggle()

    def battery_volts(self):
        # the battery voltage: the ADC reading (16 bit of 3.3 V) times the divider; None off a board
        m = self.machine
        if not m:
            return None
        c = self.cfg
        return m.ADC(c["battery_adc_pin"]).read_u16() * 3.3 / 65535 * c["battery_divider"]
