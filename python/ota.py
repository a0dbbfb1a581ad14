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
#   configuration ........ _keys() (the schema), check_config(), load_config()
#   paths and selection .. check_path(), wanted()        (also used by the host tools)
#   filesystem ........... _rename/_remove/_mkdir/_open_new, _save_json (tmp + rename)
#   HTTP and retries ..... Response, status_outcome() (the retry policy), OTA.get(), OTA.retry();
#                          one connection kept open (OTA._request(), OTA.keep(), Response.close())
#   JSON documents ....... OTA.json(), _split_json(): arrays of objects one object at a time
#   target resolution .... OTA._latest() (the check, conditional: OTA._check()), OTA.resolve_target(),
#                          OTA.fetch_tree(), OTA.read_manifest()
#   staging .............. OTA._stage(), OTA._download() (gzip or plain)
#   swap and journal ..... OTA._install(), OTA._rollback(), OTA._finish(), OTA._run_hook()
#   boot recovery ........ OTA.recover()
# Optional modules, imported only when the configuration uses them (a basic update never
# compiles or loads them):
#   ota_flatconfig.py .... .yaml/.yml/.toml configuration files
#   ota_delta.py ......... enable_delta_updates (or a cellular/lora transport): bsdiff deltas
#   ota_hw.py ............ watchdog, status LED, battery (the hardware layer)
#   ota_schedule.py ...... windows, health_hook, canary_percent, min_interval_sec
#   (a feature module owns the keys _FEATURES routes to it: its KEYS, check() and attach())
#   ota_<transport>.py ... a transport other than wifi (user module with connect(cfg) -> bool)
# The token never appears in logs or in ota_error.json.

import os
import sys
import json
import time

if sys.implementation.name != "micropython":

    def const(x):  # MicroPython's compiler knows const() without an import; CPython needs this
        return x



_MICROPYTHON = sys.implementation.name == "micropython"

VERSION = "version.json"  # the installed set; renaming the new one into place is the commit
ERRORS = "ota_error.json"  # the last 10 failures and recoveries
JOURNAL = "ota_journal.json"  # present only while a swap is in progress
STATE = "ota_state.json"  # the last check time (min_interval_sec)
_NEW = const(".ota_new")  # a new file beside its target, renamed onto it by the swap
TRUST_STORE = "ota_ca.der"  # the root certificates GitHub's hosts chain to (make device)

# Thresholds
_MIN_CHUNK = const(256)
_FREE_SPACE_MARGIN = const(51200)  # bytes of flash kept free beyond 2x the update's size
_GZIP_MIN_FREE = const(47104)  # gzip needs a 32 KiB window + the inflater's state
_GZIP_MIN_SIZE = const(300)
_DELTA_MIN_FREE = const(14848)  # the smallest delta: a 512 B window + ~12 KB of state + a margin  # smaller files are not worth asking gzip for
_MAX_REDIRECTS = const(5)
_ERRORS_KEPT = const(10)
_CLOCK_SET_AFTER = const(1600000000)
_SECONDARY_LIMIT_WAIT = const(60)
_DRAIN_MAX = const(2048)  # a body this short is read to its end, to keep the connection
_LONGEST_KEPT = const(80)  # longer strings outside the streamed objects are read as ""  # an earlier time() means the device clock is unset


def _before_change(op, path):
    # Runs before every filesystem change; the power-cut tests replace it to cut there.
    pass


class OTAError(Exception):
    pass


class NotFound(OTAError):  # a 404
    pass


class NotModified(Exception):  # a 304 to a conditional check: what is installed is the target
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
def _native():
    # ota_native (the Rust core), imported on first use by gzip or a delta, which need much free
    # memory anyway: on a board its code is in RAM only then. None without it.
    try:
        import ota_native

        return ota_native
    except ImportError:
        return None


def _hashers(size, sha256):
    # [Git blob SHA1 of a file of `size` bytes, + SHA256 when the manifest gives one]. MicroPython's
    # own SHA1 (C) is as fast as ota_native's, and needs no native module in RAM.
    import hashlib

    h = [hashlib.sha1(b"blob %d\0" % size)]
    return h + [hashlib.sha256()] if sha256 else h


def _remove_backups(d):
    # backup_dir with what the swap puts there (<i>, <i>.tmp, version.json[.tmp]); a folder that
    # holds anything else is not the updater's (a backup_dir naming an application folder): kept
    try:
        names = os.listdir(d)
    except OSError:  # no such folder, or a file of that name: not ours
        return
    for n in names:
        if not (n.split(".")[0].isdigit() or n.startswith(VERSION)):
            raise OTAError("%s holds %s: not the updater's backups; set another backup_dir" % (d, n))
    _remove_tree(d)


def _is_hex(s, n):
    # s is n hex digits
    from binascii import unhexlify

    try:
        return type(s) is str and len(s) == n and len(unhexlify(s)) * 2 == n
    except ValueError:
        return False


def _verified(hashers, sha1, sha256):
    # sha1: the Git blob SHA1, or (a manifest entry with only a sha256) that sha256 again
    from binascii import hexlify

    if len(sha1) == 40:
        if hexlify(hashers[0].digest()) != sha1.encode():
            return False
    elif not sha256:
        return False  # no hash to check against
    return not sha256 or hexlify(hashers[-1].digest()) == sha256.lower().encode()


# ---------------------------------------------------------------- configuration
class Kind:
    # The kinds of configuration values in the schemas (public: the feature modules' KEYS use
    # them too), named by what they accept: a wrong value's error message says that.
    STR = "a non-empty string"
    STR_OR_NULL = "a string"
    BOOL = "true or false (a JSON boolean)"  # not 0/1, not "true"
    WHOLE = "a whole number >= 0"
    NUMBER = "a number >= 0"
    STR_LIST = "a list of strings"  # a single string is taken as a list of one
    ANY = "anything"


_REQUIRED = const("(required)")  # the default of a key that must be given


# Every key: name, type (or a tuple of the allowed values), default. README "Configuration"
# documents each key. One flat tuple (the cheapest table to compile on the device), made only
# while a configuration is checked (as a global it would take ~1 KB of RAM for the whole run).
def _keys():
    return (
        "owner", Kind.STR, _REQUIRED,  # GitHub account or organisation holding the application
        "repo", Kind.STR, _REQUIRED,  # its repository
        "ssid", Kind.STR_OR_NULL, None,  # WiFi network
        "password", Kind.STR_OR_NULL, None,
        "channel", ("stable", "developer"), "stable",  # latest release (or tag) / tip of branch
        "branch", Kind.STR, "main",  # the developer channel's branch
        "tag", Kind.STR_OR_NULL, None,  # pins the stable channel to this release tag
        "token", Kind.STR_OR_NULL, None,  # GitHub token (private repositories, higher rate limit)
        "allow", Kind.STR_LIST, [],  # files or directories the device takes ([]: everything)
        "ignore", Kind.STR_LIST, [],  # files or directories it never takes (wins over allow)
        "chunk", Kind.WHOLE, 1024,  # transfer buffer bytes (>= 256)
        "stage_dir", Kind.STR, ".ota_stage",  # downloads wait here for the swap
        "backup_dir", Kind.STR, ".ota_backup",  # old files wait here during the swap
        "connect_timeout_sec", Kind.NUMBER, 10,
        "http_timeout_sec", Kind.NUMBER, 30,
        "retries", Kind.WHOLE, 3,  # retries of transient failures
        "backoff_sec", Kind.NUMBER, 2,  # first backoff, doubled per retry
        "max_backoff_sec", Kind.NUMBER, 60,  # cap of a backoff, and of a wait the server asks for
        "force", Kind.BOOL, False,  # reinstall even when up to date
        "reset_mode", ("hard", "soft", "none"), "hard",  # after an update
        "debug", Kind.BOOL, False,  # log requests, progress and free memory
        "api_base", Kind.STR, "https://api.github.com",
        "raw_base", Kind.STR, "https://raw.githubusercontent.com",
        "ca_file", Kind.STR_OR_NULL, None,  # trust store (PEM or DER) instead of ota_ca.der
        "tls_verify", Kind.BOOL, True,  # false: HTTPS unverified (then the token is never sent)
        "enable_delta_updates", Kind.BOOL, False,  # .deltas/ patches (ota_delta.py)
        "self_update", Kind.BOOL, False,  # the repository may replace the updater's own files
        "transports", Kind.STR_LIST, ["wifi"],  # connection order; others: user modules ota_<name>
        "trial_boots", Kind.WHOLE, 3,  # boots a new release gets to be confirmed (0: no trial)
        "confirm", ("check", "app"), "check",  # who confirms: the next update check, or the app (ota.confirm())
    )



def load_config(path="ota_config.json"):
    # Read and check the configuration: .json, or flat .yaml/.yml/.toml (ota_flatconfig.py).
    ext = path[path.rfind(".") + 1:].lower()
    if ext not in ("json", "yaml", "yml", "toml"):
        raise OTAError("%s: use a .json, .yaml, .yml or .toml file" % path)
    try:
        with open(path) as f:
            cfg = f.read()
    except OSError:
        raise OTAError("config file %s not found" % path)
    except ValueError as e:  # UnicodeError: not UTF-8 text
        raise OTAError("%s: not UTF-8 text: %s" % (path, e))
    try:
        if ext == "json":
            cfg = json.loads(cfg)
        else:
            from ota_flatconfig import parse

            cfg = parse(cfg, ext == "toml")  # its text, then its keys and values
    except (ValueError, RuntimeError) as e:  # RuntimeError: nested too deep (CPython)
        raise OTAError("%s: not valid %s: %s" % (path, ext.upper(), e))
    return check_config(cfg, path)


def check_config(cfg, path="ota_config.json"):
    # The configuration with defaults filled in; OTAError naming the first bad key. Unknown keys
    # (a typo, or a newer version's key) are not fatal: listed in "_unknown", main() prints them.
    if not isinstance(cfg, dict) or [k for k in cfg if type(k) is not str]:
        raise OTAError("%s: expected a mapping of keys to values" % path)
    keys = _keys()
    out = _presized_dict(len(keys) // 3 + 3)  # sized once: no holes left by its growth
    _check_keys(keys, cfg, out, path)
    # keys of optional features: each feature module checks its own
    out["_features"] = modules = []
    for k in cfg:
        if k not in out and cfg[k] is not None:  # (a key set to null is as if absent)
            for group in _FEATURES.split(";"):
                m, prefixes = group.split(":")
                for name in prefixes.split():
                    if k.startswith(name) and m not in modules:
                        modules.append(m)
    modules.sort()  # a stable order: ota_cellular, ota_hw, ota_lora, ota_schedule
    for m in modules:
        try:
            module = __import__(m)
        except ImportError as e:
            if m not in str(e):
                raise
            raise OTAError("%s: the keys of %s need %s.py (or .mpy) on the device" % (path, m[4:], m))
        _check_keys(module.KEYS, cfg, out, path)
        if hasattr(module, "check"):
            module.check(out, path)
    out["_path"] = path
    out["_unknown"] = [k for k in cfg if k not in out and not k.startswith("_") and cfg[k] is not None]
    if out["chunk"] < _MIN_CHUNK:
        raise OTAError("%s: 'chunk' must be >= 256" % path)
    for k in ("stage_dir", "backup_dir"):  # folders of their own, which the updater may empty
        v = out[k] = out[k].strip("/")  # ("/bak/" is "bak", as wanted() reads it)
        try:
            check_path(v)
        except OTAError:
            v = ""
        if not v or v in (VERSION, ERRORS, JOURNAL, STATE, TRUST_STORE) or v.startswith("ota_config.") \
                or _updater_file(v) or _under(v, ".deltas"):
            raise OTAError("%s: '%s' must be a folder name of its own (like .ota_stage), got %r" % (path, k, out[k]))
    if _under(out["stage_dir"], out["backup_dir"]) or _under(out["backup_dir"], out["stage_dir"]):
        raise OTAError("%s: 'stage_dir' and 'backup_dir' must be two separate folders" % path)
    for k in ("api_base", "raw_base"):
        out[k] = v = out[k].rstrip("/")
        if not (v.startswith("http://") or v.startswith("https://")):
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
    return out


# Optional features: "module:prefix prefix ...;" -- a key that starts with one of the prefixes
# belongs to the module. A feature module has KEYS (its schema rows, as _keys()), may have
# check(cfg, path), and has attach(ota), which hooks it into an OTA object; it is imported only
# when the configuration has one of its keys. (One string: a table of constant strings would
# cost a string object per entry in RAM for the whole run.)
_FEATURES = ("ota_hw:watchdog led_pin status_led battery min_battery;ota_schedule:windows canary min_interval "
             "health_hook device_id update_scheduling rollout;ota_cellular:cellular;ota_lora:lora;ota_app:app_main;"
             "ota_sign:manifest_pubkeys require_signature allow_downgrade")


def _check_keys(keys, cfg, out, path):
    # out[key] = the checked value or the default, for each row (key, type, default) of keys
    for i in range(0, len(keys), 3):
        k, kind, default = keys[i:i + 3]
        v = cfg.get(k)
        if v is None:
            if default == _REQUIRED:
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            v = list(default) if type(default) is list else default
        elif type(kind) is tuple:
            if v not in kind:
                raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(kind), v))
        else:
            if kind == Kind.STR_LIST and type(v) is str:
                v = [v]
            if type(v) is str and v.startswith("YOUR_"):
                raise OTAError("%s: '%s' still has the placeholder value %s" % (path, k, v))
            t = type(v)  # exact types: a bool is not a number here
            if not (kind == Kind.ANY or kind == Kind.STR and t is str and v != "" or kind == Kind.STR_OR_NULL and t is str
                    or kind == Kind.BOOL and t is bool or kind == Kind.WHOLE and t is int and v >= 0
                    or kind == Kind.NUMBER and (t is int or t is float) and v >= 0 and v - v == 0
                    or kind == Kind.STR_LIST and t is list and all(type(x) is str for x in v)):
                raise OTAError("%s: '%s' must be %s, got %r" % (path, k, kind, v))
        out[k] = v


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


def _updater_file(p):
    # the updater's own files: main.py and ota*.py (ota.py, ota_native.mpy, the feature modules,
    # a user's ota_<transport>.py) at the root, as .py or .mpy
    return "/" not in p and (p.startswith("ota") or p.startswith("main.")) and p.endswith("py")


def wanted(cfg, p):
    # Does the device take path p? Never its own state (config, version.json, ota_error.json,
    # journal, stage and backup dirs, .deltas/) nor the updater itself (unless self_update); then
    # ignore wins over allow, and an empty allow takes everything. Called per tree entry as the
    # tree streams in: it allocates nothing on the common path. The host tools use it too.
    if type(p) is not str:
        check_path(p)
    name = p[:-4] if p.endswith(".tmp") else p
    if (name in (VERSION, ERRORS, JOURNAL, STATE, TRUST_STORE) or name == cfg["_path"] or name == cfg["ca_file"]
            or p.startswith("ota_config.") or _under(p, cfg["stage_dir"]) or _under(p, cfg["backup_dir"])
            or _under(p, ".deltas") or p.endswith(_NEW) or _updater_file(p) and not cfg["self_update"]):
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
                 "x-ratelimit-reset": "rl_reset", "etag": "etag", "connection": "conn"}

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
# rate limit (X-RateLimit-Remaining: 0, Retry-After, or "rate limit" in its body: the "limit"
# header get() adds) is a 429. GitHub's rules for both: Retry-After if given; else, with
# X-RateLimit-Remaining: 0 (the primary limit), until X-RateLimit-Reset; else (a secondary limit)
# at least a minute, then exponentially longer (OTA.retry()).


def status_outcome(status, headers, url, timeout, token=None):
    # The exception for a response with this status: OTAError (fail now) or Retry.
    primary = headers.get("rl_left") == "0"
    if status == 403 and (primary or "retry" in headers or "limit" in headers):
        status = 429
    action, message = _STATUS_POLICY.get(status) or (
        _RETRY_WITH_BACKOFF if status >= 500 else _FAIL_NOW, "HTTP %d from %%s" % status)
    if action == _FAIL_NOW:
        return (NotFound if status == 404 else OTAError)(message % url)
    if action == _RETRY_WITH_BACKOFF:
        return Retry(message % url, _BACKOFF)
    wait = headers.get("retry")
    if wait is None and not (primary and "rl_reset" in headers):
        wait = _SECONDARY_LIMIT_WAIT  # a secondary rate limit: GitHub says wait at least a minute
    elif wait is None:
        now = int(time.time())
        # an unset device clock cannot tell when the reset comes: the ordinary backoff then
        wait = int(headers["rl_reset"]) - now if now > _CLOCK_SET_AFTER else _BACKOFF
    wait = int(wait)
    if wait > timeout:
        return OTAError("GitHub API rate limit exceeded: %s in %d s (> max_backoff_sec); %s" % (
            "resets" if primary else "retry", wait, "every device with this token shares its limit" if token
            else "add a 'token'"))
    return Retry(message, wait if wait >= 0 else _BACKOFF)


# Response body states
_BY_LENGTH = const(0)  # Content-Length, or until the connection closes
_CHUNK_FIRST = const(1)  # chunked, before the first chunk
_CHUNK_NEXT = const(2)  # chunked, a CRLF to skip before the next chunk size
_DONE = const(3)


def _close(conn):
    # a connection (host, port, socket, stream): the stream is the socket on MicroPython, its
    # file on CPython
    conn[3].close()
    if conn[2] is not conn[3]:
        conn[2].close()


class Response:
    # One HTTP/1.1 response on a connection (see _close): status, the kept headers, the body
    # through readinto (by Content-Length, chunked, or until the connection closes).
    def __init__(self, conn, counter):
        self.conn = conn
        self.stream = f = conn[3]
        self.counter = counter  # the OTA: body bytes are added to counter.bytes
        self.headers = h = {}
        self.state = _BY_LENGTH
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
        if self.status in (204, 304):
            self.left = 0  # no body, whatever the headers say
        elif self.left < 0 and "chunked" in h.get("transfer", ""):
            self.left = 0
            self.state = _CHUNK_FIRST

    def readinto(self, buf):
        f = self.stream
        if self.state in (_CHUNK_FIRST, _CHUNK_NEXT) and not self.left:  # the next chunk's size
            if self.state == _CHUNK_NEXT:
                f.readline()  # the CRLF after a chunk
            self.state = _CHUNK_NEXT
            line = f.readline()
            if not line:
                raise Retry("cut in a chunk", _BACKOFF)
            self.left = int(line.split(b";")[0], 16)
            if not self.left:
                while f.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self.state = _DONE
        if self.state == _DONE or not self.left:
            return 0
        n = len(buf)
        if 0 < self.left < n:
            n = self.left
        k = f.readinto(memoryview(buf)[:n])
        if not k:
            if self.left < 0:  # the body ends with the connection
                self.state = _DONE
                return 0
            raise Retry("connection cut", _BACKOFF)
        self.counter.bytes += k
        self.counter.feed()  # every network read feeds the watchdog (JSON too)
        if self.left > 0:
            self.left -= k
        return k

    def close(self):
        # The connection stays open for the next request to its host (HTTP/1.1 keep-alive) when
        # this response was read to its end (a short rest of its body is read now) and the
        # server keeps it open; otherwise it closes.
        u = self.counter
        while 0 < self.left <= _DRAIN_MAX and self.state == _BY_LENGTH and self.readinto(u.buf):
            pass
        if (self.state == _DONE or self.state == _BY_LENGTH and not self.left) and self.headers.get("conn") != "close":
            u.keep(self.conn)
        else:
            _close(self.conn)


# ---------------------------------------------------------------- the updater
class OTA:
    def __init__(self, cfg):
        self.cfg = cfg = cfg if "_path" in cfg else check_config(cfg)
        try:
            self.buf = memoryview(bytearray(cfg["chunk"]))  # the one transfer buffer
        except (MemoryError, OverflowError):
            raise OTAError("%s: 'chunk' %d: no memory for a buffer that size" % (cfg["_path"], cfg["chunk"]))
        self.requests = self.bytes = 0  # HTTP requests made, body bytes received
        self.result = {}
        self.transport = None
        self.gzip = True  # ask for gzip, when ota_native is there (dropped after an inflate failure)
        self.hw = None  # the hardware layer (ota_hw.py), when the configuration uses it
        self.gates = []  # deferral checks of the features: gate(ota) -> the reason to wait, or None
        self.manifest_check = None  # ota_sign.py: .reader(response) and .verify(target, manifest, files)
        self.net = None  # a transport's socket module (ota_cellular.py: the modem's TCP), else socket
        self.conn = None  # the connection kept open for the next request (Response.close)
        for m in cfg["_features"]:
            __import__(m).attach(self)
        self.recover()

    def reached(self):
        # The server answered (whatever it said): the device booted, read its config and connected,
        # so it can still be updated. A release on trial is confirmed then, unless the application
        # confirms it ("confirm": "app"), or main.py runs it (app_main: ota_app.py confirms once it
        # imports).
        r = self.result
        if "checked" not in r:
            r["checked"] = True
            c = self.cfg
            if c["confirm"] == "check" and "ota_app" not in c["_features"] and confirm(None, True):
                self.log("confirmed the release on trial")

    def feed(self, event=None, arg=0):
        # called per chunk and during every wait (the watchdog, the LED), and at the update's events
        # (wifi, connect, download, staged, updated, failed, close): to the features (ota_hw.py ...)
        if self.hw:
            self.hw.feed(event, arg)

    def log(self, message, *args):
        # message % args, formatted only with debug on (a message made per request is a late allocation)
        if self.cfg["debug"]:
            print("ota: %s [free %d]" % (message % args, _free_memory()))

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
                done = self.wifi() if name == "wifi" else __import__("ota_" + name).connect(self.cfg)
            except Exception as e:  # no such module, no connect(), or it failed: the next transport
                self.log("connect %s: %r", name, e)
                done = False
            self.log("connect %s: %s", name, done)
            if done:
                self.transport = name
                self.feed("connect")
                return name
        self.feed("failed")
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
            self.feed("wifi")
            w.connect(c["ssid"], c["password"] or "")
            for _ in range(int(c["connect_timeout_sec"] * 10)):  # 100 ms steps
                if w.isconnected():
                    break
                self.feed()
                time.sleep(0.1)
        return w.isconnected()

    # ------------------------------------------------------------ HTTP
    def get(self, url, offset=0, gzip=False, follow=True, etag=None):
        # One attempt: GET url, following redirects; a 200/206 Response, or OTAError / Retry /
        # OSError. offset: resume with a Range; gzip: ask for gzip (never with a Range); follow:
        # False returns the first redirect as it is (its Location header; the caller closes it);
        # etag: sent as If-None-Match, and a 304 is returned too.
        token = self.cfg["token"]
        for _ in range(_MAX_REDIRECTS + 1):
            scheme, host, port, path = _split_url(url)
            self.requests += 1
            # the token goes only over verified TLS (or plain HTTP to a test server on this machine)
            secure = self.cfg["tls_verify"] if scheme == "https" else host in ("127.0.0.1", "localhost")
            r = self._request(scheme, host, port, path, token if secure else None, offset, gzip, etag)
            self.log("GET %s %d %d: %d", url, offset, gzip, r.status)
            self.reached()
            new = r.headers.get("location")
            if r.status in (200, 206) or new and not follow or r.status == 304 and etag:
                return r
            if r.status == 403 and not r.headers.get("retry") and b"rate limit" in bytes(self.buf[:r.readinto(self.buf)]):
                r.headers["limit"] = ""  # GitHub's secondary limit may come as a bare 403 with that message
            r.close()
            if r.status not in (301, 302, 303, 307, 308) or not new:
                raise status_outcome(r.status, r.headers, url, self.cfg["max_backoff_sec"], token)
            if new.startswith("/"):  # a path on the same server
                new = url[:url.find("/", url.find("://") + 3)] + new
            if _split_url(new)[1:3] != (host, port):
                token = None  # never send the token to another host
            url = new
        raise OTAError("too many redirects for " + url)

    def _request(self, scheme, host, port, path, token, offset, gzip, etag=None):
        # Send the request and read the response head, on the connection kept open to this host
        # (one at a time: a board has room for one TLS session), else on a new one. A kept
        # connection the server has closed meanwhile is replaced at once, at no retry's cost.
        kept = self.conn
        self.conn = None
        if kept:
            if kept[:2] == (host, port):
                try:
                    return self._send(kept, path, token, offset, gzip, etag)
                except (OSError, Retry):
                    self.requests += 1  # sent, and sent again below
            _close(kept)
        import socket

        socket = self.net or socket  # a transport's own sockets (ota_cellular.py)
        c = self.cfg
        self.feed()  # before each wait that cannot feed: DNS, connect, TLS handshake
        a = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(a[0], socket.SOCK_STREAM)
        try:
            # MicroPython: one timeout (the larger), kept by the TLS socket, which has no settimeout
            s.settimeout(max(c["connect_timeout_sec"], c["http_timeout_sec"]) if _MICROPYTHON
                         else c["connect_timeout_sec"])
            s.connect(a[-1])
            self.feed()
            if scheme == "https":
                try:
                    s = self._tls_context().wrap_socket(s, server_hostname=host)
                except ValueError as e:  # certificate not trusted: not transient, no retry
                    raise OTAError("TLS to %s: %s" % (host, str(e).strip()))
            if not _MICROPYTHON:
                s.settimeout(c["http_timeout_sec"])
            conn = (host, port, s, s if _MICROPYTHON else s.makefile("rb"))
        except BaseException:
            s.close()
            raise
        try:
            return self._send(conn, path, token, offset, gzip, etag)
        except BaseException:
            _close(conn)
            raise

    def _send(self, conn, path, token, offset, gzip, etag):
        # the request on conn; its Response
        host, port, s = conn[:3]
        # the request goes out in pieces, no string of the whole: on a fragmented heap a late
        # allocation of several blocks is the one that fails
        send = s.write if _MICROPYTHON else lambda x: s.sendall(x.encode())
        send("GET ")
        send(path)
        send(" HTTP/1.1\r\nHost: ")
        send(host)
        if port not in (80, 443):
            send(":%d" % port)
        send("\r\nUser-Agent: ota.py\r\n")
        if "/releases/assets/" in path:
            send("Accept: application/octet-stream\r\n")
        elif "/repos/" in path:
            send("Accept: application/vnd.github+json\r\n")
        if token:
            send("Authorization: token ")
            send(token)
            send("\r\n")
        if etag:
            send("If-None-Match: ")
            send(etag)
            send("\r\n")
        if offset:
            send("Range: bytes=%d-\r\n" % offset)
        elif gzip:
            send("Accept-Encoding: gzip\r\n")
        send("\r\n")
        return Response(conn, self)

    def keep(self, conn):
        # the connection stays open for the next request (Response.close); None: close it
        if self.conn:
            _close(self.conn)
        self.conn = conn

    def _tls_context(self):
        # TLS that verifies the server's certificate and host name against a trust store: ca_file,
        # else ota_ca.der next to ota.py (the roots GitHub's hosts chain to: README, "HTTPS").
        # "tls_verify": false encrypts without verifying (the token is then never sent).
        # MicroPython: the core `tls` module (its `ssl` is a frozen wrapper of it).
        ssl = __import__("tls" if _MICROPYTHON else "ssl")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if not self.cfg["tls_verify"]:
            if not _MICROPYTHON:
                ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx.verify_mode = ssl.CERT_REQUIRED
        path = self.cfg["ca_file"] or TRUST_STORE
        try:
            with open(path, "rb") as f:
                ca = f.read()
        except OSError:
            raise OTAError("TLS: no trust store %s: copy ota_ca.der next to ota.py (make device), or set "
                           "'ca_file'" % path)
        if ca.startswith(b"-----"):  # PEM -> DER (MicroPython's mbedTLS loads DER)
            from binascii import a2b_base64

            ca = b"".join(a2b_base64(b"".join(x.split(b"-----")[0].split())) for x in ca.split(b"CERTIFICATE-----")[1::2])
        while ca:  # one certificate at a time (DER: 0x30 0x82, then a 2-byte length)
            n = 4 + ca[2] * 256 + ca[3]
            if _MICROPYTHON:
                ctx.load_verify_locations(ca[:n])
            else:
                ctx.load_verify_locations(cadata=ca[:n])
            ca = ca[n:]
        return ctx

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
                message, wait = e.args
            except OSError as e:  # connection refused or reset, timeouts
                message, wait = "connection error: %s" % (e,), _BACKOFF
            if wait == _AT_ONCE:
                self.log("%s", message)
                continue
            if left <= 0:
                raise OTAError("%s (gave up after %d attempts)" % (message, c["retries"] + 1))
            left -= 1
            if wait == _BACKOFF:
                wait = backoff
            else:  # the server's figure: later waits grow from it (GitHub: then exponentially)
                backoff = wait = max(wait, backoff)
            # + 0-25 %: devices refused together do not come back together
            wait = min(wait, c["max_backoff_sec"]) * (1024 + os.urandom(1)[0]) / 1024
            self.log("%s; wait %s", message, wait)
            for _ in range(int(wait * 20)):  # 50 ms steps, the watchdog fed meanwhile
                self.feed()
                time.sleep(0.05)
            backoff = min(backoff * 2, c["max_backoff_sec"])

    def json(self, url, each=None, retries=-1, reader=None, etag=None):
        # GET a JSON document without ever holding its arrays of objects: each(obj) is called per
        # object inside an array one level below the top (tree entries, manifest files, release
        # assets, delta index entries), and the rest (those objects replaced by 0) is returned.
        # each() must be idempotent (an attempt may be retried). retries as in retry().
        # reader: reader(response) -> what the document is read through (e.g. a signature check
        # of its exact bytes), made anew for each attempt. etag: If-None-Match; a 304 raises
        # NotModified. The document's ETag is kept in self.etag.
        def attempt():
            r = self.get(url, 0, False, True, etag)
            self.etag = r.headers.get("etag")
            try:
                if r.status == 304:
                    raise NotModified()
                return _split_json(reader(r) if reader else r, self.buf, each)
            finally:
                r.close()

        try:
            return json.loads(self.retry(attempt, retries))
        except ValueError:
            raise OTAError("invalid JSON from " + url)

    def api(self, path, each=None, etag=None):
        c = self.cfg
        return self.json("%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], path), each, -1, None, etag)

    # ------------------------------------------------------------ target resolution
    def _latest(self):
        # The one request of an up-to-date check: the branch's commit, or the release's tag
        # (its commit is found later, and only when the tag is new).
        c = self.cfg
        if c["channel"] == "developer":
            path = "git/ref/heads/" + _quote(c["branch"])
            try:
                sha = self._check(path)["object"]["sha"]
            except NotModified:
                return self._unchanged(path)
            except (KeyError, TypeError, IndexError):
                sha = None
            if not _is_hex(sha, 40):
                raise OTAError("GitHub API: malformed ref of branch %s" % c["branch"])
            return {"ref": c["branch"], "commit": sha, "version": sha[:7], "manifest": None, "etag": [path, self.etag]}
        t = {"commit": None, "manifest": None}
        tag = c["tag"]
        if not c["token"]:
            # No API request: github.com's page of the latest release redirects to its tag, and
            # its manifest downloads by name (a private repository needs the token, and the API)
            base = "%s/%s/%s/releases/" % (c["api_base"].replace("://api.", "://"), c["owner"], c["repo"])
            if not tag:
                r = self.retry(lambda: self.get(base + "latest", 0, False, False))
                r.close()
                tag = r.headers.get("location", "")
                i = tag.find("/releases/tag/")
                tag = tag[i + 14:] if i > 0 and "%" not in tag else None
                if not tag:
                    self.log("no tag from %slatest: the API", base)
            if tag:
                t["ref"] = t["version"] = tag
                t["manifest"] = base + "download/%s/manifest.json" % _quote(tag)
                return t  # (no manifest there: the release's Git tree, through the API)

        def entry(a):
            # browser_download_url costs no API request but takes no token: with a token the
            # asset comes through the API (get() asks for its bytes), as a private repository needs
            if a.get("name") == "manifest.json":
                t["manifest"] = c["token"] and a.get("url") or a.get("browser_download_url") or a["url"]

        path = "releases/" + ("tags/" + _quote(c["tag"]) if c["tag"] else "latest")
        try:
            r = self._check(path, entry)
        except NotModified:
            return self._unchanged(path)
        t["ref"] = r["tag_name"]
        t["version"] = r.get("name") or r["tag_name"]
        t["etag"] = [path, self.etag]
        return t

    def _check(self, path, each=None):
        # The check's API request, conditional: If-None-Match with the ETag of the check that found
        # the installed release (ota_state.json); its 304 (free with a token) raises NotModified.
        kept = (_load_json(STATE) or {}).get("etag") or [None, None]
        use = kept[0] == path and not self.cfg["force"] and _size(VERSION) > 0
        return self.api(path, each, use and kept[1] or None)

    def _unchanged(self, path):
        # the target of a 304: what is installed
        self.log("%s: not modified", path)
        old = self.installed()
        return {"ref": old.get("ref"), "commit": old.get("commit"), "version": old.get("version"), "manifest": None}

    def resolve_target(self, t=None):
        # {"ref", "commit", "version", "manifest" (URL or None)} of the channel's target
        # (t: what _latest() gave, its commit still to find for a release).
        t = t or self._latest()
        if not t["commit"]:
            try:
                o = self.api("git/ref/tags/" + _quote(t["ref"]))["object"]
                for _ in range(4):  # an annotated tag -> the object it points at (a few levels)
                    if o["type"] != "tag" or not _is_hex(o["sha"], 40):
                        break
                    o = self.api("git/tags/" + o["sha"])["object"]
                sha = o["sha"] if o["type"] == "commit" else None
            except (KeyError, TypeError, IndexError):
                sha = None
            if not _is_hex(sha, 40):
                raise OTAError("GitHub API: malformed tag %s" % t["ref"])
            t["commit"] = sha
        return t

    def fetch_tree(self, commit, keep=None):
        # {path: (blob_sha, size, None)} of the files of the commit (recursive tree API), parsed
        # one entry at a time; with keep (a test of the path), only the files it keeps. A path is
        # checked only when kept: a path the device never takes cannot block an update.
        out = _presized_dict(17)

        def entry(e):
            p = e["path"]
            if e["type"] == "blob" and e.get("mode") != "120000" and (not keep or keep(p)):
                sha, size = e["sha"], e["size"]
                if not _is_hex(sha, 40) or type(size) is not int or size < 0:
                    raise OTAError("Git tree of %s: bad entry for %r" % (commit, p))
                out[check_path(p)] = (sha.lower(), size, None)

        try:
            d = self.api("git/trees/%s?recursive=1" % commit, entry)
            ok = type(d.get("tree")) is list
        except (KeyError, TypeError, IndexError, AttributeError):
            ok = False
        if not ok:  # (never an empty tree: that would delete every installed file)
            raise OTAError("Git tree of %s is malformed" % commit)
        if d.get("truncated"):
            raise OTAError("Git tree of %s truncated: publish a manifest.json" % commit)
        return out

    def read_manifest(self, t):
        # (the wanted files as fetch_tree gives them + sha256, deletes, (post_update hook,
        # rollback hook)) of the release's manifest.json (manifests/README.md); every entry is
        # checked
        files = _presized_dict(17)

        def entry(e):
            # "sha1" (ours) or "sha" (the original system's manifest_gen): the Git blob SHA1; a
            # sha256 alone also verifies (and identifies the file in version.json); crc32 is ignored
            p = e["path"]
            sha = e.get("sha1") or e.get("sha")
            s256 = e.get("sha256")
            size = e["size"]
            if (sha is not None and not _is_hex(sha, 40) or s256 is not None and not _is_hex(s256, 64)
                    or not (sha or s256) or type(size) is not int or size < 0):
                raise OTAError("manifest.json of %s: bad entry for %r" % (t["ref"], p))
            if self.wanted(p):
                files[check_path(p)] = ((sha or s256).lower(), size, s256 and s256.lower())

        check = self.manifest_check  # ota_sign.py: the signature over the exact bytes, and more
        if check:
            check.start(t)  # the signature first: Ed25519 hashes its R before the message
        try:
            m = self.json(t["manifest"], entry, -1, check and check.reader)
            hooks = (m.get("post_update"), m.get("rollback"))
            if type(m["files"]) is not list:
                raise ValueError
            for h in hooks:
                if h is not None and not (type(h) is str and h):
                    raise ValueError
            deletes = [p for p in (m.get("deletes") or ()) if self.wanted(p)]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise OTAError("manifest.json of %s is malformed" % t["ref"])
        for p in deletes:
            check_path(p)
        if check:
            check.verify(t, m, files)  # before any entry is trusted; OTAError if it fails
        t["version"] = m.get("version") or t["version"]
        return files, deletes, hooks

    # ------------------------------------------------------------ update
    def update_if_available(self):
        # Install the channel's target if it differs; True when files changed. Failures are
        # recorded in ota_error.json and raised as OTAError.
        try:
            return self._update()
        except Exception as e:
            self.feed("failed")
            raise OTAError(self.record(e if isinstance(e, OTAError) else "%s: %s" % (type(e).__name__, e)))
        finally:
            self.keep(None)  # the kept connection closes
            self.feed("close")
            if self.result.get("checked") and _size(JOURNAL) < 0:
                _remove_backups(self.cfg["backup_dir"])  # a confirmed release's backups

    def _deferred(self):
        # why the update may not run now (the features' gates, in order), or None
        for check in self.gates:
            reason = check(self)
            if reason:
                return reason
        return None

    def _update(self):
        c = self.cfg
        self.result = r = {"updated": False, "deferred": self._deferred()}
        if r["deferred"]:
            return False
        old = self.installed()
        t = self._latest()
        if not c["force"] and self._is_target(old, t):
            self.log("up to date")
            self._keep_etag(t)
            return False
        skip = (_load_json(STATE) or {}).get("skip")
        if not c["force"] and skip and self._is_target(skip, t):
            self.log("%s was rolled back: skipped until the target changes", t["ref"])
            return False
        r["target"] = t  # its version (from a manifest too) is set below
        hooks, deletes = (None, None), []
        if t["manifest"]:
            try:
                files, deletes, hooks = self.read_manifest(t)
            except NotFound:
                t["manifest"] = None  # a release without a manifest: its tree
        if not t["manifest"] and self.manifest_check:
            raise OTAError("%s has no manifest.json, and signatures are required" % t["ref"])
        if not t["manifest"]:  # the tree of the commit (with a manifest, the files download by tag)
            self.resolve_target(t)
            files = self.fetch_tree(t["commit"], self.wanted)
        _free_memory()  # collect before the big allocations: fewer holes between long-lived objects
        # to download: missing, another size, or another SHA (an unrecorded file is hashed)
        have = old.get("files") or {}
        r["download"] = get = []
        for p in sorted(files):
            sha, size, sha256 = files[p]
            if c["force"] or _size(p) != size or have.get(p) != sha and not _verified(self._hash_file(p, size, None)[0], sha, None):
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
        record = {"ref": t["ref"], "commit": t["commit"], "version": t["version"], "files": files,
                  "sequence": t.get("sequence"),  # a signed manifest's (ota_sign.py: no downgrade)
                  "install": old.get("install", 0) + 1}  # tells recovery whether the swap committed
        if get or gone:
            self._install(t, record, get, gone, hooks)
            r["updated"] = True
            self.feed("updated")
        else:
            _save_json(VERSION, record)
        self._keep_etag(t)
        return r["updated"]

    def _keep_etag(self, t):
        # the ETag of a check whose target is now installed, for the next check's If-None-Match
        e = t.get("etag")
        s = _load_json(STATE) or {}
        if e and e[1] and s.get("etag") != e:
            s["etag"] = e
            _save_json(STATE, s)

    def _is_target(self, old, t):
        # the installed (or skipped) record is the target _latest() gave (a release's commit is
        # found only later: the tag decides then)
        return old.get("ref") == t["ref"] and old.get("commit") == (t["commit"] or old.get("commit"))

    # ------------------------------------------------------------ staging
    def _stage(self, t, files, get, have):
        # every changed file into stage_dir/<sha>.<i> (i: its index in get), verified; by delta
        # (ota_delta.py), gzip or plain download
        c = self.cfg
        stage = c["stage_dir"]
        if _size(stage) < 0:
            _mkdir(stage)
        for n in os.listdir(stage):  # leftovers of another target (partial downloads of this one stay)
            x = n.split(".")  # <sha>.<i>[.part|.dpart]
            if not (_is_hex(x[0], 40) or _is_hex(x[0], 64)):
                raise OTAError("%s holds %s: not a download; set another stage_dir" % (stage, n))
            i = int(x[1]) if x[1:] and x[1].isdigit() else len(get)
            if i >= len(get) or files[get[i]][0] != x[0]:
                _remove_tree(stage + "/" + n)
        need = _FREE_SPACE_MARGIN
        deltas = False  # a changed file is installed already: a delta may apply
        for p in get:
            need += 2 * files[p][1]
            deltas = deltas or p in have
        stat = os.statvfs(stage)
        if stat[1] * stat[4] < need:
            raise OTAError("not enough free space: %d bytes needed, %d free" % (need, stat[1] * stat[4]))
        self.feed("download", need - _FREE_SPACE_MARGIN >> 1)  # the bytes of the files (a cost estimate)
        base = "%s/%s/%s/%s/" % (c["raw_base"], c["owner"], c["repo"], t["commit"] or _quote(t["ref"]))
        # deltas: the module is not even loaded when no delta could fit in the free memory
        if ((c["enable_delta_updates"] or self.transport in ("cellular", "lora")) and deltas
                and _free_memory() > _DELTA_MIN_FREE and _native()):
            import ota_delta

            deltas = ota_delta.Deltas(self, base, files, get, have)
        else:
            deltas = None
        _free_memory()
        # {path: (method, bytes, size)}: its table made now at its final size (fromkeys sizes it by
        # len(get)), so it does not grow between downloads; None: not staged (the update stopped first)
        self.result["methods"] = methods = dict.fromkeys(get)
        saved = 0
        for i in range(len(get)):
            _free_memory()
            p = get[i]
            sha, size, sha256 = files[p]
            # the hashers of a download first: its biggest allocation, made while the heap is clean
            first = [] if deltas and p in deltas.entries else [_hashers(size, sha256)]
            dest = "%s/%s.%d" % (stage, sha, i)
            b = self.bytes
            method = "staged"  # verified by an earlier run
            if _size(dest) != size:
                method = deltas and deltas.stage(p, dest, sha256) or \
                    self._download(base + _quote(p), dest, p, sha, size, sha256, first)
            b = self.bytes - b
            methods[p] = (method, b, size)
            saved += size - b
            self.log("%s: %s, %d/%d bytes", p, method, b, size)
            self.feed("staged")
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
            # gzip: ota_native, when gzip is asked for (a fresh download with room for its window)
            gzip = not n and self.gzip and size > _GZIP_MIN_SIZE and _free_memory() > _GZIP_MIN_FREE and _native()
            r = self.get(url, n, bool(gzip))
            if r.headers.get("encoding") != "gzip":
                gzip = None  # not given
            try:
                if r.status != 206 and n:  # the whole body came: start over
                    n = 0
                    h = _hashers(size, sha256)
                with _open_new(part, "ab" if n else "wb") as f:
                    self.pump(gzip.InflateReader(r, gzip.GZIP, 15) if gzip else r, f, h, n, size)
            except (ValueError, MemoryError) as e:
                if not gzip:
                    raise
                self.gzip = False  # plain from now on, at once
                _remove_tree(part)
                raise Retry("gzip: %s" % e, _AT_ONCE)
            finally:
                r.close()
            return h, "gzip" if gzip else "plain"

        h, method = self.retry(attempt)
        if not _verified(h, sha, sha256):
            _remove(part)
            raise OTAError("%s: SHA mismatch; nothing installed" % path)
        _rename(part, dest)
        return method

    # ------------------------------------------------------------ swap and journal
    def _install(self, t, record, get, gone, hooks):
        # The swap (docs/design.md, "Update states"). Every rename stays within one directory: on
        # littlefs that is one commit, so a cut never leaves a pending move (which hides a
        # directory entry until the next write).
        #  1. the journal (tmp + rename): from here on, boot recovery owns the outcome;
        #  2. backups: version.json and each old file copied to backup_dir/<i> (via <i>.tmp);
        #  3. each new file copied from stage_dir to <path>.ota_new, beside its target (and
        #     removed from stage_dir);
        #  4. each <path>.ota_new renamed onto <path> (an atomic replace); deletes removed;
        #  5. the post_update hook; 6. version.json replaced (tmp + rename): COMMITTED;
        #  7. the trial (journal state "trial") until confirmed; with trial_boots 0, the cleanup.
        c = self.cfg
        stage, backup = c["stage_dir"], c["backup_dir"]
        _free_memory()  # the journal's records into the holes the downloads left
        # the operations: put get[i] (staged as <sha>.<i>), then delete gone[i - len(get)]; the
        # i-th file, if it existed, is backed up as backup/<i>; had[i]: get[i] existed
        had = []
        for p in get:
            had.append(int(_size(p) >= 0))
        _remove_backups(backup)  # a confirmed trial's backups, if its next boot has not removed them
        j = {"v": 2, "state": "swap", "ref": t["ref"], "commit": t["commit"], "install": record["install"],
             "stage": stage, "backup": backup, "put": get, "had": had, "gone": gone, "rollback": hooks[1],
             "boots": 0}
        _save_json(JOURNAL, j)
        if _size(backup) < 0:
            _mkdir(backup)
        if _size(VERSION) >= 0:
            b = backup + "/" + VERSION
            self._copy(VERSION, b, b + ".tmp")
        n = len(get)
        for i in range(n + len(gone)):
            if i >= n or had[i]:
                b = "%s/%d" % (backup, i)
                self._copy(get[i] if i < n else gone[i - n], b, b + ".tmp")
        for i in range(len(get)):
            p = get[i]
            k = p.find("/")
            while k > 0:  # its parent directories
                if _size(p[:k]) < 0:
                    _mkdir(p[:k])
                k = p.find("/", k + 1)
            staged = "%s/%s.%d" % (stage, record["files"][p], i)
            self._copy(staged, p + _NEW)
            _remove(staged)  # not needed any more: a cut from here on rolls back
        for p in get:
            _rename(p + _NEW, p)
        for p in gone:
            _remove_tree(p)
        if hooks[0]:
            try:
                self._run_hook(hooks[0], "post_update")
            except Exception as e:
                self._rollback(j)
                raise OTAError("post_update hook %s failed (%s); rolled back" % (hooks[0], e))
        _save_json(VERSION, record)  # COMMITTED
        self._start_trial(j)
        self.log("installed")

    def _copy(self, src, dest, via=None):
        # dest becomes a copy of src; via: a name in dest's directory written first and renamed
        # onto dest, so that dest is never a partial copy
        with open(src, "rb") as f:
            with _open_new(via or dest) as out:
                self.pump(f, out, (), 0, 1 << 30)
        if via:
            _rename(via, dest)

    def _rollback(self, j):
        # Put the previous release back (an interrupted swap, a failed hook, a failed trial). Every
        # step checks before it acts, so a cut during it is finished by the next boot.
        backup, get, gone = j["backup"], j["put"], j["gone"]
        n = len(get)
        for i in range(n + len(gone) - 1, -1, -1):
            p = get[i] if i < n else gone[i - n]
            _remove_tree(p + _NEW)
            b = "%s/%d" % (backup, i)
            if _size(b) >= 0:
                self._copy(b, p, p + _NEW)
            elif i < n and not j["had"][i]:
                _remove_tree(p)  # a file the update added (if it got that far)
            # else: its backup was never completed, so the file was never replaced
        b = backup + "/" + VERSION
        if _size(b) >= 0:
            self._copy(b, VERSION, VERSION + ".tmp")
        elif self.installed().get("install") == j["install"]:
            _remove(VERSION)  # a first install: there was no version.json
        self._finish(j)
        if j.get("rollback"):
            try:
                self._run_hook(j["rollback"], "rollback")
            except Exception as e:
                self.record("rollback hook %s failed (%s)" % (j["rollback"], e))

    def _start_trial(self, j):
        # After the commit: the previous release stays in backup_dir until the new one is
        # confirmed (trial_boots boots at most), or is freed now with trial_boots 0.
        if self.cfg["trial_boots"]:
            # the stage first: a cut before the journal says "trial" repeats this (still "swap")
            _remove_tree(j["stage"])  # the staged files are in place: only the backups wait
            j["state"] = "trial"
            _save_json(JOURNAL, j)
        else:
            self._finish(j)

    def _finish(self, j):
        # The end of a swap, a rollback or a trial: the journal first (without a journal, boot
        # removes the backups), then the backups and the stage.
        _remove(JOURNAL)
        _remove_backups(j["backup"])
        _remove_tree(j["stage"])

    def _run_hook(self, hook, function):
        # a manifest hook: "pkg.mod" or "pkg/mod.py"; its function() (or main()) runs. Raising or
        # returning False is a failure.
        name = (hook[:-3] if hook.endswith(".py") else hook).replace("/", ".")
        sys.modules.pop(name, None)
        m = __import__(name)
        for a in name.split(".")[1:]:
            m = getattr(m, a)
        m = getattr(m, function, None) or getattr(m, "main", None)  # the module's hook function
        if m and m() is False:
            raise OTAError("it returned False")

    # ------------------------------------------------------------ boot recovery and trials
    def recover(self):
        # At boot (run by OTA()): finish a committed swap or roll back an interrupted one; count
        # a trial boot, and roll the trial release back after trial_boots boots without a
        # confirmation or after it failed (docs/design.md, "Decision at boot"). Returns what was
        # done, or None.
        global _booted
        first, _booted = not _booted, True
        for p in (JOURNAL, VERSION, STATE, ERRORS):
            _remove_tree(p + ".tmp")  # never published
        j = _load_json(JOURNAL)
        if not j:
            _remove_tree(JOURNAL)
            _remove_backups(self.cfg["backup_dir"])  # backups mean something only with a journal
            return None
        # What is done is recorded before it is done: the journal goes at its end, and a cut
        # before that repeats the step (and the record) at the next boot; none is ever lost.
        if self.installed().get("install") != j["install"]:
            act, message = self._rollback, "rolled back an interrupted update to %s" % j["ref"]
        elif j["state"] == "swap":
            act, message = self._start_trial, "completed an interrupted update to %s" % j["ref"]
        else:
            if not first:  # an application that checks again without a reset has not booted again
                return None
            j["boots"] += 1
            n = self.cfg["trial_boots"]
            if not j.get("failed") and j["boots"] <= n:
                _save_json(JOURNAL, j)  # one more boot of the trial, counted before the app runs
                self.log("trial boot %d of %d of %s", j["boots"], n, j["ref"])
                return None
            s = _load_json(STATE) or {}
            s["skip"] = {"ref": j["ref"], "commit": j["commit"]}  # not installed again until the target changes
            s.pop("etag", None)  # (it was the rolled back release's)
            _save_json(STATE, s)
            act, message = self._rollback, "rolled back %s: %s" % (
                j["ref"], j.get("failed") or "not confirmed after %d boots" % n)
        self.log("%s", message)
        self.record(message, j["commit"])
        act(j)
        return message


_booted = False  # OTA() has run recover() since this boot (the trial counts boots, not checks)


def confirm(failed=None, booted=False):
    # The verdict on the release on trial. confirm(): it works; its journal goes (one file
    # removed: cheap at any time), and the previous release's backups with it, at the end of the
    # check or at the next boot (called by the updater's next completed check, or by the
    # application itself with "confirm": "app"). confirm(reason): it failed (ota_app.py, when
    # the application raises); the next boot rolls it back. True if a release was on trial.
    # booted: only a release that has booted since it was installed (the updater's own checks)
    j = _load_json(JOURNAL)
    if not j or j["state"] != "trial" or booted and not j["boots"]:
        return False
    if failed:
        j["failed"] = str(failed)[:200]
        _save_json(JOURNAL, j)
    else:
        _remove(JOURNAL)  # without a journal, backups mean nothing
    return True


def _board():
    # the `machine` module of a board (one with Pin), else None: the unix port's machine has no
    # Pin and CPython has none; the tests put a fake machine.py in the device folder
    try:
        import machine
    except ImportError:
        return None
    return machine if hasattr(machine, "Pin") else None


def _split_json(src, mv, each):
    # Reads a JSON document from src through the buffer mv. Each object inside an array one
    # level below the top goes to each(obj) as it ends and is replaced by 0 in the rest, which
    # is returned (bytes); strings of the rest longer than _LONGEST_KEPT are emptied. Only the
    # current object and the rest are ever held.
    # Made with room for a typical tree, then emptied (the room stays), so that they seldom grow
    # and move while records are made between them.
    rest = bytearray(256)
    obj = bytearray(256)
    rest[:] = obj[:] = b""
    depth = 0
    in_string = escaped = dropping = False
    zero_at = -1  # len(rest) after the last 0 put for an object
    kept_at = -1  # where the text of a string in the rest starts: only short ones are kept whole
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
                    if kept_at >= 0 and (dropping or len(rest) + i - a - kept_at > _LONGEST_KEPT):
                        rest.extend(mv[a:i])
                        rest[kept_at:] = b""  # (release notes, URLs: nobody reads them)
                        a = i
                    kept_at = -1
                    dropping = False
            elif c == 34:
                in_string = True
                if depth < 3:
                    kept_at = len(rest) + i - a + 1
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
        if kept_at >= 0 and len(rest) - kept_at > _LONGEST_KEPT:
            rest[kept_at:] = b""
            dropping = True
