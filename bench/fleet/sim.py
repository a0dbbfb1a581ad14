"""A fleet of devices running the real python/ota.py (CPython) against FleetServer on a virtual clock.

What is real and what is simulated:
- real: python/ota.py as it is, imported once; every device run is what main.main() does
  (OTA(cfg) with its boot recovery and trial count, connect(), update_if_available()), with the
  device's own folder (version.json, journal, staged files: a real filesystem, on tmpfs), its
  own request sequence, headers, redirects, retries and waits.
- simulated, through the updater's own seams: the network (OTA.net, the transport socket module
  that ota_cellular.py uses too: an in-memory socket that hands each request to FleetServer), TLS
  (OTA._tls_context: a context whose wrap_socket counts the handshake and returns the socket),
  and the clock (ota.time: time() and sleep() on the virtual clock).
- one device runs at a time, in order of virtual time (Scheduler); a sleep is lazy (the 50 ms
  steps of OTA.retry() add up) and yields to the other devices when the device next touches the
  network or the clock: its thread is parked meanwhile, so every request is served at its
  virtual time, in order.
- the device's loop: a check at boot, then one every `interval` seconds after the end of the last
  (main.py in a `while True: main(); sleep(3600)` loop); after an update, the reset (reset_mode
  "hard") boots the device `boot_sec` later, and that boot's check confirms the trial.
"""
import gc
import heapq
import json
import os
import random
import sys
import threading
import time as _time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "python", ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import ota  # noqa: E402  the real updater
import ota_schedule  # noqa: E402  next_check_in(): the loop of the README

# Off a board ota.py's `import network` / `import machine` fail (OTA.wifi, _board): failing at
# once from sys.modules, not after a search of sys.path at every run
for _m in ("network", "machine"):
    sys.modules.setdefault(_m, None)

# ota.py's _free_memory() runs gc.collect() before each file (it compacts a MicroPython heap; on
# CPython it returns 1 << 30 whatever the heap). A full collection traverses every object of the
# simulation, the frames of the devices waiting in OTA.retry() too (10 ms and more each): in this
# process it collects the youngest generation only (CPython's own collections still run).
_collect = gc.collect
gc.collect = lambda generation=2: _collect(0)

from fleet.model import FleetServer, HOUR  # noqa: E402

T0 = 1_750_000_000  # the virtual clock's epoch (a set clock: ota.py trusts X-RateLimit-Reset after 1.6e9)
_REASONS = {200: "OK", 206: "Partial Content", 302: "Found", 304: "Not Modified", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 416: "Range Not Satisfiable", 429: "Too Many Requests"}


def _locked():
    # a lock held from the start: acquire() waits for another thread's release() (a binary
    # semaphore, without threading.Semaphore's Condition)
    lock = threading.Lock()
    lock.acquire()
    return lock


class _Stop(BaseException):
    """Unwinds a device still waiting when the simulation ends (through ota.py's finally blocks)."""


class Scheduler:
    """Virtual time; events in order; one device runs at a time.

    The scheduler's loop runs in a worker thread, and a device run starts inline in it; a run
    that waits (sync) parks its thread and wakes an idle one to carry on the loop; when its
    resume event comes up, the thread that pops it hands over (so that threads switch only when
    a device waits, never for a run that does not)."""

    def __init__(self):
        self.now = 0.0
        self.heap = []
        self.seq = 0
        self.until = 0.0
        self.device = None  # the device running now (None between runs)
        self.clock = None  # its VirtualTime, whose sleep() is the running device's waits.append
        self.main = _locked()  # released by the loop when it reaches `until`
        self.idle = []
        self.threads = 0
        self.stopping = False

    def at(self, t, kind, obj):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, obj))

    def run(self, until):
        """Every event up to `until` (from the caller's thread, which waits meanwhile)."""
        self.until = until
        self._wake()
        self.main.acquire()
        self.now = until

    def _wake(self):
        w = self.idle.pop() if self.idle else Worker(self)
        w.lock.release()

    def loop(self, me):
        # in Worker `me`, holding the baton; returns when it hands it over (me is then idle)
        heap = self.heap
        while True:
            if not heap or heap[0][0] > self.until:
                self.idle.append(me)
                self.main.release()
                return
            t, _, kind, obj = heapq.heappop(heap)
            self.now = t
            if kind == "call":
                obj()
            elif kind == "start":
                obj.worker = me
                del obj.waits[:]
                self.device = obj
                self.clock.sleep = obj.waits.append
                try:
                    obj.run()
                except _Stop:  # the end of the simulation, in a wait: this thread ends
                    self.device = None
                    self.main.release()
                    raise
                except BaseException as e:  # a bug of the simulation (ota.py's failures are OTAError)
                    obj.fleet.crash(obj, e)
                self.device = None
            else:  # "resume": the device's own thread carries on (with the loop after its run)
                self.idle.append(me)
                obj.worker.lock.release()
                return

    # called from the device's thread
    def sync(self):
        """The device's pending wait passes: the other devices run meanwhile."""
        d = self.device
        s = sum(d.waits)
        if s > 0:
            del d.waits[:]
            self.at(self.now + s, "resume", d)
            self._wake()
            d.worker.lock.acquire()
            self.device = d
            self.clock.sleep = d.waits.append
            os.chdir(d.dir)
            if self.stopping:
                raise _Stop()

    def stop(self):
        """The end: the devices still waiting unwind (one at a time), the idle threads end."""
        self.stopping = True
        for _, _, kind, obj in sorted(self.heap):
            if kind == "resume":
                obj.worker.lock.release()
                self.main.acquire()
        self.heap = []
        for w in self.idle:
            w.stopped = True
            w.lock.release()
        self.idle = []


class Worker(threading.Thread):
    def __init__(self, sched):
        super().__init__(daemon=True)
        self.sched = sched
        self.lock = _locked()  # released to give this thread the baton
        self.stopped = False
        sched.threads += 1
        self.start()

    def run(self):
        while True:
            self.lock.acquire()
            if self.stopped:
                return
            try:
                self.sched.loop(self)
            except _Stop:
                return


class VirtualTime:
    """What ota.py sees as `time`: the virtual clock (sleep is lazy: see Scheduler.sync)."""

    def __init__(self, sched):
        self.sched = sched

    def time(self):
        if self.sched.device is not None:
            self.sched.sync()
        return T0 + self.sched.now

    def sleep(self, s):  # replaced by the running device's waits.append (OTA.retry() waits in 50 ms steps)
        self.sched.device.waits.append(s)

    def localtime(self, t=None):
        return _time.gmtime(self.time() if t is None else t)

    gmtime = localtime


class Reader:
    """The response side of an in-memory connection: readline/readinto/read over the bytes served."""

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0

    def readline(self):
        i = self.buf.find(b"\n", self.pos)
        j = len(self.buf) if i < 0 else i + 1
        out = bytes(self.buf[self.pos:j])
        self.pos = j
        return out

    def readinto(self, mv):
        n = min(len(mv), len(self.buf) - self.pos)
        mv[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n

    def read(self, n=-1):
        j = len(self.buf) if n < 0 else min(len(self.buf), self.pos + n)
        out = bytes(self.buf[self.pos:j])
        self.pos = j
        return out

    def close(self):
        pass


class Socket:
    """An in-memory TCP connection to FleetServer: requests written, responses read (HTTP/1.1,
    several per connection when the client keeps it open)."""

    def __init__(self, net):
        self.net = net
        self.host = None
        self.sent = bytearray()
        self.reader = Reader()
        self.closed = False

    def settimeout(self, t):
        pass

    def connect(self, addr):
        self.host = addr[0]
        self.net.connect(self)

    def sendall(self, data):
        self.sent += data
        while not self.closed:
            i = self.sent.find(b"\r\n\r\n")
            if i < 0:
                break
            head = bytes(self.sent[:i]).decode("latin-1")
            del self.sent[:i + 4]
            self.net.serve(self, head)
        return len(data)

    def write(self, data):  # MicroPython's socket API
        return self.sendall(data if isinstance(data, (bytes, bytearray)) else data.encode())

    def makefile(self, mode="rb"):
        return self.reader

    def readline(self):
        return self.reader.readline()

    def readinto(self, mv):
        return self.reader.readinto(mv)

    def read(self, n=-1):
        return self.reader.read(n)

    def close(self):
        self.closed = True


class Net:
    """The socket module a device's OTA uses (OTA.net) and its TLS context (OTA._tls_context)."""

    SOCK_STREAM = 1
    AF_INET = 2

    def __init__(self, fleet):
        self.fleet = fleet

    def getaddrinfo(self, host, port, family=0, kind=0):
        return [(self.AF_INET, self.SOCK_STREAM, 0, "", (host, port))]

    def socket(self, family=AF_INET, kind=SOCK_STREAM, *a):
        return Socket(self)

    def wrap_socket(self, s, server_hostname=None):  # the TLS context: one handshake counted
        self.fleet.sched.device.handshakes += 1
        return s

    def tls(self):
        return self

    def connect(self, s):
        f = self.fleet
        f.sched.sync()
        f.sched.device.connections += 1

    def serve(self, s, head):
        f = self.fleet
        f.sched.sync()  # the request goes out at the device's virtual time
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().title()] = v.strip()
        headers = _Headers(headers)
        d = f.sched.device
        try:
            status, h, body = f.server.handle(s.host, method, path, headers)
        except Exception as e:  # a bug of the model: never hidden as a device failure
            f.crash(d, e)
            status, h, body = 500, {}, b"model error"

        d.requests.append((f.sched.now, s.host, path, status, "Authorization" in headers,
                           "If-None-Match" in headers))
        out = ["HTTP/1.1 %d %s" % (status, _REASONS.get(status, "Status"))]
        for k, v in h.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                out.append("%s: %s" % (k, v))
        out.append("Content-Length: %d" % len(body))
        if headers.get("Connection", "").lower() == "close":
            out.append("Connection: close")
        s.reader.buf += ("\r\n".join(out) + "\r\n\r\n").encode() + body
        if headers.get("Connection", "").lower() == "close":
            s.closed = True


class _Headers(dict):
    """Request headers, looked up case-insensitively (as http.server's are)."""

    def get(self, k, default=None):
        return dict.get(self, k.title(), default)


class Device:
    def __init__(self, fleet, i, folder):
        self.fleet = fleet
        self.id = i
        self.dir = str(folder)
        self.waits = []  # the sleeps since the device last touched the network or the clock
        self.requests = []  # (time, host, path, status) of the current run
        self.connections = self.handshakes = 0
        self.state = "old"  # old, trial (the new release, not yet confirmed), new, rolled back
        self.updated_at = None  # first time the new release was installed
        self.runs = self.errors = 0
        self.booting = True  # the next run is the first since a (re)boot

    def run(self):
        f = self.fleet
        os.chdir(self.dir)
        self.requests = []
        ota._booted = not self.booting  # one process for the whole fleet: each device's boots
        self.booting = False
        u = ota.OTA(f.cfg)  # boot recovery, and at a boot the trial count
        u.net = f.net
        u._tls_context = f.net.tls
        updated = False
        error = None
        try:
            u.connect()
            updated = u.update_if_available()
        except ota.OTAError as e:
            error = str(e)
        f.sched.sync()  # a wait at the end of the run still takes its time
        f.ran(self, updated, error, u)


class Fleet:
    """N devices against one FleetServer; the devices' folders are copies of one installed device."""

    def __init__(self, repo_dir, work, cfg, n, boot, interval=HOUR, boot_sec=5, seed=1, rules=None,
                 release_check=None, loop="offset"):
        threading.stack_size(256 * 1024)
        self.sched = Scheduler()
        ota.time = self.sched.clock = VirtualTime(self.sched)
        self.server = FleetServer(repo_dir, lambda: self.sched.now, T0, owner=cfg["owner"], repo=cfg["repo"], **(rules or {}))
        self.net = Net(self)
        self.cfg = ota.check_config(dict(cfg))
        self.work = Path(work)
        self.n = n
        self.boot = boot  # "spread": boots uniform over an interval; "herd": all within boot[1] s
        self.interval = interval
        self.loop = loop  # "offset": sleep ota_schedule.next_check_in() (README); "fixed": the interval
        self.boot_sec = boot_sec
        self.rnd = random.Random(seed)
        self.setup = False
        self.devices = []
        self.errors = {}  # reason class -> n
        self.error_hours = {}  # hour -> n
        self.runs_hours = {}
        self.new_ref = None
        self.release_check = release_check  # version.json -> True when it is the new release
        self.crashes = []
        self.handshakes = []  # per run: (handshakes, requests)
        self.rollbacks = 0

    def crash(self, d, e):
        import traceback

        self.crashes.append((d.id, "".join(traceback.format_exception(e))[-2000:]))
        d.last = (False, "simulation error: %s" % e)

    def install_template(self):
        """One device installed at the current release by the real updater, confirmed (two runs),
        off the books: the model's counters start afresh afterwards."""
        t = self.work / "template"
        t.mkdir(parents=True)
        d = Device(self, -1, t)
        for _ in range(2):  # the install, then the boot after its reset
            d.booting = True
            updated, error = self.run_once(d)
            assert not error, error
        v = json.loads((t / "version.json").read_text())
        assert not (t / "ota_journal.json").exists(), "the template's trial was not confirmed"
        self.server.rules.reset()
        self.errors.clear()
        self.error_hours.clear()
        self.runs_hours.clear()
        self.handshakes.clear()
        return t, v

    def run_once(self, d):
        """One run of device d now, off the schedule (mpy_sample.py): (updated, error)."""
        self.setup = True
        d.last = None
        self.sched.at(self.sched.now, "start", d)
        while d.last is None:  # through its waits
            self.sched.run(self.sched.heap[0][0])
        self.setup = False
        assert not self.crashes, self.crashes
        return d.last

    def populate(self, start):
        t, _ = self.install_template()
        dirs, files = [], []
        for d, _, names in os.walk(t):
            dirs.append(os.path.relpath(d, t))
            files += [(os.path.relpath(os.path.join(d, n), t), Path(d, n).read_bytes()) for n in names]
        for i in range(self.n):
            folder = self.work / ("d%05d" % i)
            for d in dirs:  # a copy of the template (only its bytes: no metadata to copy)
                os.makedirs(folder / d, exist_ok=True)
            for p, data in files:
                with open(folder / p, "wb") as f:
                    f.write(data)
            d = Device(self, i, folder)
            self.devices.append(d)
            if self.boot == "spread":
                first = start + self.rnd.random() * self.interval
            else:
                first = start + self.rnd.random() * self.boot_window
            self.sched.at(first, "start", d)

    boot_window = 60  # herd: the fleet is powered on together, each board boots within a minute

    def ran(self, d, updated, error, u):
        d.last = (updated, error)
        now = self.sched.now
        h = int(now // HOUR)
        d.runs += 1
        self.runs_hours[h] = self.runs_hours.get(h, 0) + 1
        self.handshakes.append((d.handshakes, len(d.requests)))
        d.handshakes = d.connections = 0
        if error:
            d.errors += 1
            k = _reason(error)
            self.errors[k] = self.errors.get(k, 0) + 1
            self.error_hours[h] = self.error_hours.get(h, 0) + 1
        if self.setup:
            return
        if updated or d.state in ("trial", "rolled back"):  # (only an update or a trial's boot changes it)
            v = ota._load_json(ota.VERSION) or {}
            j = ota._load_json(ota.JOURNAL)
            if self.release_check and self.release_check(v):
                state = "trial" if j and j.get("state") == "trial" else "new"
                if d.updated_at is None:
                    d.updated_at = now
            else:
                state = "old" if d.updated_at is None else "rolled back"
            if state == "rolled back" and d.state != "rolled back":
                self.rollbacks += 1
            d.state = state
        d.booting = updated  # the reset after an update
        if updated:
            wait = self.boot_sec
        elif self.loop == "offset":  # the loop of the README: each device at its own point of the hour
            wait = ota_schedule.next_check_in({"device_id": "dev%d" % d.id, "repo": self.cfg["repo"]}, self.interval, now)
        else:
            wait = self.interval
        self.sched.at(now + wait, "start", d)

    def run(self, until):
        self.sched.run(until)


def _reason(message):
    m = message.lower()
    if "rate limit exceeded" in m and "resets in" in m:
        return "primary limit (fails at once: reset > max_backoff_sec)"
    if "rate limit exceeded" in m and "retry in" in m:
        return "secondary limit (fails at once: a minute > max_backoff_sec)"
    if "rate limited" in m and "gave up" in m:
        return "rate limited after all retries"
    if "403" in m and "permissions" in m:
        return "403 read as a permission error"
    if "404" in m:
        return "404"
    return message[:60]
