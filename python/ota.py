# ota.py: over-the-air updates from a GitHub repository for MicroPython 1.23+
# (Raspberry Pi Pico W); also runs on CPython 3.11.
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
# The token never appears in logs or in ota_error.json.

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
VERSION = "version.json"
ERRORS = "ota_error.json"
JOURNAL = "ota_journal.json"
STATE = "ota_state.json"
_SELF = ("ota.py", "ota.mpy", "ota_net.py", "ota_net.mpy", "main.py", "main.mpy", "ota_native.mpy")

# Test hook: _hook(op, path) runs before every filesystem mutation (power-cut tests).
_hook = None


class OTAError(Exception):
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


def _rmtree(d):
    if _isdir(d):
        for n in os.listdir(d):
            p = d + "/" + n
            _rmtree(p) if _isdir(p) else _fs("remove", p)
        _fs("rmdir", d)


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
        _put(f, json.dumps(obj))
    finally:
        f.close()
    _fs("rename", p + ".tmp", p)


def _ms():
    return time.ticks_ms() if _MP else int(time.time() * 1000)


def _mem():
    import gc

    gc.collect()
    return gc.mem_free() if _MP else -1


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
    """Read and check the config: .json, or flat .yaml/.yml/.toml (by extension)."""
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
    """Return the config with defaults; OTAError naming the first bad key."""
    if not isinstance(cfg, dict):
        raise OTAError("%s: expected a mapping of keys to values" % path)
    out = {"_path": path}
    keys = []
    for item in _SCHEMA.split(","):
        k, t, d = (item + " ").split(" ", 2)
        keys.append(k)
        v = cfg.get(k)
        if v is None:
            if t[-1] == "!":
                raise OTAError("%s: required key '%s' is missing" % (path, k))
            d = d.strip()
            if t == "l":
                v = [x for x in d.split(";") if x]
            elif t == "b":
                v = False
            elif t in "in":
                v = int(d)
            else:
                v = d or None
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
            if k in _CHOICES and v not in _CHOICES[k]:
                raise OTAError("%s: '%s' must be one of %s, got %r" % (path, k, "|".join(_CHOICES[k]), v))
        out[k] = v
    for k in cfg:
        if k not in keys and k[:1] != "_":
            raise OTAError("%s: unknown key '%s'" % (path, k))
    if out["chunk"] < 256 or out["canary_percent"] > 100:
        raise OTAError("%s: 'chunk' must be >= 256 and 'canary_percent' <= 100" % path)
    for k in ("api_base", "raw_base"):
        out[k] = out[k].rstrip("/")
        if out[k].split("://")[0] not in ("http", "https"):
            raise OTAError("%s: '%s' must start with http:// or https://" % (path, k))
    return out


def _nocomment(s):
    q = None
    for i in range(len(s)):
        c = s[i]
        if q:
            q = None if c == q else q
        elif c in "\"'":
            q = c
        elif c == "#":
            return s[:i]
    return s


def _val(v, toml):
    # one flat YAML/TOML value: "str", 'str', true/false, numbers, [lists], YAML bare strings/null
    if v[:1] == "[":
        out = []
        q = None
        st = 1
        for i in range(1, len(v)):
            c = v[i]
            if q:
                q = None if c == q else q
            elif c in "\"'":
                q = c
            elif c in ",]":
                s = v[st:i].strip()
                if s:
                    out.append(_val(s, toml))
                st = i + 1
        return out
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
        s = _nocomment(line).strip()
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
    """p if it is a safe relative path, else OTAError (.., leading /, empty parts, \\)."""
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
        try:
            import network
        except ImportError:
            return True  # no WiFi hardware: wired or host networking
        if _HOST:
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
        self.recover()

    def log(self, msg):
        if self.cfg["debug"]:
            print("ota: %s [free %d]" % (msg, _mem()))

    def record(self, reason, **kw):
        """Append to ota_error.json: bounded, newest last, time and reason, never the token."""
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
        """Bring up a link: each of `transports` in turn (wifi; others are user modules ota_<name>)."""
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

    def _json(self, url):
        from ota_net import get_json

        return get_json(self, url)

    def _api(self, tail):
        c = self.cfg
        return "%s/repos/%s/%s/%s" % (c["api_base"], c["owner"], c["repo"], tail)

    # ------------------------------------------------------------ targets
    def _head(self):
        # the one request of an up-to-date check: branch -> its commit; release -> tag (commit later)
        c = self.cfg
        if c["channel"] == "developer":
            sha = self._json(self._api("git/ref/heads/" + _quote(c["branch"])))["object"]["sha"]
            return {"ref": c["branch"], "commit": sha, "version": sha[:7], "manifest": None}
        rel = self._json(self._api("releases/tags/" + _quote(c["tag"]) if c["tag"] else "releases/latest"))
        t = {"ref": rel["tag_name"], "commit": None, "version": rel.get("name") or rel["tag_name"], "manifest": None}
        for a in rel.get("assets") or ():
            if a.get("name") == "manifest.json":
                t["manifest"] = a.get("browser_download_url") or a["url"]
        return t

    def _commit_of(self, tag):
        o = self._json(self._api("git/ref/tags/" + _quote(tag)))["object"]
        while o["type"] == "tag":  # annotated tag -> the object it points at
            o = self._json(self._api("git/tags/" + o["sha"]))["object"]
        return o["sha"]

    def resolve_target(self):
        """{"ref", "commit", "version", "manifest" (URL or None)} of the channel's target."""
        t = self._head()
        t["commit"] = t["commit"] or self._commit_of(t["ref"])
        return t

    def fetch_tree(self, commit):
        """{path: [blob_sha, size, None]} of every file of the commit (recursive tree API),
        parsed one entry at a time."""
        from ota_net import stream_json

        out = {}

        def entry(e):
            if e["type"] == "blob" and e.get("mode") != "120000":
                out[check_path(e["path"])] = [e["sha"], e["size"], None]

        if stream_json(self, self._api("git/trees/%s?recursive=1" % commit), entry).get("truncated"):
            raise OTAError("the Git tree of %s is truncated (too many files): publish a manifest.json" % commit)
        return out

    def _manifest(self, t):
        from ota_net import stream_json

        files = {}

        def entry(e):
            if len(e["sha1"]) != 40:
                raise ValueError
            files[check_path(e["path"])] = [e["sha1"].lower(), int(e["size"]), e.get("sha256")]

        try:
            m = stream_json(self, t["manifest"], entry)
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
        """False for device state (config, version.json, ota_error.json, journal, stage/backup dirs,
        the updater unless self_update) and for paths outside allow/inside ignore (ignore wins)."""
        c = self.cfg
        n = p[:-4] if p.endswith(".tmp") else p
        if (n in (VERSION, ERRORS, JOURNAL, STATE) or p.startswith("ota_config.") or p == c["_path"]
                or p.split("/")[0] in (c["stage_dir"].strip("/"), c["backup_dir"].strip("/"))
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
        """Install the channel's target if it differs; True when files changed.
        Failures are recorded in ota_error.json and raised as OTAError."""
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
        net = __import__("ota_net")
        have = old.get("files") or {}
        get = []
        for p in sorted(files):
            sha, size = files[p][0], files[p][1]
            if c["force"] or _size(p) != size or have.get(p) != sha and net.local_sha(self, p, size) != sha:
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
        self._stage(t, files, get)
        self._install(t, rec, get, gone, hook)
        r["updated"] = True
        return True

    def _stage(self, t, files, get):
        # download every changed file into stage_dir/<sha>.<i> (verified), resuming partial ones
        c = self.cfg
        sd = c["stage_dir"]
        from ota_net import download

        names = ["%s.%d" % (files[get[i]][0], i) for i in range(len(get))]
        if not _isdir(sd):
            _fs("mkdir", sd)
        for n in os.listdir(sd):  # leftovers of another target
            if n not in names and n[:-5] not in names:
                _rmtree(sd + "/" + n) if _isdir(sd + "/" + n) else _fs("remove", sd + "/" + n)
        need = 2 * sum([files[p][1] for p in get]) + _RESERVE
        st = os.statvfs(sd)
        if st[1] * st[4] < need:
            raise OTAError("not enough free space: %d bytes needed (2x the update + 50 KB), %d free"
                           % (need, st[1] * st[4]))
        for i in range(len(get)):
            p = get[i]
            download(self, "%s/%s/%s/%s/%s" % (c["raw_base"], c["owner"], c["repo"], t["commit"], _quote(p)),
                           sd + "/" + names[i], p, *files[p])

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
        _rmtree(j["backup"])
        _rmtree(j["stage"])
        _fs("remove", JOURNAL)

    def _rollback(self, j):
        sd, bd, ops = j["stage"], j["backup"], j["ops"]
        for i in range(len(ops) - 1, -1, -1):
            p, name, had = ops[i]
            b = "%s/%d" % (bd, i)
            if _size(b) >= 0:
                if _size(p) >= 0:
                    _fs("remove", p)
                _fs("rename", b, p)
            elif name and not had and _size(p) >= 0 and _size(sd + "/" + name) < 0:
                _fs("remove", p)  # a file the update added
        if _size(bd + "/" + VERSION) >= 0 and _size(VERSION) < 0:
            _fs("rename", bd + "/" + VERSION, VERSION)
        _fs("remove", JOURNAL)  # before the stage: its version.json marks "not committed"
        _rmtree(bd)
        _rmtree(sd)

    def recover(self):
        """Boot-time recovery: finish a committed swap or roll back an interrupted one."""
        if _size(JOURNAL + ".tmp") >= 0:
            _fs("remove", JOURNAL + ".tmp")
        j = _load(JOURNAL)
        if not j:
            if _size(JOURNAL) >= 0:
                _fs("remove", JOURNAL)
            _rmtree(self.cfg["backup_dir"])  # backups mean something only with a journal
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
