# ota.py: over-the-air updates from a GitHub repository for MicroPython 1.23+
# (Raspberry Pi Pico W); also runs on CPython 3.11. One file: copy it with
#   mpremote cp ota.py ota_native.mpy main.py ota_config.json :
#
#   import ota
#   u = ota.OTA(ota.load_config())   # boot-time recovery runs here
#   u.connect()
#   if u.update_if_available():
#       u.reset()
#
# Update states (docs/design.md has the same table and records):
#   IDLE -> STAGING    files streamed and verified into stage_dir (no journal: nothing to undo)
#        -> SWAPPING   journal on flash; old files moved to backup_dir, staged files moved in
#        -> HOOK       post_update hook runs; version.json still the old one
#        -> COMMITTED  stage_dir/version.json renamed onto version.json (the commit point)
#        -> IDLE       backups, stage and journal removed
# At boot a journal means an interrupted update: committed -> finish it, else roll back.
# A changed file is staged by one of: a delta from .deltas/ (ota_native.DeltaReader against
# the installed file), a gzip download (ota_native.InflateReader), or a plain download; all
# of them stream through OTA._pump, the one chunk loop.
# The token never appears in logs or in ota_error.json.
# Memory: MicroPython compiles this file as one parse tree of ~20 bytes per token (x64; each
# function ~300 more), freed only when the whole module is compiled: that tree is the peak of
# an import from source. So the code is kept short: tables, one streaming loop, few functions,
# positional arguments. Comments and docstrings cost nothing there.

import os
import sys
import json
import time

try:
    import ota_native as _nat
except ImportError:
    _nat = None

_MP = sys.implementation.name == "micropython"
VERSION = "version.json"
ERRORS = "ota_error.json"
JOURNAL = "ota_journal.json"
STATE = "ota_state.json"
# response headers kept, under short names (the others are skipped as they arrive)
_KEEP = {"content-length": "length", "transfer-encoding": "transfer", "content-encoding": "encoding",
         "location": "location", "retry-after": "retry", "x-ratelimit-remaining": "rl_left",
         "x-ratelimit-reset": "rl_reset"}


def _hook(op, path):
    # runs before every filesystem mutation; the power-cut tests replace it
    pass


class OTAError(Exception):
    pass


class Retry(Exception):
    # transient failure: args = (message, seconds to wait, None for the backoff, or -1: no
    # failure of the source but of the method, tried again at once and not counted)
    pass


# ---------------------------------------------------------------- filesystem
def _fs(op, a, b=None):
    # every mutation: _fs("rename", a, b), "remove", "mkdir", "rmdir", "open" (mode in b)
    _hook(op, a)
    if op == "open":
        return open(a, b)
    if b:
        return os.rename(a, b)
    getattr(os, op)(a)


def _size(p):
    # size of a file (>= 0 for a directory), -1 if missing
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _rm(p):
    # remove a file or a whole directory, if it exists
    try:
        names = os.listdir(p)
    except OSError:  # a file, or nothing
        if _size(p) >= 0:
            _fs("remove", p)
        return
    for n in names:
        _rm(p + "/" + n)
    _fs("rmdir", p)


def _load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(p, obj):
    # tmp + rename: a reader sees the old or the new file, never half of one
    with _fs("open", p + ".tmp", "w") as f:
        _hook("write", p)
        json.dump(obj, f)  # streamed: no string of the whole record
    _fs("rename", p + ".tmp", p)


def _mem():
    import gc

    gc.collect()
    return gc.mem_free() if _MP else 1 << 30


def _dict(n):
    # an empty dict with a table of n slots, made now: a table that grows while records are made
    # leaves holes between them (deleted keys leave their slots; only a full table grows). The file
    # tables get 17 (the size a 13-17 file tree grows to; a bigger tree grows it as before).
    d = dict.fromkeys(range(n))
    for k in range(n):
        del d[k]
    return d


def _hashers(size, s256):
    # [Git blob SHA1 of a file of size bytes, + sha256 when the manifest gives one]
    import hashlib

    h = [_nat.BlobHasher(size) if _nat else hashlib.sha1(b"blob %d\0" % size)]
    return h + [hashlib.sha256()] if s256 else h


def _verify(h, sha, s256):
    from binascii import hexlify as x

    return x(h[0].digest()) == sha.encode() and not (s256 and x(h[-1].digest()) != s256.lower().encode())


# ---------------------------------------------------------------- config
# key=type and default: type s str, S str or null, b bool, i int >= 0, n number >= 0, l list of
# str, x anything; ! = required; after a space the default as JSON (none: null). Keyword names
# make the keys interned strings (qstrs): no copy of a key per use on the device.
_SCHEMA = dict(owner="s!", repo="s!", ssid="S", password="S", channel='s "stable"', branch='s "main"', tag="S",
               token="S", allow="l []", ignore="l []", chunk="i 1024", stage_dir='s ".ota_stage"',
               backup_dir='s ".ota_backup"', connect_timeout_sec="n 10", http_timeout_sec="n 30", retries="i 3",
               backoff_sec="n 2", max_backoff_sec="n 60", force="b false", reset_mode='s "hard"', debug="b false",
               api_base='s "https://api.github.com"', raw_base='s "https://raw.githubusercontent.com"',
               enable_delta_updates="b false", self_update="b false", watchdog_sec="i 0", led_pin="x",
               min_battery_v="n 0", battery_adc_pin="i 29", battery_divider="n 3", transports='l ["wifi"]',
               min_interval_sec="i 0", canary_percent="i 100", device_id="S", health_hook="S", windows="l []",
               ca_file="S")
_CHOICES = {"channel": ("stable", "developer"), "reset_mode": ("hard", "soft", "none")}


def load_config(path="ota_config.json"):
    # Read and check the config: .json, or flat .yaml/.yml/.toml (by extension).
    ext = path[path.rfind(".") + 1:].lower()
    if ext not in ("json", "yaml", "yml", "toml"):
        raise OTAError("%s: use a .json, .yaml, .yml or .toml file" % path)
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise OTAError("config file %s not found" % path)
    try:
        cfg = json.loads(text) if ext == "json" else _flat(text, ext == "toml")
    except ValueError as e:
        raise OTAError("%s: not valid %s: %s" % (path, ext.upper(), e))
    return check_config(cfg, path)


def check_config(cfg, path="ota_config.json"):
    # Return the config with defaults; OTAError naming the first bad key.
    if not isinstance(cfg, dict):
        raise OTAError("%s: expected a mapping of keys to values" % path)
    out = dict(_SCHEMA)  # its table sized once: values replaced below
    out["_path"] = path
    for k in _SCHEMA:
        t, d = (_SCHEMA[k] + " ").split(" ", 1)
        v = cfg.get(k)
        if v is None:
            if t[-1] == "!":
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            v = json.loads(d or "null")
        else:
            t = t[0]
            y = type(v)
            if t == "l" and y is str:
                v = [v]
                y = list
            if y is str and v[:5] == "YOUR_":
                raise OTAError("%s: '%s' still has the placeholder value %s" % (path, k, v))
            # exact types: a bool is not a number here
            if not (t == "x" or t in "sS" and y is str and (v or t == "S") or t == "b" and y is bool
                    or t in "in" and (y is int or t == "n" and y is float) and v >= 0
                    or t == "l" and y is list and all(type(x) is str for x in v)):
                t = {"s": "a non-empty string", "S": "a string", "b": "true or false (a JSON boolean)",
                     "i": "a whole number >= 0", "n": "a number >= 0", "l": "a list of strings"}[t]
                raise OTAError("%s: '%s' must be %s, got %r" % (path, k, t, v))
            if v not in _CHOICES.get(k, (v,)):
                raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(_CHOICES[k]), v))
        out[k] = v
    # unknown keys (a typo, or a newer version's key) are kept aside, not fatal: main() prints them
    out["_unknown"] = u = []
    for k in cfg:
        if k not in out and k[:1] != "_":
            u.append(k)
    if out["chunk"] < 256 or out["canary_percent"] > 100:
        raise OTAError("%s: 'chunk' must be >= 256 and 'canary_percent' <= 100" % path)
    for w in out["windows"]:
        try:
            in_windows([w], 0)
        except ValueError:
            raise OTAError('%s: \'windows\' entries must be "HH:MM-HH:MM" (24 h), got %r' % (path, w))
    for k in ("api_base", "raw_base"):
        out[k] = v = out[k].rstrip("/")
        if v[:7] != "http://" and v[:8] != "https://":
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
    return out


def in_windows(windows, minute):
    # True if minute (of the local day) is inside one of windows, "HH:MM-HH:MM" (local time;
    # end < start crosses midnight, start == end is the whole day); [] is always open.
    # ValueError for a malformed window.
    for w in windows:
        m = []
        for x in w.split("-"):
            if len(x) != 5 or x[2] != ":" or int(x[:2]) > 23 or int(x[3:]) > 59:
                raise ValueError
            m.append(int(x[:2]) * 60 + int(x[3:]))
        a, b = m
        if a <= minute < b or b <= a and (minute >= a or minute < b):
            return True
    return not windows


def _split(s):
    # s cut at the first "#" and split at the commas, both outside quotes
    q = None
    out = []
    a = 0
    for i in range(len(s)):
        c = s[i]
        if q:
            q = None if c == q else q
        elif c in "\"'":
            q = c
        elif c in ",#":
            out.append(s[a:i])
            a = i + 1
            if c == "#":
                return out
    return out + [s[a:]]


def _val(v, toml):
    # one flat YAML/TOML value: [lists], 'literal', then JSON ("str", numbers, true/false, null),
    # else a YAML bare string (~ and nothing: null)
    if v[:1] == "[":
        out = []
        for x in _split(v[1:-1]):
            x = x.strip()
            if x:
                out.append(_val(x, toml))
        return out
    if len(v) > 1 and v[0] == "'" == v[-1]:
        return v[1:-1]
    try:
        return json.loads(v)
    except ValueError:
        if toml:
            raise ValueError("strings must be quoted: " + v)
    return None if v in ("~", "") else v


def _flat(text, toml):
    # flat YAML (key: value, "- item" lists) or TOML (key = value, [arrays] over lines)
    cfg = {}
    key = a = None  # a: a [list] continued over lines
    n = 0
    for line in text.split("\n"):
        n += 1
        s = ",".join(_split(line)).strip()
        if a is not None:
            a += " " + s
            if s[-1:] == "]":
                cfg[key] = _val(a, toml)
                a = None
        elif s and s != "---":
            if not toml and s[0] == "-":
                if key is None or cfg[key] is not None and type(cfg[key]) is not list:
                    raise ValueError("line %d: list item without a key" % n)
                cfg[key] = (cfg[key] or []) + [_val(s[1:].strip(), toml)]
                continue
            i = s.find("=" if toml else ":")
            if i < 1 or s[0] == "[":
                raise ValueError("line %d: expected a flat key %s value" % (n, "=" if toml else ":"))
            key = s[:i].strip().strip("\"'")
            v = s[i + 1:].strip()
            if v[:1] == "[" and v[-1:] != "]":
                a = v
            elif toml and not v:
                raise ValueError("line %d: missing value" % n)
            else:
                cfg[key] = _val(v, toml)
    if a is not None:
        raise ValueError("unterminated list for " + key)
    return cfg


# ---------------------------------------------------------------- paths and URLs
def check_path(p):
    # p if it is a safe relative path, else OTAError (.., leading /, empty parts, \).
    q = "/%s/" % (p,)  # an empty, "." or ".." part: "//", "/./" or "/../" in q
    if not isinstance(p, str) or "\\" in p or "\0" in p or ":" in p or "//" in q or "/./" in q or "/../" in q:
        raise OTAError("unsafe path %r rejected; nothing installed" % (p,))
    return p


def _under(p, x):
    # p is the file x or inside the directory x ("lib" and "lib/" alike)
    x = x.strip("/")
    return p == x or p.startswith(x) and p.startswith("/", len(x))


def _quote(s):
    out = bytearray()  # grown in place, not a new string per character
    for c in s.encode():
        if 47 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.~":
            out.append(c)
        else:
            out.extend(b"%%%02X" % c)
    return out.decode()


def _url(url):
    # -> scheme, host, port, path
    i = url.find("://")
    rest = url[i + 3:]
    j = (rest + "/").find("/")
    host, path = rest[:j], rest[j:] or "/"
    port = 443 if url[:i] == "https" else 80
    if ":" in host:
        host, port = host.split(":")
        port = int(port)
    return url[:i], host, port, path


# ---------------------------------------------------------------- HTTP
class Resp:
    # one HTTP/1.1 response: status, a few headers, body through readinto (length or chunked).
    # Few attributes, all set here: an instance's attribute table grows as they are added.
    def __init__(self, s, u):
        # f: the socket (MicroPython) or its file (CPython, where the socket, closed here, stays
        # open until its file is closed)
        self.f = f = s if _MP else s.makefile("rb")
        if f is not s:
            s.close()
        self.u = u  # body bytes are counted in u.bytes
        self.h = h = {}
        self.ck = 0  # chunked: 1 before the first chunk, 2 after one; 3: body done
        line = f.readline()
        try:
            self.status = int(line[9:12])  # "HTTP/1.1 200 OK": no split (a list of 3)
        except ValueError:
            raise Retry("bad status line", None)
        while line not in (b"\r\n", b"\n", b""):
            line = f.readline()
            i = line.find(b":")
            k = _KEEP.get(line[:i].strip().lower().decode())
            if k:
                h[k] = line[i + 1:].strip().decode()
        self.left = int(h.get("length", -1))  # -1: until the connection closes
        if self.left < 0 and "chunked" in h.get("transfer", ""):
            self.left = 0
            self.ck = 1

    def readinto(self, buf):
        f = self.f
        if 0 < self.ck < 3 and not self.left:
            if self.ck == 2:
                f.readline()  # the CRLF after a chunk
            self.ck = 2
            line = f.readline()
            if not line:
                raise Retry("cut in a chunk", None)
            self.left = int(line.split(b";")[0], 16)
            if not self.left:
                while f.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self.ck = 3
        if self.ck == 3 or not self.left:
            return 0
        n = len(buf)
        if 0 < self.left < n:
            n = self.left
        k = f.readinto(memoryview(buf)[:n])
        if not k:
            if self.left < 0:
                self.ck = 3
                return 0
            raise Retry("connection cut", None)
        self.u.bytes += k
        if self.left > 0:
            self.left -= k
        return k

    def close(self):  # the socket (or, on CPython, its file and so the socket)
        self.f.close()


# ---------------------------------------------------------------- updater
class OTA:
    def __init__(self, cfg):
        self.cfg = cfg = cfg if "_path" in cfg else check_config(cfg)
        self.buf = memoryview(bytearray(cfg["chunk"]))  # the one transfer buffer
        self.requests = self.bytes = 0  # HTTP requests made, body bytes received
        self.result = {}
        self.transport = None
        self.gz = _nat is not None  # ask for gzip (dropped after an inflate failure)
        # Hardware: the one place that touches machine/network is here, feed() and wifi(). Real
        # hardware = a `machine` module with Pin (the unix port's has none, CPython has no machine;
        # tests put fake machine.py/network.py in the device folder); otherwise no-ops.
        self.wdt = self.led = self.m = None
        try:
            import machine as m

            if hasattr(m, "Pin"):
                self.m = m
                if cfg["watchdog_sec"]:
                    self.wdt = m.WDT(0, min(cfg["watchdog_sec"] * 1000, 8388))  # rp2 caps at 8.3 s
                if cfg["led_pin"] is not None:
                    self.led = m.Pin(cfg["led_pin"], m.Pin.OUT)
        except ImportError:
            pass
        self.recover()

    def feed(self):
        # called per chunk and while waiting: keeps the watchdog fed, blinks the LED
        if self.wdt:
            self.wdt.feed()
        if self.led:
            self.led.toggle()

    def wifi(self):
        c = self.cfg
        try:
            import network
        except ImportError:
            return True  # wired, or host networking
        if not self.m:
            return True
        w = network.WLAN(network.STA_IF)
        w.active(True)
        if not w.isconnected() and c["ssid"]:
            w.connect(c["ssid"], c["password"] or "")
            for _ in range(int(c["connect_timeout_sec"] * 10)):  # 100 ms steps
                if w.isconnected():
                    break
                self.feed()
                time.sleep(0.1)
        return w.isconnected()

    def log(self, msg, *a):
        # msg % a, formatted only with debug on (a message made per request is a late allocation)
        if self.cfg["debug"]:
            print("ota: %s [free %d]" % (msg % a, _mem()))

    def record(self, reason, commit=None):
        # Append to ota_error.json: bounded (last 10), newest last, time and reason, never the token.
        # Returns the reason as recorded.
        t = self.cfg["token"]
        reason = str(reason).replace(t, "***") if t else str(reason)
        e = {"time": int(time.time()), "reason": reason}
        if commit:
            e["commit"] = commit
        old = _load(ERRORS)
        _save(ERRORS, ((old if type(old) is list else []) + [e])[-10:])
        return reason

    def reset(self):
        # machine.reset() / soft_reset() per reset_mode; nothing without a machine with Pin
        mode = self.cfg["reset_mode"]
        if self.m and mode != "none":
            self.m.soft_reset() if mode == "soft" else self.m.reset()

    def installed(self):
        return _load(VERSION) or {}

    # ------------------------------------------------------------ network
    def connect(self):
        # Bring up a link: each of `transports` in turn (wifi; others are user modules ota_<name>).
        for name in self.cfg["transports"]:
            try:
                ok = self.wifi() if name == "wifi" else __import__("ota_" + name).connect(self.cfg)
            except ImportError:
                ok = False
            self.log("connect %s: %s", name, ok)
            if ok:
                self.transport = name
                return name
        raise OTAError("no network: %s failed" % ", ".join(self.cfg["transports"]))

    def get(self, url, off=0, gz=False):
        # One attempt: GET url (following redirects); a 200/206 Resp or an exception.
        # off: resume with a Range; gz: ask for gzip (never with a Range).
        import socket

        c = self.cfg
        auth = c["token"]
        t = (c["connect_timeout_sec"], c["http_timeout_sec"])
        # the request goes out in pieces, no string (or tuple) of the whole: a late allocation of
        # 4-6 blocks is the one a fragmented heap fails. MicroPython writes a str as it is.
        w = lambda x: x and (s.write(x) if _MP else s.sendall(x.encode()))
        for _ in range(6):
            sch, host, port, path = _url(url)
            self.requests += 1
            self.log("GET %s %d %d", url, off, gz)
            a = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            s = socket.socket(a[0], socket.SOCK_STREAM)
            try:
                s.settimeout(max(t) if _MP else t[0])  # MicroPython: one timeout, the larger
                s.connect(a[-1])
                if sch == "https":
                    # MicroPython: the core `tls` module (its `ssl` is a frozen wrapper of it).
                    # The server certificate is checked against ca_file when set; a device has no
                    # CA bundle, so without ca_file MicroPython encrypts but does not verify.
                    ssl = __import__("tls" if _MP else "ssl")
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ca = c["ca_file"]
                    if ca:
                        ctx.verify_mode = ssl.CERT_REQUIRED
                        with open(ca, "rb") as f:
                            ca = f.read()
                        if ca[:5] == b"-----":  # PEM -> DER (MicroPython's mbedTLS reads DER only)
                            import binascii

                            ca = binascii.a2b_base64(b"".join(ca.split(b"-----")[2].split()))
                        ctx.load_verify_locations(ca) if _MP else ctx.load_verify_locations(cadata=ca)
                    elif _MP:
                        ctx.verify_mode = ssl.CERT_NONE
                    else:
                        ctx.load_default_certs()
                    try:
                        s = ctx.wrap_socket(s, server_hostname=host)
                    except ValueError as e:  # certificate not trusted: not transient, no retry
                        raise OTAError("TLS to %s: %s" % (host, str(e).strip()))
                if not _MP:  # MicroPython: the timeout set above stays (an SSLSocket has no settimeout)
                    s.settimeout(t[1])
                w("GET ")
                w(path)
                w(" HTTP/1.1\r\nHost: ")
                w(host)
                w(":%d" % port if port not in (80, 443) else "")
                w("\r\nUser-Agent: ota.py\r\nConnection: close\r\n")
                w("Accept: application/octet-stream\r\n" if "/releases/assets/" in path else
                  "Accept: application/vnd.github+json\r\n" if "/repos/" in path else "")
                if auth:
                    w("Authorization: token ")
                    w(auth)
                    w("\r\n")
                w("Range: bytes=%d-\r\n" % off if off else "Accept-Encoding: gzip\r\n" if gz else "")
                w("\r\n")
                r = Resp(s, self)
            except BaseException:
                s.close()
                raise
            n = r.status
            h = r.h
            self.log("-> %d", n)
            if n in (200, 206):
                return r
            r.close()
            new = h.get("location")
            if n in (301, 302, 303, 307, 308) and new:
                if new[:1] == "/":  # a path on the same server
                    new = url[:url.find("/", url.find("://") + 3)] + new
                if _url(new)[1:3] != (host, port):
                    auth = None  # never send the token to another host
                url = new
                continue
            # 401/404/403: fail at once with the troubleshooting text; 5xx/429/rate limit: Retry
            if n == 401:
                raise OTAError("GitHub API returned 401 for %s: private repository or invalid token; "
                               "add a valid 'token'" % url)
            if n == 404:
                raise OTAError("GitHub API returned 404 for %s: check 'owner', 'repo', that the release exists, "
                               "the tag name (private repositories need a 'token')" % url)
            if n == 429 or n == 403 and (h.get("rl_left") == "0" or "retry" in h):
                wait = h.get("retry")
                if wait is None:
                    now = int(time.time())
                    # an unset device clock cannot tell when the reset comes: plain backoff then
                    wait = int(h.get("rl_reset", now)) - now if now > 1600000000 else -1
                wait = int(wait)
                if wait > c["max_backoff_sec"]:
                    raise OTAError("GitHub API rate limit exceeded: resets in %d s (> max_backoff_sec); "
                                   "add a 'token'" % wait)
                raise Retry("rate limited", wait if wait >= 0 else None)
            if n == 403:
                raise OTAError("GitHub API returned 403 for %s: check the token's permissions" % url)
            e = "HTTP %d from %s" % (n, url)
            raise Retry(e, None) if n >= 500 else OTAError(e)
        raise OTAError("too many redirects for " + url)

    def retry(self, fn, n=-1):
        # fn() with retries and exponential backoff, for transient failures only; n: retries
        # (default: the config's)
        c = self.cfg
        d = c["backoff_sec"]  # the next backoff
        n = c["retries"] if n < 0 else n
        while True:
            try:
                return fn()
            except Retry as e:
                msg, wait = e.args
            except OSError as e:  # connection refused/reset, timeouts
                msg, wait = "connection error: %s" % (e,), None
            if wait == -1:  # the method changed (gzip failed: plain now): again at once, not counted
                self.log("%s", msg)
                continue
            if n <= 0:
                raise OTAError("%s (gave up after %d attempts)" % (msg, c["retries"] + 1))
            n -= 1
            wait = min(d if wait is None else wait, c["max_backoff_sec"])
            self.log("%s; wait %s", msg, wait)
            for _ in range(int(wait * 20)):  # 50 ms steps, the watchdog fed meanwhile
                self.feed()
                time.sleep(0.05)
            d = min(d * 2, c["max_backoff_sec"])

    def json(self, url, each=None, n=-1):
        # GET a JSON document without holding its arrays of objects: each(obj) is called per
        # object inside an array one level below the top (tree entries, manifest files, release
        # assets, delta index entries), and the rest (those objects replaced by 0) is returned;
        # n: attempts as in retry().
        # each() must be idempotent (retries).
        def once():
            r = self.get(url)
            # out (the rest) and obj (one object at a time): made with room for a typical tree, then emptied
            # (the room stays), so they seldom grow and move while records are made between them
            out = bytearray(256)
            obj = bytearray(256)
            out[:] = obj[:] = b""
            d = 0  # depth
            q = e = False  # in a string, after a backslash
            z = -1  # len(out) after the last "0" put for an object
            mv = self.buf
            try:
                while True:
                    k = r.readinto(mv)
                    if not k:
                        return out
                    a = 0  # mv[a:i] not copied yet: one extend per run, not one append per byte
                    for i in range(k):
                        c = mv[i]
                        if q:
                            if e:
                                e = False
                            elif c == 92:
                                e = True
                            elif c == 34:
                                q = False
                        elif c == 34:
                            q = True
                        elif c in b"{[":
                            d += 1
                            if d == 3:  # an object starts
                                out.extend(mv[a:i])
                                if len(out) == z + 1:  # only "," since the last one's "0": that
                                    out[z:] = b""  # "0" stands for this one too (out stays small)
                                a = i
                        elif c in b"}]":
                            d -= 1
                            if d == 2:  # and ends
                                obj.extend(mv[a:i + 1])
                                a = i + 1
                                each and each(json.loads(obj))
                                obj[:] = b""
                                if len(out) != z:
                                    out.append(48)  # "0" keeps the array valid
                                    z = len(out)
                    (obj if d > 2 else out).extend(mv[a:k])
            finally:
                r.close()

        try:
            return json.loads(self.retry(once, n))
        except ValueError:
            raise OTAError("invalid JSON from " + url)

    def _api(self, path, each=None):
        c = self.cfg
        return self.json("%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], path), each)

    # ------------------------------------------------------------ targets
    def _head(self):
        # the one request of an up-to-date check: branch -> its commit; release -> tag (commit later)
        c = self.cfg
        if c["channel"] == "developer":
            sha = self._api("git/ref/heads/" + _quote(c["branch"]))["object"]["sha"]
            return {"ref": c["branch"], "commit": sha, "version": sha[:7], "manifest": None}
        t = {"commit": None, "manifest": None}

        def entry(a):
            # browser_download_url costs no API request, but takes no token: with a token the
            # asset comes through the API (get() asks for the bytes), as a private repository needs
            if a.get("name") == "manifest.json":
                t["manifest"] = c["token"] and a.get("url") or a.get("browser_download_url") or a["url"]

        r = self._api("releases/" + ("tags/" + _quote(c["tag"]) if c["tag"] else "latest"), entry)
        t["ref"] = r["tag_name"]
        t["version"] = r.get("name") or r["tag_name"]
        return t

    def resolve_target(self, t=None):
        # {"ref", "commit", "version", "manifest" (URL or None)} of the channel's target
        # (t: what _head() gave, its commit still to find for a release).
        t = t or self._head()
        if not t["commit"]:
            o = self._api("git/ref/tags/" + _quote(t["ref"]))["object"]
            while o["type"] == "tag":  # annotated tag -> the object it points at
                o = self._api("git/tags/" + o["sha"])["object"]
            t["commit"] = o["sha"]
        return t

    def fetch_tree(self, commit, keep=None):
        # {path: [blob_sha, size, None]} of every file of the commit (recursive tree API), parsed
        # one entry at a time; with keep (a test of the path), only the files it keeps are held.
        out = _dict(17)

        def entry(e):
            p = check_path(e["path"])
            if e["type"] == "blob" and e.get("mode") != "120000" and (not keep or keep(p)):
                out[p] = [e["sha"], e["size"], None]

        if self._api("git/trees/%s?recursive=1" % commit, entry).get("truncated"):
            raise OTAError("Git tree of %s truncated: publish a manifest.json" % commit)
        return out

    def _manifest(self, t):
        # (the wanted files as fetch_tree gives them + sha256, deletes, post_update hook) of
        # manifest.json; every entry is checked
        files = _dict(17)

        def entry(e):
            p = check_path(e["path"])
            if len(e["sha1"]) != 40 or int(e["size"]) < 0:
                raise ValueError
            if self.wanted(p):
                files[p] = [e["sha1"].lower(), int(e["size"]), e.get("sha256")]

        try:
            m = self.json(t["manifest"], entry)
            hook = m.get("post_update")
            if type(m["files"]) is not list or hook is not None and not (type(hook) is str and hook):
                raise ValueError
            dels = list(map(check_path, m.get("deletes") or ()))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise OTAError("manifest.json of %s is malformed" % t["ref"])
        t["version"] = m.get("version") or t["version"]
        return files, dels, hook

    def wanted(self, p):
        # False for device state (config, version.json, ota_error.json, journal, stage/backup dirs,
        # .deltas/, the updater unless self_update) and for paths outside allow/inside ignore.
        # Called per tree entry as the tree streams in: no allocation on the common path.
        c = self.cfg
        n = p[:-4] if p.endswith(".tmp") else p
        if (n in (VERSION, ERRORS, JOURNAL, STATE) or n == c["_path"] or n == c["ca_file"]
                or p.startswith("ota_config.") or _under(p, c["stage_dir"]) or _under(p, c["backup_dir"])
                or _under(p, ".deltas")
                or p in ("ota.py", "ota.mpy", "main.py", "main.mpy", "ota_native.mpy") and not c["self_update"]):
            return False
        for x in c["ignore"]:
            if _under(p, x):
                return False
        for x in c["allow"]:
            if _under(p, x):
                return True
        return not c["allow"]

    def _due(self):
        # Mission extras, cheapest first: None if the update may run now, else the reason.
        # The rate limit comes last, so a deferral for another reason does not use up the interval.
        c = self.cfg
        m = self.m
        t = time.localtime()
        if not in_windows(c["windows"], t[3] * 60 + t[4]):
            return "windows"
        # the battery: ADC reading (16 bit, 3.3 V) times the divider
        if c["min_battery_v"] and m and m.ADC(c["battery_adc_pin"]).read_u16() * 3.3 / 65535 * c[
                "battery_divider"] < c["min_battery_v"]:
            return "min_battery_v"
        if c["health_hook"] and not __import__(c["health_hook"]).healthy():
            return "health_hook"
        if c["canary_percent"] < 100:
            # this device's share: SHA1 of its id and the repo, 0..99, stable across runs
            import hashlib

            d = (c["device_id"] or "").encode() or (m.unique_id() if m else b"")
            d = hashlib.sha1(d + c["repo"].encode()).digest()
            if (d[0] * 256 + d[1]) % 100 >= c["canary_percent"]:
                return "canary_percent"
        now = int(time.time())
        if c["min_interval_sec"]:
            # a clock that went back (unset after a reboot) counts as due
            if 0 <= now - (_load(STATE) or {}).get("last", 0) < c["min_interval_sec"]:
                return "min_interval_sec"
            _save(STATE, {"last": now})

    # ------------------------------------------------------------ update
    def update_if_available(self):
        # Install the channel's target if it differs; True when files changed.
        # Failures are recorded in ota_error.json and raised as OTAError.
        try:
            return self._update()
        except Exception as e:
            raise OTAError(self.record(e if isinstance(e, OTAError) else "%s: %s" % (type(e).__name__, e)))

    def _update(self):
        c = self.cfg
        self.result = r = {"updated": False, "deferred": self._due()}
        if r["deferred"]:
            return False
        old = self.installed()
        t = self._head()
        if not c["force"] and old.get("ref") == t["ref"] and old.get("commit") == (t["commit"] or old.get("commit")):
            self.log("up to date")
            return False
        r["target"] = self.resolve_target(t)  # its version (from a manifest too) is set below
        hook, dels = None, []
        if t["manifest"]:
            files, dels, hook = self._manifest(t)
        else:
            files = self.fetch_tree(t["commit"], self.wanted)  # only the files this device takes
        _mem()  # collections before the big allocations: fewer holes between long-lived objects
        # to download: missing, another size, or another SHA (an unrecorded file is hashed)
        have = old.get("files") or {}
        r["download"] = get = []
        for p in sorted(files):
            sha, size, s256 = files[p]
            if c["force"] or _size(p) != size or have.get(p) != sha and not _verify(self._hashed(p, size, 0)[0], sha, 0):
                get.append(p)
        # to delete: installed or listed in the manifest's deletes, gone from the target
        r["delete"] = gone = []
        for p in list(have) + dels:
            if p not in files and p not in gone and self.wanted(check_path(p)) and _size(p) >= 0:
                gone.append(p)
        self.log("%d to get, %d to delete", len(get), len(gone))
        if get or gone:
            self._stage(t, files, get, have)
        for p in files:
            files[p] = files[p][0]  # the record keeps the SHAs (in the same dict)
        rec = {"ref": t["ref"], "commit": t["commit"], "version": t["version"], "files": files}
        if get or gone:
            self._install(t, rec, get, gone, hook)
            r["updated"] = True
        else:
            _save(VERSION, rec)
        return r["updated"]

    def _stage(self, t, files, get, have):
        # every changed file into stage_dir/<sha>.<i>, verified: by delta, gzip or plain download
        c = self.cfg
        sd = c["stage_dir"]
        if _size(sd) < 0:
            _fs("mkdir", sd)
        for n in os.listdir(sd):  # leftovers of another target (partial downloads of this one stay)
            x = n.split(".")  # <sha>.<i>[.part|.dpart] of get[i]
            i = int(x[1]) if x[1:] and x[1].isdigit() else len(get)
            if i >= len(get) or files[get[i]][0] != x[0]:
                _rm(sd + "/" + n)
        need = 51200
        old = False  # a changed file is installed already (a delta may apply)
        for p in get:
            need += 2 * files[p][1]
            old = old or p in have
        st = os.statvfs(sd)
        if st[1] * st[4] < need:
            raise OTAError("not enough free space: %d bytes needed, %d free" % (need, st[1] * st[4]))
        base = "%s/%s/%s/%s/" % (c["raw_base"], c["owner"], c["repo"], t["commit"])
        # the delta index of the target, once, when a changed file has a recorded base:
        # {path: entry} of the entries that fit (one attempt, no backoff; 404 = no deltas)
        idx = {}

        def entry(e):
            p = e.get("path")
            if (p in get and e.get("base") == have.get(p) and e.get("target") == files[p][0]
                    and "/" not in e["file"] and e["target_size"] == files[p][1] and 9 <= e["wbits"] <= 15):
                idx[p] = e

        # (not when no delta could run: below the least one needs, a 512 B window + ~14 KB)
        if _nat and (c["enable_delta_updates"] or self.transport in ("cellular", "lora")) and old and _mem() > 14848:
            try:
                d = self.json(base + ".deltas/index.json", entry, 0)
                if d.get("format") != 1 or d.get("codec") != "bsdiff+deflate":
                    idx.clear()
            except Exception as e:
                self.log("delta %s: %r", "index", e)
                idx.clear()
        _mem()
        # {path: [how, bytes, size]}: its table made now at its final size (fromkeys sizes it by
        # len(get)), so it does not grow between downloads; None: not staged (the update stopped first)
        self.result["methods"] = m = dict.fromkeys(get)
        saved = 0
        for i in range(len(get)):
            _mem()
            p = get[i]
            sha, size, s256 = files[p]
            # the hashers of a download first: its biggest allocation, made while the heap is clean
            first = [] if p in idx else [_hashers(size, s256)]
            dest = "%s/%s.%d" % (sd, sha, i)
            b = self.bytes
            how = "staged"  # verified by an earlier run
            if _size(dest) != size:
                how = p in idx and self._delta(base + ".deltas/" + idx[p]["file"], dest, p, idx[p], s256) or \
                    self._download(base + _quote(p), dest, p, sha, size, s256, first)
            b = self.bytes - b
            m[p] = [how, b, size]
            saved += size - b
            self.log("%s: %s, %d/%d bytes", p, how, b, size)
        self.result["saved"] = saved

    def _pump(self, src, f, h, n, size):
        # The one chunk loop: src.readinto -> hashers h -> file f (or nowhere); returns the byte
        # count (n bytes were there before). More than size bytes is an error.
        mv = self.buf
        while True:
            k = src.readinto(mv)
            if not k:
                return n
            n += k
            if n > size:
                raise OTAError("too long")
            for x in h:
                x.update(mv[:k])
            if f:
                _hook("write", "")
                f.write(mv[:k])
            self.feed()

    def _hashed(self, path, size, s256):
        # (hashers fed with the file at path, its length)
        h = _hashers(size, s256)
        with open(path, "rb") as f:
            return h, self._pump(f, None, h, 0, size)

    def _delta(self, url, dest, p, e, s256):
        # stage p by patching the installed file; None on any failure (the caller downloads it in full)
        part = dest + ".dpart"  # its own name: a full download never resumes from a delta's output
        size = e["target_size"]
        try:
            if _mem() < (1 << e["wbits"]) + 14336:  # window + ~12 KB pipeline state + margin
                raise MemoryError
            h = _hashers(size, s256)
            r = self.get(url)
            try:
                with open(p, "rb") as old:
                    with _fs("open", part, "wb") as f:
                        self._pump(_nat.DeltaReader(r, old, size, _nat.RAW, e["wbits"]), f, h, 0, size)
            finally:
                r.close()
            if not _verify(h, e["target"], s256):
                raise ValueError("SHA")
            _fs("rename", part, dest)
            return "delta"
        except Exception as x:
            self.log("delta %s: %r", p, x)
            _rm(part)

    def _download(self, url, dest, path, sha, size, s256, first):
        # Stream url into dest via dest.part (resumed with a Range after a cut); gzip when
        # ota_native can inflate it in the free memory. Returns "gzip" or "plain".
        # first: [hashers] for the first download from byte 0, or [].
        part = dest + ".part"

        def once():  # -> (hashers, "gzip" or "plain")
            n = _size(part)
            if n > size:
                n = 0
            h, n = self._hashed(part, size, s256) if n > 0 else (first.pop() if first else _hashers(size, s256), 0)
            if n == size > 0:
                return h, "plain"  # complete from an earlier run (an empty file is always fetched)
            r = self.get(url, n, not n and self.gz and size > 300 and _mem() > 47104)  # 32 KiB window + state
            gz = r.h.get("encoding") == "gzip"
            try:
                if r.status != 206 and n:  # the whole body: start over
                    n = 0
                    h = _hashers(size, s256)
                with _fs("open", part, "ab" if n else "wb") as f:
                    self._pump(_nat.InflateReader(r, _nat.GZIP, 15) if gz else r, f, h, n, size)
            except (ValueError, MemoryError) as e:
                if not gz:
                    raise
                self.gz = False  # plain from now on, at once
                _rm(part)
                raise Retry("gzip: %s" % e, -1)
            finally:
                r.close()
            return h, "gzip" if gz else "plain"

        h, how = self.retry(once)
        if not _verify(h, sha, s256):
            _fs("remove", part)
            raise OTAError("%s: SHA mismatch; nothing installed" % path)
        _fs("rename", part, dest)
        return how

    # ------------------------------------------------------------ install
    def _install(self, t, rec, get, gone, hook):
        c = self.cfg
        sd, bd = c["stage_dir"], c["backup_dir"]
        _mem()  # the journal's records into the holes the downloads left
        ops = []
        for i in range(len(get)):
            p = get[i]
            ops.append([p, "%s.%d" % (rec["files"][p], i), int(_size(p) >= 0)])
        for p in gone:
            ops.append([p, None, 1])
        _save(sd + "/" + VERSION, rec)  # the new record waits in the stage dir
        if _size(bd) < 0:
            _fs("mkdir", bd)
        j = {"v": 1, "ref": t["ref"], "commit": t["commit"], "stage": sd, "backup": bd, "ops": ops}
        _save(JOURNAL, j)  # from here on, boot recovery owns the outcome
        for i in range(len(ops)):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if had and _size(b) < 0:
                _fs("rename", p, b)
            if name:
                k = p.find("/")
                while k > 0:  # its parent directories
                    if _size(p[:k]) < 0:
                        _fs("mkdir", p[:k])
                    k = p.find("/", k + 1)
                _fs("rename", sd + "/" + name, p)
        if hook:
            # "pkg.mod" or "pkg/mod.py": its post_update() (or main()) runs; raising or returning
            # False rolls back
            try:
                name = (hook[:-3] if hook.endswith(".py") else hook).replace("/", ".")
                sys.modules.pop(name, None)
                m = __import__(name)
                for a in name.split(".")[1:]:
                    m = getattr(m, a)
                fn = getattr(m, "post_update", None) or getattr(m, "main", None)
                if fn and fn() is False:
                    raise OTAError("it returned False")
            except Exception as e:
                self._rollback(j)
                raise OTAError("post_update hook %s failed (%s); rolled back" % (hook, e))
        if _size(VERSION) >= 0:
            _fs("rename", VERSION, bd + "/" + VERSION)
        _fs("rename", sd + "/" + VERSION, VERSION)  # COMMITTED
        self._finish(j)
        self.log("installed")

    def _rollback(self, j):
        sd, bd, ops = j["stage"], j["backup"], j["ops"]
        for i in range(len(ops) - 1, -1, -1):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if _size(b) >= 0:
                _rm(p)
                _fs("rename", b, p)
            elif name and not had and _size(sd + "/" + name) < 0:
                _rm(p)  # a file the update added
        if _size(bd + "/" + VERSION) >= 0 and _size(VERSION) < 0:
            _fs("rename", bd + "/" + VERSION, VERSION)
        self._finish(j)

    def _finish(self, j):
        # the journal first: a staged version.json means "not committed" only next to a journal,
        # and without a journal, boot removes the backups
        _fs("remove", JOURNAL)
        _rm(j["backup"])
        _rm(j["stage"])

    def recover(self):
        # Boot-time recovery: finish a committed swap or roll back an interrupted one.
        _rm(JOURNAL + ".tmp")
        j = _load(JOURNAL)
        if not j:
            _rm(JOURNAL)
            _rm(self.cfg["backup_dir"])  # backups mean something only with a journal
            return None
        what = "completed"  # committed: only the cleanup was left
        if _size(j["stage"] + "/" + VERSION) >= 0:
            self._rollback(j)
            what = "rolled back"
        else:
            self._finish(j)
        what = "%s an interrupted update to %s" % (what, j["ref"])
        self.log("%s", what)
        self.record(what, j["commit"])
        return what
