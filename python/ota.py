# ota.py: over-the-air updates from a GitHub repository for MicroPython
# (Raspberry Pi Pico W, MicroPython 1.23+); also imports and runs on CPython.
#
#   import ota
#   u = ota.OTA(ota.load_config())   # boot-time recovery runs here
#   u.connect()
#   if u.update_if_available():
#       u.reset()
#
# Update states (docs/design.md draws the same table and records):
#   IDLE -> STAGING (files verified into stage_dir; no journal)
#        -> SWAPPING (journal on flash; old files moved to backup_dir, staged moved in)
#        -> HOOK (post_update hook runs; version.json still old)
#        -> COMMITTED (stage_dir/version.json renamed to version.json: the commit point)
#        -> IDLE (backups, stage and journal removed)
# At boot, a journal means an interrupted update: committed -> finish, otherwise roll back.

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
# unix port and CPython: no WiFi, no machine.reset, no watchdog
_HOST = sys.platform in ("linux", "darwin", "win32", "cygwin")

_MAX_ERRORS = const(10)
_MAX_REDIRECTS = const(5)
_RESERVE = const(51200)  # free space kept beyond 2x the update size
_GZIP = const(3)

VERSION_FILE = "version.json"
ERROR_FILE = "ota_error.json"
JOURNAL = "ota_journal.json"
STATE_FILE = "ota_state.json"
_UA = "ota.py/1.0 (MicroPython OTA)"
# the updater's own files: replaced only with self_update
_SELF = ("ota.py", "ota.mpy", "main.py", "main.mpy", "ota_native.mpy")
_CONFIGS = ("ota_config.json", "ota_config.yaml", "ota_config.yml", "ota_config.toml")
_KEEP = (
    b"content-length",
    b"transfer-encoding",
    b"content-encoding",
    b"content-range",
    b"location",
    b"retry-after",
    b"x-ratelimit-remaining",
    b"x-ratelimit-reset",
    b"date",
)

# Test hook: called as _hook(op, path) before every filesystem mutation.
_hook = None


class OTAError(Exception):
    pass


class _Retry(Exception):
    # transient failure: args = (message, seconds to wait or None for backoff)
    pass


# ---------------------------------------------------------------- filesystem
# Every mutation goes through these five functions (power-cut tests count them).


def _rename(a, b):
    if _hook:
        _hook("rename", a)
    os.rename(a, b)


def _remove(p):
    if _hook:
        _hook("remove", p)
    os.remove(p)


def _mkdir(p):
    if _hook:
        _hook("mkdir", p)
    os.mkdir(p)


def _rmdir(p):
    if _hook:
        _hook("rmdir", p)
    os.rmdir(p)


def _write(f, data, p=""):
    if _hook:
        _hook("write", p)
    f.write(data)


def _stat(p):
    try:
        return os.stat(p)
    except OSError:
        return None


def _exists(p):
    return _stat(p) is not None


def _size(p):
    st = _stat(p)
    return -1 if st is None else st[6]


def _isdir(p):
    st = _stat(p)
    return st is not None and st[0] & 0x4000 != 0


def _mkdirs(p):
    # create every parent directory of file path p
    i = p.find("/")
    while i > 0:
        d = p[:i]
        if not _isdir(d):
            _mkdir(d)
        i = p.find("/", i + 1)


def _rmtree(d):
    if not _isdir(d):
        return
    for n in os.listdir(d):
        p = d + "/" + n
        if _isdir(p):
            _rmtree(p)
        else:
            _remove(p)
    _rmdir(d)


def _read_json(p):
    try:
        with open(p) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        return None


def _write_json(p, obj):
    # write tmp + rename: readers see the old or the new file, never half of one
    tmp = p + ".tmp"
    f = _open_w(tmp, "w")
    try:
        _write(f, json.dumps(obj), tmp)
    finally:
        f.close()
    _rename(tmp, p)


def _open_w(p, mode):
    if _hook:
        _hook("open", p)
    return open(p, mode)


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()


def _ticks():
    try:
        return time.ticks_ms()
    except AttributeError:
        return int(time.time() * 1000)


def _mem():
    import gc

    gc.collect()
    try:
        return gc.mem_free()
    except AttributeError:
        return -1


# ---------------------------------------------------------------- hashing


class _Blob:
    # Git blob SHA1 without ota_native: sha1(b"blob <size>\0" + content)
    def __init__(self, size):
        import hashlib

        self.h = hashlib.sha1(("blob %d\0" % size).encode())

    def update(self, buf, n=-1):
        self.h.update(buf if n < 0 else buf[:n])

    def hexdigest(self):
        return _hex(self.h.digest())


def _blob_hasher(size):
    if _nat:
        return _nat.BlobHasher(size)
    return _Blob(size)


def blob_sha(data):
    """Git blob SHA1 of bytes (host helper, same as `git hash-object`)."""
    h = _blob_hasher(len(data))
    h.update(data)
    return h.hexdigest()


# ---------------------------------------------------------------- config

# key: (type, default); s=str, S=str or null, b=bool, i=int, n=number, l=list of str, x=any
_SCHEMA = {
    "owner": ("s", None),
    "repo": ("s", None),
    "ssid": ("S", None),
    "password": ("S", None),
    "channel": ("s", "stable"),
    "branch": ("s", "main"),
    "tag": ("S", None),
    "token": ("S", None),
    "allow": ("l", ()),
    "ignore": ("l", ()),
    "chunk": ("i", 1024),
    "stage_dir": ("s", ".ota_stage"),
    "backup_dir": ("s", ".ota_backup"),
    "connect_timeout_sec": ("n", 10),
    "http_timeout_sec": ("n", 30),
    "retries": ("i", 3),
    "backoff_sec": ("n", 2),
    "max_backoff_sec": ("n", 60),
    "force": ("b", False),
    "reset_mode": ("s", "hard"),
    "debug": ("b", False),
    "api_base": ("s", "https://api.github.com"),
    "raw_base": ("s", "https://raw.githubusercontent.com"),
    "enable_delta_updates": ("b", False),
    "self_update": ("b", False),
    # mission extras (all off by default)
    "watchdog_sec": ("i", 0),
    "led_pin": ("x", None),
    "min_battery_v": ("n", 0),
    "battery_adc_pin": ("i", 29),
    "battery_divider": ("n", 3),
    "transports": ("l", ("wifi",)),
    "min_interval_sec": ("i", 0),
    "windows": ("x", None),
    "canary_percent": ("i", 100),
    "device_id": ("S", None),
    "health_hook": ("S", None),
}
_REQUIRED = ("owner", "repo")
_CHOICES = {"channel": ("stable", "developer"), "reset_mode": ("hard", "soft", "none")}


def load_config(path="ota_config.json"):
    """Read and check the config (.json, .yaml/.yml or .toml by extension)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise OTAError("config file %s not found" % path)
    ext = path[path.rfind(".") + 1 :].lower()
    try:
        if ext == "json":
            cfg = json.loads(text)
        elif ext in ("yaml", "yml"):
            cfg = _load_yaml(text)
        elif ext == "toml":
            cfg = _load_toml(text)
        else:
            raise OTAError("%s: unknown config format (use .json, .yaml, .yml or .toml)" % path)
    except ValueError as e:
        raise OTAError("%s: not valid %s: %s" % (path, ext.upper(), e))
    return check_config(cfg, path)


def _load_yaml(text):
    try:
        import yaml
    except ImportError:
        return _parse_flat(text, False)
    return yaml.safe_load(text)


def _load_toml(text):
    try:
        import tomllib
    except ImportError:
        return _parse_flat(text, True)
    return tomllib.loads(text)


def check_config(cfg, path="ota_config.json"):
    if not isinstance(cfg, dict):
        raise OTAError("%s: the config must be a mapping of keys to values" % path)
    out = {}
    for k in cfg:
        if k not in _SCHEMA and not k.startswith("_"):
            raise OTAError("%s: unknown key '%s'" % (path, k))
    for k, spec in _SCHEMA.items():
        t, d = spec
        v = cfg.get(k)
        if v is None:
            if k in _REQUIRED:
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            out[k] = list(d) if isinstance(d, tuple) else d
            continue
        bad = None
        if t in ("s", "S"):
            if not isinstance(v, str):
                bad = "a string"
            elif v.startswith("YOUR_"):
                raise OTAError("%s: '%s' still has the placeholder value %s" % (path, k, v))
            elif t == "s" and not v:
                bad = "a non-empty string"
        elif t == "b":
            if not isinstance(v, bool):
                bad = "true or false (a JSON boolean)"
        elif t == "i":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad = "a whole number >= 0"
        elif t == "n":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                bad = "a number >= 0"
        elif t == "l":
            if isinstance(v, str):
                v = [v] if v else []
            if not isinstance(v, list) or [x for x in v if not isinstance(x, str)]:
                bad = "a list of strings"
        if bad:
            raise OTAError("%s: '%s' must be %s, got %r" % (path, k, bad, v))
        if k in _CHOICES and v not in _CHOICES[k]:
            raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(_CHOICES[k]), v))
        out[k] = v
    if out["chunk"] < 256:
        raise OTAError("%s: 'chunk' must be at least 256" % path)
    if out["canary_percent"] > 100:
        raise OTAError("%s: 'canary_percent' must be 0..100" % path)
    for k in ("api_base", "raw_base"):
        v = out[k].rstrip("/")
        if not (v.startswith("http://") or v.startswith("https://")):
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
        out[k] = v
    out["_path"] = path
    return out


def _strip_comment(s):
    q = None
    for i in range(len(s)):
        c = s[i]
        if q:
            if c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == "#":
            return s[:i]
    return s


def _scalar(v, toml, n):
    if len(v) >= 2 and v[0] in "\"'" and v[-1] == v[0]:
        s = v[1:-1]
        if v[0] == '"':
            s = s.replace("\\\\", "\0").replace('\\"', '"').replace("\\n", "\n").replace("\0", "\\")
        return s
    if v == "true":
        return True
    if v == "false":
        return False
    if not toml and v in ("null", "~", ""):
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        pass
    if toml:
        raise ValueError("line %d: strings must be quoted: %s" % (n, v))
    return v


def _items(v, toml, n):
    # "[a, 'b', 3]" -> list
    body = v[1:-1]
    out = []
    q = None
    start = 0
    for i in range(len(body) + 1):
        c = body[i] if i < len(body) else ","
        if q:
            if c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == ",":
            s = body[start:i].strip()
            if s:
                out.append(_scalar(s, toml, n))
            start = i + 1
    return out


def _parse_flat(text, toml):
    """Flat YAML (`key: value`, `- item` lists) or TOML (`key = value`) subset."""
    cfg = {}
    key = None
    sep = "=" if toml else ":"
    pend = None
    n = 0
    for raw in text.split("\n"):
        n += 1
        s = _strip_comment(raw).strip()
        if pend is not None:  # multi-line [ ... ]
            pend += " " + s
            if s.endswith("]"):
                cfg[key] = _items(pend, toml, n)
                pend = None
            continue
        if not s or s == "---":
            continue
        if not toml and s[0] == "-":
            if key is None or (cfg[key] is not None and not isinstance(cfg[key], list)):
                raise ValueError("line %d: list item without a key" % n)
            if cfg[key] is None:
                cfg[key] = []
            cfg[key].append(_scalar(s[1:].strip(), toml, n))
            continue
        if toml and s[0] == "[":
            raise ValueError("line %d: tables are not supported (flat keys only)" % n)
        i = s.find(sep)
        if i < 1:
            raise ValueError("line %d: expected key %s value" % (n, sep))
        key = s[:i].strip().strip("\"'")
        v = s[i + 1 :].strip()
        if v.startswith("["):
            if v.endswith("]"):
                cfg[key] = _items(v, toml, n)
            else:
                pend = v
        elif toml and not v:
            raise ValueError("line %d: missing value for %s" % (n, key))
        else:
            cfg[key] = _scalar(v, toml, n)
    if pend is not None:
        raise ValueError("unterminated list for %s" % key)
    return cfg


# ---------------------------------------------------------------- paths


def check_path(p):
    """Reject paths that could escape the device root."""
    if (
        not isinstance(p, str)
        or not p
        or p[0] == "/"
        or "\\" in p
        or "\0" in p
        or ":" in p
        or [x for x in p.split("/") if x in ("", ".", "..")]
    ):
        raise OTAError("unsafe path %r rejected (nothing installed)" % (p,))
    return p


def _under(p, pat):
    # exact file or directory prefix: "lib" and "lib/" both match "lib/x.py"
    pat = pat.strip("/")
    return p == pat or p.startswith(pat + "/")


def _quote(s):
    # percent-encode a path for a URL (keeps / and unreserved characters)
    out = []
    for c in s.encode():
        if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"/-_.~":
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def _split_url(url):
    i = url.find("://")
    if i < 0:
        raise OTAError("bad URL %s" % url)
    scheme = url[:i]
    rest = url[i + 3 :]
    j = rest.find("/")
    host, path = (rest, "/") if j < 0 else (rest[:j], rest[j:])
    port = 443 if scheme == "https" else 80
    j = host.rfind(":")
    if j > 0 and "]" not in host[j:]:
        port = int(host[j + 1 :])
        host = host[:j]
    return scheme, host, port, path


def _join_url(base, loc):
    if "://" in loc:
        return loc
    scheme, host, port, path = _split_url(base)
    origin = "%s://%s:%d" % (scheme, host, port)
    if loc.startswith("//"):
        return scheme + ":" + loc
    if loc.startswith("/"):
        return origin + loc
    path = path.split("?")[0]
    return origin + path[: path.rfind("/") + 1] + loc


def _http_date(s):
    # "Sun, 06 Nov 1994 08:49:37 GMT" -> seconds since 1970
    p = s.split()
    d = int(p[1])
    m = "JanFebMarAprMayJunJulAugSepOctNovDec".find(p[2]) // 3 + 1
    y = int(p[3]) - (m <= 2)
    hh, mm, ss = [int(x) for x in p[4].split(":")]
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + hh * 3600 + mm * 60 + ss


# ---------------------------------------------------------------- HTTP

try:
    import io

    _Stream = io.IOBase if _MP else object
except ImportError:
    _Stream = object


class _Resp(_Stream):
    # One HTTP/1.1 response: status, a few headers, and a body read with readinto.
    def __init__(self, sock, f):
        self.s = sock
        self.f = f
        self.status = 0
        self.h = {}
        self.left = -1  # bytes left in the body (or chunk); -1: until close
        self.chunked = False
        self.started = False
        self.done = False
        self.got = 0

    def readinto(self, buf, n=-1):
        if n < 0 or n > len(buf):
            n = len(buf)
        if self.done:
            return 0
        if self.chunked and self.left == 0:
            f = self.f
            if self.started:
                f.readline()  # CRLF that ends the previous chunk
            self.started = True
            line = f.readline()
            if not line:
                raise _Retry("connection closed in chunked body", None)
            self.left = int(line.split(b";")[0].strip().decode(), 16)
            if self.left == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return 0
        elif self.left == 0:
            self.done = True
            return 0
        if 0 <= self.left < n:
            n = self.left
        k = self.f.readinto(memoryview(buf)[:n] if n < len(buf) else buf)
        if not k:
            if self.left < 0 and not self.chunked:
                self.done = True
                return 0
            raise _Retry("connection closed after %d body bytes" % self.got, None)
        self.got += k
        if self.left > 0:
            self.left -= k
        return k

    def read_all(self, buf):
        out = bytearray()
        while True:
            k = self.readinto(buf)
            if not k:
                return out
            out.extend(buf[:k])

    def close(self):
        if self.f is not self.s:
            self.f.close()
        self.s.close()


class _Inflate:
    # readinto over a gzip-encoded body (ota_native, else deflate / zlib)
    def __init__(self, src, buf):
        self.z = None
        if _nat:
            self.d = _nat.InflateReader(src, _GZIP, 15)
        elif _MP:
            import deflate

            self.d = deflate.DeflateIO(src, deflate.GZIP)
        else:
            import zlib

            self.d = None
            self.z = zlib.decompressobj(31)
            self.src = src
            self.mv = memoryview(bytearray(len(buf)))
            self.pend = b""

    def readinto(self, buf, n=-1):
        if self.d:
            return self.d.readinto(buf)
        z = self.z
        while not self.pend:
            if z.unconsumed_tail:
                self.pend = z.decompress(z.unconsumed_tail, len(buf))
            elif z.eof:
                return 0
            else:
                k = self.src.readinto(self.mv)
                if not k:
                    raise _Retry("gzip body truncated", None)
                self.pend = z.decompress(self.mv[:k], len(buf))
        k = min(len(buf), len(self.pend))
        buf[:k] = self.pend[:k]
        self.pend = self.pend[k:]
        return k

    def close(self):
        pass


# ---------------------------------------------------------------- hardware


class _HW:
    # The one place that touches network/machine; a no-op on the unix port and CPython.
    def __init__(self, cfg):
        self.cfg = cfg
        self.m = None
        self.wdt = None
        self.led = None
        if _HOST:
            return
        try:
            import machine

            self.m = machine
        except ImportError:
            return
        if cfg["watchdog_sec"]:
            self.wdt = machine.WDT(timeout=min(cfg["watchdog_sec"] * 1000, 8388))
        if cfg["led_pin"] is not None:
            try:
                self.led = machine.Pin(cfg["led_pin"], machine.Pin.OUT)
            except Exception:
                self.led = None

    def feed(self):
        if self.wdt:
            self.wdt.feed()

    def blink(self):
        if self.led:
            self.led.toggle()

    def battery_v(self):
        if not self.m:
            return None
        adc = self.m.ADC(self.cfg["battery_adc_pin"])
        return adc.read_u16() * 3.3 / 65535 * self.cfg["battery_divider"]

    def device_id(self):
        if self.cfg["device_id"]:
            return self.cfg["device_id"].encode()
        if self.m and hasattr(self.m, "unique_id"):
            return self.m.unique_id()
        return b""

    def wifi(self, timeout):
        cfg = self.cfg
        if _HOST:
            return True
        try:
            import network
        except ImportError:
            return True  # no WiFi hardware: assume wired or host networking
        if not cfg["ssid"]:
            return False
        w = network.WLAN(network.STA_IF)
        w.active(True)
        if w.isconnected():
            return True
        w.connect(cfg["ssid"], cfg["password"] or "")
        t0 = _ticks()
        while not w.isconnected():
            if _ticks() - t0 > timeout * 1000:
                w.active(False)
                return False
            self.feed()
            self.blink()
            time.sleep_ms(200)
        return True

    def reset(self, mode):
        if _HOST or not self.m or mode == "none":
            return
        if mode == "soft":
            self.m.soft_reset()
        self.m.reset()


# ---------------------------------------------------------------- updater


class OTA:
    def __init__(self, cfg):
        if "_path" not in cfg:
            cfg = check_config(cfg)
        self.cfg = cfg
        self.buf = memoryview(bytearray(cfg["chunk"]))
        self.hw = _HW(cfg)
        self.requests = 0  # HTTP requests made by this object
        self.bytes = 0  # body bytes received
        self.accept_gzip = False  # hook for compressed full downloads (issue 4)
        self.result = {}
        self.transport = None
        self.recover()

    # ------------------------------------------------------------ logging
    def log(self, msg):
        if self.cfg["debug"]:
            print("ota: %s [mem %d]" % (msg, _mem()))

    def _secret(self, s):
        t = self.cfg["token"]
        return s.replace(t, "***") if t else s

    def record(self, reason, **kw):
        """Append to ota_error.json (bounded, newest last; never the token)."""
        e = {"time": int(time.time()), "reason": self._secret(str(reason))}
        e.update(kw)
        old = _read_json(ERROR_FILE)
        if not isinstance(old, list):
            old = []
        old.append(e)
        _write_json(ERROR_FILE, old[-_MAX_ERRORS:])

    # ------------------------------------------------------------ network
    def connect(self):
        """Bring up a link: wifi, then cellular, then lora (optional user modules)."""
        cfg = self.cfg
        t = max(cfg["connect_timeout_sec"], 1)
        for name in cfg["transports"]:
            if name == "wifi":
                ok = self.hw.wifi(t)
            else:
                try:
                    mod = __import__("ota_" + name)
                    ok = mod.connect(cfg)
                except ImportError:
                    ok = False
            self.log("connect %s: %s" % (name, ok))
            if ok:
                self.transport = name
                return name
        raise OTAError("no network: %s failed" % ", ".join(cfg["transports"]))

    def _sleep(self, sec):
        end = _ticks() + int(sec * 1000)
        while True:
            self.hw.feed()
            left = end - _ticks()
            if left <= 0:
                return
            time.sleep(min(left, 1000) / 1000)

    def _request(self, url, offset, accept, auth):
        import socket

        cfg = self.cfg
        scheme, host, port, path = _split_url(url)
        self.requests += 1
        self.log("GET %s%s" % (url, " from %d" % offset if offset else ""))
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        f = s
        try:
            ct, ht = cfg["connect_timeout_sec"], cfg["http_timeout_sec"]
            s.settimeout(max(ct, ht) if _MP else ct)
            s.connect(ai[-1])
            if scheme == "https":
                import ssl

                if hasattr(ssl, "create_default_context"):
                    s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
                else:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.verify_mode = ssl.CERT_NONE
                    s = ctx.wrap_socket(s, server_hostname=host)
            if not _MP:
                s.settimeout(ht)
            hp = host if port in (80, 443) else "%s:%d" % (host, port)
            req = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n" % (path, hp, _UA)
            if accept:
                req += "Accept: %s\r\n" % accept
            if auth and cfg["token"]:
                req += "Authorization: token %s\r\n" % cfg["token"]
            if offset:
                req += "Range: bytes=%d-\r\n" % offset
            elif self.accept_gzip and accept is None:
                req += "Accept-Encoding: gzip\r\n"
            w = getattr(s, "sendall", None) or s.write
            w((req + "\r\n").encode())
            del req
            f = s if _MP else s.makefile("rb")
            r = _Resp(s, f)
            line = f.readline()
            try:
                r.status = int(line.split(None, 2)[1])
            except (IndexError, ValueError):
                raise _Retry("bad HTTP status line %r" % line[:40], None)
            while True:
                line = f.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                i = line.find(b":")
                k = line[:i].strip().lower()
                if k in _KEEP:
                    r.h[k.decode()] = line[i + 1 :].strip().decode()
            h = r.h
            if "content-length" in h:
                r.left = int(h["content-length"])
            elif "chunked" in h.get("transfer-encoding", "").lower():
                r.chunked = True
                r.left = 0
            self.log("-> %d %s" % (r.status, h.get("content-length", "")))
            return r
        except BaseException:
            if f is not s:
                f.close()
            s.close()
            raise

    def _open(self, url, offset=0, accept=None):
        """One attempt: GET url following redirects; returns a 200/206 _Resp."""
        auth = True
        for _ in range(_MAX_REDIRECTS + 1):
            r = self._request(url, offset, accept, auth)
            st = r.status
            if st in (301, 302, 303, 307, 308):
                loc = r.h.get("location")
                r.close()
                if not loc:
                    raise OTAError("HTTP %d without Location from %s" % (st, url))
                new = _join_url(url, loc)
                if _split_url(new)[:3] != _split_url(url)[:3]:
                    auth = False  # never send the token to another host
                url = new
                continue
            if st in (200, 206):
                return r
            h = r.h
            r.close()
            self._fail(st, h, url)
        raise OTAError("too many redirects for %s" % url)

    def _fail(self, st, h, url):
        cfg = self.cfg
        if st == 401:
            raise OTAError(
                "GitHub API returned 401 (Unauthorized) for %s: the repository is private or the token is "
                "invalid; add a valid 'token' to the config" % url
            )
        if st == 404:
            raise OTAError(
                "GitHub API returned 404 (Not Found) for %s: check 'owner' and 'repo' in the config, that the "
                "release exists, and the tag name (private repositories also need a 'token')" % url
            )
        limited = h.get("x-ratelimit-remaining") == "0" or "retry-after" in h
        if st == 429 or (st == 403 and limited):
            wait = self._limit_wait(h)
            if wait > cfg["max_backoff_sec"]:
                raise OTAError(
                    "GitHub API rate limit exceeded: resets in %d s (more than max_backoff_sec=%d); "
                    "add a 'token' or try again later" % (wait, cfg["max_backoff_sec"])
                )
            raise _Retry("rate limited (HTTP %d)" % st, wait)
        if st == 403:
            raise OTAError("GitHub API returned 403 (Forbidden) for %s: check the token's permissions" % url)
        if st >= 500:
            raise _Retry("HTTP %d from %s" % (st, url), None)
        raise OTAError("HTTP %d from %s" % (st, url))

    def _limit_wait(self, h):
        if "retry-after" in h:
            try:
                return int(h["retry-after"])
            except ValueError:
                return 0
        try:
            reset = int(h["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return 0
        now = int(time.time())
        if now < 1600000000 and "date" in h:  # device clock not set: use the server's
            try:
                now = _http_date(h["date"])
            except (IndexError, ValueError):
                pass
        return max(0, reset - now)

    def _retry(self, fn):
        """Run fn(); retry transient failures with exponential backoff."""
        cfg = self.cfg
        delay = cfg["backoff_sec"]
        n = cfg["retries"] + 1
        while True:
            try:
                return fn()
            except _Retry as e:
                msg, wait = e.args[0], e.args[1]
            except OSError as e:
                msg, wait = "connection error: %s" % (e,), None
            n -= 1
            if n <= 0:
                raise OTAError("%s (gave up after %d attempts)" % (msg, cfg["retries"] + 1))
            w = min(delay if wait is None else wait, cfg["max_backoff_sec"])
            self.log("%s; retry in %s s" % (msg, w))
            self._sleep(w)
            delay = min(delay * 2, cfg["max_backoff_sec"])

    def _get_json(self, url):
        def once():
            r = self._open(url, 0, "application/vnd.github+json")
            try:
                data = r.read_all(self.buf)
            finally:
                r.close()
            self.bytes += len(data)
            return data

        data = self._retry(once)
        try:
            return json.loads(data)
        except ValueError:
            raise OTAError("invalid JSON from %s" % url)

    def _api(self, tail):
        c = self.cfg
        return "%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], tail)

    # ------------------------------------------------------------ targets
    def _head(self):
        """The first request of every check: returns the target without its commit
        for releases (ref = tag name), with its commit for branches."""
        cfg = self.cfg
        if cfg["channel"] == "developer":
            j = self._get_json(self._api("git/ref/heads/" + _quote(cfg["branch"])))
            return {"ref": cfg["branch"], "commit": j["object"]["sha"], "version": j["object"]["sha"][:7], "manifest": None}
        if cfg["tag"]:
            rel = self._get_json(self._api("releases/tags/" + _quote(cfg["tag"])))
        else:
            rel = self._get_json(self._api("releases/latest"))
        t = {"ref": rel["tag_name"], "commit": None, "version": rel.get("name") or rel["tag_name"], "manifest": None}
        for a in rel.get("assets") or ():
            if a.get("name") == "manifest.json":
                t["manifest"] = a.get("browser_download_url") or a.get("url")
        return t

    def _tag_commit(self, tag):
        j = self._get_json(self._api("git/ref/tags/" + _quote(tag)))["object"]
        for _ in range(5):  # annotated tags point at tag objects
            if j["type"] != "tag":
                return j["sha"]
            j = self._get_json(self._api("git/tags/" + j["sha"]))["object"]
        raise OTAError("tag %s: too many nested tag objects" % tag)

    def resolve_target(self):
        """{"ref", "commit", "version", "manifest"} of what the channel points at."""
        t = self._head()
        if not t["commit"]:
            t["commit"] = self._tag_commit(t["ref"])
        return t

    def fetch_tree(self, commit):
        """{path: [blob_sha, size, None]} of every file in the commit (recursive tree)."""
        j = self._get_json(self._api("git/trees/%s?recursive=1" % commit))
        if j.get("truncated"):
            raise OTAError("the Git tree of %s is truncated (too many files); use a release manifest" % commit)
        out = {}
        for e in j.get("tree") or ():
            if e.get("type") == "blob" and e.get("mode") != "120000":
                out[check_path(e["path"])] = [e["sha"], e.get("size", 0), None]
        return out

    def _manifest(self, t):
        m = self._get_json(t["manifest"])
        files = {}
        try:
            for e in m["files"]:
                sha = e["sha1"]
                if len(sha) != 40:
                    raise OTAError("manifest: bad sha1 for %s" % e["path"])
                files[check_path(e["path"])] = [sha.lower(), int(e["size"]), e.get("sha256")]
            deletes = [check_path(p) for p in m.get("deletes") or ()]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise OTAError("manifest.json of %s is malformed" % t["ref"])
        if m.get("version"):
            t["version"] = m["version"]
        hook = m.get("post_update")
        if hook is not None and (not isinstance(hook, str) or not hook):
            raise OTAError("manifest: post_update must be a module name")
        return files, deletes, hook

    # ------------------------------------------------------------ selection
    def protected(self, p):
        """Device state that no update may write or delete."""
        c = self.cfg
        top = p.split("/")[0]
        if top in (c["stage_dir"].strip("/"), c["backup_dir"].strip("/")):
            return True
        if p in _CONFIGS or p == c["_path"] or p in (VERSION_FILE, ERROR_FILE, JOURNAL, STATE_FILE):
            return True
        if p.endswith(".tmp") and p[:-4] in (VERSION_FILE, ERROR_FILE, JOURNAL, STATE_FILE):
            return True
        return p in _SELF and not c["self_update"]

    def wanted(self, p):
        """allow/ignore rules (ignore wins; empty allow permits all) and protection."""
        c = self.cfg
        if self.protected(p):
            return False
        for pat in c["ignore"]:
            if _under(p, pat):
                return False
        if not c["allow"]:
            return True
        for pat in c["allow"]:
            if _under(p, pat):
                return True
        return False

    # ------------------------------------------------------------ scheduling (extras)
    def _due(self):
        cfg = self.cfg
        st = _read_json(STATE_FILE) or {}
        now = int(time.time())
        if cfg["min_interval_sec"] and now - st.get("last", 0) < cfg["min_interval_sec"]:
            self.result["deferred"] = "min_interval_sec"
            return False
        if cfg["windows"]:
            h = time.gmtime(now)[3]
            if not [w for w in cfg["windows"] if w[0] <= h < w[1]]:
                self.result["deferred"] = "windows"
                return False
        if cfg["canary_percent"] < 100:
            import hashlib

            d = hashlib.sha1(self.hw.device_id() + cfg["repo"].encode()).digest()
            if (d[0] * 256 + d[1]) % 100 >= cfg["canary_percent"]:
                self.result["deferred"] = "canary_percent"
                return False
        if cfg["min_battery_v"]:
            v = self.hw.battery_v()
            if v is not None and v < cfg["min_battery_v"]:
                self.result["deferred"] = "battery"
                return False
        if cfg["health_hook"]:
            try:
                if not __import__(cfg["health_hook"]).healthy():
                    self.result["deferred"] = "health"
                    return False
            except ImportError:
                pass
        if cfg["min_interval_sec"]:
            _write_json(STATE_FILE, {"last": now})
        return True

    # ------------------------------------------------------------ update
    def update_if_available(self):
        """Check the target and install it if it differs; True when files changed."""
        try:
            return self._update()
        except OTAError as e:
            self.record(e)
            raise
        except Exception as e:
            self.record("%s: %s" % (type(e).__name__, e))
            raise OTAError("update failed: %s: %s" % (type(e).__name__, self._secret(str(e))))

    def _update(self):
        cfg = self.cfg
        self.result = {"updated": False}
        if not self._due():
            return False
        old = _read_json(VERSION_FILE) or {}
        t = self._head()
        if (
            not cfg["force"]
            and old.get("ref") == t["ref"]
            and (t["commit"] is None or old.get("commit") == t["commit"])
        ):
            self.log("up to date at %s" % t["ref"])
            return False
        if not t["commit"]:
            t["commit"] = self._tag_commit(t["ref"])
        hook = None
        deletes = ()
        if t["manifest"]:
            files, deletes, hook = self._manifest(t)
        else:
            files = self.fetch_tree(t["commit"])
        self.log("target %s %s: %d files" % (t["ref"], t["commit"][:7], len(files)))
        for p in list(files):
            if not self.wanted(p):
                del files[p]
        have = old.get("files") or {}
        get = []
        for p in sorted(files):
            sha, size = files[p][0], files[p][1]
            if cfg["force"] or have.get(p) != sha or _size(p) != size:
                if cfg["force"] or _size(p) != size or self._hash_file(p, size) != sha:
                    get.append(p)
        gone = []
        for p in list(have) + list(deletes):
            if p not in files and p not in gone and self.wanted(check_path(p)) and _exists(p):
                gone.append(p)
        rec = {"ref": t["ref"], "commit": t["commit"], "version": t["version"]}
        rec["files"] = dict([(p, files[p][0]) for p in files])
        self.result.update({"ref": t["ref"], "commit": t["commit"], "version": t["version"], "download": get, "delete": gone})
        if not get and not gone:
            _write_json(VERSION_FILE, rec)
            self.log("no file changed")
            return False
        self._stage(t, files, get)
        self._install(t, rec, get, gone, hook)
        self.result["updated"] = True
        return True

    def _stage_name(self, i, sha):
        return "%s.%d" % (sha, i)

    def _stage(self, t, files, get):
        cfg = self.cfg
        sd = cfg["stage_dir"]
        names = [self._stage_name(i, files[get[i]][0]) for i in range(len(get))]
        if not _isdir(sd):
            _mkdir(sd)
        for n in os.listdir(sd):  # leftovers of another target
            if n not in names and n[:-5] not in names:
                p = sd + "/" + n
                _rmtree(p) if _isdir(p) else _remove(p)
        total = 0
        for p in get:
            total += files[p][1]
        st = os.statvfs(sd)
        free = st[1] * st[4]
        if free < 2 * total + _RESERVE:
            raise OTAError("not enough free space: update needs %d bytes x2 + 50 KB, %d free" % (total, free))
        c = cfg
        for i in range(len(get)):
            p = get[i]
            sha, size, sha256 = files[p]
            url = "%s/%s/%s/%s/%s" % (c["raw_base"], c["owner"], c["repo"], t["commit"], _quote(p))
            self._download(url, sd + "/" + names[i], p, sha, size, sha256)
        self.log("staged %d files" % len(get))

    def _hash_file(self, path, size, n=-1, h256=False):
        h = _blob_hasher(size)
        h2 = None
        if h256:
            import hashlib

            h2 = hashlib.sha256()
        mv = self.buf
        left = size if n < 0 else n
        with open(path, "rb") as f:
            while left > 0:
                k = f.readinto(mv[: min(left, len(mv))])
                if not k:
                    break
                h.update(mv, k)
                if h2:
                    h2.update(mv[:k])
                left -= k
        if n >= 0:
            return h, h2
        return h.hexdigest() if left == 0 else None

    def _download(self, url, dest, path, sha, size, sha256):
        """Stream url into dest (via dest.part) through the blob SHA1; resume with Range."""
        if _exists(dest):
            return  # verified by an earlier run
        part = dest + ".part"
        mv = self.buf
        state = [None, None]

        def once():
            n = _size(part)
            if n > size:
                _remove(part)
                n = -1
            n = max(n, 0)
            h, h2 = self._hash_file(part, size, n, sha256 is not None) if n else (_blob_hasher(size), None)
            if sha256 and not h2:
                import hashlib

                h2 = hashlib.sha256()
            if n == size and size:
                state[0], state[1] = h, h2
                return
            r = self._open(url, n)
            try:
                if n and r.status != 206:  # server ignored Range: start over
                    n = 0
                    h = _blob_hasher(size)
                    if h2:
                        import hashlib

                        h2 = hashlib.sha256()
                src = r
                if r.h.get("content-encoding", "identity") == "gzip":
                    src = _Inflate(r, mv)
                f = _open_w(part, "ab" if n else "wb")
                try:
                    while True:
                        k = src.readinto(mv)
                        if not k:
                            break
                        if n + k > size:
                            raise OTAError("%s: more than the %d bytes declared" % (path, size))
                        h.update(mv, k)
                        if h2:
                            h2.update(mv[:k])
                        _write(f, mv[:k], part)
                        n += k
                        self.bytes += k
                        self.hw.feed()
                finally:
                    f.close()
            finally:
                r.close()
            if n < size:
                raise _Retry("%s: body ended at %d of %d bytes" % (path, n, size), None)
            state[0], state[1] = h, h2

        self._retry(once)
        got = state[0].hexdigest()
        bad = got != sha
        if not bad and sha256:
            bad = _hex(state[1].digest()) != sha256.lower()
            got = "sha256 mismatch"
        if bad:
            _remove(part)
            raise OTAError("%s: SHA mismatch (expected %s, got %s); nothing installed" % (path, sha, got))
        _rename(part, dest)
        self.log("staged %s (%d bytes)" % (path, size))

    # ------------------------------------------------------------ install
    def _install(self, t, rec, get, gone, hook):
        cfg = self.cfg
        sd, bd = cfg["stage_dir"], cfg["backup_dir"]
        ops = []
        for i in range(len(get)):
            p = get[i]
            ops.append([p, self._stage_name(i, rec["files"][p]), 1 if _exists(p) else 0])
        for p in gone:
            ops.append([p, None, 1])
        _write_json(sd + "/" + VERSION_FILE, rec)
        if not _isdir(bd):
            _mkdir(bd)
        j = {"v": 1, "ref": t["ref"], "commit": t["commit"], "stage": sd, "backup": bd, "ops": ops}
        _write_json(JOURNAL, j)  # from here on, recovery owns the outcome
        self._swap(j)
        if hook:
            try:
                self._run_hook(hook)
            except Exception as e:
                self._rollback(j)
                raise OTAError("post_update hook %s failed (%s); rolled back to the previous files" % (hook, e))
        self._commit(j)
        self._finish(j)
        self.log("installed %s (%d files, %d deleted)" % (t["ref"], len(get), len(gone)))

    def _swap(self, j):
        sd, bd = j["stage"], j["backup"]
        for i in range(len(j["ops"])):
            p, name, had = j["ops"][i]
            b = "%s/%d" % (bd, i)
            if had and _exists(p) and not _exists(b):
                _rename(p, b)
            if name and _exists(sd + "/" + name):
                _mkdirs(p)
                _rename(sd + "/" + name, p)

    def _commit(self, j):
        bd = j["backup"]
        if _exists(VERSION_FILE):
            _rename(VERSION_FILE, bd + "/" + VERSION_FILE)
        _rename(j["stage"] + "/" + VERSION_FILE, VERSION_FILE)  # the commit point

    def _finish(self, j):
        _rmtree(j["backup"])
        _rmtree(j["stage"])
        _remove(JOURNAL)

    def _rollback(self, j):
        sd, bd = j["stage"], j["backup"]
        ops = j["ops"]
        for i in range(len(ops) - 1, -1, -1):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if _exists(b):
                if _exists(p):
                    _remove(p)
                _rename(b, p)
            elif name and not had and _exists(p) and not _exists(sd + "/" + name):
                _remove(p)  # a file the update added
        b = bd + "/" + VERSION_FILE
        if _exists(b) and not _exists(VERSION_FILE):
            _rename(b, VERSION_FILE)
        _remove(JOURNAL)
        _rmtree(bd)
        _rmtree(sd)

    def _run_hook(self, name):
        if name.endswith(".py"):
            name = name[:-3]
        name = name.replace("/", ".")
        sys.modules.pop(name, None)
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
        fn = getattr(mod, "post_update", None) or getattr(mod, "main", None)
        if fn:
            if fn() is False:
                raise OTAError("returned False")

    def recover(self):
        """Boot-time recovery: finish a committed swap or roll back an interrupted one."""
        cfg = self.cfg
        if _exists(JOURNAL + ".tmp"):
            _remove(JOURNAL + ".tmp")
        j = _read_json(JOURNAL)
        if j is None:
            if _exists(JOURNAL):  # unreadable: cannot happen with tmp+rename
                _remove(JOURNAL)
            _rmtree(cfg["backup_dir"])  # backups only mean something with a journal
            return None
        if _exists(j["stage"] + "/" + VERSION_FILE):
            self._rollback(j)
            what = "rolled back an interrupted update to %s" % j["ref"]
        else:
            self._finish(j)
            what = "completed an interrupted update to %s" % j["ref"]
        self.log(what)
        self.record(what, commit=j["commit"])
        return what

    def installed(self):
        return _read_json(VERSION_FILE) or {}

    def reset(self):
        self.hw.reset(self.cfg["reset_mode"])
