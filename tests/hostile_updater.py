"""Hostile inputs through the whole updater (issue 11, part 4): one module run unchanged by the
MicroPython unix port and by CPython; tests/test_hostile_updater.py drives both.

Each case is a hostile configuration, manifest, signature, Git tree or ref, delta patch, or HTTP
response, fed through python/ota.py as main.py runs it: load_config() or check_config(),
OTA(cfg) (boot recovery), connect(), update_if_available(). No socket is opened: the `socket`,
`tls` and `ssl` modules are replaced (sys.modules) by an in-process fake GitHub (class Net)
that answers each request with bytes made for the case, so ota.py's own HTTP client (Response:
status line, headers, Content-Length, chunked), redirects, retry policy, JSON streaming,
staging, gzip and deltas all run. time.sleep is replaced by a counter and the clock is fixed,
so backoff waits cost nothing and the cases are the same on both interpreters.

Cases come from a seeded xorshift32 generator (as tests/hostile_cases.py): case i's inputs
depend only on (seed, i), never on outcomes. Categories:
  config    configurations: each key's type and value (huge, unicode, NUL, placeholders, dirs
            such as "." or "lib", URLs, transports, feature keys), JSON text mutations, other
            top-level types, flat YAML/TOML text, file extensions;
  manifest  manifest.json (API-free and token paths): malformed JSON, wrong types, huge and
            negative sizes, bad/short/long SHAs, hostile paths (../, absolute, backslash,
            colon, NUL, unicode, protected files), deletes of protected files, hooks of the
            wrong type, text mutations;
  tree      the Git ref and the recursive tree: truncated, wrong types, symlinks (mode
            120000), submodules, huge trees, hostile paths;
  delta     the .deltas/ patch files (docs/delta-format.md), version 2 (operations) and 1
            (bsdiff): header byte, mutated deflate streams, hostile operations and bsdiff
            control fields, outputs one byte off, the patch of another file, lying
            Content-Length, HTTP trouble;
  http      one response (or every response to one URL) made hostile: bad status lines,
            header garbage, chunked encoding errors, lengths that lie, cuts and timeouts,
            redirect loops and redirects to other hosts, 401/403/404/429/5xx with odd
            Retry-After/X-RateLimit headers, gzip that lies, connection errors;
  signature only when python/ota_sign.py exists: keys (bad hex, short, long, empty) and the
            manifest.json.sig asset (empty, truncated, long, hex text, random, missing).

Every case must end in ota.OTAError with a non-empty message (a config may also be valid and
end deferred or as a no-op: counted apart). And for every case:
  - the device folder is unchanged except ota_error.json, ota_state.json and the stage
    folder (partial downloads are kept there by design, to resume): nothing installed,
    nothing lost (every filesystem change passes ota._before_change, which this module
    replaces: a change to any other path stops the case at once, and a change outside the
    device folder is never made);
  - every file staged as verified (stage_dir/<sha>.<i>) hashes to its name;
  - result["download"] and result["delete"] hold only safe paths that the device may take
    (docs/design.md "Protected paths", checked here independently of ota.wanted);
  - the token is sent to no other host than the configured ones and is not in
    ota_error.json; an error of the update is the last reason in ota_error.json;
  - at most MAX_REQUESTS requests and MAX_READS reads (no endless loop).
An OTAError whose message is "<ExceptionName>: ..." came from update_if_available's wrapper of
an unexpected exception: such cases pass but are counted as "wrapped" and listed.

Usage: hostile_updater.py WORKDIR [N [START [SEED]]] [-v] [--case I] [--defect NAME]
  WORKDIR gets dev/ (the device folder, its cwd) and cfg/ (config files);
  prints "@@FAIL ...", "@@WRAP ...", "@@COUNT ...", "@@OBS ..." (requests a config value broke),
  "@@COV ..." (how far the cases got: files staged by method, requests, token sent) and one
  "@@SUMMARY ..." line. --case I runs case I alone and prints it (a reproduction).
"""
import sys
import os
import json
import hashlib
from binascii import hexlify

try:
    from binascii import crc32
except ImportError:  # pragma: no cover
    from zlib import crc32

MP = sys.implementation.name == "micropython"
N_CASES = 10000
SEED = 0x6F746131
MAX_REQUESTS = 80
MAX_READS = 400000
FAKE_NOW = 1750000000  # the device clock during the campaign (set: > 2020)
TOKEN = "ghp_SECRETtok3n"

CATEGORIES = ("config", "manifest", "tree", "delta", "http", "signature")
WEIGHTS = (24, 24, 18, 12, 22, 0)  # signature: weight set in main() when ota_sign imports


# ---------------------------------------------------------------- seeded generator
class Rng:
    """xorshift32 (Marsaglia): the same sequence on both interpreters."""

    def __init__(self, seed):
        self.s = (seed & 0xFFFFFFFF) or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n

    def chance(self, n):  # 1 in n
        return self.next() % n == 0

    def choice(self, seq):
        return seq[self.next() % len(seq)]

    def bytes(self, n):
        b = bytearray(n)
        for i in range(n):
            b[i] = self.next() & 255
        return bytes(b)


# ---------------------------------------------------------------- deterministic JSON text
class Raw:
    """JSON text put verbatim (numbers such as 1e400, surrogates, fragments)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "Raw(%r)" % self.text


class O:
    """A JSON object as ordered pairs (MicroPython dicts do not keep insertion order)."""

    def __init__(self, *pairs):
        self.pairs = list(pairs)

    def get(self, k, default=None):
        for a, b in self.pairs:
            if a == k:
                return b
        return default

    def set(self, k, v):
        for i in range(len(self.pairs)):
            if self.pairs[i][0] == k:
                self.pairs[i] = (k, v)
                return self
        self.pairs.append((k, v))
        return self

    def drop(self, k):
        self.pairs = [p for p in self.pairs if p[0] != k]
        return self

    def copy(self):
        return O(*self.pairs)


_JSTR = {}


def _jstr(s):
    j = _JSTR.get(s)
    if j is not None:
        return j
    try:
        ascii = len(s.encode()) == len(s)
    except UnicodeError:  # a lone surrogate (CPython)
        ascii = False
    if ascii and "\b" not in s and "\f" not in s and "\x7f" not in s:
        return json.dumps(s)  # ASCII: the same text from both interpreters' json, and fast
    out = ['"']
    a = 0
    i = 0
    for c in s:  # runs of plain characters are copied as slices
        o = ord(c)
        if c == '"' or c == "\\" or o < 32 or o > 126:
            if a < i:
                out.append(s[a:i])
            if c == '"' or c == "\\":
                out.append("\\" + c)
            elif o > 0xFFFF:
                o -= 0x10000
                out.append("\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF)))
            else:
                out.append("\\u%04x" % o)
            a = i + 1
        i += 1
    if a < i:
        out.append(s[a:i])
    out.append('"')
    j = "".join(out)
    if len(s) < 100 and len(_JSTR) < 3000:
        _JSTR[s] = j
    return j


def dump(v):
    """JSON text of v (O, list, str, int, bool, None, Raw); the same bytes on both interpreters."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    t = type(v)
    if t is int:
        return str(v)
    if t is str:
        return _jstr(v)
    if t is Raw:
        return v.text
    if t is O:
        return "{" + ", ".join(_jstr(k) + ": " + dump(x) for k, x in v.pairs) + "}"
    if t is list or t is tuple:
        return "[" + ", ".join(dump(x) for x in v) + "]"
    if t is dict:
        return dump(O(*sorted(v.items())))
    if t is bytes:
        return _jstr(v.decode())
    raise TypeError("dump: %r" % (v,))


# ---------------------------------------------------------------- content helpers
def blob_sha(data):
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return hexlify(h.digest()).decode()


def sha256_hex(data):
    return hexlify(hashlib.sha256(data).digest()).decode()


def le32(n):
    n &= 0xFFFFFFFF
    return bytes([n & 255, (n >> 8) & 255, (n >> 16) & 255, n >> 24])


def le64(n):
    return le32(n) + le32(n >> 32)


def stored_raw(data):
    """A raw deflate stream of stored blocks (valid for any window)."""
    out = bytearray()
    i = 0
    while True:
        blk = data[i:i + 65535]
        i += len(blk)
        final = i >= len(data)
        n = len(blk)
        out += bytes([1 if final else 0, n & 255, n >> 8, ~n & 255, (~n >> 8) & 255])
        out += blk
        if final:
            return bytes(out)


def stored_gzip(data, crc_fix=0):
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + stored_raw(data)
            + le32((crc32(data) & 0xFFFFFFFF) ^ crc_fix) + le32(len(data)))


# fixed-Huffman deflate (RFC 1951 3.2.6), literals and runs (distance 1): small, deterministic
# patches on both interpreters (MicroPython's deflate module here cannot compress)
_LEN_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163,
             195, 227, 258)
_LEN_EXTRA = (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0)


class _Bits:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, v, n):  # n bits of v, least significant first
        self.acc |= v << self.n
        self.n += n
        while self.n >= 8:
            self.out.append(self.acc & 255)
            self.acc >>= 8
            self.n -= 8

    def code(self, c, n):  # a Huffman code: most significant bit first
        r = 0
        for _ in range(n):
            r = (r << 1) | (c & 1)
            c >>= 1
        self.put(r, n)

    def sym(self, v):  # a literal/length symbol of the fixed code
        if v < 144:
            self.code(0x30 + v, 8)
        elif v < 256:
            self.code(0x190 + v - 144, 9)
        elif v < 280:
            self.code(v - 256, 7)
        else:
            self.code(0xC0 + v - 280, 8)


def fixed_deflate(data):
    """A raw deflate stream of data: one fixed-Huffman block, runs as matches at distance 1."""
    w = _Bits()
    w.put(1, 1)  # BFINAL
    w.put(1, 2)  # BTYPE 01: fixed Huffman
    i = 0
    n = len(data)
    while i < n:
        r = 0
        if i:
            while i + r < n and r < 258 and data[i + r] == data[i - 1]:
                r += 1
        if r >= 3:
            k = 0
            while k + 1 < len(_LEN_BASE) and _LEN_BASE[k + 1] <= r:
                k += 1
            w.sym(257 + k)
            w.put(r - _LEN_BASE[k], _LEN_EXTRA[k])
            w.code(0, 5)  # distance code 0: distance 1
            i += r
        else:
            w.sym(data[i])
            i += 1
    w.sym(256)
    if w.n:
        w.put(0, 8 - w.n)
    return bytes(w.out)


def matches(old, new):
    """(literals before the first match, [(old position, length, literals after it)]): exact
    matches of old found by 16-byte anchors"""
    index = {}
    for j in range(len(old) - 15):
        index.setdefault(old[j:j + 16], j)
    entries = []  # (old position, match length, literals after it)
    lits = bytearray()
    pos = []  # pending match
    i = 0
    first = None
    while i < len(new):
        j = index.get(new[i:i + 16]) if i + 16 <= len(new) else None
        if j is None:
            lits.append(new[i])
            i += 1
            continue
        k = 16
        while i + k < len(new) and j + k < len(old) and new[i + k] == old[j + k]:
            k += 1
        if pos:
            entries.append((pos[0], pos[1], bytes(lits)))
        else:
            first = bytes(lits)
        lits = bytearray()
        pos = [j, k]
        i += k
    if pos:
        entries.append((pos[0], pos[1], bytes(lits)))
    else:
        first = bytes(lits)
    return first or b"", entries


def bsdiff(old, new):
    """A bsdiff (crate 0.2 format) patch old -> new: the matches as mix blocks of zeros, the rest
    as copied literals."""
    first, entries = matches(old, new)
    out = bytearray()

    def seek(d):
        return le64(d) if d >= 0 else le64((1 << 63) | -d)

    nxt = entries[0][0] if entries else 0
    out += le64(0) + le64(len(first)) + seek(nxt) + first
    for k in range(len(entries)):
        j, m, lit = entries[k]
        nxt = entries[k + 1][0] if k + 1 < len(entries) else j + m
        out += le64(m) + le64(len(lit)) + seek(nxt - (j + m)) + bytes(m) + lit
    return bytes(out)


def leb(n):
    out = bytearray()
    while True:
        b = n & 127
        n >>= 7
        out.append(b | 128 if n else b)
        if not n:
            return bytes(out)


def operation(lit, copy, offset):
    # one version 2 operation (docs/delta-format.md): literal_len, copy_len, zigzag offset, literals
    return leb(len(lit)) + leb(copy) + leb(offset * 2 if offset >= 0 else -offset * 2 - 1) + lit


def ops(old, new):
    """The version 2 operations old -> new: literals, then a copy of the old file."""
    first, entries = matches(old, new)
    out = bytearray()
    end = 0  # the end of the previous copy
    lit = first
    for j, m, after in entries:
        out += operation(lit, m, j - end)
        end = j + m
        lit = after
    if lit:
        out += operation(lit, 0, 0)
    return bytes(out)


def make_patch(old, new, wbits=10, version=2):
    """A .deltas/ file (docs/delta-format.md): the header byte (version, wbits - 8), then the raw
    deflate stream of the operations (version 2) or of the bsdiff patch (version 1)."""
    return bytes([version << 4 | (wbits - 8)]) + fixed_deflate(ops(old, new) if version == 2 else bsdiff(old, new))


def text(seed, n):
    r = Rng(seed)
    words = ("sock", "recv", "send", "topic", "buf", "retry", "mqtt", "led", "pin", "adc")
    out = []
    i = 0
    while sum(len(x) for x in out) < n:
        out.append("def f%d(%s):\n    return %s(%d)\n" % (i, r.choice(words), r.choice(words), r.below(1000)))
        i += 1
    return "".join(out).encode()[:n]


# ---------------------------------------------------------------- the device and the release
OWNER, REPO = "octo", "app"
C1 = blob_sha(b"commit one")  # installed
C2 = blob_sha(b"commit two")  # target
TAG = "v2.0.0"
UTIL1 = text(1, 800)
UTIL2 = UTIL1[:300] + b"# changed\n" + UTIL1[300:700] + b"X = 2\n"
CAL1 = Rng(5).bytes(700)
CAL2 = CAL1[:100] + b"\x00" * 20 + CAL1[120:] + b"tail"
APP1 = b"print('v1')\n" + text(2, 400)
APP2 = b"print('v2')\n" + text(3, 420)

INSTALLED = {"app.py": APP1, "lib/util.py": UTIL1, "lib/old.py": b"OLD = 1\n", "data/cal.bin": CAL1,
             "README.md": b"# app\n"}
# the target release; the raw server sends the guards with one byte changed (a SHA mismatch), so
# an update that gets past every hostile input still ends in an OTAError before the swap
GUARDS = ("guard_a.py", "zz_guard.bin")
TARGET = {"app.py": APP2, "lib/util.py": UTIL2, "data/cal.bin": CAL2, "lib/new.py": b"NEW = 2\n",
          "README.md": b"# app\n", "guard_a.py": b"G = 'guard'\n" * 4, "zz_guard.bin": Rng(9).bytes(500)}
SERVED = dict(TARGET)
for _g in GUARDS:
    SERVED[_g] = bytes([TARGET[_g][0] ^ 1]) + TARGET[_g][1:]
# the release the config cases see: nothing deleted, every file served wrong (so a valid but odd
# configuration can only fail, or find nothing to do: a no-op)
TARGET_ALL = dict(TARGET)
TARGET_ALL["lib/old.py"] = INSTALLED["lib/old.py"]
WRONG = {}
for _p in TARGET_ALL:
    WRONG[_p] = bytes([TARGET_ALL[_p][0] ^ 1]) + TARGET_ALL[_p][1:]
DELTA_FILES = ("lib/util.py", "data/cal.bin")
PATCHES = {}  # .deltas/<base[:10]>-<target[:10]> -> the patch file, version 2 (what delta_gen writes)
PATCHES1 = {}  # the same as version 1 (bsdiff)
INSTALLED_BY_PATCH = {}
TARGET_BY_PATCH = {}
for _p in DELTA_FILES + ("app.py",):
    _n = "%s-%s" % (blob_sha(INSTALLED[_p])[:10], blob_sha(TARGET[_p])[:10])
    PATCHES[_n] = make_patch(INSTALLED[_p], TARGET[_p], 9 + len(_n) % 7, 2)
    PATCHES1[_n] = make_patch(INSTALLED[_p], TARGET[_p], 9 + len(_n) % 7, 1)
    INSTALLED_BY_PATCH[_n] = INSTALLED[_p]
    TARGET_BY_PATCH[_n] = TARGET[_p]

# the updater's own files and state at the device's root (stubs: never imported from there)
PROTECTED_FILES = {"ota_config.json": b'{"owner": "octo", "repo": "app"}', "main.py": b"# main stub\n",
                   "ota.py": b"# ota stub\n", "ota_native.mpy": b"M\x06stub", "ota_cellular.py": b"# user transport\n",
                   ".deltas/keep.bsd": b"patch", "data/keep.ota_new": b"half", "sub/ota.py": b"# app file\n"}
VERSION_REC = {"ref": "main", "commit": C1, "version": C1[:7], "install": 4, "sequence": None,
               "files": dict((p, blob_sha(d)) for p, d in INSTALLED.items())}


def golden():
    g = dict(INSTALLED)
    g.update(PROTECTED_FILES)
    g["version.json"] = json.dumps(VERSION_REC).encode()
    return g


GOLDEN = golden()
GOLDEN_DIRS = set()
for _p in GOLDEN:
    _k = _p.find("/")
    while _k > 0:
        GOLDEN_DIRS.add(_p[:_k])
        _k = _p.find("/", _k + 1)
ALLOWED_CHANGES = ("ota_error.json", "ota_error.json.tmp", "ota_state.json", "ota_state.json.tmp")

API = "https://api.ota.test"
WEB = "https://ota.test"
RAW = "https://raw.ota.test"
CA = "@CA"  # the case's ca_file: a fake trust store (cfg/ca.der), put in at run time
KNOWN_HOSTS = ("api.ota.test", "ota.test", "raw.ota.test", "dl.ota.test", "evil.test")


def base_cfg(case, rng, channel="developer"):
    # the device's configuration for a case: HTTPS through the fake TLS (the token is sent only
    # over verified TLS), or plain HTTP (then never)
    http = case.scheme == "http"
    c = {"owner": OWNER, "repo": REPO, "channel": channel,
         "api_base": API.replace("https", "http") if http else API,
         "raw_base": RAW.replace("https", "http") if http else RAW,
         "retries": rng.below(3), "backoff_sec": 0, "max_backoff_sec": 2, "reset_mode": "none",
         "chunk": rng.choice((256, 300, 512, 1024, 4096)), "trial_boots": rng.below(3)}
    if not http:
        c["ca_file"] = CA
    if rng.chance(4):
        c["token"] = TOKEN
    return c


# ---------------------------------------------------------------- documents
def manifest_entry(p, data, sha1=True):
    e = O(("path", p), ("size", len(data)))
    if sha1:
        e.set("sha1", blob_sha(data))
    return e.set("sha256", sha256_hex(data))


def manifest_doc(sha1=True, target=None):
    target = target or TARGET
    files = [manifest_entry(p, target[p], sha1) for p in sorted(target)]
    return O(("format", 1), ("version", TAG), ("files", files), ("deletes", [] if "lib/old.py" in target else ["lib/old.py"]))


def tree_entry(p, data):
    return O(("path", p), ("mode", "100644"), ("type", "blob"), ("sha", blob_sha(data)), ("size", len(data)),
             ("url", API + "/repos/octo/app/git/blobs/" + blob_sha(data)))


def tree_doc(target=None):
    target = target or TARGET
    entries = [O(("path", "data"), ("mode", "040000"), ("type", "tree"), ("sha", blob_sha(b"t1"))),
               O(("path", "lib"), ("mode", "040000"), ("type", "tree"), ("sha", blob_sha(b"t2"))),
               O(("path", "link.py"), ("mode", "120000"), ("type", "blob"), ("sha", blob_sha(b"app.py")), ("size", 6)),
               O(("path", "vendor"), ("mode", "160000"), ("type", "commit"), ("sha", blob_sha(b"sub")))]
    entries += [tree_entry(p, target[p]) for p in sorted(target)]
    return O(("sha", C2), ("url", API + "/repos/octo/app/git/trees/" + C2), ("tree", entries), ("truncated", False))


def release_doc(scheme):
    api, web = API.replace("https", scheme), WEB.replace("https", scheme)
    return O(("url", api + "/repos/octo/app/releases/1"), ("tag_name", TAG), ("name", "Release " + TAG),
             ("body", "notes " * 40),
             ("assets", [O(("url", api + "/repos/octo/app/releases/assets/7"), ("id", 7), ("name", "manifest.json"),
                           ("browser_download_url", web + "/octo/app/releases/download/%s/manifest.json" % TAG)),
                         O(("url", api + "/repos/octo/app/releases/assets/8"), ("id", 8),
                           ("name", "manifest.json.sig"),
                           ("browser_download_url", web + "/octo/app/releases/download/%s/manifest.json.sig" % TAG))]))


def ref_doc(sha=C2, typ="commit"):
    return O(("ref", "refs/heads/main"), ("object", O(("sha", sha), ("type", typ), ("url", API + "/x"))))


# ---------------------------------------------------------------- hostile values
LONG = "x" * 5000
HOSTILE_STRINGS = ["", " ", "YOUR_VALUE", "\0", "a\0b", "\u00e9t\u00e9", "\u202egnp.exe", "\U0001F600", "x" * 300,
                   LONG, "../..", "/", ".", "..", "\n", "\r\nX-Injected: 1", "%s%d%%", "{}", "null", "true",
                   "\\", "C:\\x", "\t"]
HOSTILE_VALUES = HOSTILE_STRINGS + [None, True, False, 0, -1, 1, 255, 256, 2 ** 31, 2 ** 63, 10 ** 30,
                                    Raw("1e400"), Raw("-0.0"), Raw("1.5"), Raw("-1e-300"), Raw("NaN"),
                                    Raw('"\\ud800"'), [], [""], ["a", 1], [[]], [None], O(), O(("a", 1))]
# paths a release might name: unsafe ones, protected ones, and odd but safe ones
UNSAFE_PATHS = ["../evil.py", "../../etc/passwd", "/etc/passwd", "/abs.py", "a//b.py", "a/./b.py", "./a.py",
                "a/..", "..", ".", "", "lib/", "/", "lib\\evil.py", "..\\evil.py", "C:evil.py", "c:\\evil.py",
                "a:b", "evil\0.py", "lib/\0", "lib/../../x", "lib/./../app.py", "//", "a/b/../../..",
                "./", "x/" * 50 + "..", "lib/util.py/"]
PROTECTED_PATHS = ["ota.py", "main.py", "ota_native.mpy", "ota.mpy", "main.mpy", "ota_config.json",
                   "ota_config.yaml", "ota_config.toml", "version.json", "version.json.tmp", "ota_error.json",
                   "ota_journal.json", "ota_journal.json.tmp", "ota_state.json", ".ota_stage", ".ota_stage/x",
                   ".ota_backup", ".ota_backup/0", ".deltas", ".deltas/index.json", ".deltas/keep.bsd",
                   "lib/x.ota_new", "data/keep.ota_new", "ota_hw.py", "ota_cellular.py", "ota_delta.mpy",
                   "otaXpy"]
ODD_PATHS = ["\u00e9/\u00fc.py", "\U0001F600.py", "a b.py", "%2e%2e/x.py", "..%2fx.py", "\n.py", " ", "lib/ ",
             "x" * 300, "d/" * 60 + "f.py", "OTA.PY", "Main.py", "sub/ota.py", "ota", "lib/ota.py", "con",
             "lib", "data", "version.json/x", "a#b?.py", "\ud800.py"]
HOSTILE_SHAS = ["", "0" * 39, "0" * 41, "g" * 40, "Z" * 40, "0" * 64, " " * 40, "../" * 13 + "x", "\0" * 40,
                None, 0, 123, True, [], O(), "00" * 20 + "\n", "0x" + "0" * 38]
HOSTILE_SIZES = [-1, -2 ** 63, 2 ** 64, 2 ** 40, 10 ** 30, Raw("1.5"), Raw("1e400"), Raw("-0.0"), "12", "", None,
                 True, False, [], O(), 0, 1, 10 ** 6]
HOSTILE_HOOKS = [1, 0, True, [], ["lib.migrate"], O(), "", Raw("1.5"), None, "lib.migrate", "os",
                 "../evil.py", "\0"]
GARBAGE_JSON = ["", " ", "null", "0", "-1", "1e400", '"x"', "[]", "{}", "[{}]", "[[[[[[[[]]]]]]]]",
                "{" * 200 + "}" * 200, "[" * 3000 + "]" * 3000, '{"a":', "\xef\xbb\xbf{}", "\x00{}", "{\"a\":1}x",
                "<html>503 Service Unavailable</html>", "{'files': []}", "true", "NaN"]
MUTATIONS = ("truncate", "flip", "insert", "delete", "splice", "random", "nul", "dup")


def mutate_text(rng, b, op=None):
    """bytes b with one text mutation (slicing only: MicroPython bytes have no del)."""
    op = op or rng.choice(MUTATIONS)
    n = len(b)
    if op == "truncate":
        return op, b[:rng.below(n + 1)]
    if op == "flip" and n:
        m = bytearray(b)
        for _ in range(1 + rng.below(6)):
            m[rng.below(n)] ^= 1 << rng.below(8)
        return op, bytes(m)
    if op == "insert":
        i = rng.below(n + 1)
        ins = rng.choice((rng.bytes(1 + rng.below(40)), b"{", b"}", b"[", b"]", b'"', b",", b"\\", b"\xff\xfe",
                          b"\x00", b"\xc3", b"null", b"1e999", b"-", b"\n"))
        return op, b[:i] + ins + b[i:]
    if op == "delete" and n:
        i = rng.below(n)
        return op, b[:i] + b[i + 1 + rng.below(40):]
    if op == "splice" and n:
        i, j = rng.below(n), rng.below(n)
        part = b[i:i + 1 + rng.below(120)]
        return op, b[:j] + part + b[j + len(part):]
    if op == "nul" and n:
        i = rng.below(n)
        return op, b[:i] + b"\x00" + b[i + 1:]
    if op == "dup" and n:
        i = rng.below(n)
        j = i + rng.below(n - i + 1)
        return op, b[:j] + b[i:j] + b[j:]
    return "random", rng.bytes(rng.below(400))


# ---------------------------------------------------------------- the fake network
class Runaway(BaseException):
    """Too many requests or reads in one case: an endless loop."""


class Escape(BaseException):
    """A filesystem change the case may not make (stopped before it happens)."""


class Resp:
    """A response to send: status, headers [(name, value) bytes], body; or raw bytes. end: what
    the server does after the bytes: "keep" (the connection stays open: a read past them waits
    and times out), "close", "timeout", "reset" (None: keep when framed, else close);
    piece: at most this many bytes per read."""

    def __init__(self, status=200, body=b"", headers=None, reason=b"OK"):
        self.status = status
        self.reason = reason
        self.headers = list(headers or [])
        self.body = body
        self.raw = None
        self.end = None
        self.piece = 0
        self.length = True  # add Content-Length
        self.chunked = None  # a list of chunk sizes: Transfer-Encoding: chunked
        self.connect_error = None  # (http "conn" transforms: an OSError at connect)

    def end_mode(self):
        if self.end:
            return self.end
        if self.raw is None and (self.length or self.chunked is not None):
            return "keep"
        return "close"

    def bytes(self):
        if self.raw is not None:
            return self.raw
        out = b"HTTP/1.1 %d " % self.status + self.reason + b"\r\n"
        body = self.body
        if self.chunked is not None:
            out += b"Transfer-Encoding: chunked\r\n"
            body = chunk_body(body, self.chunked)
        elif self.length:
            out += b"Content-Length: %d\r\n" % len(body)
        for k, v in self.headers:
            out += k + b": " + v + b"\r\n"
        return out + b"\r\n" + body


def chunk_body(body, sizes):
    out = b""
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)] if sizes else len(body)
        n = max(1, n)
        part = body[i:i + n]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
        i += len(part)
        k += 1
    return out + b"0\r\n\r\n"


def json_resp(doc):
    return Resp(200, (doc if type(doc) is bytes else dump(doc).encode()),
                [(b"Content-Type", b"application/json; charset=utf-8")])


def redirect(location, status=302):
    return Resp(status, b"", [(b"Location", location.encode() if type(location) is str else location)],
                reason=b"Found")


def not_found():
    return Resp(404, b'{"message": "Not Found"}', reason=b"Not Found")


class Conn:
    """A fake socket (and, on CPython, its makefile()): requests are written to it, and each
    complete request gets its response appended to what there is to read (HTTP/1.1 keep-alive:
    bytes a response left unread come before the next one)."""

    def __init__(self, net):
        self.net = net
        self.out = b""
        self.buf = b""
        self.pos = 0
        self.closed = False  # the server has closed its side
        self.end = "keep"
        self.piece = 0
        self.host = None
        self.port = None
        self.n = 0
        self.tls = False

    # socket side
    def settimeout(self, t):
        if t is None or t < 0:
            raise ValueError("timeout")

    def connect(self, addr):
        self.host, self.port = addr[0], addr[1]
        self.n = self.net.open_conn()
        e = self.net.connect_error(self.n, self.host)
        if e:
            raise e

    def write(self, x):
        if type(x) is str:
            x = x.encode()
        self.out += x
        return len(x)

    def sendall(self, x):
        self.write(x)

    def makefile(self, mode="rb"):
        return self

    def close(self):
        pass

    # stream side
    def _pump(self):
        self.net.reads += 1
        if self.net.reads > MAX_READS:
            raise Runaway("more than %d reads" % MAX_READS)
        while True:
            j = self.out.find(b"\r\n\r\n")
            if j < 0:
                return
            raw, self.out = self.out[:j + 4], self.out[j + 4:]
            if self.closed:
                continue  # the server is gone: the request is lost
            r = self.net.serve(self, raw)
            self.buf = self.buf[self.pos:] + r.bytes()
            self.pos = 0
            self.end = r.end_mode()
            self.piece = r.piece
            if self.end != "keep":
                self.closed = True

    def _empty(self):
        # a read with nothing left to read
        if not self.closed or self.end == "timeout":
            raise OSError(110, "ETIMEDOUT")  # (a kept connection: the server sends nothing more)
        if self.end == "reset":
            raise OSError(104, "ECONNRESET")
        return 0

    def readline(self):
        self._pump()
        d = self.buf
        if self.pos >= len(d):
            self._empty()
            return b""
        j = d.find(b"\n", self.pos)
        j = len(d) if j < 0 else j + 1
        line = d[self.pos:j]
        self.pos = j
        return line

    def readinto(self, buf):
        self._pump()
        d = self.buf
        n = min(len(buf), len(d) - self.pos)
        if self.piece:
            n = min(n, self.piece)
        if n <= 0:
            if len(buf) == 0:
                return 0
            return self._empty()
        buf[:n] = d[self.pos:self.pos + n]
        self.pos += n
        return n

    def read(self, n=-1):
        self._pump()
        d = self.buf[self.pos:] if n < 0 else self.buf[self.pos:self.pos + n]
        self.pos += len(d)
        return d


class Net:
    """The fake `socket` module (and `tls`/`ssl`): every request is answered by self.case."""

    SOCK_STREAM = 1
    AF_INET = 2
    PROTOCOL_TLS_CLIENT = 16
    CERT_NONE = 0
    CERT_REQUIRED = 2

    def __init__(self):
        self.case = None
        self.reset(None)

    def reset(self, case):
        self.case = case
        self.requests = 0
        self.conns = 0
        self.lookups = 0
        self.reads = 0
        self.log = []  # (host, path, authorization sent, over TLS)
        self.bad_request_lines = 0
        self.tls_refused = case.tls_refused if case else 0

    # socket module
    def getaddrinfo(self, host, port, *args):
        self.lookups += 1
        if self.lookups > 2 * MAX_REQUESTS:
            raise Runaway("more than %d name lookups" % (2 * MAX_REQUESTS))
        if host not in KNOWN_HOSTS:
            raise OSError(-2, "EAI_NONAME")
        return [(2, 1, 0, "", (host, port))]

    def socket(self, *args):
        return Conn(self)

    def open_conn(self):
        self.conns += 1
        if self.conns > MAX_REQUESTS:
            raise Runaway("more than %d connections" % MAX_REQUESTS)
        return self.conns

    def connect_error(self, n, host):
        return self.case.srv.connect_error(n, host) if self.case else None

    # tls / ssl module
    def SSLContext(self, proto=None):
        return TLSContext(self)

    def serve(self, conn, raw):
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            raise Runaway("more than %d requests" % MAX_REQUESTS)
        req = parse_request(raw)
        req["host"] = conn.host
        req["tls"] = conn.tls
        if req.get("bad"):
            self.bad_request_lines += 1
        self.log.append((conn.host, req["path"], req["headers"].get("authorization"), conn.tls))
        return self.case.srv.respond(self.requests, req)


class TLSContext:
    verify_mode = 0
    check_hostname = True

    def __init__(self, net):
        self.net = net
        self.cas = 0

    def load_verify_locations(self, *a, **k):
        self.cas += 1

    def load_default_certs(self, *a):
        pass

    def wrap_socket(self, s, server_hostname=None):
        # a man in the middle (a certificate from another CA) when the case says so
        if self.net.tls_refused and self.verify_mode:
            self.net.tls_refused -= 1
            raise ValueError("certificate verify failed (fake)")
        s.tls = True
        return s


def parse_request(raw):
    # "GET path HTTP/1.1\r\nHeader: v\r\n...\r\n\r\n" -> {"path", "headers", "bad"}
    try:
        s = raw.decode()
    except Exception:
        s = ""
    head = s.split("\r\n\r\n")[0]
    lines = head.split("\r\n")
    first = lines[0].split(" ")
    bad = len(first) != 3 or first[0] != "GET" or first[2] != "HTTP/1.1" or "\n" in head.replace("\r\n", "")
    path = " ".join(first[1:-1]) if len(first) >= 3 else ""
    h = {}
    for ln in lines[1:]:
        i = ln.find(":")
        if i > 0:
            h[ln[:i].strip().lower()] = ln[i + 1:].strip()
    return {"path": path, "headers": h, "bad": bad}


def unquote(s):
    out = bytearray()
    b = s.encode()
    i = 0
    while i < len(b):
        if b[i] == 37 and i + 2 < len(b):
            try:
                out.append(int(b[i + 1:i + 3].decode(), 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(b[i])
        i += 1
    try:
        return out.decode()
    except Exception:
        return None


# ---------------------------------------------------------------- the release server
_DOCS = {}


class Server:
    """GitHub as this case's release is published: the documents (bytes or None: 404) and
    the raw files; hostile transforms (http category) applied by respond()."""

    def __init__(self, rng, scheme):
        self.scheme = scheme
        d = _DOCS.get(scheme)
        if d is None:  # the documents as published, made once
            d = _DOCS[scheme] = (dump(manifest_doc()).encode(), dump(tree_doc()).encode(), dump(ref_doc()).encode(),
                                 dump(release_doc(scheme)).encode())
        self.manifest, self.tree, self.ref, self.release = d
        self.tag_ref = self.ref
        self.latest = None  # the Location of releases/latest (None: .../releases/tag/v2.0.0)
        self.tags = None  # git/tags/<sha> answers (annotated tags), None: 404
        self.patches = dict(PATCHES)
        self.cdn = rng.chance(2)  # manifest downloads redirect to another host, as github.com does
        self.chunked = rng.chance(5)  # every response chunked
        self.piece = rng.choice((0, 0, 0, 1, 7, 100))
        self.ranges = rng.chance(2)  # 206 to a Range request
        self.gzip = rng.chance(3)  # gzip raw files when asked
        self.keepalive = rng.below(3)  # else "Connection: close" and the server closes
        self.files = SERVED
        self.sig = None  # manifest.json.sig
        self.hostile = None  # (first request number, sticky, transform) of the http category
        self.hostile_key = None
        self.conn_fail = None  # (request number, OSError) at connect
        self.evil = b"<html>evil</html>"

    def config_release(self):
        # what the config category serves (TARGET_ALL, WRONG)
        d = _DOCS.get("config")
        if d is None:
            d = _DOCS["config"] = (dump(manifest_doc(True, TARGET_ALL)).encode(), dump(tree_doc(TARGET_ALL)).encode())
        self.manifest, self.tree = d
        self.files = WRONG

    def connect_error(self, n, host):
        if self.conn_fail and (n == self.conn_fail[0] or self.conn_fail[2] and n >= self.conn_fail[0]):
            return self.conn_fail[1]
        return None

    def respond(self, n, req):
        r = self.route(req)
        if self.chunked and r.raw is None and r.status == 200:
            r.chunked = [1 + (n * 37) % 300]
        if not self.keepalive:
            r.headers.append((b"Connection", b"close"))
            r.end = "close"
        if self.piece:
            r.piece = self.piece
        h = self.hostile
        if h:
            key = (req["host"], req["path"])
            if n == h[0]:
                self.hostile_key = key
            if n == h[0] or h[1] and key == self.hostile_key:
                r = h[2](r, req)
        return r

    def route(self, req):
        host, path, hd = req["host"], req["path"], req["headers"]
        sch = "https" if req["tls"] else "http"
        web = "/%s/%s/releases/" % (OWNER, REPO)
        api = "/repos/%s/%s/" % (OWNER, REPO)
        if host == "ota.test":
            if path == web + "latest":
                if self.latest is not None:
                    return redirect(self.latest)
                return redirect(sch + "://ota.test" + web + "tag/" + TAG)
            if path == web + "download/%s/manifest.json" % TAG:
                if self.manifest is None:
                    return not_found()
                return redirect(sch + "://dl.ota.test/m/manifest.json") if self.cdn else json_resp(self.manifest)
            if path == web + "download/%s/manifest.json.sig" % TAG:
                return not_found() if self.sig is None else Resp(200, self.sig)
            return not_found()
        if host == "dl.ota.test":
            if path == "/m/manifest.json" and self.manifest is not None:
                return json_resp(self.manifest)
            if path == "/m/manifest.json.sig" and self.sig is not None:
                return Resp(200, self.sig)
            if path.startswith("/hop/"):  # an endless chain of redirects
                try:
                    k = int(path[5:])
                except ValueError:
                    k = 0
                return redirect("/hop/%d" % (k + 1), 301 + k % 2 * 6)
            return not_found()
        if host == "evil.test":
            return Resp(200, self.evil)
        if host == "api.ota.test":
            if path == api + "releases/latest" or path == api + "releases/tags/" + TAG:
                return json_resp(self.release)
            if path == api + "releases/assets/7":
                if self.manifest is None:
                    return not_found()
                if hd.get("accept") == "application/octet-stream":
                    return redirect(sch + "://dl.ota.test/m/manifest.json")
                return json_resp(b'{"id": 7, "name": "manifest.json"}')
            if path == api + "releases/assets/8":
                if self.sig is None:
                    return not_found()
                return redirect(sch + "://dl.ota.test/m/manifest.json.sig")
            if path == api + "git/ref/heads/main":
                return json_resp(self.ref)
            if path == api + "git/ref/tags/" + TAG:
                return json_resp(self.tag_ref)
            if path.startswith(api + "git/tags/") and self.tags is not None:
                return json_resp(self.tags)
            if path == api + "git/trees/%s?recursive=1" % C2:
                return json_resp(self.tree)
            return not_found()
        if host == "raw.ota.test":
            pre = "/%s/%s/" % (OWNER, REPO)
            if not path.startswith(pre):
                return not_found()
            rest = path[len(pre):]
            i = rest.find("/")
            ref, p = rest[:i], unquote(rest[i + 1:])
            if i < 0 or ref not in (C2, TAG) or p is None:
                return not_found()
            if p.startswith(".deltas/"):
                d = self.patches.get(p[8:])
                return not_found() if d is None else Resp(200, d, [(b"Content-Type", b"application/octet-stream")])
            d = self.files.get(p)
            if d is None:
                return not_found()
            rg = hd.get("range", "")
            if rg.startswith("bytes=") and rg.endswith("-") and self.ranges:
                try:
                    k = int(rg[6:-1])
                except ValueError:
                    k = 0
                return Resp(206, d[k:], [(b"Content-Range", b"bytes %d-%d/%d" % (k, len(d) - 1, len(d)))],
                            reason=b"Partial Content")
            if "gzip" in hd.get("accept-encoding", "") and self.gzip:
                return Resp(200, stored_gzip(d), [(b"Content-Encoding", b"gzip")])
            return Resp(200, d)
        return not_found()


# ---------------------------------------------------------------- cases
class Case:
    def __init__(self, i, cat, rng):
        self.i = i
        self.cat = cat
        self.scheme = "http" if rng.chance(4) else "https"
        self.tls_refused = 0  # TLS handshakes refused (a man in the middle)
        self.tag = ""
        self.detail = ""
        self.cfg = None  # dict for check_config
        self.cfg_file = None  # (name, bytes) for load_config
        self.srv = Server(rng, self.scheme)
        self.noop_ok = False  # a valid config may end as a no-op (version.json written, nothing else)

    def describe(self):
        return "%s %s %s" % (self.cat, self.tag, self.detail)


def bulk(fmt, n):
    """n array elements fmt % j as one piece of JSON text (a big document without n objects)"""
    return Raw(", ".join([fmt % j for j in range(n)]))


def pick_entry(rng, pairs_list, avoid_guards=True):
    """index of an entry of a files/tree list that is not a guard"""
    idx = [k for k in range(len(pairs_list)) if not (avoid_guards and type(pairs_list[k]) is O
                                                     and pairs_list[k].get("path") in GUARDS)]
    return rng.choice(idx)


def short(v):
    s = repr(v)
    return s if len(s) <= 60 else s[:40] + "...(%d)" % len(s)


# ---- config
SCHEMA_KEYS = ("owner", "repo", "ssid", "password", "channel", "branch", "tag", "token", "allow", "ignore", "chunk",
               "stage_dir", "backup_dir", "connect_timeout_sec", "http_timeout_sec", "retries", "backoff_sec",
               "max_backoff_sec", "force", "reset_mode", "debug", "api_base", "raw_base", "ca_file",
               "enable_delta_updates", "self_update", "transports", "trial_boots", "confirm")
FEATURE_KEYS = ("watchdog_sec", "watchdog_timeout_ms", "led_pin", "status_led_pin", "min_battery_v",
                "min_battery_percent", "battery_adc_pin", "battery_divider", "battery_v_max", "windows",
                "canary_percent", "rollout_percent", "min_interval_sec", "health_hook", "device_id",
                "update_scheduling", "app_main", "cellular_apn", "lora_region", "manifest_pubkeys",
                "require_signature", "allow_downgrade")
KEY_POOLS = {
    "stage_dir": [".", "..", "/", "/tmp/ota_hostile_outside", "../outside", "lib", "data", "app.py", "version.json",
                  "ota_config.json", ".deltas", "a//b", "lib/../..", "\0", "x" * 300, "\u00e9", ".ota_backup",
                  "sub/stage", "./.ota_stage", ".ota_stage/"],
    "api_base": ["http://", "https://", "ftp://api.ota.test", "api.ota.test", "http://api.ota.test:abc",
                 "http://api.ota.test:99999", "http://[::1]:80", "http://a:1:2", "http://user:pw@api.ota.test",
                 "https://api.ota.test/", "http://api.ota.test/../..", "http://evil.test", "http://api.ota.test?x=",
                 "http://api.ota.test\r\nX: y", "HTTP://api.ota.test", "http://api.ota.test:-1", "https:/x"],
    "transports": [[], ["delta"], ["hw"], ["native"], ["time"], ["schedule"], ["flatconfig"], ["app"], ["x/y"],
                   ["\0"], ["../x"], ["cellular"], [""], "wifi", [1], ["wifi", "wifi"], ["sign"], ["ed25519"]],
    "chunk": [0, 1, 255, 256, 257, 65536, 1 << 20, 2 ** 40, 10 ** 30, 2 ** 63, Raw("256.0"), Raw("1e3")],
    "ca_file": ["missing.pem", ".", "lib", "app.py", "version.json", "ota_config.json", "\0", "x" * 300],
    "allow": [[""], ["/"], ["."], [".."], ["*"], ["lib/"], ["/lib"], ["app.py/"], [LONG], ["\0"], "lib"],
    "ignore": [[""], ["/"], ["."], ["*"], ["guard_a.py", "zz_guard.bin"], ["lib", "data", "app.py"], [LONG]],
    "windows": [["25:00-26:00"], ["aa:bb-cc:dd"], "00:00-00:00", [""], ["00:00-23:59"], ["0:00-1:00"],
                ["12:00-12:00"], ["23:59-00:00"], ["00:00-24:00"], [LONG], ["12:00-"], ["-"]],
    "update_scheduling": [O(), [], O(("min_update_interval_sec", -1)), O(("update_window_start_hour", 25),
                          ("update_window_end_hour", 2)), O(("power_source", "nuclear")),
                          O(("rollout_percent", 200)), O(("max_crashes_before_delay", 0)),
                          O(("min_battery_percent", 150)), O(("update_window_start_hour", 3)),
                          O(("x", 1)), O(("rollout_percent", 0)), O(("power_source", "solar"))],
    "health_hook": ["os", "ota", "nonexistent_mod_x", "", "..", "a.b.c", "\0", "json"],
    "watchdog_sec": [0.5, -1, 10 ** 30, Raw("1e400"), Raw("0.001"), 1, 9, 2 ** 63],
    "manifest_pubkeys": [["zz"], ["00" * 32], ["00" * 31], [""], "00" * 32, [1], [LONG]],
}
for _k in ("backup_dir",):
    KEY_POOLS[_k] = KEY_POOLS["stage_dir"]
KEY_POOLS["raw_base"] = KEY_POOLS["api_base"]
KEY_POOLS["ignore"] = KEY_POOLS["ignore"] + KEY_POOLS["allow"]


def gen_config(case, rng):
    c = base_cfg(case, rng, rng.choice(("developer", "stable")))
    c.pop("trial_boots")
    case.srv.config_release()
    case.noop_ok = True
    kind = rng.below(20)
    ext = "json"
    pairs = O(*sorted(c.items()))
    if kind < 11:  # one or more keys with hostile values
        n = 1 if rng.below(4) else 2 + rng.below(2)
        tags = []
        for _ in range(n):
            k = rng.choice(SCHEMA_KEYS) if rng.below(4) else rng.choice(FEATURE_KEYS)
            pool = KEY_POOLS.get(k)
            v = rng.choice(pool) if pool and rng.below(3) else rng.choice(HOSTILE_VALUES)
            pairs.set(k, v)
            tags.append(k)
            case.detail += "%s=%s " % (k, short(v))
        if n == 2 and rng.chance(3) and "stage_dir" in tags:
            pairs.set("backup_dir", pairs.get("stage_dir"))
        case.tag = "key:" + ",".join(tags)
        data = dump(pairs).encode()
    elif kind < 14:  # JSON text mutations
        op, data = mutate_text(rng, dump(pairs).encode())
        case.tag = "text:" + op
    elif kind < 15:  # not a mapping
        data = rng.choice((b"[]", b"null", b"1", b'"owner"', b"[{}]", b"true", b"", b"\xef\xbb\xbf{}",
                           b"{" * 100 + b"}" * 100, b"[" * 5000 + b"]" * 5000, dump([pairs]).encode()))
        case.tag = "top"
        case.detail = short(data)
    elif kind < 18:  # flat YAML/TOML
        toml = rng.chance(2)
        ext = "toml" if toml else rng.choice(("yaml", "yml"))
        lines = []
        for k, v in pairs.pairs:
            val = dump(v)
            if not toml and type(v) is str and rng.chance(3):
                val = v  # YAML bare string
            lines.append("%s %s %s" % (k, "=" if toml else ":", val))
        if rng.below(3):
            k = rng.choice(SCHEMA_KEYS + FEATURE_KEYS)
            v = rng.choice(HOSTILE_VALUES)
            lines.insert(rng.below(len(lines) + 1), "%s %s %s" % (k, "=" if toml else ":", dump(v)))
            case.detail = "%s=%s " % (k, short(v))
        extra = rng.choice(("", "- orphan", "[section]", "key", "= x", ": x", "allow:\n  - lib\n  - 3",
                            "allow = [\"a\",", "ignore: [a, b", "#", "---", "k: 'unterminated", 'k = "x" y',
                            "owner: other\nowner: again", "\t: tab", "\0: nul", "a: b: c", "[x]\ny = 1"))
        lines.insert(rng.below(len(lines) + 1), extra)
        data = "\n".join(lines).encode()
        if rng.chance(3):
            op, data = mutate_text(rng, data)
            case.detail += op
        case.tag = "flat:" + ext
    elif kind < 19:  # file names
        ext = rng.choice(("txt", "", "JSON", "json.bak", "Yaml", "TOML", "json ", "jsonx"))
        data = dump(pairs).encode()
        case.tag = "ext"
        case.detail = repr(ext)
    else:  # unknown keys and huge values
        k = rng.choice(("", "\0", "_x", "\u00e9" * 100, "YOUR_KEY", "owner ", "OWNER", "x" * 5000, "__proto__"))
        pairs.set(k, rng.choice(HOSTILE_VALUES))
        if rng.chance(2):
            pairs.set(rng.choice(SCHEMA_KEYS), "y" * (1000 + rng.below(50000)))
        data = dump(pairs).encode()
        case.tag = "unknown"
        case.detail = short(k)
    case.cfg_file = ("ota_config" + ("." + ext if ext else ""), data)


# ---- manifest
def gen_manifest(case, rng):
    token = rng.chance(3)
    c = base_cfg(case, rng, "stable")
    if token:
        c["token"] = TOKEN
    elif "token" in c:
        del c["token"]
    case.cfg = c
    sha1 = rng.below(6) > 0
    m = manifest_doc(sha1)
    files = m.get("files")
    kind = rng.below(23)
    tag = None
    if kind < 4:  # a hostile path, in place of one entry's or as a new entry
        p = rng.choice(rng.choice((UNSAFE_PATHS, PROTECTED_PATHS, ODD_PATHS)))
        e = manifest_entry(p, rng.choice(list(TARGET.values())), sha1)
        if rng.chance(2):
            files[pick_entry(rng, files)] = e
        else:
            files.insert(rng.below(len(files) + 1), e)
        tag, case.detail = "path", short(p)
    elif kind < 6:
        k = pick_entry(rng, files)
        v = rng.choice(HOSTILE_SIZES)
        if rng.chance(5):
            files[k] = files[k].copy().drop("size")
            v = "missing"
        else:
            files[k] = files[k].copy().set("size", v)
        tag, case.detail = "size", "%s %s" % (files[k].get("path"), short(v))
    elif kind < 9:
        k = pick_entry(rng, files)
        field = rng.choice(("sha1", "sha1", "sha256", "sha"))
        v = rng.choice(HOSTILE_SHAS)
        e = files[k].copy()
        if rng.chance(5):
            e.drop(field)
            if field != "sha":
                e.drop("sha1" if field == "sha256" else "sha256")
            v = "missing"
        else:
            e.set(field, v)
        files[k] = e
        tag, case.detail = "sha", "%s %s=%s" % (e.get("path"), field, short(v))
    elif kind < 11:  # entries of the wrong type, duplicates, unknown fields
        v = rng.choice((1, "app.py", [], None, ["app.py", 1], O(), O(("path", "app.py")), True, Raw("1e400"),
                        O(("path", ["app.py"]), ("size", 1), ("sha1", "0" * 40)),
                        O(("path", O()), ("size", 1), ("sha1", "0" * 40)),
                        manifest_entry("app.py", b"other", sha1), manifest_entry("lib/util.py", TARGET["lib/util.py"])
                        .set("extra", [1, O(("deep", [[[]]]))])))
        files.insert(rng.below(len(files) + 1), v)
        tag, case.detail = "entry", short(v)
    elif kind < 13:  # files / the document of another type
        v = rng.choice((O(), "app.py", None, 1, O(("app.py", 1)), [[]], Raw("1e400"), True))
        if rng.chance(4):
            m = rng.choice(([], "manifest", 1, Raw("null"), [m], Raw("[" * 50 + "]" * 50)))
            case.detail = short(m)
        else:
            m.set("files", v) if v is not None or rng.chance(2) else m.drop("files")
            case.detail = "files=" + short(v)
        tag = "files"
    elif kind < 16:  # deletes: protected, unsafe, wrong types
        v = rng.choice(PROTECTED_PATHS + UNSAFE_PATHS + ["lib", "data", "sub", "lib/old.py", "app.py", 1, None, [],
                                                         O(), True, ["x"]])
        if rng.chance(4):
            d = rng.choice(("lib/old.py", "ota.py", "libota", O(("ota.py", 1)), 1, True, "", [["a"]], O()))
        else:
            d = ["lib/old.py", v] if rng.chance(2) else [v]
        m.set("deletes", d)
        tag, case.detail = "deletes", short(d)
    elif kind < 18:  # hooks, version, format
        field = rng.choice(("post_update", "rollback", "version", "format"))
        v = rng.choice(HOSTILE_HOOKS + [LONG, 2, -1, Raw("1e400")])
        m.set(field, v)
        tag, case.detail = "field", "%s=%s" % (field, short(v))
    elif kind < 20:  # text mutations of the whole document
        op, data = mutate_text(rng, dump(m).encode())
        case.srv.manifest = data
        tag = "text:" + op
        m = None
    elif kind < 21:  # garbage documents
        data = rng.choice(GARBAGE_JSON).encode()
        case.srv.manifest = data
        tag, case.detail = "garbage", short(data)
        m = None
    elif kind < 22 and token:  # the release document of the API
        rel = release_doc(case.scheme)
        sub = rng.below(5)
        if sub == 0:
            v = rng.choice(HOSTILE_VALUES + ["v1.0.0", "../x", "v2.0.0/../..", "%2e%2e"])
            rel.set("tag_name", v)
            case.detail = "tag_name=" + short(v)
        elif sub == 1:
            v = rng.choice((None, 1, "x", O(), [1], [O(("name", "manifest.json"))],
                            [O(("name", "manifest.json"), ("url", v)) for v in ("", 1, "ftp://x", "https://evil.test/m")]))
            rel.set("assets", v)
            case.detail = "assets=" + short(v)
        elif sub == 2:
            rel = rng.choice(([], 1, Raw("null"), "release", O(), O(("tag_name", TAG))))
            case.detail = short(rel)
        elif sub == 3:
            op, data = mutate_text(rng, dump(rel).encode())
            case.detail = op
            case.srv.release = data
            rel = None
        else:
            rel.set("name", rng.choice(HOSTILE_VALUES))
            case.detail = "name"
        if rel is not None:
            case.srv.release = dump(rel).encode()
        tag = "release"
    elif kind < 22:  # the Location of releases/latest (no token): the tag
        v = rng.choice(["https://ota.test/octo/app/releases/tag/", "https://ota.test/octo/app/releases/tag/v1.0.0/..",
                        "https://ota.test/octo/app/releases/tag/../../x", "/octo/app/releases/tag/v2.0.0",
                        "https://ota.test/octo/app/releases/tag/%00", "https://ota.test/octo/app/releases/tag/" + LONG,
                        "https://ota.test/releases/tag/\u00e9", "https://evil.test/releases/tag/v2.0.0", "",
                        "https://ota.test/octo/app/releases/tag/a/b", "https://ota.test/octo/app/releases/tag/\r\nX: y",
                        "https://ota.test/octo/app/releases", "releases/tag/v2.0.0", "https://ota.test/octo/app/releases/tag/ "])
        case.srv.latest = v
        tag, case.detail = "latest", short(v)
    else:  # huge: many entries, long strings, deep nesting
        sub = rng.below(4)
        if sub == 0:
            n = 200 + rng.below(1500)
            files.append(bulk('{"path": "bulk/f%d.py", "size": 1, "sha1": "' + blob_sha(b"x") + '", "sha256": "'
                              + sha256_hex(b"x") + '"}', n))
            case.detail = "%d entries" % n
        elif sub == 1:
            files.insert(0, manifest_entry("a" * (1000 + rng.below(60000)), b"x", sha1))
            case.detail = "long path"
        elif sub == 2:
            files.insert(0, O(("path", "deep.py"), ("size", 1), ("sha1", "0" * 40),
                              ("x", Raw("[" * 3000 + "]" * 3000))))
            case.detail = "deep entry"
        else:
            m.set("notes", "n" * (1000 + rng.below(100000)))
            case.detail = "long field"
        tag = "huge"
    if m is not None:
        case.srv.manifest = dump(m).encode()
    case.tag = tag + (":token" if token else "")


# ---- tree and ref
def gen_tree(case, rng):
    stable = rng.chance(4)  # a release without a manifest: its tree through the API
    c = base_cfg(case, rng, "stable" if stable else "developer")
    case.cfg = c
    if stable:
        case.srv.manifest = None
    t = tree_doc()
    entries = t.get("tree")
    kind = rng.below(20)
    tag = None
    if kind < 3:
        p = rng.choice(rng.choice((UNSAFE_PATHS, PROTECTED_PATHS, ODD_PATHS)))
        e = tree_entry(p, rng.choice(list(TARGET.values())))
        if rng.chance(3):
            e.set("mode", rng.choice(("120000", "160000", "040000", 120000, "100755")))
            if e.get("mode") == "040000":
                e.set("type", "tree")
        entries.insert(rng.below(len(entries) + 1), e)
        tag, case.detail = "path", "%s mode %s" % (short(p), short(e.get("mode")))
    elif kind < 6:  # one field of an entry
        k = pick_entry(rng, entries)
        field = rng.choice(("path", "type", "mode", "sha", "size", "size", "sha"))
        pool = {"type": ["tree", "commit", "Blob", "", None, 1, "blob "], "mode": ["120000", 120000, None, "", "100644 "],
                "sha": HOSTILE_SHAS, "size": HOSTILE_SIZES, "path": [1, None, [], O(), True, ""]}[field]
        v = rng.choice(pool)
        e = entries[k].copy()
        if rng.chance(5):
            e.drop(field)
            v = "missing"
        else:
            e.set(field, v)
        entries[k] = e
        tag, case.detail = "field", "%s %s=%s" % (e.get("path"), field, short(v))
    elif kind < 8:  # entries of the wrong type
        v = rng.choice((1, "app.py", [], None, O(), True, ["app.py", "blob"], Raw("1e400"), O(("type", "blob"))))
        entries.insert(rng.below(len(entries) + 1), v)
        tag, case.detail = "entry", short(v)
    elif kind < 10:  # the document: truncated flag, tree of another type
        sub = rng.below(3)
        if sub == 0:
            v = rng.choice((True, 1, "yes", "false", O(), [], None))
            t.set("truncated", v)
            case.detail = "truncated=" + short(v)
        elif sub == 1:
            v = rng.choice((O(), "app.py", None, 1, [[]], True))
            t.set("tree", v) if v is not None else t.drop("tree")
            case.detail = "tree=" + short(v)
        else:
            t = rng.choice(([], "tree", 1, Raw("null"), [t]))
            case.detail = short(t)
        tag = "doc"
    elif kind < 13:
        op, data = mutate_text(rng, dump(t).encode())
        case.srv.tree = data
        tag, t = "text:" + op, None
    elif kind < 14:
        data = rng.choice(GARBAGE_JSON).encode()
        case.srv.tree = data
        tag, case.detail, t = "garbage", short(data), None
    elif kind < 17:  # the ref (developer) or the tag ref (stable)
        sub = rng.below(6)
        if sub == 0:
            d = ref_doc(rng.choice([s for s in HOSTILE_SHAS if s is not None] + [C2.upper(), C2 + "\n", LONG]))
        elif sub == 1:
            d = O(("object", rng.choice((None, 1, "x", [], O(), O(("type", "commit"))))))
        elif sub == 2:
            d = rng.choice(([], None, 1, "ref", O(("ref", "refs/heads/main"))))
        elif sub == 3:  # an annotated tag that points to itself (an endless chain), or to garbage
            d = ref_doc(rng.choice((C2, "0" * 40, LONG, None)), rng.choice(("tag", "Tag", "tree", "blob", None, 1)))
            if rng.chance(2):
                d = ref_doc(blob_sha(b"tag"), "tag")
                case.srv.tags = dump(O(("sha", blob_sha(b"tag")), ("object", O(
                    ("sha", rng.choice((blob_sha(b"tag"), C2, "", None, LONG))),
                    ("type", rng.choice(("tag", "tag", "commit", None))))))).encode()
        elif sub == 4:
            op, d = mutate_text(rng, dump(ref_doc()).encode())
        else:
            d = rng.choice(GARBAGE_JSON).encode()
        d = d if type(d) is bytes else dump(d).encode()
        if stable:
            case.srv.tag_ref = d
        else:
            case.srv.ref = d
        tag, case.detail = "ref", short(d)
    else:  # huge trees
        sub = rng.below(3)
        if sub == 0:
            n = 300 + rng.below(2000)
            entries.append(bulk('{"path": "bulk/%d/f.py", "mode": "100644", "type": "blob", "sha": "'
                                + blob_sha(b"x") + '", "size": 1}', n))
            case.detail = "%d entries" % n
        elif sub == 1:
            entries.insert(0, tree_entry("p" * (1000 + rng.below(60000)), b"x"))
            case.detail = "long path"
        else:
            entries.append(bulk('{"path": "docs/%d.md", "mode": "120000", "type": "blob", "sha": "' + "0" * 40
                                + '", "size": 1}', 500 + rng.below(1500)))
            case.detail = "symlinks"
        tag = "huge"
    if t is not None:
        case.srv.tree = dump(t).encode()
    case.tag = tag + (":stable" if stable else "")


# ---- delta patches (docs/delta-format.md: .deltas/<base[:10]>-<target[:10]>, no index on the device)
def gen_delta(case, rng):
    c = base_cfg(case, rng, "developer")
    c["enable_delta_updates"] = True
    case.cfg = c
    kind = rng.below(16)
    version = 1 if rng.chance(3) else 2
    if version == 1:
        case.srv.patches = dict(PATCHES1)
    names = sorted(PATCHES)
    name = rng.choice(names)
    d = case.srv.patches[name]
    tag = None
    if kind < 3:  # the header byte
        v = rng.choice((0x00, 0x10, 0x18, 0x1F, 0x20, 0x28, 0x2F, 0x30, 0xF2, 0x01, 0x12, 0x17, 0x11, 0x21, 0x27,
                        0xFF))
        d = bytes([v]) + d[1:]
        tag, case.detail = "header", "0x%02x %s" % (v, name[:6])
    elif kind < 7:  # the deflate stream / the bsdiff patch in it
        sub = rng.below(5)
        if sub == 0:
            op, body = mutate_text(rng, d[1:])
            d = d[:1] + body
        elif sub == 1 and version == 1:  # a control field of the first bsdiff entry, as a fresh stream
            k = rng.below(3)
            raw = bsdiff(INSTALLED_BY_PATCH[name], TARGET_BY_PATCH[name])
            v = rng.choice((2 ** 64 - 1, 2 ** 63, 2 ** 63 + 1, 10 ** 6, 0, 1, 2 ** 63 + 10 ** 6))
            raw = raw[:8 * k] + le64(v) + raw[8 * k + 8:]
            d = d[:1] + fixed_deflate(raw)
            op = "control%d" % k
        elif sub == 1:  # hostile operations, as a fresh stream
            old, new = INSTALLED_BY_PATCH[name], TARGET_BY_PATCH[name]
            raw = ops(old, new)
            k = rng.below(8)
            if k == 0:  # a copy before the old file's start, or past its end
                raw = operation(b"", 10, rng.choice((-1, -(2 ** 40), len(old), 2 ** 40))) + raw
            elif k == 1:  # an operation of nothing
                raw = operation(b"", 0, 0) + raw
            elif k == 2:  # more than the target
                raw = raw + operation(b"x", 1, 0)
            elif k == 3:  # a varint that never ends, or of 70 bits
                raw = rng.choice((b"\xff" * 12, b"\x80" * 9 + b"\x01", b"\xff" * 4)) + raw
            elif k == 4:  # a literal longer than the stream
                raw = leb(len(new)) + leb(0) + leb(0) + new[:10]
            elif k == 5:  # the right length, copied from the wrong place
                raw = operation(b"", len(new), 1)
            elif k == 6:  # a huge copy length
                raw = operation(b"", 2 ** 35 - 1, 0)
            else:  # data after the end
                raw = raw + b"\x00"
            d = d[:1] + fixed_deflate(raw)
            op = "ops%d" % k
        elif sub == 2:  # a valid stream of a patch whose output is one byte off, or too long/short
            new = TARGET_BY_PATCH[name]
            other = rng.choice((new[:-1] + bytes([new[-1] ^ 1]), new + b"x", new[:-1], b""))
            d = d[:1] + fixed_deflate((bsdiff if version == 1 else ops)(INSTALLED_BY_PATCH[name], other))
            op = "output"
        elif sub == 3:  # a stored block that lies about its length
            n = rng.choice((0, 1, 65535, len(d)))
            d = d[:1] + bytes([1, n & 255, n >> 8, ~n & 255, (~n >> 8) & 255]) + d[1:]
            op = "stored-len"
        else:
            d = d[:1] + rng.choice((b"", b"\x03\x00", stored_raw(d), rng.bytes(rng.below(300)), d[1:] + d[1:],
                                    d[1:6], b"\xff" * 40))
            op = "other"
        tag, case.detail = "stream:" + op, name[:6]
    elif kind < 9:  # the patch of another file, an empty file, a file as long as the target
        sub = rng.below(3)
        if sub == 0:
            d = case.srv.patches[[x for x in names if x != name][0]]
        elif sub == 1:
            d = b""
        else:
            d = d + b"\x00" * len(TARGET_BY_PATCH[name])
        tag, case.detail = "file:%d" % sub, name[:6]
    elif kind < 11:  # Content-Length of the patch response
        v = rng.choice((b"0", b"1", b"-1", b"99999", b"%d" % len(TARGET_BY_PATCH[name]), b"x", b""))

        def length(r, req, v=v):
            if ".deltas/" in req["path"] and r.status == 200:
                r.length = False
                r.headers.append((b"Content-Length", v))
            return r

        case.srv.respond = wrap_respond(case.srv, length)
        tag, case.detail = "length", short(v)
    elif kind < 15:  # HTTP trouble on the patch requests
        http = rng.choice(HTTP_KINDS)
        fn = make_http_transform(rng, http)

        def only(r, req, fn=fn):
            return fn(r, req) if ".deltas/" in req["path"] else r

        case.srv.respond = wrap_respond(case.srv, only)
        tag, case.detail = "http", http
    else:  # no patches at all (404), or none for one file
        if rng.chance(2):
            case.srv.patches = {}
            case.detail = "none"
        else:
            del case.srv.patches[name]
            case.detail = name[:6]
        tag = "missing"
    if name in case.srv.patches:
        case.srv.patches[name] = d
    case.tag = "%s:v%d" % (tag, version)


def wrap_respond(srv, fn):
    plain = srv.respond

    def respond(n, req):
        return fn(plain(n, req), req)

    return respond


# ---- HTTP responses
HTTP_KINDS = ("status", "header", "length", "chunked", "cut", "redirect", "code", "gzip", "conn", "piece", "tls")
BAD_STATUS = [b"", b"HTTP/1.1", b"HTTP/1.1 ", b"HTTP/1.1 2OO OK", b"HTTP/1.1 -1 X", b"HTTP/1.1 999 Weird",
              b"HTTP/1.1 099 X", b"HTTP/1.0 200 OK", b"ICY 200 OK", b"HTTP/1.1 200", b"\x00\xff\xfe\xfd",
              b"HTTP/1.1 20", b"HTTP/1.1 +20 X", b"HTTP/1.1  200 OK", b"x" * 5000, b"HTTP/1.1 1e2 X",
              b"HTTP/1.1 0x1 X", b"HTTP/2 200", b"HTTP/1.1 \xff\xfe\xfd", b"HTTP/1.1 302 Found", b"HTTP/1.1 206 X",
              b"HTTP/1.1 2\x0000 OK", b"HTTP/1.1 _200"]
BAD_HEADERS = [b"no colon here", b": empty name", b"\xff\xfe: \xff", b"Content-Length: abc", b"Content-Length: -5",
               b"Content-Length: 99999999999999999999999", b"Content-Length: 1e3", b"Content-Length: 0x10",
               b"Content-Length: ", b"content-length", b"X-Pad: " + b"a" * 20000, b"Location: http://evil.test/x",
               b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Content-Encoding: gzip",
               b"Retry-After: abc", b" folded continuation", b"\x00: \x00", b"X-RateLimit-Remaining: 0",
               b"Content-Length: 0", b"Content-Length: 1", b"Content-Length:  12 ", b"Content-Length: +3",
               b"CONTENT-LENGTH: 2", b"Transfer-Encoding: identity, chunked", b"Content-Encoding: br",
               b"X-RateLimit-Reset: \xff", b"Location:", b"Content-Length: \xff"]
ODD_RETRY = [b"0", b"1", b"2", b"-1", b"3600", b"abc", b"1.5", b"Wed, 21 Oct 2015 07:28:00 GMT", b"", b"1e3",
             b"99999999999999999999", b" 1", b"\xff"]
ODD_RESET = [b"0", b"%d" % FAKE_NOW, b"%d" % (FAKE_NOW + 1), b"%d" % (FAKE_NOW + 3600), b"%d" % (FAKE_NOW - 100),
             b"abc", b"", b"1.5", b"99999999999999999999", b"-1"]
EVIL_LOCATIONS = ["http://evil.test/x", "https://evil.test/x", "https://evil.test/octo/app/v2.0.0/app.py",
                  "https://evil.test/repos/octo/app/git/trees/" + C2 + "?recursive=1", "http://evil.test/octo/app/releases/download/v2.0.0/manifest.json",
                  "", " ", "//evil.test/x", "http://evil.test:99999/", "http://evil.test:abc/", "http://a:1:2/",
                  "ftp://evil.test/x", "javascript:alert(1)", "http://[::1]/", "http://user:pw@evil.test/",
                  "relative/no/slash", "/", "http://", "\xff", "http://evil.test/\r\nX: y", "HTTP://EVIL.TEST/",
                  "http://dl.ota.test/hop/0", "?x", "#frag", "http://unknown.host/x"]


def make_http_transform(rng, kind):
    """A function (Resp, request) -> hostile Resp of this kind (its choices drawn now)."""
    if kind == "status":
        line = rng.choice(BAD_STATUS)
        eol = rng.choice((b"\r\n", b"\r\n", b"\n", b""))

        def f(r, req):
            raw = r.bytes()
            j = raw.find(b"\n")
            r.raw = line + eol + raw[j + 1:]
            return r
    elif kind == "header":
        hs = [rng.choice(BAD_HEADERS) for _ in range(1 + rng.below(3))]
        many = rng.chance(8)

        def f(r, req):
            raw = r.bytes()
            j = raw.find(b"\r\n") + 2
            extra = b"".join(h + b"\r\n" for h in hs)
            if many:
                extra += b"X-A: b\r\n" * 300
            r.raw = raw[:j] + extra + raw[j:]
            return r
    elif kind == "length":
        d = rng.choice((1, 2, 10, 1000, 10 ** 6, -1, -5, 0))
        mode = rng.choice(("close", "timeout", "reset"))
        none = rng.chance(5)

        def f(r, req):
            if none:
                r.length = False  # read until the connection closes
            else:
                r.length = False
                r.headers.append((b"Content-Length", b"%d" % max(-5 if d < 0 else 0, len(r.body) + d)))
            r.chunked = None
            r.end = mode
            return r
    elif kind == "chunked":
        sizes = [1 + rng.below(200) for _ in range(3)]
        bad = rng.below(12)
        pos = rng.below(1000)

        def f(r, req):
            body = chunk_body(r.body, sizes)
            i = min(pos, max(0, len(body) - 1))
            if bad == 0:
                body = b"zz\r\n" + body
            elif bad == 1:
                body = b"-1\r\n" + body
            elif bad == 2:
                body = b"ffffffffffffffff\r\n" + body
            elif bad == 3:
                body = body[:-5]  # no last chunk
            elif bad == 4:
                body = body.replace(b"\r\n", b"", 2)  # CRLF missing after a chunk
            elif bad == 5:
                body = body[:i]  # cut inside
            elif bad == 6:
                body = b"%x;ext=1\r\n" % len(r.body) + r.body + b"\r\n0\r\nTrailer: \xff\r\nX\r\n\r\n"
            elif bad == 7:
                body = b"%x\r\n" % (len(r.body) + 50) + r.body + b"\r\n0\r\n\r\n"  # size past the data
            elif bad == 8:
                body = b"0x10\r\n" + body
            elif bad == 9:
                body = b"\r\n" + body  # empty size line
            elif bad == 10:
                body = b"  %X  \r\n" % len(r.body) + r.body + b"\r\n0\r\n\r\n"
            else:
                body = body + b"garbage after the end"
            r.raw = (b"HTTP/1.1 %d " % r.status + r.reason + b"\r\nTransfer-Encoding: chunked\r\n"
                     + b"".join(k + b": " + v + b"\r\n" for k, v in r.headers) + b"\r\n" + body)
            return r
    elif kind == "cut":
        frac = rng.below(100)
        mode = rng.choice(("close", "timeout", "reset"))

        def f(r, req):
            raw = r.bytes()
            r.raw = raw[:len(raw) * frac // 100]
            r.end = mode
            return r
    elif kind == "redirect":
        sub = rng.below(5)
        status = rng.choice((301, 302, 303, 307, 308, 300, 304, 305))
        loc = rng.choice(EVIL_LOCATIONS)

        def f(r, req):
            host, path = req["host"], req["path"]
            sch = "https" if req["tls"] else "http"
            if sub == 0:
                x = redirect("%s://%s%s" % (sch, host, path), status)  # to itself: a loop
            elif sub == 1:
                x = redirect(path, status)  # relative, to itself
            elif sub == 2:
                x = redirect(sch + "://dl.ota.test/hop/0", status)  # an endless chain
            elif sub == 3:
                x = redirect(loc, status)
            else:
                x = Resp(status, b"", [], reason=b"Moved")  # no Location
            return x
    elif kind == "code":
        status = rng.choice((401, 403, 404, 429, 500, 502, 503, 504, 418, 400, 204, 304, 100, 199, 600, 999, 0, 207))
        hs = []
        for _ in range(rng.below(3)):
            hs.append(rng.choice(((b"Retry-After", rng.choice(ODD_RETRY)),
                                  (b"X-RateLimit-Remaining", rng.choice((b"0", b"1", b"", b"x"))),
                                  (b"X-RateLimit-Reset", rng.choice(ODD_RESET)),
                                  (b"Location", rng.choice(EVIL_LOCATIONS).encode()))))
        body = rng.choice((b"", b'{"message": "API rate limit exceeded"}', b"<html>", rng.bytes(50)))

        def f(r, req):
            return Resp(status, body, hs, reason=b"Odd")
    elif kind == "gzip":
        sub = rng.below(7)

        def f(r, req):
            b = r.body
            if sub == 0:
                b = rng_bytes_for(b)
            elif sub == 1:
                b = stored_gzip(b)[:len(b) // 2]
            elif sub == 2:
                b = stored_gzip(b + b"x")  # valid gzip of other bytes
            elif sub == 3:
                b = stored_gzip(b, 1)  # CRC wrong
            elif sub == 4:
                b = b"\x78\x01" + stored_raw(b)  # zlib, not gzip
            elif sub == 5:
                b = stored_gzip(b)  # valid: the file as it is
            else:
                b = b"\x1f\x8b\x08\xff" + b"\x00" * 20  # every flag set, then nothing
            x = Resp(r.status, b, [(k, v) for k, v in r.headers if k.lower() != b"content-encoding"]
                     + [(b"Content-Encoding", b"gzip")], r.reason)
            x.piece = r.piece
            return x
    elif kind == "conn":
        err = rng.choice((OSError(111, "ECONNREFUSED"), OSError(110, "ETIMEDOUT"), OSError(104, "ECONNRESET"),
                          OSError(113, "EHOSTUNREACH"), OSError(-2, "EAI_NONAME")))
        at = rng.choice(("connect", "first-byte"))

        def f(r, req):
            if at == "first-byte":
                r.raw = b""
                r.end = "timeout" if err.args[0] == 110 else "reset"
            else:
                r.connect_error = err
            return r
    elif kind == "tls":  # the handshake refused (a certificate from another CA): set by gen_http

        def f(r, req):
            return r
    else:  # piece: one byte per read, and a slow end
        mode = rng.choice(("close", "timeout"))

        def f(r, req):
            r.piece = 1
            if r.status != 200:
                return r
            r.end = mode
            return r
    return f


def rng_bytes_for(b):
    r = Rng(len(b) + 1)
    return r.bytes(min(300, len(b) + 10))


def gen_http(case, rng):
    sc = rng.below(5)
    if sc == 0:
        c = base_cfg(case, rng, "stable")
        c.pop("token", None)
        name = "manifest"
    elif sc == 1:
        c = base_cfg(case, rng, "stable")
        c["token"] = TOKEN
        name = "manifest-token"
    elif sc == 2:
        c = base_cfg(case, rng, "developer")
        name = "tree"
    elif sc == 3:
        c = base_cfg(case, rng, "stable")
        case.srv.manifest = None
        name = "stable-tree"
    else:
        c = base_cfg(case, rng, "developer")
        c["enable_delta_updates"] = True
        name = "delta"
    if rng.chance(2):
        c["token"] = TOKEN  # the token must never reach another host
    case.cfg = c
    kind = rng.choice(HTTP_KINDS)
    first = 1 + rng.below(7)
    sticky = rng.chance(2)
    fn = make_http_transform(rng, kind)
    if kind == "conn":
        # a connection error: at connect (the response is never made), or at the first byte
        probe = fn(Resp(), {"host": "", "path": ""})
        if probe.connect_error is not None:
            case.srv.conn_fail = (first, probe.connect_error, sticky)
    if kind == "tls":
        case.tls_refused = 1 if rng.chance(2) else 99
        first = 0
    case.srv.hostile = (first, sticky, fn)
    case.tag = "%s:%s" % (kind, name)
    case.detail = "request %d%s" % (first, " and its retries" if sticky else "")


# ---- signatures (python/ota_sign.py)
def gen_signature(case, rng):
    c = base_cfg(case, rng, "stable")
    c.pop("token", None)
    keys = rng.choice((["00" * 32], ["zz" * 32], ["00" * 31], ["00" * 33], [""], ["0" * 64, "1" * 64], [LONG],
                       ["ab" * 32]))
    c["manifest_pubkeys"] = keys
    c["require_signature"] = True
    case.cfg = c
    sig = rng.choice((b"", b"00" * 64, b"00" * 63, b"00" * 65, b"zz" * 64, rng.bytes(64), rng.bytes(200),
                      b"\xff" * 64, b"0" * 5000, None))
    case.srv.sig = sig
    case.srv.manifest = dump(manifest_doc().set("sequence", rng.choice((1, 0, -1, 2 ** 63, "1", None)))).encode()
    case.tag = "sig"
    case.detail = "keys=%s sig=%s" % (short(keys), short(sig))


GENERATORS = {"config": gen_config, "manifest": gen_manifest, "tree": gen_tree, "delta": gen_delta,
              "http": gen_http, "signature": gen_signature}


def draw_case(i, rng, weights):
    """case i from the main generator (two draws per case, whatever the outcome)"""
    x = rng.below(sum(weights))
    sub = rng.next()
    k = 0
    while x >= weights[k]:
        x -= weights[k]
        k += 1
    case = Case(i, CATEGORIES[k], Rng(sub ^ 0x5A5A5A5A))
    GENERATORS[case.cat](case, Rng(sub))
    return case


# ---------------------------------------------------------------- the sandbox
class Guard:
    """ota._before_change: every filesystem change of ota.py passes here first. Only the
    changes a failed update may make are let through; anything else stops the case."""

    def __init__(self, root):
        self.root = root
        self.reset(".ota_stage", False)

    def reset(self, stage, noop_ok):
        self.stage = self.rel(stage) if type(stage) is str else None
        self.noop_ok = noop_ok
        self.violation = None
        self.ops = 0

    def rel(self, p):
        # p relative to the device folder, normalised; None when outside it
        if type(p) is not str:
            return None
        if p.startswith("/"):
            if p == self.root or p.startswith(self.root + "/"):
                p = p[len(self.root) + 1:]
            else:
                return None
        parts = []
        for x in p.split("/"):
            if x == "" or x == ".":
                continue
            if x == "..":
                if not parts:
                    return None
                parts.pop()
            else:
                parts.append(x)
        return "/".join(parts)

    def allowed(self, r):
        if r in ALLOWED_CHANGES:
            return True
        if self.noop_ok and r in ("version.json", "version.json.tmp"):
            return True
        s = self.stage
        # the stage folder, when it is a folder of its own (a stage_dir naming an application
        # folder or file is not one: changes there are changes to the application)
        return bool(s) and (r == s or r.startswith(s + "/")) and r not in GOLDEN and r not in GOLDEN_DIRS \
            and s not in GOLDEN and s not in GOLDEN_DIRS

    def __call__(self, op, path):
        self.ops += 1
        if op == "write" and path == "":
            return
        r = self.rel(path)
        if r is None or r == "" or not self.allowed(r):
            self.violation = "%s %r%s" % (op, path, " (outside the device folder)" if r is None else "")
            raise Escape(self.violation)


def walk(top, out, prefix=""):
    for n in sorted(os.listdir(top)):
        p = top + "/" + n
        rel = prefix + n
        if os.stat(p)[0] & 0x4000:
            out[rel + "/"] = None
            walk(p, out, rel + "/")
        else:
            with open(p, "rb") as f:
                out[rel] = f.read()
    return out


def remove_tree(p):
    try:
        st = os.stat(p)
    except OSError:
        return
    if st[0] & 0x4000:
        for n in os.listdir(p):
            remove_tree(p + "/" + n)
        os.rmdir(p)
    else:
        os.remove(p)


def write_golden(dev):
    for d in sorted(GOLDEN_DIRS):
        try:
            os.mkdir(dev + "/" + d)
        except OSError:
            pass
    for p, data in GOLDEN.items():
        with open(dev + "/" + p, "wb") as f:
            f.write(data)


def own_stage(srel):
    # the stage folder (relative, normalised) when it is a folder of its own, else None
    return srel if srel and srel not in GOLDEN and srel not in GOLDEN_DIRS else None


def check_folder(dev, srel):
    """(problems, staged files) after a case: the device folder against GOLDEN."""
    now = walk(dev, {})
    problems = []
    staged = {}
    stages = [".ota_stage"]
    if own_stage(srel):
        stages.append(srel)
    for p in sorted(now):
        if p in ALLOWED_CHANGES:
            continue
        st = [s for s in stages if s and (p == s + "/" or p.startswith(s + "/"))]
        if st:
            if now[p] is not None:
                staged[p] = now[p]
            continue
        if p.endswith("/"):
            if p[:-1] not in GOLDEN_DIRS:
                problems.append("new directory " + p)
        elif p not in GOLDEN:
            problems.append("new file " + p)
        elif now[p] != GOLDEN[p]:
            problems.append("changed " + p)
    for p in GOLDEN:
        if p not in now:
            problems.append("lost " + p)
    return problems, staged


def restore(dev, srel):
    restore_fast(dev, srel)
    now = walk(dev, {})
    for p in sorted(now, reverse=True):
        if p.endswith("/") and p[:-1] not in GOLDEN_DIRS:
            remove_tree(dev + "/" + p[:-1])
        elif not p.endswith("/") and p not in GOLDEN:
            remove_tree(dev + "/" + p)
    write_golden(dev)


def check_staged(staged):
    # every verified staged file <sha>.<i> hashes to its name
    bad = []
    for p, data in staged.items():
        name = p.split("/")[-1]
        x = name.split(".")
        if len(x) != 2 or not x[1].isdigit():
            continue
        if len(x[0]) == 40 and blob_sha(data) != x[0].lower() or len(x[0]) == 64 and sha256_hex(data) != x[0].lower():
            bad.append(p)
    return bad


# ---------------------------------------------------------------- the independent path model


def model_unsafe(p):
    if type(p) is not str or p == "" or p.startswith("/"):
        return True
    if "\\" in p or "\0" in p or ":" in p:
        return True
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return True
    return False


def model_protected(p, cfg):
    name = p[:-4] if p.endswith(".tmp") else p
    if name in ("version.json", "ota_error.json", "ota_journal.json", "ota_state.json"):
        return True
    if p.startswith("ota_config.") or p.endswith(".ota_new"):
        return True
    cp = cfg.get("_path") or ""
    if name == cp or name == cfg.get("ca_file"):
        return True
    for d in (cfg.get("stage_dir"), cfg.get("backup_dir"), ".deltas"):
        if type(d) is str:
            d = d.strip("/")
            if p == d or p.startswith(d + "/"):
                return True
    if "/" not in p and (p.startswith("ota") or p.startswith("main.")) and p.endswith("py") \
            and not cfg.get("self_update"):
        return True
    return False


# ---------------------------------------------------------------- running a case
WRAPPED_NAMES = ("ValueError", "TypeError", "KeyError", "IndexError", "AttributeError", "OSError", "MemoryError",
                 "OverflowError", "RuntimeError", "RecursionError", "UnicodeError", "UnicodeDecodeError",
                 "UnicodeEncodeError", "ZeroDivisionError", "NotImplementedError", "Retry", "NameError",
                 "ImportError", "ModuleNotFoundError", "StopIteration", "AssertionError", "FileNotFoundError",
                 "IsADirectoryError", "NotADirectoryError", "PermissionError", "JSONDecodeError", "Exception",
                 "NotFound", "ConnectionError", "TimeoutError", "LookupError", "ArithmeticError", "EOFError")


def wrapped_name(msg):
    i = msg.find(": ")
    name = msg[:i] if i > 0 else msg
    return name if name in WRAPPED_NAMES else None


class Env:
    """What the campaign holds in one interpreter: the fake network and the sandbox."""

    def __init__(self, work):
        if not work.startswith("/"):
            work = os.getcwd() + "/" + work
        self.work = work
        self.dev = work + "/dev"
        self.cfgdir = work + "/cfg"
        for d in (work, self.dev, self.cfgdir):
            try:
                os.mkdir(d)
            except OSError:
                pass
        here = os.getcwd()
        for k in range(len(sys.path)):  # the module path stays valid in the device folder
            x = sys.path[k]
            if x and x != "." and not x.startswith("/") and not x.startswith(".frozen"):
                sys.path[k] = here + "/" + x
        os.chdir(self.dev)
        self.dev = os.getcwd()
        self.ca = self.cfgdir + "/ca.der"  # a fake trust store: one DER-shaped certificate
        with open(self.ca, "wb") as f:
            f.write(b"\x30\x82\x00\x04fake")
        self.net = Net()
        self.cov = {}  # methods of staged files, requests, cases that sent the token
        sys.modules["socket"] = self.net
        sys.modules["tls"] = self.net
        sys.modules["ssl"] = self.net
        while "" in sys.path:
            sys.path.remove("")
        while "." in sys.path:
            sys.path.remove(".")
        import ota

        self.ota = ota
        self.guard = Guard(self.dev)
        ota._before_change = self.guard
        self.slept = [0]
        ota.time = FakeTime(self.slept)
        for m in ("ota_time", "ota_schedule", "ota_hw"):
            try:
                mod = __import__(m)
                mod.time = ota.time
            except Exception:  # noqa: BLE001 - the optional modules are not needed
                pass
        self.sign = False
        try:
            __import__("ota_sign")
            self.sign = True
        except Exception:  # noqa: BLE001
            pass
        restore(self.dev, None)
        if not MP:  # CPython: gc.collect() (ota._free_memory) then skips what lives for the whole run
            import gc

            gc.collect()
            gc.freeze()


class FakeTime:
    """time for ota.py: a fixed clock, sleep() counted, not slept"""

    def __init__(self, slept):
        import time

        for k in dir(time):
            if not k.startswith("__") and k not in ("time", "sleep", "sleep_ms"):
                setattr(self, k, getattr(time, k))
        self._slept = slept

    def time(self):
        return FAKE_NOW

    def sleep(self, s):
        self._slept[0] += s

    def sleep_ms(self, s):
        self._slept[0] += s / 1000


def run_case(env, case):
    """(outcome class, message, [failure kinds])"""
    ota = env.ota
    env.net.reset(case)
    stage = ".ota_stage"
    env.guard.reset(stage, False)
    fails = []
    u = None
    cfg = None
    outcome = None
    msg = ""
    step = "load"
    try:
        if case.cfg_file:
            name, data = case.cfg_file
            path = env.cfgdir + "/" + name
            with open(path, "wb") as f:
                f.write(data.replace(CA.encode(), env.ca.encode()))
            cfg = ota.load_config(path)
        else:
            c = dict(case.cfg)
            if c.get("ca_file") == CA:
                c["ca_file"] = env.ca
            cfg = ota.check_config(c, "ota_config.json")
        stage = cfg["stage_dir"]
        env.guard.reset(stage, case.noop_ok)
        step = "OTA()"
        u = ota.OTA(cfg)
        step = "connect"
        u.connect()
        step = "update"
        updated = u.update_if_available()
        if u.result.get("deferred") and case.noop_ok:
            outcome = "deferred"
        elif not updated and case.noop_ok:
            outcome = "noop"
        else:
            outcome = "no-error"
            fails.append("no OTAError (returned %r)" % (updated,))
    except ota.OTAError as e:
        msg = str(e)
        if not msg:
            fails.append("OTAError without a message at %s" % step)
            outcome = "empty"
        elif step in ("load", "OTA()") and case.cfg_file is not None or step == "load":
            outcome = "rejected"
        else:
            outcome = "wrapped" if wrapped_name(msg) else "error"
    except Runaway as e:
        outcome = "runaway"
        fails.append("runaway at %s: %s" % (step, e))
    except Escape as e:
        outcome = "escape-fs"
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        outcome = "exception"
        msg = "%s: %s" % (type(e).__name__, e)
        fails.append("%s at %s: %s" % (type(e).__name__, step, short(str(e))))
    if env.guard.violation:
        fails.append("filesystem change at %s: %s" % (step, env.guard.violation))
    if step == "update" and outcome in ("error", "wrapped"):  # recorded in ota_error.json, newest last
        try:
            with open("ota_error.json") as f:
                last = json.load(f)[-1]["reason"]
        except Exception as e:  # noqa: BLE001
            last = "(unreadable: %s)" % type(e).__name__
        if last != msg:
            fails.append("ota_error.json: last reason %s, raised %s" % (short(last), short(msg)))
    if u is not None:
        r = u.result
        for key in ("download", "delete"):
            for p in r.get(key) or ():
                if model_unsafe(p):
                    fails.append("unsafe path in %s: %s" % (key, short(p)))
                elif model_protected(p, u.cfg):
                    fails.append("protected path in %s: %s" % (key, short(p)))
    # the token: to the configured hosts only, never in ota_error.json
    if cfg is not None and type(cfg.get("token")) is str and cfg["token"]:
        trusted = set()
        for b in (cfg["api_base"], cfg["api_base"].replace("://api.", "://"), cfg["raw_base"]):
            try:
                trusted.add(ota._split_url(b)[1])
            except Exception:  # noqa: BLE001
                pass
        for host, path, auth, tls in env.net.log:
            if auth and host not in trusted:
                fails.append("token sent to %s" % host)
                break
        try:
            with open("ota_error.json") as f:
                if cfg["token"] in f.read():
                    fails.append("token in ota_error.json")
        except OSError:
            pass
    srel = env.guard.stage
    problems, staged = check_folder(env.dev, srel)
    if outcome == "noop":
        problems = [p for p in problems if p != "changed version.json"]
    for p in problems:
        fails.append("folder: " + p)
    for p in check_staged(staged):
        fails.append("unverified file staged: " + p)
    if problems or env.guard.violation or outcome in ("noop", "escape-fs"):
        restore(env.dev, srel)
    else:
        restore_fast(env.dev, srel)
    # coverage: how far the case got
    cov = env.cov
    if u is not None:
        for m in (u.result.get("methods") or {}).values():
            if m:
                cov[m[0]] = cov.get(m[0], 0) + 1
    for host, path, auth, tls in env.net.log:
        if auth:
            cov["token-sent"] = cov.get("token-sent", 0) + 1
            break
    cov["requests"] = cov.get("requests", 0) + env.net.requests
    return outcome, msg, fails, step


def restore_fast(dev, srel):
    for p in ALLOWED_CHANGES:
        remove_tree(dev + "/" + p)
    remove_tree(dev + "/.ota_stage")
    if own_stage(srel):
        remove_tree(dev + "/" + srel)


def signature(case, fail):
    """A stable name for a failure (the same for every case it happens to): category|tag|what.
    what: the failure without its details (a filesystem change keeps its operation and path,
    <outside> for a path outside the device folder)."""
    what = fail
    if what.startswith("filesystem change"):
        head, rest = what.split(": ", 1)
        op = rest.split(" ")[0]
        if "(outside the device folder)" in rest:
            path = "<outside>"
        else:
            path = rest[len(op) + 1:].strip("'\"")
            for st in (".ota_stage/",):
                if path.startswith(st):
                    path = st + "*"
        what = "%s: %s %s" % (head, op, path)
    elif not what.startswith("folder"):
        for sep in (": ", " ("):
            i = what.find(sep)
            if i > 0:
                what = what[:i]
                break
    return "%s|%s|%s" % (case.cat, case.tag, what)


def break_updater(ota, defect):
    """Install a known defect into ota (tests/test_hostile_updater.py checks it is caught)."""
    if defect == "check_path":  # every path accepted
        ota.check_path = lambda p: p
    elif defect == "wanted":  # protected files taken too
        plain = ota.wanted

        def wanted(cfg, p):
            return plain(cfg, p) or type(p) is str and p in ("ota.py", "main.py", "version.json", "ota_config.json")

        ota.wanted = wanted
    elif defect == "verify":  # nothing verified: the guards install
        ota._verified = lambda *a: True
    elif defect == "unwrapped":  # update_if_available without its wrapper: exceptions escape
        ota.OTA.update_if_available = ota.OTA._update
    elif defect == "token":  # the token sent with every request, whatever the host
        plain = ota.OTA._request

        def _request(self, scheme, host, port, path, token, offset, gzip, etag=None):
            return plain(self, scheme, host, port, path, self.cfg["token"], offset, gzip, etag)

        ota.OTA._request = _request
    else:
        raise ValueError(defect)


def main(argv):
    work = argv[1]
    rest = []
    k = 2
    while k < len(argv):  # positional arguments; --case and --defect take a value
        if argv[k] in ("--case", "--defect"):
            k += 1
        elif not argv[k].startswith("-"):
            rest.append(argv[k])
        k += 1
    verbose = "-v" in argv
    only = None
    if "--case" in argv:
        only = int(argv[argv.index("--case") + 1])
        rest = []
    n = int(rest[0]) if rest else N_CASES
    start = int(rest[1]) if len(rest) > 1 else 0
    seed = int(rest[2]) if len(rest) > 2 else SEED
    env = Env(work)
    if "--defect" in argv:  # the harness's own test: a broken updater must be caught
        break_updater(env.ota, argv[argv.index("--defect") + 1])
    weights = list(WEIGHTS)
    if env.sign:
        weights[CATEGORIES.index("signature")] = 8
    rng = Rng(seed)
    counts = {}
    obs = {}
    wraps = {}
    nfail = 0
    ran = 0
    end = only + 1 if only is not None else start + n
    try:
        from time import ticks_ms, ticks_diff
    except ImportError:
        from time import monotonic

        def ticks_ms():
            return int(monotonic() * 1000)

        def ticks_diff(a, b):
            return a - b
    t0 = ticks_ms()
    for i in range(end):
        if i < (only if only is not None else start):
            draw_case(i, rng, weights)  # the same sequence, whatever the start
            continue
        case = draw_case(i, rng, weights)
        outcome, msg, fails, step = run_case(env, case)
        ran += 1
        key = "%s %s" % (case.cat, outcome)
        counts[key] = counts.get(key, 0) + 1
        if env.net.bad_request_lines:  # a request line or header broken by a config value (CR LF, spaces)
            key = "%s %s" % (case.cat, "malformed-request")
            obs[key] = obs.get(key, 0) + 1
        if outcome == "wrapped":
            w = "%s|%s|%s" % (case.cat, step, wrapped_name(msg))
            if w not in wraps:
                wraps[w] = [0, case.i, case.describe(), msg]
            wraps[w][0] += 1
        if fails:
            nfail += 1
            for f in fails:
                print("@@FAIL %d %s :: %s :: %s :: %s" % (case.i, signature(case, f), f, short(case.detail),
                                                           short(msg)))
        if verbose or only is not None:
            print("@@C %d %s %s %s :: %s" % (case.i, case.cat, case.tag, outcome, msg[:200]))
            if only is not None:
                print("@@CASE", case.describe())
                print("@@REQUESTS", env.net.log)
    ms = ticks_diff(ticks_ms(), t0)
    for k in sorted(counts):
        print("@@COUNT %s %d" % (k, counts[k]))
    for k in sorted(obs):
        print("@@OBS %s %d" % (k, obs[k]))
    print("@@COV " + " ".join("%s=%d" % (k, env.cov[k]) for k in sorted(env.cov)))
    for w in sorted(wraps):
        c, i, d, m = wraps[w]
        print("@@WRAP %s %d case %d: %s :: %s" % (w, c, i, short(d), short(m)))
    print("@@SUMMARY impl=%s cases=%d failing=%d start=%d seed=%d ms=%d slept=%s signature=%s" % (
        sys.implementation.name, ran, nfail, start, seed, ms, env.slept[0], "on" if env.sign else "skipped"))


if __name__ == "__main__":
    main(sys.argv)
