# A fake `machine` for the device tests, copied into a device folder as machine.py: a module
# with Pin is what makes ota.OTA talk to the hardware. It records every call in LOG (drive.py
# returns it as "hw"). Runs under CPython and MicroPython.
# Env: FAKE_ADC (raw 16-bit reading), FAKE_UID (device id), FAKE_RESET_CAUSE (machine.reset_cause()),
# FAKE_MODEM ("host:port" of the simulated modem, tests/sim/modem.py: what the UART is wired
# to), FAKE_LORA (downlinks the simulated SX127x radio receives, "|"-separated; FAKE_LORA_MS
# after the receiver starts, and as much between them; FAKE_LORA_CRC=bad: with a CRC error).
import os
import time

LOG = {"wdt": None, "feed": 0, "max_gap_ms": 0, "pin": None, "toggle": 0, "io": {}, "adc": None,
       "reset": 0, "soft_reset": 0, "uart": None, "spi": None, "lora": []}
_T0 = time.time()


def _ms():
    # milliseconds since this module loaded (the real clock, not a faked one)
    t = getattr(time, "real_time", time.time)()
    return int((t - _T0) * 1000)


# ---------------------------------------------------------------- watchdog
class WDT:
    def __init__(self, id=0, timeout=5000):
        LOG["wdt"] = [id, timeout]
        self.last = _ms()

    def feed(self):
        t = _ms()
        LOG["feed"] += 1
        LOG["max_gap_ms"] = max(LOG["max_gap_ms"], t - self.last)  # the longest time unfed
        self.last = t


PWRON_RESET = 1
WDT_RESET = 3


def reset_cause():
    return int(os.getenv("FAKE_RESET_CAUSE") or PWRON_RESET)


def reset():
    LOG["reset"] += 1


def soft_reset():
    LOG["soft_reset"] += 1


def unique_id():
    return (os.getenv("FAKE_UID") or "e6614103e7").encode()


# ---------------------------------------------------------------- pins, ADC
class Pin:
    OUT = 1
    IN = 0

    def __init__(self, pin, mode=-1, value=None):
        self.id = pin
        if mode == Pin.OUT:
            LOG["pin"] = [pin, mode]
        self.v = 0
        if value is not None:
            self.value(value)

    def value(self, v=None):
        # records every change of an output as [value, ms since start] under LOG["io"][pin]
        if v is None:
            return self.v
        self.v = 1 if v else 0
        LOG["io"].setdefault(str(self.id), []).append([self.v, _ms()])

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        LOG["toggle"] += 1
        self.value(1 - self.v)


class ADC:
    def __init__(self, pin):
        LOG["adc"] = pin

    def read_u16(self):
        return int(os.getenv("FAKE_ADC") or "65535")


# ---------------------------------------------------------------- the clock
def _epoch(y, mo, d, h, mi, s):
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo - 3 if mo > 2 else mo + 9) + 2) // 5 + d - 1
    return ((era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468) * 86400 + h * 3600 + mi * 60 + s)


class RTC:
    def datetime(self, t=None):
        # sets the faked wall clock (tests/device/field_drive.py, FAKE_EPOCH); without it, nothing
        if t is not None:
            LOG["rtc"] = list(t)
            if hasattr(time, "set_fake"):
                time.set_fake(_epoch(t[0], t[1], t[2], t[4], t[5], t[6]))


# ---------------------------------------------------------------- UART: the simulated modem
class UART:
    # What the UART is wired to: a TCP connection to the simulated modem (FAKE_MODEM). any(),
    # read() and readinto() as on a board (what is there; after `timeout` ms without a byte: None),
    # through one receive buffer, as the board's (rxbuf), so that the fake allocates nothing per call
    def __init__(self, id, baudrate=9600, tx=None, rx=None, timeout=0, rxbuf=256, **kw):
        import socket

        LOG["uart"] = [id, baudrate, tx and tx.id, rx and rx.id]
        host, port = (os.getenv("FAKE_MODEM") or "127.0.0.1:9").split(":")
        self.s = socket.socket()
        self.s.connect(socket.getaddrinfo(host, int(port))[0][-1])
        self.timeout = timeout
        self.buf = bytearray(rxbuf)
        self.a = self.b = 0  # buf[a:b]: received, not read yet
        self.recv_into = getattr(self.s, "recv_into", None) or self.s.readinto

    def _recv(self, ms):
        # what the modem sent, waiting up to ms for it (nothing more once the simulator hung up)
        if self.a == self.b:
            import select

            p = select.poll()
            p.register(self.s, select.POLLIN)
            if p.poll(ms):
                self.s.setblocking(False)  # MicroPython's readinto would wait for a full buffer
                self.a, self.b = 0, self.recv_into(self.buf) or 0
                self.s.setblocking(True)

    def any(self):
        self._recv(0)
        return self.b - self.a

    def readinto(self, buf, n=-1):
        self._recv(self.timeout)
        k = min(self.b - self.a, len(buf) if n < 0 else n)
        if not k:
            return None
        buf[:k] = memoryview(self.buf)[self.a:self.a + k]
        self.a += k
        return k

    def read(self, n=-1):
        self._recv(self.timeout)
        k = self.b - self.a if n is None or n < 0 else min(n, self.b - self.a)
        if not k:
            return None
        self.a += k
        return bytes(self.buf[self.a - k:self.a])

    def write(self, data):
        self.s.send(data)
        return len(data)


# ---------------------------------------------------------------- SPI: a simulated SX127x radio
class _Radio:
    # The registers of an SX1276 that matter here; a downlink (FAKE_LORA) arrives FAKE_LORA_MS ms
    # after continuous receive starts (LoRa mode), as the chip presents it: payload in the FIFO,
    # RegRxNbBytes, RegFifoRxCurrentAddr, RxDone (and PayloadCrcError) in RegIrqFlags.
    def __init__(self):
        self.reg = bytearray(128)
        self.reg[0x42] = 0x12  # RegVersion
        self.reg[0x01] = 0x09  # RegOpMode: FSK, standby
        self.fifo = bytearray(256)
        self.rx_since = None
        self.packets = [p for p in (os.getenv("FAKE_LORA") or "").split("|") if p]

    def write(self, addr, val):
        LOG["spi"].append([addr, val])
        if addr == 0x00:  # the FIFO at RegFifoAddrPtr
            self.fifo[self.reg[0x0D]] = val
            self.reg[0x0D] = (self.reg[0x0D] + 1) & 0xFF
        elif addr == 0x12:  # RegIrqFlags: writing 1 clears
            self.reg[0x12] &= ~val & 0xFF
        else:
            self.reg[addr] = val
            if addr == 0x01:
                self.rx_since = _ms() if val & 0x87 == 0x85 else None  # LoRa, RXCONTINUOUS

    def read(self, addr):
        if addr == 0x12 and self.rx_since is not None and self.packets and not self.reg[0x12] & 0x40 \
                and _ms() - self.rx_since >= int(os.getenv("FAKE_LORA_MS") or "200"):
            p = self.packets.pop(0).encode()
            base = self.reg[0x0F]  # RegFifoRxBaseAddr
            self.fifo[base:base + len(p)] = p
            self.reg[0x10] = base  # RegFifoRxCurrentAddr
            self.reg[0x13] = len(p)  # RegRxNbBytes
            self.reg[0x12] |= 0x50 | (0x20 if os.getenv("FAKE_LORA_CRC") == "bad" else 0)  # RxDone, ValidHeader
            self.rx_since = _ms()
            LOG["lora"].append(p.decode())
        if addr == 0x00:
            v = self.fifo[self.reg[0x0D]]
            self.reg[0x0D] = (self.reg[0x0D] + 1) & 0xFF
            return v
        return self.reg[addr]


class SPI:
    # register access as the SX127x takes it: write([addr | 0x80, value...]) writes, write([addr])
    # then read(n) reads (FIFO reads advance RegFifoAddrPtr); chip select is the caller's Pin
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, sck=None, mosi=None, miso=None, **kw):
        LOG["spi_bus"] = [id, sck and sck.id, mosi and mosi.id, miso and miso.id]
        LOG["spi"] = []
        self.radio = _Radio()
        self.addr = 0

    def write(self, buf):
        a = buf[0]
        if a & 0x80:
            for i in range(1, len(buf)):
                self.radio.write((a & 0x7F) + (i - 1 if a & 0x7F else 0), buf[i])
        else:
            self.addr = a
        return None

    def read(self, n, write=0):
        out = bytearray(n)
        for i in range(n):
            out[i] = self.radio.read(self.addr + (i if self.addr else 0))
        return bytes(out)
