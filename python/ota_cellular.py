# ota_cellular.py: the cellular transport, a driver for AT-command modems (SIMCom SIM800, SIM7000
# and SIM7600 families) on a UART. A feature module (see ota._FEATURES): imported only when the
# configuration has a cellular_* key; copy it to the board then. docs/fields.md has the details.
#
# The data path is the modem's own TCP stack, behind a socket-like object that ota.py's HTTP
# client uses as it uses `socket` (OTA.net): AT+CIPSTART/AT+CIPOPEN opens a connection,
# AT+CIPSEND sends the request, AT+CIPRXGET=2 reads the response in pieces whose length the modem
# states (manual receive: no URC or status text can ever be mistaken for data, and a link that
# drops is a clean end of stream, so ota.py resumes the file with a Range). This works on every
# MicroPython (network.PPP exists only from 1.24 and only in some builds, and needs the lwIP PPP
# stack in the firmware) and on the three families with one command set each.
import sys
import time
from ota import OTAError, Kind, _board

if sys.implementation.name == "micropython":
    from io import IOBase as _Stream  # a stream the tls module can wrap (HTTPS through the modem)
else:
    _Stream = object  # (CPython's ssl wraps only real sockets: HTTP there)

# key, type, default (README "Configuration")
KEYS = (
    "cellular_enabled", Kind.BOOL, False,  # try cellular after WiFi (before LoRa)
    "cellular_apn", Kind.STR_OR_NULL, "",  # the operator's access point name
    "cellular_uart", Kind.WHOLE, 1,  # the UART the modem is on
    "cellular_tx_pin", Kind.WHOLE, 4,
    "cellular_rx_pin", Kind.WHOLE, 5,
    "cellular_baud", Kind.WHOLE, 115200,
    "cellular_tech", ("auto", "gsm", "lte", "catm", "nbiot"), "auto",  # radio access technology
    "cellular_cost_per_mb", Kind.NUMBER, 0,  # price of a MB (1,048,576 bytes): the cost estimate
)
_MB = 1048576
_READ = 1024  # the most bytes asked of the modem at once (its reply must fit the UART's buffer)
_RX = 512  # the buffer of the modem's lines (and of the first bytes of data after a header)
_u = None  # the OTA object (attach)


def check(cfg, path):
    t = cfg["transports"]
    if cfg["cellular_enabled"] and "cellular" not in t:  # WiFi -> cellular -> LoRa
        t.insert(t.index("lora") if "lora" in t else len(t), "cellular")
    if cfg["cellular_baud"] < 1200:
        raise OTAError("%s: 'cellular_baud' must be a baud rate (e.g. 115200), got %d" % (path, cfg["cellular_baud"]))


def attach(u):
    global _u
    _u = u
    h = Events(u)
    h.prev, u.hw = u.hw, h  # OTA.feed(event, arg) reaches each feature's handler in turn


def connect(cfg):
    # The transport "cellular" (OTA.connect): True once the modem is registered, its data bearer
    # up and OTA.net its sockets. The reason of a failure is printed and kept in ota_error.json.
    u = _u
    if not (u and cfg["cellular_enabled"]):
        return False
    m = Modem(u)
    try:
        m.start()
    except Exception as e:  # OSError, or a reply that does not parse
        reason = "cellular: %s" % (e.args[0] if e.args else e)
        print("OTA: " + reason)
        u.record(reason)
        m.stop()
        return False
    u.net = m
    return True


class Events:
    # OTA.feed(): the cost estimate before the download, the bytes and cost at the end
    def __init__(self, u):
        self.u = u
        self.prev = None

    def feed(self, event=None, arg=0):
        if self.prev:
            self.prev.feed(event, arg)
        u = self.u
        if not event or not isinstance(u.net, Modem):  # only while the modem carries the update
            return
        cost = u.cfg["cellular_cost_per_mb"]
        if event == "download":
            print("OTA: cellular: %d bytes to download, estimated cost %.4f (%s per MB)" % (arg, arg * cost / _MB, cost))
        elif event == "close":
            print("OTA: cellular: %d bytes received in %d requests, cost %.4f" % (u.bytes, u.requests, u.bytes * cost / _MB))
            u.net.stop()
            u.net = None


def _ms():
    return time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000)


def _since(t):
    return time.ticks_diff(_ms(), t) if hasattr(time, "ticks_diff") else _ms() - t


class Modem:
    # The modem on its UART, and the `socket` module ota.py's HTTP client takes from OTA.net:
    # getaddrinfo() (the modem resolves names itself), socket() -> Socket.
    SOCK_STREAM = 1

    def __init__(self, u):
        self.u = u
        self.uart = None
        self.rx = bytearray(_RX)  # bytes from the modem not used yet: rx[a:b]
        self.mv = memoryview(self.rx)
        self.a = self.b = 0
        self.model = ""
        self.sim7600 = False  # SIM7600 family: AT+NETOPEN/AT+CIPOPEN; else SIM800/SIM7000: AT+CIPSTART
        self.bearer = False  # the packet data context is up
        self.closed = True  # no TCP connection
        self.data = False  # the modem said data arrived (+CIPRXGET: 1)

    # ---------------------------------------------------------- the AT dialogue
    def _fill(self, ms):
        # more bytes from the modem into rx within ms; False if none came (the watchdog is fed).
        # Nothing is allocated: the unread bytes move to the front of rx when its end is reached.
        a, b = self.a, self.b
        if a == b:
            self.a = self.b = a = b = 0
        elif b == _RX:
            if not a:
                raise OSError("garbage from the modem (no line end in %d bytes)" % _RX)
            self.mv[:b - a] = self.mv[a:b]
            self.a, self.b = 0, b - a
        t = _ms()
        while True:
            n = self.uart.any()
            if n:
                n = self.uart.readinto(self.mv[self.b:min(_RX, self.b + n)]) or 0
                self.b += n
                return True
            if _since(t) >= ms:
                return False
            self.u.feed()
            time.sleep(0.002)

    def _take(self, n):
        # the first n of the unread bytes (a memoryview of rx, valid until the next read)
        a = self.a
        self.a = a + n
        return self.mv[a:a + n]

    def _line(self, ms):
        # the next non-empty line (without CR LF) within ms, else None; unsolicited ones are noted
        t = _ms()
        while True:
            i = self.rx.find(b"\n", self.a, self.b)
            if i >= 0:
                line = bytes(self._take(i + 1 - self.a)).strip()
                if line:
                    if line.endswith(b"CLOSED") or line.startswith(b"+IPCLOSE"):
                        self.closed = True
                    elif line.startswith(b"+PDP: DEACT") or line.startswith(b"+CIPEVENT: NETWORK CLOSED"):
                        self.closed = True
                        self.bearer = False
                    elif line.startswith(b"+CIPRXGET: 1"):
                        self.data = True
                    return line
                continue
            left = ms - _since(t)
            if left <= 0 or not self._fill(left):
                return None

    def cmd(self, cmd, ms=3000, ends=(b"OK",)):
        # Send AT<cmd> (None: send nothing, wait for more of the last reply); read lines until one
        # that starts with one of ends: (that line, the lines before it). OSError on ERROR (and
        # +CME/+CMS ERROR) or when nothing ends the reply within ms.
        if cmd is not None:
            self.uart.write(b"AT" + cmd + b"\r")
        info = []
        t = _ms()
        while True:
            line = self._line(ms - _since(t))
            if line is None:
                raise OSError("no answer to AT%s" % (cmd or b"").decode())
            if cmd is not None and line == b"AT" + cmd:  # the echo
                continue
            for e in ends:
                if line.startswith(e):
                    return line, info
            if line == b"ERROR" or line.startswith(b"+CME ERROR") or line.startswith(b"+CMS ERROR"):
                raise OSError("AT%s: %s" % ((cmd or b"").decode(), line.decode()))
            info.append(line)

    def query(self, cmd, prefix, ms=3000):
        # the value after "prefix: " in the reply to AT<cmd>, e.g. query(b"+CSQ", b"+CSQ") -> b"18,0"
        for line in self.cmd(cmd, ms)[1]:
            if line.startswith(prefix + b":"):
                return line[len(prefix) + 1:].strip()
        raise OSError("AT%s: no %s in the reply" % (cmd.decode(), prefix.decode()))

    def wait(self, ms):
        for _ in range(ms // 20):
            self.u.feed()
            time.sleep(0.02)

    # ---------------------------------------------------------- bringing the modem up
    def start(self):
        u = self.u
        c = u.cfg
        m = _board()
        if not m or not hasattr(m, "UART"):
            raise OSError("no machine.UART on this board")
        self.uart = m.UART(c["cellular_uart"], baudrate=c["cellular_baud"], tx=m.Pin(c["cellular_tx_pin"]),
                           rx=m.Pin(c["cellular_rx_pin"]), timeout=20, rxbuf=2048)
        # power-on handshake: the modem answers AT once it has booted (SIM800 also learns the baud
        # rate from it). A try lasts 0.7 s, or up to 3 s after its echo: the modem is up and its OK
        # follows (a slow OK is neither noise nor the answer to the next command). Lines that are
        # neither the echo nor OK, or bytes that end no line, in 3 tries: garbage (a wrong baud
        # rate, noise); a boot message (RDY) is one.
        noise = 0
        for i in range(10):
            self.a = self.b = 0
            self.uart.write(b"AT\r")
            t, ms = _ms(), 700
            line = 1
            while line and line != b"OK":
                line = self._line(ms - _since(t))
                if line == b"AT":
                    t, ms = _ms(), 3000
                elif line:
                    noise += 1
            if line:
                break
            noise += self.rx[self.a:self.b].strip() not in (b"", b"AT")  # bytes that end no line
            if noise >= 3:
                raise OSError("the modem answers garbage, not AT replies (cellular_baud %d?)" % c["cellular_baud"])
        else:
            raise OSError("the modem does not answer AT on UART %d at %d baud (power, TX/RX wiring, cellular_baud)"
                          % (c["cellular_uart"], c["cellular_baud"]))
        self.cmd(b"E0")  # no echo
        self.model = b" ".join(self.cmd(b"+CGMM")[1]).decode()
        self.sim7600 = "7600" in self.model or "7500" in self.model
        try:
            sim = self.query(b"+CPIN?", b"+CPIN", 5000)
        except OSError as e:
            raise OSError("SIM: %s" % e.args[0])
        if sim != b"READY":
            raise OSError("SIM: %s (a SIM that needs its PIN, or none)" % sim.decode())
        self.technology(c["cellular_tech"])
        stat = self.register(int(c["connect_timeout_sec"] * 6000))
        q = int(self.query(b"+CSQ", b"+CSQ").split(b",")[0])  # 0..31, 99: unknown
        u.log("cellular: %s registered (%s), signal %s dBm (CSQ %d)", self.model, "roaming" if stat == 5 else "home",
              -113 + 2 * q if q < 99 else "unknown", q)
        c["retries"] += 2 if q < 10 or q == 99 else 1 if q < 15 else 0  # more attempts on a weak signal
        self.open_bearer()

    def technology(self, tech):
        # the radio access technology: SIM7000/SIM7600 AT+CNMP (2 auto, 13 GSM, 38 LTE), SIM7000
        # AT+CMNB (1 LTE-M, 2 NB-IoT); a SIM800 is GSM only
        if tech == "auto":
            return
        if "SIM800" in self.model:
            if tech != "gsm":
                raise OSError("cellular_tech %s: a %s is GSM (2G) only" % (tech, self.model))
            return
        if tech in ("catm", "nbiot") and self.sim7600:
            raise OSError("cellular_tech %s: a %s has no LTE-M/NB-IoT" % (tech, self.model))
        self.cmd(b"+CNMP=13" if tech == "gsm" else b"+CNMP=38")
        if tech in ("catm", "nbiot"):
            self.cmd(b"+CMNB=1" if tech == "catm" else b"+CMNB=2")

    def register(self, ms):
        # wait (up to ms) until the network accepts the modem: the stat of +CEREG (LTE), +CGREG
        # (packet) or +CREG (circuit) is 1 (home) or 5 (roaming); 3 (denied) fails at once
        t = _ms()
        last = b"?"
        while True:
            for q in (b"+CEREG", b"+CGREG", b"+CREG"):
                try:
                    v = self.query(q + b"?", q)
                except OSError:  # not on this modem (SIM800 has no +CEREG)
                    continue
                last = v
                stat = int(v.split(b",")[1])
                if stat in (1, 5):
                    return stat
                if stat == 3:
                    raise OSError("the network denied the registration (%s: %s)" % (q.decode(), v.decode()))
            if _since(t) > ms:
                raise OSError("not registered after %d s (last state %s; 2: still searching)" % (ms // 1000, last.decode()))
            self.wait(1000)

    def open_bearer(self):
        # the packet data context with cellular_apn, and the TCP stack in manual-receive mode
        apn = self.u.cfg["cellular_apn"] or ""
        if self.sim7600:
            self.cmd(('+CGDCONT=1,"IP","%s"' % apn).encode())
            self.cmd(b"+CIPRXGET=1")
            try:
                line = self.cmd(b"+NETOPEN", 30000, (b"+NETOPEN:",))[0]
            except OSError as e:  # "+IP ERROR: Network is already opened", then ERROR
                if "already" not in str(e) and b"already" not in self.rx[:self.b]:
                    raise
                line = b"+NETOPEN: 0"
            if line.split(b":")[1].strip() != b"0":
                raise OSError("no data connection (AT+NETOPEN: %s); check cellular_apn" % line.decode())
            ip = self.query(b"+IPADDR", b"+IPADDR")
        else:
            self.cmd(b"+CIPSHUT", 10000, (b"SHUT OK",))
            self.cmd(b"+CIPMUX=0")
            self.cmd(b"+CIPRXGET=1")
            self.cmd(('+CSTT="%s"' % apn).encode())
            try:
                self.cmd(b"+CIICR", 60000)
            except OSError as e:
                raise OSError("no data connection (%s); check cellular_apn" % e.args[0])
            self.uart.write(b"AT+CIFSR\r")  # answers the IP address alone, without OK
            ip = self.cmd(None, 5000, (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"))[0]
        self.u.log("cellular: data up, APN %s, address %s", apn, ip.decode())
        self.bearer = True

    def stop(self):
        # the data connection down (at the end of the update, or after a failed start)
        if self.uart and self.bearer:
            try:
                self.close()
                if self.sim7600:
                    self.cmd(b"+NETCLOSE", 5000, (b"+NETCLOSE:", b"OK"))
                else:
                    self.cmd(b"+CIPSHUT", 5000, (b"SHUT OK",))
            except OSError:
                pass
        self.bearer = False

    # ---------------------------------------------------------- TCP through the modem
    def getaddrinfo(self, host, port, *args):
        return [(0, 1, 0, "", (host, port))]

    def socket(self, *args):
        return Socket(self)

    def open(self, host, port, ms):
        # ms: the socket's timeout, at least http_timeout_sec (as ota.py gives MicroPython's sockets):
        # the modem's TCP open includes its DNS lookup and a handshake over the radio
        ms = max(ms, int(self.u.cfg["http_timeout_sec"] * 1000))
        self.close()
        if not self.bearer:  # it dropped (+PDP: DEACT): up again first
            self.open_bearer()
        self.data = False
        if self.sim7600:  # OK, then "+CIPOPEN: 0,<error>"
            line = self.cmd(('+CIPOPEN=0,"TCP","%s",%d' % (host, port)).encode(), ms, (b"+CIPOPEN:",))[0]
        else:
            self.cmd(('+CIPSTART="TCP","%s",%d' % (host, port)).encode())
            line = self.cmd(None, ms, (b"CONNECT OK", b"ALREADY CONNECT", b"CONNECT FAIL"))[0]
        if line.endswith(b"FAIL") or self.sim7600 and not line.endswith(b",0"):
            raise OSError("TCP to %s:%d: %s" % (host, port, line.decode()))
        self.closed = False

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                if self.sim7600:
                    self.cmd(b"+CIPCLOSE=0", 5000, (b"+CIPCLOSE:",))
                else:
                    self.cmd(b"+CIPCLOSE=1", 5000, (b"CLOSE OK",))
            except OSError:  # closed by the other side meanwhile
                pass

    def send(self, data):
        n = len(data)
        self.uart.write(b"AT+CIPSEND=0,%d\r" % n if self.sim7600 else b"AT+CIPSEND=%d\r" % n)
        t = _ms()
        while True:  # the prompt "> ", which ends no line
            while self.a < self.b and self.rx[self.a] in b"\r\n ":
                self.a += 1
            if self.a < self.b and self.rx[self.a] == 62:  # ">"
                self.a += 1
                break
            if self.rx.find(b"\n", self.a, self.b) >= 0:
                # a URC (CLOSED: _line notes it) does not end the command: the modem answers it
                # with the prompt, then takes the n bytes whatever happened, or with ERROR
                line = self._line(0)
                if line and b"ERROR" in line:
                    raise OSError("AT+CIPSEND: %s" % line.decode())
                continue
            if not self._fill(10000 - _since(t)):
                raise OSError("no prompt for AT+CIPSEND")
        self.uart.write(data)
        line = self.cmd(None, 10000, (b"+CIPSEND:", b"SEND OK", b"SEND FAIL", b"+CIPERROR"))[0]
        if line.startswith(b"SEND F") or line.startswith(b"+CIPE"):
            raise OSError("AT+CIPSEND: %s" % line.decode())

    def recv(self, buf, n, ms):
        # Up to n bytes of the connection into buf; 0 at its end (closed, or dropped: the caller
        # sees a short body and resumes). Waits up to ms for data.
        t = _ms()
        while True:
            self.data = False
            self.uart.write(b"AT+CIPRXGET=2,0,%d\r" % n if self.sim7600 else b"AT+CIPRXGET=2,%d\r" % n)
            try:
                line = self.cmd(None, 5000, (b"+CIPRXGET: 2,",))[0]
            except OSError:
                if self.closed:  # nothing left of a closed connection
                    return 0
                raise
            try:
                k = int(line[13:].split(b",")[-2])  # "+CIPRXGET: 2,[0,]<read>,<left>"
            except (ValueError, IndexError):
                k = -1
            if not 0 <= k <= n:
                raise OSError("garbage from the modem: %r" % line[:40])
            # the bytes follow the header's line end: those in rx, then the rest from the UART
            got = min(k, self.b - self.a)
            buf[:got] = self._take(got)
            mv = memoryview(buf)
            while got < k:
                w = _ms()
                while not self.uart.any():
                    if _since(w) > 5000:
                        raise OSError("the modem stopped in the middle of %d bytes" % k)
                    time.sleep(0.001)
                got += self.uart.readinto(mv[got:min(k, got + self.uart.any())]) or 0
            self.cmd(None, 5000)  # OK
            if k:
                return k
            if self.closed:
                return 0
            while not (self.data or self.closed):  # nothing yet: wait for "+CIPRXGET: 1" or the end
                left = ms - _since(t)
                if left <= 0:
                    raise OSError(110)  # ETIMEDOUT
                self._line(left)


class Socket(_Stream):
    # One TCP connection through the modem, with what ota.py uses of a socket (and of its file on
    # CPython): settimeout, connect, write/sendall (kept until the next read, then one AT+CIPSEND),
    # readline (the response head), readinto, close; on MicroPython a stream (readinto, write,
    # ioctl) that `tls` wraps for HTTPS. Small reads (a TLS record head) come from its buffer.
    def __init__(self, modem):
        self.m = modem
        self.ms = 10000
        self.out = bytearray()  # the request, until it is sent
        self.buf = bytearray(256)  # read for readline(): buf[a:b] not returned yet
        self.a = self.b = 0

    def settimeout(self, t):
        self.ms = int(t * 1000)

    def connect(self, addr):
        self.m.open(addr[0], addr[1], self.ms)

    def write(self, data):
        self.out.extend(data.encode() if type(data) is str else data)
        return len(data)

    sendall = write

    def makefile(self, *args):
        return self

    def _recv(self, buf, n):
        if self.out:
            self.m.send(self.out)
            self.out = bytearray()
        return self.m.recv(buf, n, self.ms)

    def readline(self):
        line = b""
        while True:
            if self.a == self.b:
                self.a, self.b = 0, self._recv(self.buf, len(self.buf))
                if not self.b:
                    return line
            i = self.buf.find(b"\n", self.a, self.b) + 1
            end = i or self.b
            line += self.buf[self.a:end]
            self.a = end
            if i:
                return line

    def readinto(self, buf, n=-1):
        n = len(buf) if n < 0 else min(n, len(buf))
        if self.a == self.b:
            if n >= len(self.buf):
                return self._recv(buf, min(n, _READ))
            self.a, self.b = 0, self._recv(self.buf, len(self.buf))
        k = min(n, self.b - self.a)
        buf[:k] = memoryview(self.buf)[self.a:self.a + k]
        self.a += k
        return k

    def ioctl(self, op, arg):  # MicroPython's stream protocol: 4 is close
        if op == 4:
            self.close()
        return 0

    def close(self):
        self.m.close()
