"""A simulated AT-command cellular modem (SIMCom SIM800 / SIM7000 / SIM7600 families), for the
device tests of python/ota_cellular.py.

The serial line is a TCP connection on loopback: the fake machine.UART of a device
(tests/device/fake_machine.py, env FAKE_MODEM=host:port) connects to it, and each connection is a
modem that has just been powered on. It speaks the AT dialogue the driver uses (echo on at first,
a few ATs ignored while it boots, SIM, registration, signal, APN and bearer, TCP with manual
receive: AT+CIPRXGET) and forwards each TCP connection the device opens to the address it names,
i.e. to the GitHub-compatible test server (tests/ghserver.py).

    with ModemSim(model="SIM800L") as modem:          # also "SIM7000G", "SIM7600E"
        env = {"FAKE_MODEM": modem.address}
        ...; modem.stats, modem.commands

Faults: register="never" (searching forever), "denied", "second" (only from the second power-on), or
N (searching until the N-th AT+CREG?); boot_ats=N (the first N ATs get no answer: booting);
sim="SIM PIN" / "NOT INSERTED";
drop_after=N (the data link and its PDP context drop once, after N bytes went to the device);
garbage=True (every answer is noise); garbage_at=N (the first receive header once N bytes went to
the device is noise); eof_delay=S (the modem takes S seconds to report the end of a connection
that the server closed: its CLOSED / +IPCLOSE URC); close_each=True (one request per connection, as
behind an operator's gateway that closes them: "Connection: close" is added to each request and to
each response's head, so that the server ends every connection as the device closes it).

Like a real modem, a session's output is serial: its replies and its unsolicited result codes
(URCs: +CIPRXGET: 1, CLOSED, ...) are made under one lock, and a URC about a connection is sent only
while that connection is the current one. (A CLOSED of a connection already closed by the device,
sent late by the thread that forwards it, reached the device after the next CONNECT OK under load:
the device gave up that AT+CIPSEND, the simulator waited for its data and took the next commands
as data, and the update stalled in timeouts.)
Run as a script to try it by hand: ``python tests/sim/modem.py [--model M] [--port P]``.
"""
import argparse
import random
import socket
import threading
import time


class ModemSim:
    def __init__(self, model="SIM800L", register=True, sim="READY", csq=18, drop_after=None, garbage=False,
                 garbage_at=None, eof_delay=0, close_each=False, boot_ats=2, host="127.0.0.1", port=0):
        self.model, self.register, self.sim, self.csq = model, register, sim, csq
        self.drop_after, self.garbage, self.garbage_at, self.boot_ats = drop_after, garbage, garbage_at, boot_ats
        self.eof_delay, self.close_each = eof_delay, close_each
        self.sim7600 = "7600" in model
        self.commands = []  # every command line received, in order
        # sessions (power-ons), TCP connections opened, HTTP requests forwarded, bytes each way,
        # link drops, receive commands, garbled receive headers, ends of connections that were no
        # longer the current one (no URC for them)
        self.stats = {"sessions": 0, "tcp_opens": 0, "requests": 0, "to_device": 0, "to_server": 0, "drops": 0,
                      "reads": 0, "garbled": 0, "late_ends": 0}
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, port))
        self.srv.listen(4)
        self.srv.settimeout(0.1)  # the accept loop sees stop() within 0.1 s, and ends
        self.address = "%s:%d" % self.srv.getsockname()
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.running = False
        self.thread.join(5)
        self.srv.close()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError as e:
                self.stats["accept_error"] = repr(e)
                return
            conn.settimeout(None)
            self.stats["sessions"] += 1
            threading.Thread(target=_Session(self, conn, self.stats["sessions"]).run, daemon=True).start()


class _Session:
    """One power-on of the modem: the AT dialogue on one serial connection."""

    def __init__(self, sim, conn, n):
        self.sim, self.conn, self.n = sim, conn, n
        # held while a command is answered and while the upstream thread changes the connection's
        # state or sends its URCs: the session's output is serial, as a modem's
        self.lock = threading.RLock()
        self.echo = True
        self.booting = sim.boot_ats
        self.pdp = False  # the packet data context (bearer)
        self.manual = False  # AT+CIPRXGET=1
        self.tcp = None  # the forwarded connection
        self.buf = bytearray()  # its bytes not read by the device yet
        self.closed = False  # the server closed it
        self.rnd = random.Random(5)
        self.cregs = 0  # AT+CREG? answered

    # -- the serial line
    def send(self, data):
        with self.lock:
            try:
                self.conn.sendall(data)
            except OSError:
                pass

    def reply(self, *lines):
        self.send(b"".join(b"\r\n" + (x if isinstance(x, bytes) else x.encode()) + b"\r\n" for x in lines))

    def urc(self, *lines):
        self.reply(*lines)

    def read_exact(self, n, pending):
        while len(pending) < n:
            d = self.conn.recv(4096)
            if not d:
                raise EOFError
            pending.extend(d)
        data = bytes(pending[:n])
        del pending[:n]
        return data

    def run(self):
        pending = bytearray()
        try:
            while self.sim.running:
                i = pending.find(b"\r")
                if i < 0:
                    d = self.conn.recv(4096)
                    if not d:
                        break
                    pending.extend(d)
                    continue
                line = bytes(pending[:i]).strip(b"\n").decode(errors="replace")
                del pending[:i + 1]
                if not line:
                    continue
                self.sim.commands.append(line)
                if self.echo:
                    self.send(line.encode() + b"\r")
                if self.sim.garbage:
                    self.send(bytes(self.rnd.randrange(32, 127) for _ in range(40)) + b"\r\n")
                    continue
                with self.lock:
                    self.command(line, pending)
        except (EOFError, OSError):
            pass
        finally:
            self.drop_tcp()
            self.conn.close()

    # -- the data connection
    def drop_tcp(self):
        with self.lock:
            tcp, self.tcp = self.tcp, None  # first: the upstream thread it wakes sees it is gone
        if tcp:
            try:
                tcp.shutdown(socket.SHUT_RDWR)  # also ends the upstream thread's recv
            except OSError:
                pass
            tcp.close()

    def upstream(self, tcp):
        # the server's bytes into buf; "+CIPRXGET: 1" when data arrives, CLOSED at its end; nothing
        # once the connection is no longer the current one (checked under the session's lock, so a
        # URC never outlives its connection)
        while True:
            try:
                d = tcp.recv(4096)
            except OSError:
                d = b""
            with self.lock:
                if tcp is not self.tcp:  # dropped or replaced meanwhile
                    if not d:
                        self.sim.stats["late_ends"] += 1
                    return
                if not d:
                    time.sleep(self.sim.eof_delay)  # slow to tell (the session waits: its output is serial)
                    self.closed = True
                    self.urc("+IPCLOSE: 0,1" if self.sim.sim7600 else "CLOSED")
                    return
                was_empty = not self.buf
                if self.sim.close_each and not self.heads:  # after the status line of the response
                    i = d.find(b"\r\n") + 2
                    d = d[:i] + b"Connection: close\r\n" + d[i:]
                    self.heads += 1
                self.buf.extend(d)
                if was_empty:
                    self.urc("+CIPRXGET: 1,0" if self.sim.sim7600 else "+CIPRXGET: 1")

    def open_tcp(self, host, port):
        self.drop_tcp()
        self.buf = bytearray()
        self.closed = False
        self.heads = 0  # response heads seen on it
        try:
            tcp = socket.create_connection((host, port), timeout=5)
            tcp.settimeout(None)
        except OSError:
            return False
        self.tcp = tcp
        self.sim.stats["tcp_opens"] += 1
        threading.Thread(target=self.upstream, args=(tcp,), daemon=True).start()
        return True

    def deliver(self, n, prefix):
        # AT+CIPRXGET=2: up to n bytes of buf, in the reply; then, maybe, the link drops
        sim = self.sim
        sim.stats["reads"] += 1
        if sim.garbage_at is not None and sim.stats["to_device"] >= sim.garbage_at and not sim.stats["garbled"]:
            sim.stats["garbled"] += 1
            self.reply("+CIPRXGET: 2,#%&,x", "OK")
            return
        if self.tcp is None and not self.buf:
            self.reply("ERROR")
            return
        k = min(n, len(self.buf))
        data = bytes(self.buf[:k])
        del self.buf[:k]
        self.send(b"\r\n%s%d,%d\r\n" % (prefix, k, len(self.buf)) + data + b"\r\nOK\r\n")
        before = sim.stats["to_device"]
        sim.stats["to_device"] += k
        if sim.drop_after is not None and before < sim.drop_after <= sim.stats["to_device"] and not sim.stats["drops"]:
            sim.stats["drops"] += 1  # the radio link is lost: connection and PDP context gone
            self.drop_tcp()
            self.buf = bytearray()
            self.pdp = False
            if sim.sim7600:
                self.urc("+IPCLOSE: 0,2", "+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
            else:
                self.urc("CLOSED", "+PDP: DEACT")

    # -- the commands
    def registered(self):
        r = self.sim.register
        return r is True or r == "second" and self.n >= 2 or type(r) is int and self.cregs >= r

    def command(self, line, pending):
        sim = self.sim
        up = line.upper()
        if not up.startswith("AT"):
            return self.reply("ERROR")
        c = up[2:]
        if c == "":
            if self.booting:
                self.booting -= 1  # still booting: no answer
                if not self.booting:
                    self.urc("RDY")
                return
            return self.reply("OK")
        if self.booting:
            return
        sim800 = "SIM800" in sim.model
        if c in ("E0", "E1"):
            self.echo = c == "E1"
            return self.reply("OK")
        if c in ("+CGMM", "I"):
            return self.reply("SIMCOM_" + sim.model, "OK")
        if c == "+CPIN?":
            if sim.sim == "NOT INSERTED":
                return self.reply("+CME ERROR: 10")
            return self.reply("+CPIN: " + sim.sim, "OK")
        if c.startswith("+CNMP=") or c.startswith("+CMNB="):
            return self.reply("ERROR" if sim800 or c.startswith("+CMNB") and sim.sim7600 else "OK")
        if c in ("+CREG?", "+CGREG?", "+CEREG?"):
            if c == "+CEREG?" and sim800:
                return self.reply("ERROR")
            self.cregs += c == "+CREG?"
            stat = 1 if self.registered() else 3 if sim.register == "denied" else 2
            return self.reply("%s: 0,%d" % (c[:-1], stat), "OK")
        if c == "+CSQ":
            return self.reply("+CSQ: %d,0" % sim.csq, "OK")
        if c.startswith("+CIPRXGET=1"):
            self.manual = True
            return self.reply("OK")
        if sim.sim7600:
            return self.command7600(c, line, pending)
        # SIM800 / SIM7000: AT+CSTT, AT+CIICR, AT+CIFSR, AT+CIPSTART, ...
        if c == "+CIPSHUT":
            self.drop_tcp()
            self.pdp = False
            return self.reply("SHUT OK")
        if c == "+CIPMUX=0":
            return self.reply("OK")
        if c.startswith("+CSTT="):
            return self.reply("OK")
        if c == "+CIICR":
            self.pdp = self.registered()
            return self.reply("OK" if self.pdp else "ERROR")
        if c == "+CIFSR":
            return self.reply("10.64.3.7" if self.pdp else "ERROR")
        if c.startswith("+CIPSTART="):
            if not self.pdp:
                return self.reply("ERROR")
            _, host, port = [x.strip('"') for x in line[line.index("=") + 1:].split(",")]
            self.reply("OK")
            return self.reply("CONNECT OK" if self.open_tcp(host, int(port)) else "CONNECT FAIL")
        if c.startswith("+CIPSEND="):
            n = int(c.split("=")[1])
            if self.tcp is None:
                return self.reply("ERROR")
            self.send(b"\r\n> ")
            data = self.read_exact(n, pending)
            self.forward(data)
            return self.reply("SEND OK")
        if c.startswith("+CIPRXGET=2,") and self.manual:
            return self.deliver(int(c.split(",")[1]), b"+CIPRXGET: 2,")
        if c.startswith("+CIPCLOSE"):
            if self.tcp is None:
                return self.reply("ERROR")
            self.drop_tcp()
            return self.reply("CLOSE OK")
        return self.reply("ERROR")

    def command7600(self, c, line, pending):
        if c.startswith("+CGDCONT="):
            return self.reply("OK")
        if c == "+NETOPEN":
            if self.pdp:
                return self.reply("+IP ERROR: Network is already opened", "ERROR")
            if not self.registered():
                return self.reply("OK", "+NETOPEN: 1")
            self.pdp = True
            return self.reply("OK", "+NETOPEN: 0")
        if c == "+IPADDR":
            return self.reply("+IPADDR: 10.64.3.7", "OK") if self.pdp else self.reply("ERROR")
        if c == "+NETCLOSE":
            self.drop_tcp()
            self.pdp = False
            return self.reply("OK", "+NETCLOSE: 0")
        if c.startswith("+CIPOPEN=0,"):
            if not self.pdp:
                return self.reply("ERROR")
            _, _, host, port = [x.strip('"') for x in line[line.index("=") + 1:].split(",")]
            ok = self.open_tcp(host, int(port))
            return self.reply("OK", "+CIPOPEN: 0,%d" % (0 if ok else 4))
        if c.startswith("+CIPSEND=0,"):
            n = int(c.split(",")[1])
            if self.tcp is None:
                return self.reply("ERROR")
            self.send(b"\r\n>")
            data = self.read_exact(n, pending)
            self.forward(data)
            return self.reply("OK", "+CIPSEND: 0,%d,%d" % (n, n))
        if c.startswith("+CIPRXGET=2,0,") and self.manual:
            return self.deliver(int(c.split(",")[2]), b"+CIPRXGET: 2,0,")
        if c.startswith("+CIPCLOSE=0"):
            if self.tcp is None:
                return self.reply("ERROR")
            self.drop_tcp()
            return self.reply("OK", "+CIPCLOSE: 0,0")
        return self.reply("ERROR")

    def forward(self, data):
        self.sim.stats["to_server"] += len(data)
        self.sim.stats["requests"] += data.count(b"GET /")
        if self.sim.close_each:
            data = data.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        try:
            self.tcp.sendall(data)
        except OSError:
            pass


if __name__ == "__main__":
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--model", default="SIM800L")
    a.add_argument("--port", type=int, default=0)
    args = a.parse_args()
    with ModemSim(model=args.model, port=args.port) as m:
        print("modem %s on %s (Ctrl-C to stop)" % (args.model, m.address))
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
