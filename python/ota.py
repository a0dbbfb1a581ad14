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
# the installed file), a gzip download (ota_native.InflateReader), or a plain download.
# The token never appears in logs or in ota_error.json.
# Memory: MicroPython compiles this file as one parse tree, so the code is kept short
# (tables and shared helpers); comments cost nothing.

import os
import sys
import json
import time

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


try:
    import ota_native as _nat
except ImportError:
    _nat = None

_MP = sys.implementation.name == "micropython"
_HOST = sys.platform in ("linux", "darwin", "win32")  # unix port or CPython: no WiFi/machine
_MAX_ERRORS = const(10)
_RESERVE = const(51200)
_GZ_MEM = const(47104)  # gzip: 32 KiB window + ~11 KB inflater state + margin
_DELTA_MEM = const(14336)  # delta: 2**wbits window + ~12 KB state + margin
VERSION = "version.json"
ERRORS = "ota_error.json"
JOURNAL = "ota_journal.json"
STATE = "ota_state.json"
_SELF = ("ota.py", "ota.mpy", "main.py", "main.mpy", "ota_native.mpy")
_UA = "ota.py/1.1 (MicroPython)"
_KEEP = ("content-length", "transfer-encoding", "content-encoding", "location", "retry-after",
         "x-ratelimit-remaining", "x-ratelimit-reset", "date")

# Test hook: _hook(op, path) runs before every filesystem mutation (power-cut tests).
_hook = None


class OTAError(Exception):
    pass


class Retry(Exception):
    # transient failure: args = (message, seconds to wait or None for the backoff)
    pass


# ---------------------------------------------------------------- filesystem
def _fs(op, a, b=None):
    # every mutation: _fs("rename", a, b), "remove", "mkdir", "rmdir", "open" (mode in b)
    if _hook:
        _hook(op, a)
    if op == "open":
        return open(a, b)
    if b:
        return getattr(os, op)(a, b)
    getattr(os, op)(a)


def _put(f, data):
    if _hook:
        _hook("write", "")
    f.write(data)


def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False


def _mkdirs(p):
    # the parent directories of file path p
    i = p.find("/")
    while i > 0:
        if not _isdir(p[:i]):
            _fs("mkdir", p[:i])
        i = p.find("/", i + 1)


def _rm(p):
    # remove a file or a whole directory if it exists
    if _isdir(p):
        for n in os.listdir(p):
            _rm(p + "/" + n)
        _fs("rmdir", p)
    elif _size(p) >= 0:
        _fs("remove", p)


def _load(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(p, obj):
    # tmp + rename: a reader sees the old or the new file, never half of one
    f = _fs("open", p + ".tmp", "w")
    try:
        if _hook:
            _hook("write", "")
        json.dump(obj, f)  # streamed: no string of the whole record
    finally:
        f.close()
    _fs("rename", p + ".tmp", p)


def _ms():
    return time.ticks_ms() if _MP else int(time.time() * 1000)


def _mem():
    import gc

    gc.collect()
    return gc.mem_free() if _MP else 1 << 30


def _hex(h):
    import binascii

    return binascii.hexlify(h.digest()).decode()


class _Blob:
    # Git blob SHA1 without ota_native: sha1(b"blob <size>\0" + content)
    def __init__(self, size):
        import hashlib

        self.h = hashlib.sha1(b"blob %d\0" % size)

    def update(self, buf, n=-1):
        self.h.update(buf if n < 0 else buf[:n])

    def hexdigest(self):
        return _hex(self.h)


def _hashers(size, s256):
    import hashlib

    return size >= 0 and (_nat.BlobHasher if _nat else _Blob)(size), s256 and hashlib.sha256()


# ---------------------------------------------------------------- config
# "key type [default]": s str, S str or null, b bool, i int >= 0, n number >= 0,
# l list of str (default items split by ;), x anything; ! = required
_SCHEMA = (
    "owner s!,repo s!,ssid S,password S,channel s stable,branch s main,tag S,token S,allow l,"
    "ignore l,chunk i 1024,stage_dir s .ota_stage,backup_dir s .ota_backup,connect_timeout_sec n 10,"
    "http_timeout_sec n 30,retries i 3,backoff_sec n 2,max_backoff_sec n 60,force b,reset_mode s hard,"
    "debug b,api_base s https://api.github.com,raw_base s https://raw.githubusercontent.com,"
    "enable_delta_updates b,self_update b,watchdog_sec i 0,led_pin x,min_battery_v n 0,"
    "battery_adc_pin i 29,battery_divider n 3,transports l wifi,min_interval_sec i 0,"
    "canary_percent i 100,device_id S,health_hook S"
)
_WANT = {"s": "a non-empty string", "S": "a string", "b": "true or false (a JSON boolean)",
         "i": "a whole number >= 0", "n": "a number >= 0", "l": "a list of strings"}
_CHOICES = {"channel": ("stable", "developer"), "reset_mode": ("hard", "soft", "none")}


def load_config(path="ota_config.json"):
    # Read and check the config: .json, or flat .yaml/.yml/.toml (by extension).
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise OTAError("config file %s not found" % path)
    ext = path[path.rfind(".") + 1:].lower()
    try:
        if ext == "json":
            cfg = json.loads(text)
        elif ext in ("yaml", "yml", "toml"):
            cfg = _flat(text, ext == "toml")
        else:
            raise OTAError("%s: use a .json, .yaml, .yml or .toml file" % path)
    except ValueError as e:
        raise OTAError("%s: not valid %s: %s" % (path, ext.upper(), e))
    return check_config(cfg, path)


def check_config(cfg, path="ota_config.json"):
    # Return the config with defaults; OTAError naming the first bad key.
    if not isinstance(cfg, dict):
        raise OTAError("%s: expected a mapping of keys to values" % path)
    out = {"_path": path}
    for item in _SCHEMA.split(","):
        k, t, d = (item + " ").split(" ", 2)
        v = cfg.get(k)
        if v is None:
            if t[-1] == "!":
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            d = d.strip()
            v = False if t == "b" else [x for x in d.split(";") if x] if t == "l" else int(d) if t in "in" else d or None
        else:
            t = t[0]
            if t == "l" and isinstance(v, str):
                v = [v]
            if isinstance(v, str) and v.startswith("YOUR_"):
                raise OTAError("%s: '%s' still has the placeholder value %s" % (path, k, v))
            ok = (t == "x" or t in "sS" and isinstance(v, str) and (v or t == "S")
                  or t == "b" and isinstance(v, bool)
                  or t == "l" and isinstance(v, list) and all([isinstance(x, str) for x in v]))
            if t in "in":
                ok = not isinstance(v, bool) and isinstance(v, int if t == "i" else (int, float)) and v >= 0
            if not ok:
                raise OTAError("%s: '%s' must be %s, got %r" % (path, k, _WANT[t], v))
            if v not in _CHOICES.get(k, (v,)):
                raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(_CHOICES[k]), v))
        out[k] = v
    # unknown keys (a typo, or a newer version's key) are kept aside, not fatal: main() prints them
    out["_unknown"] = [k for k in cfg if k not in out and k[:1] != "_"]
    if out["chunk"] < 256 or out["canary_percent"] > 100:
        raise OTAError("%s: 'chunk' must be >= 256 and 'canary_percent' <= 100" % path)
    for k in ("api_base", "raw_base"):
        out[k] = out[k].rstrip("/")
        if out[k].split("://")[0] not in ("http", "https"):
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
    return out


def _split(s, stop):
    # scan s outside quotes: ("", i) at the first char of stop, or (pieces split by ",", -1)
    q = None
    out = []
    st = 0
    for i in range(len(s)):
        c = s[i]
        if q:
            q = None if c == q else q
        elif c in "\"'":
            q = c
        elif c in stop:
            if c != ",":
                return out, i
            out.append(s[st:i])
            st = i + 1
    return out + [s[st:]], -1


def _val(v, toml):
    # one flat YAML/TOML value: "str", 'str', true/false, numbers, [lists], YAML bare strings/null
    if v[:1] == "[":
        return [_val(x.strip(), toml) for x in _split(v.strip("[]"), ",")[0] if x.strip()]
    if len(v) > 1 and v[0] in "\"'" and v[-1] == v[0]:
        return v[1:-1].replace('\\"', '"').replace("\\\\", "\\") if v[0] == '"' else v[1:-1]
    if v in ("true", "false"):
        return v == "true"
    if not toml and v in ("null", "~", ""):
        return None
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    if toml:
        raise ValueError("strings must be quoted: " + v)
    return v


def _flat(text, toml):
    # flat YAML (key: value, "- item" lists) or TOML (key = value, [arrays] over lines)
    cfg = {}
    key = acc = None
    n = 0
    for line in text.split("\n"):
        n += 1
        i = _split(line, "#")[1]
        s = line[:i if i >= 0 else len(line)].strip()
        if acc is not None:
            acc += " " + s
            if s.endswith("]"):
                cfg[key] = _val(acc, toml)
                acc = None
        elif s and s != "---":
            if not toml and s[0] == "-":
                if key is None or cfg[key] is not None and not isinstance(cfg[key], list):
                    raise ValueError("line %d: list item without a key" % n)
                cfg[key] = (cfg[key] or []) + [_val(s[1:].strip(), toml)]
                continue
            i = s.find("=" if toml else ":")
            if i < 1 or s[0] == "[":
                raise ValueError("line %d: expected a flat key %s value" % (n, "=" if toml else ":"))
            key = s[:i].strip().strip("\"'")
            v = s[i + 1:].strip()
            if v[:1] == "[" and v[-1:] != "]":
                acc = v
            elif toml and not v:
                raise ValueError("line %d: missing value" % n)
            else:
                cfg[key] = _val(v, toml)
    if acc is not None:
        raise ValueError("unterminated list for " + key)
    return cfg


# ---------------------------------------------------------------- paths and URLs
def check_path(p):
    # p if it is a safe relative path, else OTAError (.., leading /, empty parts, \).
    if not isinstance(p, str) or not p or p[0] == "/" or "\\" in p or "\0" in p or ":" in p or [
            x for x in p.split("/") if x in ("", ".", "..")]:
        raise OTAError("unsafe path %r rejected; nothing installed" % (p,))
    return p


def _under(p, pat):
    # exact file or directory prefix: "lib" and "lib/" both match "lib/x.py"
    pat = pat.strip("/")
    return p == pat or p.startswith(pat + "/")


def _quote(s):
    out = ""
    for c in s.encode():
        out += chr(c) if 47 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.~" else "%%%02X" % c
    return out


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
    # one HTTP/1.1 response: status, a few headers, body through readinto (length or chunked)
    def __init__(self, s, u):
        self.s = s
        self.u = u  # body bytes are counted in u.bytes
        self.f = f = s if _MP else s.makefile("rb")
        self.h = h = {}
        self.got = 0
        self.chunked = self.started = self.done = False
        line = f.readline()
        try:
            self.status = int(line.split(None, 2)[1])
        except (IndexError, ValueError):
            raise Retry("bad HTTP status line %r" % line[:32], None)
        while line not in (b"\r\n", b"\n", b""):
            line = f.readline()
            i = line.find(b":")
            k = line[:i].strip().lower().decode()
            if k in _KEEP:
                h[k] = line[i + 1:].strip().decode()
        self.left = int(h.get("content-length", -1))  # -1: until the connection closes
        if self.left < 0 and "chunked" in h.get("transfer-encoding", ""):
            self.chunked = True
            self.left = 0

    def readinto(self, buf, n=-1):
        n = len(buf) if n < 0 or n > len(buf) else n
        f = self.f
        if self.chunked and not self.left and not self.done:
            if self.started:
                f.readline()  # the CRLF after a chunk
            self.started = True
            line = f.readline()
            if not line:
                raise Retry("connection closed in a chunked body", None)
            self.left = int(line.split(b";")[0].strip().decode(), 16)
            if not self.left:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
        if self.done or not self.left:
            return 0
        if 0 < self.left < n:
            n = self.left
        k = f.readinto(memoryview(buf)[:n] if n < len(buf) else buf)
        if not k:
            if self.left < 0:
                self.done = True
                return 0
            raise Retry("connection closed after %d body bytes" % self.got, None)
        self.got += k
        self.u.bytes += k
        if self.left > 0:
            self.left -= k
        return k

    def close(self):
        if self.f is not self.s:
            self.f.close()
        self.s.close()


def _fail(c, st, h, url):
    # 401/404/403: fail at once with the troubleshooting text; 5xx/429/rate limit: Retry
    if st == 401:
        raise OTAError("GitHub API returned 401 (Unauthorized) for %s: the repository is private or the "
                       "token is invalid; add a valid 'token' to the config" % url)
    if st == 404:
        raise OTAError("GitHub API returned 404 (Not Found) for %s: check 'owner' and 'repo' in the config, "
                       "that the release exists, and the tag name (a private repository also needs a "
                       "'token')" % url)
    if st == 429 or st == 403 and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h):
        wait = h.get("retry-after")
        if wait is None:
            now = int(time.time())
            if now < 1600000000 and "date" in h:  # device clock not set: use the server's
                p = h["date"].split()  # "Sun, 06 Nov 1994 08:49:37 GMT"
                t = p[4].split(":")
                now = time.mktime((int(p[3]), "JanFebMarAprMayJunJulAugSepOctNovDec".find(p[2]) // 3 + 1,
                                   int(p[1]), int(t[0]), int(t[1]), int(t[2]), 0, 0))
            wait = int(h.get("x-ratelimit-reset", now)) - now
        wait = int(wait)
        if wait > c["max_backoff_sec"]:
            raise OTAError("GitHub API rate limit exceeded: resets in %d s (more than max_backoff_sec=%s); "
                           "add a 'token' or try again later" % (wait, c["max_backoff_sec"]))
        raise Retry("rate limited (HTTP %d)" % st, max(wait, 0))
    if st == 403:
        raise OTAError("GitHub API returned 403 (Forbidden) for %s: check the token's permissions" % url)
    if st >= 500:
        raise Retry("HTTP %d from %s" % (st, url), None)
    raise OTAError("HTTP %d from %s" % (st, url))


# ---------------------------------------------------------------- hardware
class _HW:
    # the one place that touches network/machine; a no-op on the unix port and CPython
    def __init__(self, cfg):
        self.cfg = cfg
        self.m = self.wdt = self.led = None
        if not _HOST:
            import machine

            self.m = machine
            if cfg["watchdog_sec"]:
                self.wdt = machine.WDT(timeout=min(cfg["watchdog_sec"] * 1000, 8388))
            if cfg["led_pin"] is not None:
                self.led = machine.Pin(cfg["led_pin"], machine.Pin.OUT)

    def feed(self):
        if self.wdt:
            self.wdt.feed()
        if self.led:
            self.led.toggle()

    def battery_v(self):
        c = self.cfg
        return self.m.ADC(c["battery_adc_pin"]).read_u16() * 3.3 / 65535 * c["battery_divider"] if self.m else None

    def wifi(self):
        c = self.cfg
        if _HOST:
            return True  # wired or host networking
        try:
            import network
        except ImportError:
            return True
        w = network.WLAN(network.STA_IF)
        w.active(True)
        if not w.isconnected() and c["ssid"]:
            w.connect(c["ssid"], c["password"] or "")
            t = _ms()
            while not w.isconnected() and _ms() - t < c["connect_timeout_sec"] * 1000:
                self.feed()
                time.sleep_ms(200)
        return w.isconnected()

    def reset(self, mode):
        if self.m and mode != "none":
            self.m.soft_reset() if mode == "soft" else self.m.reset()


# ---------------------------------------------------------------- updater
class OTA:
    def __init__(self, cfg):
        self.cfg = cfg if "_path" in cfg else check_config(cfg)
        self.buf = memoryview(bytearray(self.cfg["chunk"]))  # the one transfer buffer
        self.hw = _HW(self.cfg)
        self.requests = self.bytes = 0  # HTTP requests made, body bytes received
        self.result = {}
        self.transport = None
        self.gz = _nat is not None  # ask for gzip (dropped after an inflate failure)
        self.recover()

    def log(self, msg):
        if self.cfg["debug"]:
            print("ota: %s [free %d]" % (msg, _mem()))

    def record(self, reason, **kw):
        # Append to ota_error.json: bounded, newest last, time and reason, never the token.
        t = self.cfg["token"]
        e = {"time": int(time.time()), "reason": str(reason).replace(t, "***") if t else str(reason)}
        e.update(kw)
        old = _load(ERRORS)
        _save(ERRORS, ((old if isinstance(old, list) else []) + [e])[-_MAX_ERRORS:])

    def reset(self):
        self.hw.reset(self.cfg["reset_mode"])

    def installed(self):
        return _load(VERSION) or {}

    # ------------------------------------------------------------ network
    def connect(self):
        # Bring up a link: each of `transports` in turn (wifi; others are user modules ota_<name>).
        for name in self.cfg["transports"]:
            try:
                ok = self.hw.wifi() if name == "wifi" else __import__("ota_" + name).connect(self.cfg)
            except ImportError:
                ok = False
            self.log("connect %s: %s" % (name, ok))
            if ok:
                self.transport = name
                return name
        raise OTAError("no network: %s failed" % ", ".join(self.cfg["transports"]))

    def get(self, url, off=0, gz=False):
        # One attempt: GET url (following redirects); a 200/206 Resp or an exception.
        # gz: ask for gzip (never with a Range).
        import socket

        c = self.cfg
        auth = c["token"]
        for _ in range(6):
            sch, host, port, path = _url(url)
            self.requests += 1
            self.log("GET %s%s" % (url, " from %d" % off if off else " gzip" if gz else ""))
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            s = socket.socket(ai[0], socket.SOCK_STREAM)
            try:
                t = (c["connect_timeout_sec"], c["http_timeout_sec"])
                s.settimeout(max(t) if _MP else t[0])  # MicroPython: one timeout, the larger
                s.connect(ai[-1])
                if sch == "https":
                    import ssl

                    if hasattr(ssl, "create_default_context"):
                        s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
                    else:
                        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                        ctx.verify_mode = ssl.CERT_NONE
                        s = ctx.wrap_socket(s, server_hostname=host)
                s.settimeout(max(t) if _MP else t[1])
                h = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n" % (
                    path, host if port in (80, 443) else "%s:%d" % (host, port), _UA)
                if "/repos/" in path:
                    h += "Accept: application/vnd.github+json\r\n"
                if auth:
                    h += "Authorization: token %s\r\n" % auth
                if off:
                    h += "Range: bytes=%d-\r\n" % off
                elif gz:
                    h += "Accept-Encoding: gzip\r\n"
                (getattr(s, "sendall", None) or s.write)((h + "\r\n").encode())
                r = Resp(s, self)
            except BaseException:
                s.close()
                raise
            st = r.status
            self.log("-> %d" % st)
            if st in (200, 206):
                return r
            r.close()
            if st in (301, 302, 303, 307, 308) and "location" in r.h:
                new = r.h["location"]
                if "://" not in new:  # relative Location
                    p = _url(url)
                    new = "%s://%s:%d%s" % (p[0], p[1], p[2], new if new[:1] == "/" else
                                            p[3].split("?")[0].rsplit("/", 1)[0] + "/" + new)
                if _url(new)[:3] != _url(url)[:3]:
                    auth = None  # never send the token to another host
                url = new
                continue
            _fail(c, st, r.h, url)
        raise OTAError("too many redirects for " + url)

    def retry(self, fn, tries=None):
        # fn() with retries and exponential backoff, for transient failures only.
        c = self.cfg
        delay = c["backoff_sec"]
        n = c["retries"] if tries is None else tries
        while True:
            try:
                return fn()
            except Retry as e:
                msg, wait = e.args
            except OSError as e:  # connection refused/reset, timeouts
                msg, wait = "connection error: %s" % (e,), None
            if n <= 0:
                raise OTAError("%s (gave up after %d attempts)" % (msg, c["retries"] + 1))
            n -= 1
            wait = min(delay if wait is None else wait, c["max_backoff_sec"])
            self.log("%s; retry in %s s" % (msg, wait))
            t = _ms()
            while _ms() - t < wait * 1000:
                self.hw.feed()
                time.sleep(0.05)
            delay = min(delay * 2, c["max_backoff_sec"])

    def json(self, url, each=None, tries=None):
        # GET a JSON document without holding its arrays of objects: each(obj) is called per
        # object inside an array one level below the top (tree entries, manifest files, release
        # assets, delta index entries), and the rest (those objects replaced by 0) is returned.
        # each() must be idempotent (retries).
        def once():
            r = self.get(url)
            rest = bytearray()
            obj = bytearray()
            depth = 0
            q = esc = False
            mv = self.buf
            try:
                while True:
                    k = r.readinto(mv)
                    if not k:
                        break
                    for c in mv[:k]:
                        if not q and c in b"{[":
                            depth += 1
                        (obj if depth > 2 else rest).append(c)
                        if q:
                            if esc:
                                esc = False
                            elif c == 92:
                                esc = True
                            elif c == 34:
                                q = False
                        elif c == 34:
                            q = True
                        elif c in b"}]":
                            depth -= 1
                            if depth == 2 and obj:
                                each and each(json.loads(obj))
                                obj = bytearray()
                                rest.append(48)  # "0" keeps the array valid
            finally:
                r.close()
            return rest

        try:
            return json.loads(self.retry(once, tries))
        except ValueError:
            raise OTAError("invalid JSON from " + url)

    def _api(self, tail):
        c = self.cfg
        return self.json("%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], tail))

    # ------------------------------------------------------------ targets
    def _head(self):
        # the one request of an up-to-date check: branch -> its commit; release -> tag (commit later)
        c = self.cfg
        if c["channel"] == "developer":
            sha = self._api("git/ref/heads/" + _quote(c["branch"]))["object"]["sha"]
            return {"ref": c["branch"], "commit": sha, "version": sha[:7], "manifest": None}
        t = {"commit": None, "manifest": None}

        def asset(a):
            if a.get("name") == "manifest.json":
                t["manifest"] = a.get("browser_download_url") or a["url"]

        rel = self.json("%s/repos/%s/%s/releases/%s" % (c["api_base"], c["owner"], c["repo"], "tags/" + _quote(
            c["tag"]) if c["tag"] else "latest"), asset)
        t["ref"] = rel["tag_name"]
        t["version"] = rel.get("name") or rel["tag_name"]
        return t

    def _commit_of(self, tag):
        o = self._api("git/ref/tags/" + _quote(tag))["object"]
        while o["type"] == "tag":  # annotated tag -> the object it points at
            o = self._api("git/tags/" + o["sha"])["object"]
        return o["sha"]

    def resolve_target(self):
        # {"ref", "commit", "version", "manifest" (URL or None)} of the channel's target.
        t = self._head()
        t["commit"] = t["commit"] or self._commit_of(t["ref"])
        return t

    def fetch_tree(self, commit):
        # {path: [blob_sha, size, None]} of every file of the commit (recursive tree API),
        # parsed one entry at a time.
        out = {}

        def entry(e):
            if e["type"] == "blob" and e.get("mode") != "120000":
                out[check_path(e["path"])] = [e["sha"], e["size"], None]

        c = self.cfg
        if self.json("%s/repos/%s/%s/git/trees/%s?recursive=1" % (c["api_base"], c["owner"], c["repo"], commit),
                     entry).get("truncated"):
            raise OTAError("the Git tree of %s is truncated (too many files): publish a manifest.json" % commit)
        return out

    def _manifest(self, t):
        files = {}

        def entry(e):
            if len(e["sha1"]) != 40:
                raise ValueError
            files[check_path(e["path"])] = [e["sha1"].lower(), int(e["size"]), e.get("sha256")]

        try:
            m = self.json(t["manifest"], entry)
            if not isinstance(m["files"], list):
                raise ValueError
            dels = [check_path(p) for p in m.get("deletes") or ()]
            hook = m.get("post_update")
            if hook is not None and not (isinstance(hook, str) and hook):
                raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError):
            raise OTAError("manifest.json of %s is malformed" % t["ref"])
        t["version"] = m.get("version") or t["version"]
        return files, dels, hook

    def wanted(self, p):
        # False for device state (config, version.json, ota_error.json, journal, stage/backup dirs,
        # .deltas/, the updater unless self_update) and for paths outside allow/inside ignore.
        c = self.cfg
        n = p[:-4] if p.endswith(".tmp") else p
        if (n in (VERSION, ERRORS, JOURNAL, STATE) or p.startswith("ota_config.") or p == c["_path"]
                or p.split("/")[0] in (c["stage_dir"].strip("/"), c["backup_dir"].strip("/"), ".deltas")
                or p in _SELF and not c["self_update"]):
            return False
        for pat in c["ignore"]:
            if _under(p, pat):
                return False
        for pat in c["allow"]:
            if _under(p, pat):
                return True
        return not c["allow"]

    def _due(self):
        # mission extras: rate limit, canary share, battery and health gates; reason or None
        c = self.cfg
        now = int(time.time())
        if c["min_interval_sec"]:
            if now - (_load(STATE) or {}).get("last", 0) < c["min_interval_sec"]:
                return "min_interval_sec"
            _save(STATE, {"last": now})
        if c["canary_percent"] < 100:
            import hashlib

            dev = (c["device_id"] or "").encode() or (self.hw.m.unique_id() if self.hw.m else b"")
            d = hashlib.sha1(dev + c["repo"].encode()).digest()
            if (d[0] * 256 + d[1]) % 100 >= c["canary_percent"]:
                return "canary_percent"
        if c["min_battery_v"] and (self.hw.battery_v() or 99) < c["min_battery_v"]:
            return "min_battery_v"
        if c["health_hook"] and not __import__(c["health_hook"]).healthy():
            return "health_hook"

    # ------------------------------------------------------------ update
    def update_if_available(self):
        # Install the channel's target if it differs; True when files changed.
        # Failures are recorded in ota_error.json and raised as OTAError.
        try:
            return self._update()
        except Exception as e:
            msg = str(e) if isinstance(e, OTAError) else "%s: %s" % (type(e).__name__, e)
            self.record(msg)
            t = self.cfg["token"]
            raise OTAError(msg.replace(t, "***") if t else msg)

    def _update(self):
        c = self.cfg
        self.result = r = {"updated": False}
        r["deferred"] = self._due()
        if r["deferred"]:
            return False
        old = self.installed()
        t = self._head()
        if not c["force"] and old.get("ref") == t["ref"] and old.get("commit") == (t["commit"] or old.get("commit")):
            self.log("up to date at %s" % t["ref"])
            return False
        t["commit"] = t["commit"] or self._commit_of(t["ref"])
        hook, dels = None, ()
        if t["manifest"]:
            files, dels, hook = self._manifest(t)
        else:
            files = self.fetch_tree(t["commit"])
        for p in list(files):
            if not self.wanted(p):
                del files[p]
        have = old.get("files") or {}
        get = []
        for p in sorted(files):
            sha, size = files[p][0], files[p][1]
            if c["force"] or _size(p) != size or have.get(p) != sha and self._hash(p, size)[0].hexdigest() != sha:
                get.append(p)
        gone = []
        for p in list(have) + list(dels):
            if p not in files and p not in gone and self.wanted(check_path(p)) and _size(p) >= 0:
                gone.append(p)
        rec = {"ref": t["ref"], "commit": t["commit"], "version": t["version"],
               "files": dict([(p, files[p][0]) for p in files])}
        r.update(ref=t["ref"], commit=t["commit"], version=t["version"], download=get, delete=gone)
        self.log("target %s %s: %d to download, %d to delete" % (t["ref"], t["commit"][:7], len(get), len(gone)))
        if not get and not gone:
            _save(VERSION, rec)
            return False
        self._stage(t, files, get, have)
        self._install(t, rec, get, gone, hook)
        r["updated"] = True
        return True

    def _stage(self, t, files, get, have):
        # every changed file into stage_dir/<sha>.<i> (verified): by delta, gzip or plain download
        c = self.cfg
        sd = c["stage_dir"]
        names = ["%s.%d" % (files[get[i]][0], i) for i in range(len(get))]
        if not _isdir(sd):
            _fs("mkdir", sd)
        for n in os.listdir(sd):  # leftovers of another target (partial downloads of this one stay)
            if n not in names and n[:n.rfind(".")] not in names:
                _rm(sd + "/" + n)
        need = 2 * sum([files[p][1] for p in get]) + _RESERVE
        st = os.statvfs(sd)
        if st[1] * st[4] < need:
            raise OTAError("not enough free space: %d bytes needed (2x the update + 50 KB), %d free"
                           % (need, st[1] * st[4]))
        base = "%s/%s/%s/%s/" % (c["raw_base"], c["owner"], c["repo"], t["commit"])
        idx = {}
        if (_nat and (c["enable_delta_updates"] or self.transport in ("cellular", "lora"))
                and [p for p in get if p in have]):
            idx = self._index(base, files, get, have)
        self.result["methods"] = m = {}
        saved = 0
        for i in range(len(get)):
            p = get[i]
            sha, size, s256 = files[p]
            dest = sd + "/" + names[i]
            b = self.bytes
            how = "staged"  # verified by an earlier run
            if _size(dest) != size:
                how = (p in idx and self._delta(base + ".deltas/" + idx[p]["file"], dest, p, idx[p], s256)
                       or self._download(base + _quote(p), dest, p, sha, size, s256))
            b = self.bytes - b
            m[p] = [how, b, size]
            saved += size - b
            self.log("staged %s by %s: %d bytes on the wire for %d" % (p, how, b, size))
        self.result["saved"] = saved

    def _index(self, base, files, get, have):
        # .deltas/index.json of the target, once: {path: entry} for the files we can patch
        out = {}

        def entry(e):
            p = e.get("path")
            if (p in get and e.get("base") == have.get(p) and e.get("target") == files[p][0]
                    and "/" not in e["file"] and e["target_size"] == files[p][1] and 9 <= e["wbits"] <= 15
                    and e["size"] >= 0):
                out[p] = e

        try:
            d = self.json(base + ".deltas/index.json", entry, 0)  # no retry, no wait; 404 = no deltas
            if d.get("format") != 1 or d.get("codec") != "bsdiff+deflate":
                out = {}
        except Exception as e:
            self.log("no deltas: %s" % e)
            out = {}
        self.log("delta index: %d usable" % len(out))
        return out

    def _delta(self, url, dest, p, e, s256):
        # stage p by patching the installed file; None on any failure (the caller downloads it in full)
        part = dest + ".dpart"  # its own name: a full download never resumes from a delta's output
        try:
            if _mem() < (1 << e["wbits"]) + _DELTA_MEM:
                raise MemoryError("not enough free memory for the delta window")
            r = self.get(url)
            try:
                with open(p, "rb") as old:
                    src = _nat.DeltaReader(r, old, e["target_size"], _nat.RAW, e["wbits"])
                    h = self._pump(src, part, 0, e["target_size"], _hashers(-1, s256))
            finally:
                r.close()
            if src.hexdigest() != e["target"] or r.got != e["size"] or s256 and _hex(h[1]) != s256.lower():
                raise ValueError("result does not verify")
            _fs("rename", part, dest)
            return "delta"
        except Exception as x:
            self.log("delta for %s failed (%s: %s): full download" % (p, type(x).__name__, x))
            _rm(part)

    def _pump(self, src, part, n, size, h):
        # stream src into part (appending after n bytes) through the hashers h; returns h
        mv = self.buf
        f = _fs("open", part, "ab" if n else "wb")
        try:
            while True:
                k = src.readinto(mv)
                if not k:
                    break
                n += k
                if n > size:
                    raise OTAError("%s: more bytes than the %d declared" % (part, size))
                h[0] and h[0].update(mv, k)
                h[1] and h[1].update(mv[:k])
                _put(f, mv[:k])
                self.hw.feed()
        finally:
            f.close()
        if n < size:
            raise Retry("%s: body ended at %d of %d bytes" % (part, n, size), None)
        return h

    def _hash(self, path, size, n=-1, s256=None):
        # Hashers fed with the first n bytes (all when n < 0) of a file; (None, None) if short.
        h = _hashers(size, s256)
        mv = self.buf
        left = size if n < 0 else n
        try:
            with open(path, "rb") as f:
                while left > 0:
                    k = f.readinto(mv[:min(left, len(mv))])
                    if not k:
                        break
                    h[0].update(mv, k)
                    h[1] and h[1].update(mv[:k])
                    left -= k
        except OSError:
            pass
        return (None, None) if left else h

    def _download(self, url, dest, path, sha, size, s256):
        # Stream url through the blob SHA1 (and sha256) into dest via dest.part; resume with Range;
        # gzip when ota_native can inflate it in the free memory. Returns "gzip" or "plain".
        part = dest + ".part"
        how = ["plain"]

        def once():
            n = _size(part)
            h = (None, None)
            if 0 < n <= size:
                h = self._hash(part, size, n, s256)
            if n == size and h[0]:
                return h  # complete from an earlier run
            r = self.get(url, n if h[0] else 0, self.gz and size > 300 and _mem() > _GZ_MEM)
            try:
                if not h[0] or r.status != 206:  # whole body: start over
                    n = 0
                    h = _hashers(size, s256)
                src = r
                if r.h.get("content-encoding") == "gzip":
                    try:
                        src = _nat.InflateReader(r, _nat.GZIP, 15)
                        how[0] = "gzip"
                        return self._pump(src, part, n, size, h)
                    except (ValueError, MemoryError) as e:
                        self.gz = False  # plain from now on, at once
                        _rm(part)
                        raise Retry("gzip failed (%s)" % e, 0)
                how[0] = "plain"
                return self._pump(src, part, n, size, h)
            finally:
                r.close()

        h = self.retry(once)
        got = h[0].hexdigest()
        if got != sha or s256 and _hex(h[1]) != s256.lower():
            _fs("remove", part)
            raise OTAError("%s: SHA mismatch (expected %s, got %s%s); nothing installed"
                           % (path, sha, got, ", sha256 differs" if got == sha else ""))
        _fs("rename", part, dest)
        return how[0]

    # ------------------------------------------------------------ install
    def _install(self, t, rec, get, gone, hook):
        c = self.cfg
        sd, bd = c["stage_dir"], c["backup_dir"]
        ops = [[get[i], "%s.%d" % (rec["files"][get[i]], i), int(_size(get[i]) >= 0)] for i in range(len(get))]
        ops += [[p, None, 1] for p in gone]
        _save(sd + "/" + VERSION, rec)  # the new record waits in the stage dir
        if not _isdir(bd):
            _fs("mkdir", bd)
        j = {"v": 1, "ref": t["ref"], "commit": t["commit"], "stage": sd, "backup": bd, "ops": ops}
        _save(JOURNAL, j)  # from here on, boot recovery owns the outcome
        for i in range(len(ops)):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if had and _size(b) < 0:
                _fs("rename", p, b)
            if name:
                _mkdirs(p)
                _fs("rename", sd + "/" + name, p)
        if hook:
            try:
                self._run_hook(hook)
            except Exception as e:
                self._rollback(j)
                raise OTAError("post_update hook %s failed (%s); rolled back to the previous files" % (hook, e))
        if _size(VERSION) >= 0:
            _fs("rename", VERSION, bd + "/" + VERSION)
        _fs("rename", sd + "/" + VERSION, VERSION)  # COMMITTED
        self._finish(j)
        self.log("installed %s" % t["ref"])

    def _run_hook(self, name):
        # "pkg.mod" or "pkg/mod.py"; calls its post_update() or main() if it has one
        name = (name[:-3] if name.endswith(".py") else name).replace("/", ".")
        sys.modules.pop(name, None)
        mod = __import__(name)
        for a in name.split(".")[1:]:
            mod = getattr(mod, a)
        fn = getattr(mod, "post_update", None) or getattr(mod, "main", None)
        if fn and fn() is False:
            raise OTAError("it returned False")

    def _finish(self, j):
        _rm(j["backup"])
        _rm(j["stage"])
        _fs("remove", JOURNAL)

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
        _fs("remove", JOURNAL)  # before the stage: its version.json marks "not committed"
        _rm(bd)
        _rm(sd)

    def recover(self):
        # Boot-time recovery: finish a committed swap or roll back an interrupted one.
        _rm(JOURNAL + ".tmp")
        j = _load(JOURNAL)
        if not j:
            _rm(JOURNAL)
            _rm(self.cfg["backup_dir"])  # backups mean something only with a journal
            return None
        if _size(j["stage"] + "/" + VERSION) >= 0:
            self._rollback(j)
            what = "rolled back an interrupted update to %s" % j["ref"]
        else:
            self._finish(j)
            what = "completed an interrupted update to %s" % j["ref"]
        self.log(what)
        self.record(what, commit=j["commit"])
        return what
