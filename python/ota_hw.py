# ota_hw.py: the hardware layer of the updater: watchdog, status LED, battery voltage.
# Imported by ota.py only when the configuration uses one of them (watchdog_sec, led_pin,
# min_battery_v); copy it to the board then. Off a board (CPython, or the unix port, whose
# `machine` has no Pin) every call is a no-op; the tests put a fake machine.py in the device
# folder, which records every call.
from ota import const, _board

_WDT_MAX_MS = const(8388)  # the RP2040 watchdog's longest period


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
