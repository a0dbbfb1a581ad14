# ota_lora.py: LoRa as a metadata and trigger channel, never a data path. A feature module (see
# ota._FEATURES): imported only when the configuration has a lora_* key; copy it to the board then.
#
# LoRa comes last in the transports (WiFi -> cellular -> LoRa). When neither WiFi nor cellular
# connects, the device listens on an SX1276/SX1278 (RFM95/96) radio for up to
# connect_timeout_sec for a downlink "OTA <version>" (ASCII; e.g. "OTA v1.2.0"), sent by the
# fleet's gateway when a release is out:
#   - the installed version: nothing to fetch; the check ends without any HTTP request
#     (result "deferred": "lora");
#   - another version: an update exists. The device brings up WiFi, then cellular, again (up to
#     3 rounds) and installs that version (the stable channel is pinned to it for this check);
#   - nothing (or a packet with a CRC error, or another payload): no network, as without LoRa.
import time
from ota import OTAError, Kind, _board

# key, type, default (README "Configuration")
KEYS = (
    "lora_enabled", Kind.BOOL, False,  # listen for update announcements when nothing else connects
    "lora_spi_pins", Kind.ANY, [18, 19, 16],  # SPI [SCK, MOSI, MISO]
    "lora_cs_pin", Kind.WHOLE, 17,  # the radio's chip select (NSS)
    "lora_rst_pin", Kind.WHOLE, 20,  # its reset
    "lora_freq", Kind.WHOLE, 915000000,  # the channel in Hz (868000000 in Europe, 433000000, ...)
)
_PREFIX = b"OTA "
_u = None
_heard = {}  # what the last downlink said: {"version", "link" (the transport that came up)}


def check(cfg, path):
    p = cfg["lora_spi_pins"]
    if not (type(p) is list and len(p) == 3 and all(type(x) is int and x >= 0 for x in p)):
        raise OTAError("%s: 'lora_spi_pins' must be [SCK, MOSI, MISO] pin numbers, got %r" % (path, p))
    if not 137000000 <= cfg["lora_freq"] <= 1020000000:
        raise OTAError("%s: 'lora_freq' must be in Hz, 137000000..1020000000 (SX1276), got %r" % (path, cfg["lora_freq"]))
    if cfg["lora_enabled"] and "lora" not in cfg["transports"]:
        cfg["transports"].append("lora")  # last: WiFi -> cellular -> LoRa


def attach(u):
    global _u
    _u = u
    u.gates.insert(0, gate)


def gate(u):
    # Before any request: a downlink that named the installed version ends the check; after a
    # trigger, the link that came up is the transport (deltas on cellular)
    if _heard.get("link"):
        u.transport = _heard["link"]
    return "lora" if _heard.get("installed") else None


def connect(cfg):
    # The transport "lora" (OTA.connect): True when a downlink came and either names the installed
    # version, or names another one and WiFi or cellular came up to fetch it
    u = _u
    _heard.clear()
    if not (u and cfg["lora_enabled"]):
        return False
    try:
        radio = SX127x(cfg)
        version = radio.listen(u, int(cfg["connect_timeout_sec"] * 1000))
        radio.sleep()
    except OSError as e:
        print("OTA: LoRa: %s" % (e.args[0] if e.args else e))
        return False
    if not version:
        u.log("LoRa: no announcement")
        return False
    v = u.installed()
    _heard["version"] = version
    if version in (v.get("version"), v.get("ref")):
        print("OTA: LoRa: %s is installed: nothing to fetch" % version)
        _heard["installed"] = True
        return True
    print("OTA: LoRa: %s announced: bringing up WiFi or cellular" % version)
    if cfg["channel"] == "stable":
        cfg["tag"] = version  # that version, not whatever is latest by the time the link is up
    for _ in range(3):
        for name in cfg["transports"]:
            if name == "wifi" and u.wifi() or name == "cellular" and __import__("ota_cellular").connect(cfg):
                _heard["link"] = name
                return True
    print("OTA: LoRa: %s announced, but neither WiFi nor cellular came up" % version)
    return False


class SX127x:
    # The receive side of a Semtech SX1276/77/78/79 (RFM95/96/98) in LoRa mode, over SPI:
    # explicit header, CRC on, the chip's defaults otherwise (125 kHz, SF7, 4/5).
    def __init__(self, cfg):
        m = _board()
        if not m or not hasattr(m, "SPI"):
            raise OSError("no machine.SPI on this board")
        sck, mosi, miso = cfg["lora_spi_pins"]
        # RP2040: GPIO 0-7 and 16-23 are SPI0, 8-15 and 24-29 SPI1
        self.spi = m.SPI(sck // 8 % 2, baudrate=1000000, polarity=0, phase=0, sck=m.Pin(sck), mosi=m.Pin(mosi),
                         miso=m.Pin(miso))
        self.cs = m.Pin(cfg["lora_cs_pin"], m.Pin.OUT, value=1)
        rst = m.Pin(cfg["lora_rst_pin"], m.Pin.OUT, value=1)
        rst.value(0)  # reset: low for 1 ms, then 10 ms to start
        time.sleep(0.001)
        rst.value(1)
        time.sleep(0.01)
        v = self.read(0x42)  # RegVersion
        if v != 0x12:
            raise OSError("no SX127x radio on the SPI bus (version register 0x%02x)" % v)
        self.write(0x01, 0x80)  # RegOpMode: LoRa, sleep (the mode can only change in sleep)
        frf = cfg["lora_freq"] * 524288 // 32000000  # the carrier: f * 2^19 / 32 MHz
        self.write(0x06, frf >> 16)
        self.write(0x07, frf >> 8 & 0xFF)
        self.write(0x08, frf & 0xFF)
        self.write(0x0F, 0)  # RegFifoRxBaseAddr
        self.write(0x0C, 0x23)  # RegLna: boost on
        self.write(0x1E, 0x74)  # RegModemConfig2: SF7, CRC on
        self.write(0x01, 0x81)  # standby

    def write(self, reg, v):
        self.cs.value(0)
        self.spi.write(bytes([reg | 0x80, v]))
        self.cs.value(1)

    def read(self, reg, n=1):
        self.cs.value(0)
        self.spi.write(bytes([reg & 0x7F]))
        b = self.spi.read(n)
        self.cs.value(1)
        return b[0] if n == 1 else b

    def listen(self, u, ms):
        # the version of the first valid announcement within ms, else None
        self.write(0x12, 0xFF)  # clear RegIrqFlags
        self.write(0x01, 0x85)  # continuous receive
        for _ in range(max(1, ms // 20)):
            flags = self.read(0x12)
            if flags & 0x40:  # RxDone
                self.write(0x12, 0xFF)
                if flags & 0x20:  # PayloadCrcError: ignored
                    u.log("LoRa: a packet with a CRC error")
                    continue
                self.write(0x0D, self.read(0x10))  # RegFifoAddrPtr = RegFifoRxCurrentAddr
                p = self.read(0x00, self.read(0x13))  # RegRxNbBytes bytes of the FIFO
                u.log("LoRa: downlink %r", p)
                if p.startswith(_PREFIX) and 4 < len(p) <= 64:
                    return p[4:].decode().strip()
            u.feed()
            time.sleep(0.02)
        return None

    def sleep(self):
        self.write(0x01, 0x80)
