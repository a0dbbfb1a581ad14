# ota.py: over-the-air updates from a GitHub repository, for MicroPython 1.23+ (Raspberry
# Pi Pico W); also runs on CPython 3.11. The basic update needs only this file:
#   mpremote cp ota.py ota_native.mpy main.py ota_config.json :
#
#   import ota
#   u = ota.OTA(ota.load_config())   # boot-time recovery runs here
#   u.connect()
#   if u.update_if_available():
#       u.reset()
#
# Where each concern lives (docs/design.md has the state table and every persisted record):
#   configuration ........ config_keys() (the schema), check_config(), load_config()
#   paths and selection .. check_path(), wanted()        (also used by the host tools)
#   filesystem ........... _rename/_remove/_mkdir/_open_new, _save_json (tmp + rename)
#   HTTP and retries ..... Response, status_outcome() (the retry policy), OTA.get(), OTA.retry()
#   JSON documents ....... OTA.json(), _split_json(): arrays of objects one object at a time
#   target resolution .... OTA.resolve_target(), OTA.fetch_tree(), OTA.read_manifest()
#   staging .............. OTA._stage(), OTA._download() (gzip or plain)
#   swap and journal ..... OTA._install(), OTA._rollback(), OTA._finish()
#   boot recovery ........ OTA.recover()
# Optional modules, imported only when the configuration uses them (a basic update never
# compiles or loads them):
#   ota_flatconfig.py .... .yaml/.yml/.toml configuration files
#   ota_delta.py ......... enable_delta_updates (or a cellular/lora transport): bsdiff deltas
#   ota_hw.py ............ watchdog_sec, led_pin, min_battery_v: the hardware layer
#   ota_schedule.py ...... windows, min_battery_v, health_hook, canary_percent, min_interval_sec
#   ota_<transport>.py ... a transport other than wifi (user module with connect(cfg) -> bool)
# The token never appears in logs or in ota_error.json.

import os
import sys
import json
import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    import ota_native as _native
except ImportError:
    _native = None

_MICROPYTHON = sys.implementation.name == "micropython"

VERSION = "version.json"  # the installed set; renaming the new one into place is the commit
ERRORS = "ota_error.json"  # the last 10 failures and recoveries
JOURNAL = "ota_journal.json"  # present only while a swap is in progress
STATE = "ota_state.json"  # the last check time (min_interval_sec)
UPDATER_FILES = ("ota.py", "ota.mpy", "main.py", "main.mpy", "ota_native.mpy")

# Thresholds
_MIN_CHUNK = const(256)
_FREE_SPACE_MARGIN = const(51200)  # bytes of flash kept free beyond 2x the update's size
_GZIP_MIN_FREE = const(47104)  # gzip needs a 32 KiB window + the inflater's state
_GZIP_MIN_SIZE = const(300)  # smaller files are not worth asking gzip for
_MAX_REDIRECTS = const(5)
_ERRORS_KEPT = const(10)
_CLOCK_SET_AFTER = const(1600000000)  # an earlier time() means the device clock is unset


def _before_change(op, path):
    # Runs before every filesystem change; the power-cut tests replace it to cut there.
    pass


class OTAError(Exception):
    pass


# How long Retry waits before the next attempt (its second argument), besides a number of seconds
_BACKOFF = const(-1)  # the next step of the exponential backoff
_AT_ONCE = const(-2)  # the method changed (gzip failed: plain now): again now, not counted


class Retry(Exception):
    # A transient failure: Retry(message, _BACKOFF | _AT_ONCE | seconds as the server said)
    pass


# ---------------------------------------------------------------- filesystem
def _rename(a, b):
    _before_change("rename", a)
    os.rename(a, b)


def _remove(p):
    _before_change("remove", p)
    os.remove(p)


def _mkdir(p):
    _before_change("mkdir", p)
    os.mkdir(p)


def _open_new(p, mode="wb"):
    # a file opened for writing ("wb", "ab" or "w")
    _before_change("open", p)
    return open(p, mode)


def _size(p):
    # the size of a file (>= 0 for a directory), -1 if it does not exist
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _remove_tree(p):
    # remove a file or a whole directory, if it exists
    try:
        names = os.listdir(p)
    except OSError:  # a file, or nothing
        if _size(p) >= 0:
            _remove(p)
        return
    for n in names:
        _remove_tree(p + "/" + n)
    _before_change("rmdir", p)
    os.rmdir(p)


def _mkdirs_for(path):
    # the parent directories of path
    k = path.find("/")
    while k > 0:
        if _size(path[:k]) < 0:
            _mkdir(path[:k])
        k = path.find("/", k + 1)


def _load_json(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save_json(p, obj):
    # tmp + rename: a reader sees the old or the new file, never half of one
    with _open_new(p + ".tmp", "w") as f:
        _before_change("write", p)
        json.dump(obj, f)  # streamed: no string of the whole record
    _rename(p + ".tmp", p)


def _free_memory():
    import gc

    gc.collect()
    return gc.mem_free() if _MICROPYTHON else 1 << 30


def _presized_dict(n):
    # An empty dict whose table has room for n keys, made now: a table that grows while records
    # are made leaves holes between them on a small heap (17: what a 13-17 file tree grows to).
    d = dict.fromkeys(range(n))
    for k in range(n):
        del d[k]
    return d


# ---------------------------------------------------------------- verification
def _hashers(size, sha256):
    # [Git blob SHA1 of a file of `size` bytes, + SHA256 when the manifest gives one]
    import hashlib

    h = [_native.BlobHasher(size) if _native else hashlib.sha1(b"blob %d\0" % size)]
    return h + [hashlib.sha256()] if sha256 else h


def _verified(hashers, sha1, sha256):
    from binascii import hexlify

    if hexlify(hashers[0].digest()) != sha1.encode():
        return False
    return not sha256 or hexlify(hashers[-1].digest()) == sha256.lower().encode()


# ---------------------------------------------------------------- configuration
# Value types of the schema below
_STR = const(1)  # a non-empty string
_STR_OR_NULL = const(2)  # a string or null
_BOOL = const(3)  # a JSON boolean (not 0/1, not "true")
_WHOLE = const(4)  # a whole number >= 0
_NUMBER = const(5)  # a number >= 0
_STR_LIST = const(6)  # a list of strings (a single string is a list of one)
_ANY = const(7)
REQUIRED = "(required)"  # the default of a key that must be given


def config_keys():
    # {key: (type or tuple of allowed values, default)}. README "Configuration" documents each
    # key. A function, not a global table: the table exists only while a config is checked.
    return {
        "owner": (_STR, REQUIRED),  # GitHub account or organisation holding the application
        "repo": (_STR, REQUIRED),  # its repository
        "ssid": (_STR_OR_NULL, None),  # WiFi network
        "password": (_STR_OR_NULL, None),
        "channel": (("stable", "developer"), "stable"),  # latest release (or tag) / tip of branch
        "branch": (_STR, "main"),  # the developer channel's branch
        "tag": (_STR_OR_NULL, None),  # pins the stable channel to this release tag
        "token": (_STR_OR_NULL, None),  # GitHub token (private repositories, higher rate limit)
        "allow": (_STR_LIST, []),  # files or directories the device takes ([]: everything)
        "ignore": (_STR_LIST, []),  # files or directories it never takes (wins over allow)
        "chunk": (_WHOLE, 1024),  # transfer buffer bytes (>= 256)
        "stage_dir": (_STR, ".ota_stage"),  # downloads wait here for the swap
        "backup_dir": (_STR, ".ota_backup"),  # old files wait here during the swap
        "connect_timeout_sec": (_NUMBER, 10),
        "http_timeout_sec": (_NUMBER, 30),
        "retries": (_WHOLE, 3),  # retries of transient failures
        "backoff_sec": (_NUMBER, 2),  # first backoff, doubled per retry
        "max_backoff_sec": (_NUMBER, 60),  # cap of a backoff, and of a wait the server asks for
        "force": (_BOOL, False),  # reinstall even when up to date
        "reset_mode": (("hard", "soft", "none"), "hard"),  # after an update
        "debug": (_BOOL, False),  # log requests, progress and free memory
        "api_base": (_STR, "https://api.github.com"),
        "raw_base": (_STR, "https://raw.githubusercontent.com"),
        "ca_file": (_STR_OR_NULL, None),  # CA certificate the HTTPS server must chain to
        "enable_delta_updates": (_BOOL, False),  # .deltas/ patches (ota_delta.py)
        "self_update": (_BOOL, False),  # the repository may replace the updater's own files
        "transports": (_STR_LIST, ["wifi"]),  # connection order; others: user modules ota_<name>
        # the hardware layer (ota_hw.py) and scheduling (ota_schedule.py)
        "watchdog_sec": (_WHOLE, 0),  # machine.WDT period (0: none)
        "led_pin": (_ANY, None),  # status LED pin, e.g. "LED" on a Pico W
        "min_battery_v": (_NUMBER, 0),  # defer below this battery voltage
        "battery_adc_pin": (_WHOLE, 29),
        "battery_divider": (_NUMBER, 3),
        "min_interval_sec": (_WHOLE, 0),  # at most one check per interval
        "canary_percent": (_WHOLE, 100),  # the share of devices that update
        "device_id": (_STR_OR_NULL, None),  # the canary's id (default machine.unique_id())
        "health_hook": (_STR_OR_NULL, None),  # module whose healthy() must return true
        "windows": (_STR_LIST, []),  # allowed local-time windows "HH:MM-HH:MM"
    }


def _type_mismatch(kind, v):
    # None if v has the type kind, else what kind means (exact types: a bool is not a number)
    t = type(v)
    if kind == _STR:
        return None if t is str and v != "" else "a non-empty string"
    if kind == _STR_OR_NULL:
        return None if t is str else "a string"
    if kind == _BOOL:
        return None if t is bool else "true or false (a JSON boolean)"
    if kind == _WHOLE:
        return None if t is int and v >= 0 else "a whole number >= 0"
    if kind == _NUMBER:
        return None if (t is int or t is float) and v >= 0 else "a number >= 0"
    if kind == _STR_LIST:
        return None if t is list and all(type(x) is str for x in v) else "a list of strings"
    return None


def load_config(path="ota_config.json"):
    # Read and check the configuration: .json, or flat .yaml/.yml/.toml (ota_flatconfig.py).
    ext = path[path.rfind(".") + 1:].lower()
    if ext not in ("json", "yaml", "yml", "toml"):
        raise OTAError("%s: use a .json, .yaml, .yml or .toml file" % path)
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise OTAError("config file %s not found" % path)
    try:
        if ext == "json":
            cfg = json.loads(text)
        else:
            from ota_flatconfig import parse

            cfg = parse(text, ext == "toml")
    except ValueError as e:
        raise OTAError("%s: not valid %s: %s" % (path, ext.upper(), e))
    return check_config(cfg, path)


def check_config(cfg, path="ota_config.json"):
    # The configuration with defaults filled in; OTAError naming the first bad key. Unknown keys
    # (a typo, or a newer version's key) are not fatal: listed in "_unknown", main() prints them.
    if not isinstance(cfg, dict):
        raise OTAError("%s: expected a mapping of keys to values" % path)
    keys = config_keys()
    out = dict(keys)  # its table sized once: every value is replaced below
    for k in keys:
        kind, default = keys[k]
        v = cfg.get(k)
        if v is None:
            if default is REQUIRED:
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            v = list(default) if type(default) is list else default
        elif type(kind) is tuple:
            if v not in kind:
                raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(kind), v))
        else:
            if kind == _STR_LIST and type(v) is str:
                v = [v]
            if type(v) is str and v.startswith("YOUR_"):
                raise OTAError("%s: '%s' still has the placeholder value %s" % (path, k, v))
            wrong = _type_mismatch(kind, v)
            if wrong:
                raise OTAError("%s: '%s' must be %s, got %r" % (path, k, wrong, v))
        out[k] = v
    out["_path"] = path
    out["_unknown"] = [k for k in cfg if k not in keys and not k.startswith("_")]
    if out["chunk"] < _MIN_CHUNK or out["canary_percent"] > 100:
        raise OTAError("%s: 'chunk' must be >= 256 and 'canary_percent' <= 100" % path)
    if out["windows"]:
        from ota_schedule import check_windows

        check_windows(out["windows"], path)
    for k in ("api_base", "raw_base"):
        out[k] = v = out[k].rstrip("/")
        if not (v.startswith("http://") or v.startswith("https://")):
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
    return out


# ---------------------------------------------------------------- paths and selection
def check_path(p):
    # p if it is a safe relative path, else OTAError (.., ., a leading /, empty parts, \, :, NUL)
    q = "/%s/" % (p,)  # an empty, "." or ".." part shows as "//", "/./" or "/../" in q
    if not isinstance(p, str) or "\\" in p or "\0" in p or ":" in p or "//" in q or "/./" in q or "/../" in q:
        raise OTAError("unsafe path %r rejected; nothing installed" % (p,))
    return p


def _under(p, x):
    # p is the file x or inside the directory x ("lib" and "lib/" alike); allocates nothing
    # for the common case
    x = x.strip("/")
    return p == x or p.startswith(x) and p.startswith("/", len(x))


def wanted(cfg, p):
    # Does the device take path p? Never its own state (config, version.json, ota_error.json,
    # journal, stage and backup dirs, .deltas/) nor the updater itself (unless self_update); then
    # ignore wins over allow, and an empty allow takes everything. Called per tree entry as the
    # tree streams in: it allocates nothing on the common path. The host tools use it too.
    if type(p) is not str:
        check_path(p)
    name = p[:-4] if p.endswith(".tmp") else p
    if (name in (VERSION, ERRORS, JOURNAL, STATE) or name == cfg["_path"] or name == cfg["ca_file"]
            or p.startswith("ota_config.") or _under(p, cfg["stage_dir"]) or _under(p, cfg["backup_dir"])
            or _under(p, ".deltas") or p in UPDATER_FILES and not cfg["self_update"]):
        return False
    for x in cfg["ignore"]:
        if _under(p, x):
            return False
    for x in cfg["allow"]:
        if _under(p, x):
            return True
    return not cfg["allow"]


def _quote(s):
    # percent-encode a URL path segment
    out = bytearray()  # grown in place, not a new string per character
    for c in s.encode():
        if 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in b"-_.~/":
            out.append(c)
        else:
            out.extend(b"%%%02X" % c)
    return out.decode()


def _split_url(url):
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


# ---------------------------------------------------------------- HTTP and the retry policy
# Response headers kept, under short names (the others are skipped as they arrive)
_KEPT_HEADERS = {"content-length": "length", "transfer-encoding": "transfer", "content-encoding": "encoding",
                 "location": "location", "retry-after": "retry", "x-ratelimit-remaining": "rl_left",
                 "x-ratelimit-reset": "rl_reset"}

# The retry policy: what a status other than 200/206 and the redirects means
_FAIL_NOW = const(0)  # the request cannot succeed as it is: fail with the message
_RETRY_WITH_BACKOFF = const(1)  # transient: retry after the next backoff step
_WAIT_AS_TOLD = const(2)  # rate limited: wait Retry-After / X-RateLimit-Reset, then retry
_STATUS_POLICY = {
    401: (_FAIL_NOW, "GitHub API returned 401 for %s: private repository or invalid token; add a valid 'token'"),
    403: (_FAIL_NOW, "GitHub API returned 403 for %s: check the token's permissions"),
    404: (_FAIL_NOW, "GitHub API returned 404 for %s: check 'owner', 'repo', that the release exists, "
                     "the tag name (private repositories need a 'token')"),
    429: (_WAIT_AS_TOLD, "rate limited"),
}
# Not in the table: 5xx retry with backoff, any other status fails now. A 403 that says it is a
# rate limit (X-RateLimit-Remaining: 0 or Retry-After) is a 429.


def status_outcome(status, headers, url, max_wait):
    # The exception for a response with this status: OTAError (fail now) or Retry.
    if status == 403 and (headers.get("rl_left") == "0" or "retry" in headers):
        status = 429
    how, msg = _STATUS_POLICY.get(status) or (
        _RETRY_WITH_BACKOFF if status >= 500 else _FAIL_NOW, "HTTP %d from %%s" % status)
    if how == _FAIL_NOW:
        return OTAError(msg % url)
    if how == _RETRY_WITH_BACKOFF:
        return Retry(msg % url, _BACKOFF)
    wait = headers.get("retry")
    if wait is None:
        now = int(time.time())
        # an unset device clock cannot tell when the reset comes: the ordinary backoff then
        wait = int(headers.get("rl_reset", now)) - now if now > _CLOCK_SET_AFTER else _BACKOFF
    wait = int(wait)
    if wait > max_wait:
        return OTAError("GitHub API rate limit exceeded: resets in %d s (> max_backoff_sec); add a 'token'" % wait)
    return Retry(msg, wait if wait >= 0 else _BACKOFF)


# Response body states
_BY_LENGTH = const(0)  # Content-Length, or until the connection closes
_CHUNK_FIRST = const(1)  # chunked, before the first chunk
_CHUNK_NEXT = const(2)  # chunked, a CRLF to skip before the next chunk size
_DONE = const(3)


class Response:
    # One HTTP/1.1 response: status, the kept headers, the body through readinto (by
    # Content-Length, chunked, or until the connection closes).
    def __init__(self, sock, counter):
        # stream: the socket (MicroPython) or its file (CPython: the socket, closed here, stays
        # open until its file is closed)
        self.stream = f = sock if _MICROPYTHON else sock.makefile("rb")
        if f is not sock:
            sock.close()
        self.counter = counter  # body bytes are added to counter.bytes
        self.headers = h = {}
        self.body = _BY_LENGTH
        line = f.readline()
        try:
            self.status = int(line[9:12])  # "HTTP/1.1 200 OK"
        except ValueError:
            raise Retry("bad status line", _BACKOFF)
        while line not in (b"\r\n", b"\n", b""):
            line = f.readline()
            i = line.find(b":")
            k = _KEPT_HEADERS.get(line[:i].strip().lower().decode())
            if k:
                h[k] = line[i + 1:].strip().decode()
        self.left = int(h.get("length", -1))  # -1: until the connection closes
        if self.left < 0 and "chunked" in h.get("transfer", ""):
            self.left = 0
            self.body = _CHUNK_FIRST

    def _next_chunk(self):
        f = self.stream
        if self.body == _CHUNK_NEXT:
            f.readline()  # the CRLF after a chunk
        self.body = _CHUNK_NEXT
        line = f.readline()
        if not line:
            raise Retry("cut in a chunk", _BACKOFF)
        self.left = int(line.split(b";")[0], 16)
        if not self.left:
            while f.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            self.body = _DONE

    def readinto(self, buf):
        if self.body in (_CHUNK_FIRST, _CHUNK_NEXT) and not self.left:
            self._next_chunk()
        if self.body == _DONE or not self.left:
            return 0
        n = len(buf)
        if 0 < self.left < n:
            n = self.left
        k = self.stream.readinto(memoryview(buf)[:n])
        if not k:
            if self.left < 0:  # the body ends with the connection
                self.body = _DONE
                return 0
            raise Retry("connection cut", _BACKOFF)
        self.counter.bytes += k
        if self.left > 0:
            self.left -= k
        return k

    def close(self):  # the socket (or, on CPython, its file and so the socket)
        self.stream.close()


def _tls_context(cfg):
    # MicroPython: the core `tls` module (its `ssl` is a frozen wrapper of it). The server
    # certificate is checked against ca_file when set; a board has no CA bundle, so without
    # ca_file MicroPython encrypts but does not verify (CPython uses the system's CAs).
    ssl = __import__("tls" if _MICROPYTHON else "ssl")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca = cfg["ca_file"]
    if ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        with open(ca, "rb") as f:
            ca = f.read()
        if ca.startswith(b"-----"):  # PEM -> DER (MicroPython's mbedTLS loads DER)
            from binascii import a2b_base64

            ca = a2b_base64(b"".join(ca.split(b"-----")[2].split()))
        if _MICROPYTHON:
            ctx.load_verify_locations(ca)
        else:
            ctx.load_verify_locations(cadata=ca)
    elif _MICROPYTHON:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_default_certs()
    return ctx


# ---------------------------------------------------------------- the updater
class OTA:
    def __init__(self, cfg):
        self.cfg = cfg = cfg if "_path" in cfg else check_config(cfg)
        self.buf = memoryview(bytearray(cfg["chunk"]))  # the one transfer buffer
        self.requests = self.bytes = 0  # HTTP requests made, body bytes received
        self.result = {}
        self.transport = None
        self.gzip = _native is not None  # ask for gzip (dropped after an inflate failure)
        # the hardware layer, only when the config uses it (and only on a board: see ota_hw.py)
        self.hw = None
        if cfg["watchdog_sec"] or cfg["led_pin"] is not None or cfg["min_battery_v"]:
            from ota_hw import Hardware

            self.hw = Hardware(cfg)
        self.recover()

    def feed(self):
        # called per chunk and during every wait: feeds the watchdog, blinks the LED
        if self.hw:
            self.hw.feed()

    def sleep(self, sec):
        # wait in 50 ms steps, the watchdog fed meanwhile
        for _ in range(int(sec * 20)):
            self.feed()
            time.sleep(0.05)

    def log(self, msg, *args):
        # msg % args, formatted only with debug on (a message made per request is a late allocation)
        if self.cfg["debug"]:
            print("ota: %s [free %d]" % (msg % args, _free_memory()))

    def record(self, reason, commit=None):
        # Append to ota_error.json (the last 10, newest last, with time and reason; never the
        # token). Returns the reason as recorded.
        t = self.cfg["token"]
        reason = str(reason).replace(t, "***") if t else str(reason)
        e = {"time": int(time.time()), "reason": reason}
        if commit:
            e["commit"] = commit
        old = _load_json(ERRORS)
        _save_json(ERRORS, ((old if type(old) is list else []) + [e])[-_ERRORS_KEPT:])
        return reason

    def reset(self):
        # machine.reset() / soft_reset() per reset_mode; nothing off a board
        mode = self.cfg["reset_mode"]
        m = _board()
        if m and mode != "none":
            m.soft_reset() if mode == "soft" else m.reset()

    def installed(self):
        return _load_json(VERSION) or {}

    def wanted(self, p):
        return wanted(self.cfg, p)

    # ------------------------------------------------------------ connecting
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

    def wifi(self):
        # True when the WiFi is connected; off a board (wired, or host networking) always True
        c = self.cfg
        try:
            import network
        except ImportError:
            return True
        if not _board():
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

    # ------------------------------------------------------------ HTTP
    def get(self, url, offset=0, gzip=False):
        # One attempt: GET url, following redirects; a 200/206 Response, or OTAError / Retry /
        # OSError. offset: resume with a Range; gzip: ask for gzip (never with a Range).
        token = self.cfg["token"]
        for _ in range(_MAX_REDIRECTS + 1):
            scheme, host, port, path = _split_url(url)
            self.requests += 1
            self.log("GET %s %d %d", url, offset, gzip)
            r = self._request(scheme, host, port, path, token, offset, gzip)
            self.log("-> %d", r.status)
            if r.status in (200, 206):
                return r
            r.close()
            new = r.headers.get("location")
            if r.status not in (301, 302, 303, 307, 308) or not new:
                raise status_outcome(r.status, r.headers, url, self.cfg["max_backoff_sec"])
            if new.startswith("/"):  # a path on the same server
                new = url[:url.find("/", url.find("://") + 3)] + new
            if _split_url(new)[1:3] != (host, port):
                token = None  # never send the token to another host
            url = new
        raise OTAError("too many redirects for " + url)

    def _request(self, scheme, host, port, path, token, offset, gzip):
        # open a connection, send the request, read the response head
        import socket

        c = self.cfg
        a = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(a[0], socket.SOCK_STREAM)
        try:
            # MicroPython: one timeout (the larger), kept by the TLS socket, which has no settimeout
            s.settimeout(max(c["connect_timeout_sec"], c["http_timeout_sec"]) if _MICROPYTHON
                         else c["connect_timeout_sec"])
            s.connect(a[-1])
            if scheme == "https":
                try:
                    s = _tls_context(c).wrap_socket(s, server_hostname=host)
                except ValueError as e:  # certificate not trusted: not transient, no retry
                    raise OTAError("TLS to %s: %s" % (host, str(e).strip()))
            if not _MICROPYTHON:
                s.settimeout(c["http_timeout_sec"])
            # the request goes out in pieces, no string of the whole: on a fragmented heap a
            # late allocation of several blocks is the one that fails
            send = s.write if _MICROPYTHON else lambda x: s.sendall(x.encode())
            send("GET ")
            send(path)
            send(" HTTP/1.1\r\nHost: ")
            send(host)
            if port not in (80, 443):
                send(":%d" % port)
            send("\r\nUser-Agent: ota.py\r\nConnection: close\r\n")
            if "/releases/assets/" in path:
                send("Accept: application/octet-stream\r\n")
            elif "/repos/" in path:
                send("Accept: application/vnd.github+json\r\n")
            if token:
                send("Authorization: token ")
                send(token)
                send("\r\n")
            if offset:
                send("Range: bytes=%d-\r\n" % offset)
            elif gzip:
                send("Accept-Encoding: gzip\r\n")
            send("\r\n")
            return Response(s, self)
        except BaseException:
            s.close()
            raise

    def retry(self, attempt, retries=-1):
        # attempt() until it returns, retrying transient failures (Retry, OSError) after the
        # backoff (backoff_sec, doubled each time up to max_backoff_sec) or the wait the server
        # asked for; retries: how many (default: the config's). Other exceptions pass through.
        c = self.cfg
        backoff = c["backoff_sec"]
        left = c["retries"] if retries < 0 else retries
        while True:
            try:
                return attempt()
            except Retry as e:
                msg, wait = e.args
            except OSError as e:  # connection refused or reset, timeouts
                msg, wait = "connection error: %s" % (e,), _BACKOFF
            if wait == _AT_ONCE:
                self.log("%s", msg)
                continue
            if left <= 0:
                raise OTAError("%s (gave up after %d attempts)" % (msg, c["retries"] + 1))
            left -= 1
            wait = min(backoff if wait == _BACKOFF else wait, c["max_backoff_sec"])
            self.log("%s; wait %s", msg, wait)
            self.sleep(wait)
            backoff = min(backoff * 2, c["max_backoff_sec"])

    def json(self, url, each=None, retries=-1):
        # GET a JSON document without ever holding its arrays of objects: each(obj) is called per
        # object inside an array one level below the top (tree entries, manifest files, release
        # assets, delta index entries), and the rest (those objects replaced by 0) is returned.
        # each() must be idempotent (an attempt may be retried). retries as in retry().
        def attempt():
            r = self.get(url)
            try:
                return _split_json(r, self.buf, each)
            finally:
                r.close()

        try:
            return json.loads(self.retry(attempt, retries))
        except ValueError:
            raise OTAError("invalid JSON from " + url)

    def api(self, path, each=None):
        c = self.cfg
        return self.json("%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], path), each)

    # ------------------------------------------------------------ target resolution
    def _latest(self):
        # The one request of an up-to-date check: the branch's commit, or the release's tag
        # (its commit is found later, and only when the tag is new).
        c = self.cfg
        if c["channel"] == "developer":
            sha = self.api("git/ref/heads/" + _quote(c["branch"]))["object"]["sha"]
            return {"ref": c["branch"], "commit": sha, "version": sha[:7], "manifest": None}
        t = {"commit": None, "manifest": None}

        def asset(a):
            # browser_download_url costs no API request but takes no token: with a token the
            # asset comes through the API (get() asks for its bytes), as a private repository needs
            if a.get("name") == "manifest.json":
                t["manifest"] = c["token"] and a.get("url") or a.get("browser_download_url") or a["url"]

        r = self.api("releases/" + ("tags/" + _quote(c["tag"]) if c["tag"] else "latest"), asset)
        t["ref"] = r["tag_name"]
        t["version"] = r.get("name") or r["tag_name"]
        return t

    def resolve_target(self, t=None):
        # {"ref", "commit", "version", "manifest" (URL or None)} of the channel's target
        # (t: what _latest() gave, its commit still to find for a release).
        t = t or self._latest()
        if not t["commit"]:
            o = self.api("git/ref/tags/" + _quote(t["ref"]))["object"]
            while o["type"] == "tag":  # an annotated tag -> the object it points at
                o = self.api("git/tags/" + o["sha"])["object"]
            t["commit"] = o["sha"]
        return t

    def fetch_tree(self, commit, keep=None):
        # {path: [blob_sha, size, None]} of the files of the commit (recursive tree API), parsed
        # one entry at a time; with keep (a test of the path), only the files it keeps. A path is
        # checked only when kept: a path the device never takes cannot block an update.
        out = _presized_dict(17)

        def entry(e):
            p = e["path"]
            if e["type"] == "blob" and e.get("mode") != "120000" and (not keep or keep(p)):
                out[check_path(p)] = [e["sha"], e["size"], None]

        if self.api("git/trees/%s?recursive=1" % commit, entry).get("truncated"):
            raise OTAError("Git tree of %s truncated: publish a manifest.json" % commit)
        return out

    def read_manifest(self, t):
        # (the wanted files as fetch_tree gives them + sha256, deletes, post_update hook) of the
        # release's manifest.json (manifests/README.md); every entry is checked
        files = _presized_dict(17)

        def entry(e):
            p = e["path"]
            if len(e["sha1"]) != 40 or int(e["size"]) < 0:
                raise ValueError
            if self.wanted(p):
                files[check_path(p)] = [e["sha1"].lower(), int(e["size"]), e.get("sha256")]

        try:
            m = self.json(t["manifest"], entry)
            hook = m.get("post_update")
            if type(m["files"]) is not list or hook is not None and not (type(hook) is str and hook):
                raise ValueError
            deletes = [p for p in (m.get("deletes") or ()) if self.wanted(p)]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise OTAError("manifest.json of %s is malformed" % t["ref"])
        for p in deletes:
            check_path(p)
        t["version"] = m.get("version") or t["version"]
        return files, deletes, hook

    # ------------------------------------------------------------ update
    def update_if_available(self):
        # Install the channel's target if it differs; True when files changed. Failures are
        # recorded in ota_error.json and raised as OTAError.
        try:
            return self._update()
        except Exception as e:
            raise OTAError(self.record(e if isinstance(e, OTAError) else "%s: %s" % (type(e).__name__, e)))

    def _deferred(self):
        # why the update may not run now (ota_schedule.py), or None
        c = self.cfg
        if c["windows"] or c["min_battery_v"] or c["health_hook"] or c["canary_percent"] < 100 or c["min_interval_sec"]:
            from ota_schedule import deferral

            return deferral(self)
        return None

    def _update(self):
        c = self.cfg
        self.result = r = {"updated": False, "deferred": self._deferred()}
        if r["deferred"]:
            return False
        old = self.installed()
        t = self._latest()
        if not c["force"] and old.get("ref") == t["ref"] and old.get("commit") == (t["commit"] or old.get("commit")):
            self.log("up to date")
            return False
        r["target"] = self.resolve_target(t)  # its version (from a manifest too) is set below
        hook, deletes = None, []
        if t["manifest"]:
            files, deletes, hook = self.read_manifest(t)
        else:
            files = self.fetch_tree(t["commit"], self.wanted)
        _free_memory()  # collect before the big allocations: fewer holes between long-lived objects
        # to download: missing, another size, or another SHA (an unrecorded file is hashed)
        have = old.get("files") or {}
        r["download"] = get = []
        for p in sorted(files):
            sha, size, sha256 = files[p]
            if c["force"] or _size(p) != size or have.get(p) != sha and not self._same_file(p, sha, size):
                get.append(p)
        # to delete: installed or listed in the manifest's deletes, gone from the target
        r["delete"] = gone = []
        for p in list(have) + deletes:
            if p not in files and p not in gone and self.wanted(check_path(p)) and _size(p) >= 0:
                gone.append(p)
        self.log("%d to get, %d to delete", len(get), len(gone))
        if get or gone:
            self._stage(t, files, get, have)
        for p in files:
            files[p] = files[p][0]  # the record keeps the SHAs (in the same dict)
        record = {"ref": t["ref"], "commit": t["commit"], "version": t["version"], "files": files}
        if get or gone:
            self._install(t, record, get, gone, hook)
            r["updated"] = True
        else:
            _save_json(VERSION, record)
        return r["updated"]

    # ------------------------------------------------------------ staging
    def _stage(self, t, files, get, have):
        # every changed file into stage_dir/<sha>.<i> (i: its index in get), verified; by delta
        # (ota_delta.py), gzip or plain download
        c = self.cfg
        sd = c["stage_dir"]
        if _size(sd) < 0:
            _mkdir(sd)
        for n in os.listdir(sd):  # leftovers of another target (partial downloads of this one stay)
            x = n.split(".")  # <sha>.<i>[.part|.dpart]
            i = int(x[1]) if x[1:] and x[1].isdigit() else len(get)
            if i >= len(get) or files[get[i]][0] != x[0]:
                _remove_tree(sd + "/" + n)
        need = _FREE_SPACE_MARGIN
        for p in get:
            need += 2 * files[p][1]
        st = os.statvfs(sd)
        if st[1] * st[4] < need:
            raise OTAError("not enough free space: %d bytes needed, %d free" % (need, st[1] * st[4]))
        base = "%s/%s/%s/%s/" % (c["raw_base"], c["owner"], c["repo"], t["commit"])
        deltas = None
        if (_native and (c["enable_delta_updates"] or self.transport in ("cellular", "lora"))
                and any(p in have for p in get)):
            import ota_delta

            deltas = ota_delta.Deltas(self, base, files, get, have)
        _free_memory()
        # {path: [how, bytes, size]}: its table made now at its final size (fromkeys sizes it by
        # len(get)), so it does not grow between downloads; None: not staged (the update stopped first)
        self.result["methods"] = methods = dict.fromkeys(get)
        saved = 0
        for i in range(len(get)):
            _free_memory()
            p = get[i]
            sha, size, sha256 = files[p]
            # the hashers of a download first: its biggest allocation, made while the heap is clean
            first = [] if deltas and p in deltas.entries else [_hashers(size, sha256)]
            dest = "%s/%s.%d" % (sd, sha, i)
            b = self.bytes
            how = "staged"  # verified by an earlier run
            if _size(dest) != size:
                how = deltas and deltas.stage(p, dest, sha256) or \
                    self._download(base + _quote(p), dest, p, sha, size, sha256, first)
            b = self.bytes - b
            methods[p] = [how, b, size]
            saved += size - b
            self.log("%s: %s, %d/%d bytes", p, how, b, size)
        self.result["saved"] = saved

    def pump(self, src, f, hashers, n, size):
        # The one chunk loop: src.readinto -> hashers -> file f (or nowhere); returns the byte
        # count (n bytes were there before). More than size bytes is an error.
        mv = self.buf
        while True:
            k = src.readinto(mv)
            if not k:
                return n
            n += k
            if n > size:
                raise OTAError("too long")
            for h in hashers:
                h.update(mv[:k])
            if f:
                _before_change("write", "")
                f.write(mv[:k])
            self.feed()

    def _hash_file(self, path, size, sha256):
        # (hashers fed with the file at path, its length)
        h = _hashers(size, sha256)
        with open(path, "rb") as f:
            return h, self.pump(f, None, h, 0, size)

    def _same_file(self, path, sha, size):
        return _verified(self._hash_file(path, size, None)[0], sha, None)

    def _download(self, url, dest, path, sha, size, sha256, first):
        # Stream url into dest via dest.part, resumed with a Range after a cut; gzip when
        # ota_native can inflate it in the free memory. Returns "gzip" or "plain".
        # first: [hashers] for the first download from byte 0, or [].
        part = dest + ".part"

        def attempt():  # -> (hashers, "gzip" or "plain")
            n = _size(part)
            if n > size:
                n = 0
            if n > 0:
                h, n = self._hash_file(part, size, sha256)
            else:
                n = 0
                h = first.pop() if first else _hashers(size, sha256)
            if n == size > 0:
                return h, "plain"  # complete from an earlier run (an empty file is always fetched)
            ask_gzip = not n and self.gzip and size > _GZIP_MIN_SIZE and _free_memory() > _GZIP_MIN_FREE
            r = self.get(url, n, ask_gzip)
            gz = r.headers.get("encoding") == "gzip"
            try:
                if r.status != 206 and n:  # the whole body came: start over
                    n = 0
                    h = _hashers(size, sha256)
                with _open_new(part, "ab" if n else "wb") as f:
                    self.pump(_native.InflateReader(r, _native.GZIP, 15) if gz else r, f, h, n, size)
            except (ValueError, MemoryError) as e:
                if not gz:
                    raise
                self.gzip = False  # plain from now on, at once
                _remove_tree(part)
                raise Retry("gzip: %s" % e, _AT_ONCE)
            finally:
                r.close()
            return h, "gzip" if gz else "plain"

        h, how = self.retry(attempt)
        if not _verified(h, sha, sha256):
            _remove(part)
            raise OTAError("%s: SHA mismatch; nothing installed" % path)
        _rename(part, dest)
        return how

    # ------------------------------------------------------------ swap and journal
    def _install(self, t, record, get, gone, hook):
        # The swap: journal first, then old files to backup_dir/<i>, staged files into place, the
        # post_update hook, and version.json renamed into place last (the commit).
        c = self.cfg
        sd, bd = c["stage_dir"], c["backup_dir"]
        _free_memory()  # the journal's records into the holes the downloads left
        ops = []  # [path, stage name or None (a delete), had an old file 0|1]
        for i in range(len(get)):
            p = get[i]
            ops.append([p, "%s.%d" % (record["files"][p], i), int(_size(p) >= 0)])
        for p in gone:
            ops.append([p, None, 1])
        _save_json(sd + "/" + VERSION, record)  # the new record waits in the stage dir
        if _size(bd) < 0:
            _mkdir(bd)
        j = {"v": 1, "ref": t["ref"], "commit": t["commit"], "stage": sd, "backup": bd, "ops": ops}
        _save_json(JOURNAL, j)  # from here on, boot recovery owns the outcome
        for i in range(len(ops)):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if had and _size(b) < 0:
                _rename(p, b)
            if name:
                _mkdirs_for(p)
                _rename(sd + "/" + name, p)
        if hook:
            try:
                _run_hook(hook, "post_update")
            except Exception as e:
                self._rollback(j)
                raise OTAError("post_update hook %s failed (%s); rolled back" % (hook, e))
        if _size(VERSION) >= 0:
            _rename(VERSION, bd + "/" + VERSION)
        _rename(sd + "/" + VERSION, VERSION)  # COMMITTED
        self._finish(j)
        self.log("installed")

    def _rollback(self, j):
        # undo the swap of journal j, last op first; every step checks before it acts (idempotent)
        sd, bd, ops = j["stage"], j["backup"], j["ops"]
        for i in range(len(ops) - 1, -1, -1):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if _size(b) >= 0:
                _remove_tree(p)
                _rename(b, p)
            elif name and not had and _size(sd + "/" + name) < 0:
                _remove_tree(p)  # a file the update added
        if _size(bd + "/" + VERSION) >= 0 and _size(VERSION) < 0:
            _rename(bd + "/" + VERSION, VERSION)
        self._finish(j)

    def _finish(self, j):
        # The journal first: a staged version.json means "not committed" only next to a
        # journal, and without a journal boot removes the backups.
        _remove(JOURNAL)
        _remove_tree(j["backup"])
        _remove_tree(j["stage"])

    # ------------------------------------------------------------ boot recovery
    def recover(self):
        # Finish a committed swap or roll back an interrupted one (docs/design.md, "Decision at
        # boot"). Returns what was done, or None.
        _remove_tree(JOURNAL + ".tmp")
        j = _load_json(JOURNAL)
        if not j:
            _remove_tree(JOURNAL)
            _remove_tree(self.cfg["backup_dir"])  # backups mean something only with a journal
            return None
        if _size(j["stage"] + "/" + VERSION) >= 0:
            self._rollback(j)
            what = "rolled back"
        else:
            self._finish(j)
            what = "completed"  # committed: only the cleanup was left
        what = "%s an interrupted update to %s" % (what, j["ref"])
        self.log("%s", what)
        self.record(what, j["commit"])
        return what


def _board():
    # the `machine` module of a board (one with Pin), else None: the unix port's machine has no
    # Pin and CPython has none; the tests put a fake machine.py in the device folder
    try:
        import machine
    except ImportError:
        return None
    return machine if hasattr(machine, "Pin") else None


def _run_hook(hook, fn_name):
    # a manifest hook: "pkg.mod" or "pkg/mod.py"; its fn_name() (or main()) runs. Raising or
    # returning False is a failure.
    name = (hook[:-3] if hook.endswith(".py") else hook).replace("/", ".")
    sys.modules.pop(name, None)
    m = __import__(name)
    for a in name.split(".")[1:]:
        m = getattr(m, a)
    fn = getattr(m, fn_name, None) or getattr(m, "main", None)
    if fn and fn() is False:
        raise OTAError("it returned False")


def _split_json(src, mv, each):
    # Reads a JSON document from src through the buffer mv. Each object inside an array one
    # level below the top goes to each(obj) as it ends and is replaced by 0 in the rest, which
    # is returned (bytes). Only the current object and the rest are ever held.
    # Made with room for a typical tree, then emptied (the room stays), so that they seldom grow
    # and move while records are made between them.
    rest = bytearray(256)
    obj = bytearray(256)
    rest[:] = obj[:] = b""
    depth = 0
    in_string = escaped = False
    zero_at = -1  # len(rest) after the last 0 put for an object
    while True:
        k = src.readinto(mv)
        if not k:
            return rest
        a = 0  # mv[a:i] not copied yet: one extend per run of bytes, not one append per byte
        for i in range(k):
            c = mv[i]
            if in_string:
                if escaped:
                    escaped = False
                elif c == 92:  # backslash
                    escaped = True
                elif c == 34:  # quote
                    in_string = False
            elif c == 34:
                in_string = True
            elif c == 123 or c == 91:  # { [
                depth += 1
                if depth == 3:  # an object starts
                    rest.extend(mv[a:i])
                    if len(rest) == zero_at + 1:  # only "," since the last object's 0:
                        rest[zero_at:] = b""  # that 0 stands for this one too (rest stays small)
                    a = i
            elif c == 125 or c == 93:  # } ]
                depth -= 1
                if depth == 2:  # and ends
                    obj.extend(mv[a:i + 1])
                    a = i + 1
                    if each:
                        each(json.loads(obj))
                    obj[:] = b""
                    if len(rest) != zero_at:
                        rest.append(48)  # "0" keeps the array valid
                        zero_at = len(rest)
        (obj if depth > 2 else rest).extend(mv[a:k])
