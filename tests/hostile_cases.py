"""Hostile inputs for ota_native, one module run unchanged by CPython (PyO3 module) and by
the MicroPython unix port (build/x64/ota_native.mpy); tests/test_hostile.py drives both and
compares their outcome sequences.

Cases come from a seeded xorshift32 generator (no `random`: both interpreters must draw the
SAME cases). Each case mutates a valid seed (truncate, bit-flip, insert, delete, hostile u64
fields, or fully random bytes) and feeds it through InflateReader (RAW/ZLIB/GZIP, wbits 8..15,
source chunks down to 1 byte), PatchReader, DeltaReader (hostile declared sizes, in-memory old
file with seek/readinto) or BlobHasher (wrong sizes).

A case passes when it ends with output or ValueError within bounded work:
- every readinto returns 0 <= k <= requested, and output never passes a bound derived from the
  input and declared sizes (inflate: 1032 bytes per input byte; bspatch: one output byte per
  patch byte), so the readinto loop is bounded (no hang);
- the source and the old file are called a bounded number of times (a native spin that keeps
  calling back fails with Spin);
- the end is sticky (readinto -> 0 again) and errors latch (ValueError again);
- ZLIB/GZIP output that passes its checksum equals the seed's plain text; a DeltaReader's
  digest() equals hashlib's Git-blob SHA1 of its output; BlobHasher accepts exactly its size.
Anything else (another exception type, a bound exceeded, a wrong result) is a failure.

The valid seeds are files written by tests/test_hostile.py (CPython zlib/gzip and
ota_native.make_patch/deflate) into a folder with seeds.json; call run(folder).
Output: one "@@C <i> <kind> <outcome>" line per case, then "@@MSG" and "@@SUMMARY" lines.
"""
import hashlib
import json

try:
    from binascii import hexlify
except ImportError:  # pragma: no cover
    from ubinascii import hexlify

try:
    from time import ticks_ms, ticks_diff
except ImportError:
    from time import monotonic

    def ticks_ms():
        return int(monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

N_CASES = 20000
SEED = 0x2545F491
INFLATE_RATIO = 1032  # deflate's maximum output per input byte (258 bytes per 2 bits)


class Spin(Exception):
    """A reader kept calling the source/old file without progress."""


class Bad(Exception):
    """A contract violation that is not an exception from the reader."""


# ---- seeded generator (identical on both interpreters) -----------------------------------


class Rng:
    """xorshift32 (Marsaglia): 32-bit state, stays in MicroPython small ints."""

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

    def choice(self, seq):
        return seq[self.next() % len(seq)]

    def bytes(self, n):
        b = bytearray(n)
        i = 0
        while i < n:
            x = self.next()
            b[i] = x & 255
            if i + 1 < n:
                b[i + 1] = (x >> 8) & 255
            if i + 2 < n:
                b[i + 2] = (x >> 16) & 255
            i += 3
        return b


def le64(hi, lo):
    """8 little-endian bytes of hi * 2**32 + lo, without big ints."""
    return bytes([(lo >> (8 * i)) & 255 for i in range(4)] + [(hi >> (8 * i)) & 255 for i in range(4)])


# u64 fields that stress bspatch's control values (lengths, sign-magnitude seeks).
HOSTILE_U64 = [
    le64(0xFFFFFFFF, 0xFFFFFFFF), le64(0x80000000, 0), le64(0x80000000, 1), le64(0x7FFFFFFF, 0xFFFFFFFF),
    le64(0, 0), le64(0, 1), le64(0, 0xFFFFFFFF), le64(1, 0), le64(0, 0x80000000), le64(0x80000000, 0x7FFFFFFF),
    le64(0, 3000), le64(0x80000000, 3000), le64(0x40000000, 0), le64(0xFFFFFFFF, 0xFFFFFF00),
]

MUTATIONS = ("none", "truncate", "flip", "insert", "delete", "u64", "control", "random", "splice")


def mutate(rng, data, op):
    """data with mutation `op`; slicing and concatenation only (MicroPython bytearrays
    cannot delete or resize slices)."""
    b = bytes(data)
    n = len(b)
    if op == "truncate":
        b = b[:rng.below(n + 1)]
    elif op == "flip":
        if n:
            m = bytearray(b)
            for _ in range(1 + rng.below(8)):
                m[rng.below(n)] ^= 1 << rng.below(8)
            b = bytes(m)
    elif op == "insert":
        i = rng.below(n + 1)
        b = b[:i] + bytes(rng.bytes(1 + rng.below(64))) + b[i:]
    elif op == "delete":
        if n:
            i = rng.below(n)
            b = b[:i] + b[i + 1 + rng.below(64):]
    elif op == "u64":  # 8-byte aligned field anywhere
        if n >= 8:
            i = rng.below(n // 8) * 8
            b = b[:i] + rng.choice(HOSTILE_U64) + b[i + 8:]
    elif op == "control":  # a field of the first bsdiff control block (or a zlib/gzip header)
        if n >= 24:
            i = rng.below(3) * 8
            b = b[:i] + rng.choice(HOSTILE_U64) + b[i + 8:]
        elif n:
            b = bytes([b[0] ^ (1 << rng.below(8))]) + b[1:]
    elif op == "random":
        b = bytes(rng.bytes(rng.below(600)))
    elif op == "splice":  # a copy of one part of the input over another
        if n:
            i, j = rng.below(n), rng.below(n)
            part = b[i:i + 1 + rng.below(128)]
            b = b[:j] + part + b[j + len(part):]
    return b


# ---- sources and the old file --------------------------------------------------------------


class Src:
    """readinto gives at most `chunk` bytes; more than 8 empty reads (incl. empty buffers) is a spin."""

    def __init__(self, data, chunk):
        self.data = memoryview(data)
        self.pos = 0
        self.chunk = chunk
        self.empty = 0

    def readinto(self, buf):
        n = min(len(buf), self.chunk, len(self.data) - self.pos)
        if n <= 0:
            self.empty += 1
            if self.empty > 8:
                raise Spin("source called %d times without data" % self.empty)
            return 0
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class Old:
    """The installed file: seek(offset) + readinto(buf); at most `limit` reads."""

    def __init__(self, data, limit):
        self.data = memoryview(data)
        self.pos = 0
        self.reads = 0
        self.limit = limit

    def seek(self, offset, whence=0):
        if offset < 0:
            raise Bad("negative seek %d" % offset)
        self.pos = offset
        return offset

    def readinto(self, buf):
        self.reads += 1
        if self.reads > self.limit:
            raise Spin("old file read %d times" % self.reads)
        n = max(0, min(len(buf), len(self.data) - self.pos))
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def drain(r, size, narg, maxout):
    """All output of reader r; the loop is bounded by maxout (each non-final call gives >= 1 byte)."""
    buf = bytearray(size)
    lim = size if narg < 0 or narg > size else narg
    out = bytearray()
    while True:
        k = r.readinto(buf) if narg < 0 else r.readinto(buf, narg)
        if not (0 <= k <= lim):
            raise Bad("readinto returned %r for %d" % (k, lim))
        if k == 0:
            break
        out += buf[:k]
        if len(out) > maxout:
            raise Bad("output past its bound %d" % maxout)
    if r.readinto(buf) != 0:
        raise Bad("end not sticky")
    return bytes(out)


def short_hash(data):
    return hexlify(hashlib.sha1(data).digest())[:12].decode()


def git_blob(data):
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.digest()


# ---- seeds ---------------------------------------------------------------------------------

S = None  # seeds, loaded by setup()
M = None  # the ota_native module under test


def setup(data_dir, module=None):
    global S, M
    if module is None:
        import ota_native as module
    M = module
    with open(data_dir + "/seeds.json") as f:
        meta = json.load(f)

    def load(name):
        with open(data_dir + "/" + name, "rb") as f:
            return f.read()

    files = {}
    for group in ("plains", "streams", "patches", "deltas"):
        for entry in meta[group]:
            for name in entry:
                if isinstance(name, str) and name not in files:
                    files[name] = load(name)
    S = {
        "files": files,
        "old": load(meta["old"]),
        "streams": meta["streams"],    # [file, format, wbits, plain file]
        "patches": meta["patches"],    # [file, new file]
        "deltas": meta["deltas"],      # [file, format, wbits, new file]
        "plains": meta["plains"],      # [file]
    }


# ---- cases: drawn first (independent of outcomes), then run ---------------------------------

CHUNKS = (1, 1, 2, 3, 7, 64, 256, 4096)
BUFSIZES = (1, 2, 5, 64, 97, 512, 4096)


SMALL_SIZES = 8  # size choices below 8 give sizes < 2**31 (an int of every port's mp_int_t)


def hostile_size(rng, c, size):
    """A declared size: choice c (0..9) of the case; 8 and 9 go past 2**31."""
    if c < 4:
        return size
    if c == 4:
        return size + 1 + rng.below(3)
    if c == 5:
        return max(0, size - 1 - rng.below(3))
    if c == 6:
        return rng.below(2 * size + 2)
    if c == 7:
        return 0
    if c == 8:
        return rng.choice((2 ** 31, 2 ** 32 + size, 2 ** 40))
    return rng.choice((2 ** 62, 2 ** 63 - 1, 2 ** 62 + size))


def draw_case(rng):
    """One case as a tuple (kind, seed index, size choice, mutation, source chunk, buffer size,
    readinto n, per-case generator seed); consumes `rng` the same way on every interpreter."""
    k = rng.below(20)
    op = MUTATIONS[rng.below(len(MUTATIONS))] if rng.below(16) else "none"
    chunk = rng.choice(CHUNKS)
    size = rng.choice(BUFSIZES)
    narg = -1 if rng.below(4) else 1 + rng.below(size)
    sub = rng.next()  # per-case generator seed for the mutation
    if k < 8:  # size choice: 0 = any window 8..15, else the stream's own
        return ("inflate", rng.below(len(S["streams"])), rng.below(4), op, chunk, size, narg, sub)
    if k < 13:
        return ("patch", rng.below(len(S["patches"])), rng.below(10), op, chunk, size, narg, sub)
    if k < 18:
        return ("delta", rng.below(len(S["deltas"])), rng.below(10), op, chunk, size, narg, sub)
    return ("blob", rng.below(len(S["plains"])), rng.below(10), op, chunk, size, narg, sub)


def sizes_fit_int32(case):
    """True when the case's declared sizes are < 2**31 (what a 32-bit port's mp_int_t holds)."""
    return case[0] == "inflate" or case[2] < SMALL_SIZES


def run_inflate(case):
    _, si, wsel, op, chunk, size, narg, sub = case
    name, fmt, w, plain_name = S["streams"][si]
    rng = Rng(sub)
    data = mutate(rng, S["files"][name], op)
    # the stream's own window most of the time, else any window 8..15 (too small -> error)
    wbits = w if wsel else 8 + rng.below(8)
    maxout = INFLATE_RATIO * len(data) + 64
    r = M.InflateReader(Src(data, chunk), fmt, wbits)
    out = drain(r, size, narg, maxout)
    if fmt != M.RAW and out != S["files"][plain_name]:
        raise Bad("checksum accepted wrong output")
    if op == "none" and out != S["files"][plain_name]:
        raise Bad("valid stream decoded wrongly")
    return out


def run_patch(case):
    _, pi, ssel, op, chunk, size, narg, sub = case
    name, new_name = S["patches"][pi]
    rng = Rng(sub)
    new = S["files"][new_name]
    data = mutate(rng, S["files"][name], op)
    new_size = hostile_size(rng, ssel, len(new))
    maxout = min(new_size, len(data))
    r = M.PatchReader(Src(data, chunk), Old(S["old"], len(data) + 16), new_size)
    out = drain(r, size, narg, maxout)
    if len(out) != new_size:
        raise Bad("output %d bytes, declared %d" % (len(out), new_size))
    if op == "none" and out != new:
        raise Bad("valid patch applied wrongly")
    return out


def run_delta(case):
    _, di, ssel, op, chunk, size, narg, sub = case
    name, fmt, w, new_name = S["deltas"][di]
    rng = Rng(sub)
    new = S["files"][new_name]
    data = mutate(rng, S["files"][name], op)
    new_size = hostile_size(rng, ssel, len(new))
    maxout = min(new_size, INFLATE_RATIO * len(data) + 64)
    r = M.DeltaReader(Src(data, chunk), Old(S["old"], maxout + 16), new_size, fmt, w)
    try:
        r.digest()
        raise Bad("digest before the end")
    except ValueError:
        pass
    out = drain(r, size, narg, maxout)
    if len(out) != new_size:
        raise Bad("output %d bytes, declared %d" % (len(out), new_size))
    if r.digest() != git_blob(out):
        raise Bad("digest differs from hashlib")
    if op == "none" and out != new:
        raise Bad("valid delta applied wrongly")
    return out


def run_blob(case):
    _, bi, ssel, op, chunk, size, narg, sub = case
    rng = Rng(sub)
    data = mutate(rng, S["files"][S["plains"][bi][0]], op if op != "random" else "truncate")
    declared = hostile_size(rng, ssel, len(data))
    h = M.BlobHasher(declared)
    pos = 0
    step = chunk if chunk > 1 else 1 + rng.below(300)
    try:
        while pos < len(data):
            h.update(data[pos:pos + step])
            pos += step
        fed = len(data)
    except ValueError:
        fed = -1  # refused past the declared size
    if declared != len(data):
        if (fed < 0) != (declared < len(data)):
            raise Bad("update %s %d bytes for size %d" % ("refused" if fed < 0 else "accepted", len(data), declared))
        h.digest()  # must raise ValueError
        raise Bad("digest of %d bytes for size %d" % (len(data), declared))
    if fed < 0:
        raise Bad("update refused the exact size")
    if h.digest() != git_blob(data):
        raise Bad("digest differs from hashlib")
    return data


RUNNERS = {"inflate": run_inflate, "patch": run_patch, "delta": run_delta, "blob": run_blob}


def run_case(case):
    """Outcome string: "ok <len> <sha1[:12]>", "ValueError <message>" or "FAIL <why>"."""
    try:
        out = RUNNERS[case[0]](case)
        return "ok %d %s" % (len(out), short_hash(out))
    except ValueError as e:
        return "ValueError " + str(e)
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        return "FAIL %s %s" % (type(e).__name__, e)


def latch_check():
    """Contract spot checks: errors latch, callback exceptions pass through unchanged."""
    problems = []
    r = M.InflateReader(Src(b"\xff" * 64, 64), M.RAW, 15)
    msgs = []
    for _ in range(3):
        try:
            r.readinto(bytearray(16))
            msgs.append("no error")
        except ValueError as e:
            msgs.append(str(e))
        except Exception as e:  # noqa: BLE001
            msgs.append("%s %s" % (type(e).__name__, e))
    if msgs[0] == "no error" or msgs[1:] != msgs[:1] * 2:
        problems.append("inflate error does not latch: %r" % msgs)

    class Boom:
        def readinto(self, buf):
            raise KeyError("readinto")

        def seek(self, off):
            raise OSError(5, "seek")

    patch, new = S["files"][S["patches"][0][0]], S["files"][S["patches"][0][1]]
    for name, make in (("inflate", lambda: M.InflateReader(Boom())),
                       ("patch source", lambda: M.PatchReader(Boom(), Old(S["old"], 1 << 20), len(new))),
                       ("patch old", lambda: M.PatchReader(Src(patch, 64), Boom(), len(new)))):
        try:
            drain(make(), 64, -1, 1 << 20)
            problems.append(name + ": no exception")
        except KeyError:
            pass
        except OSError as e:
            if e.args[0] != 5:
                problems.append(name + ": OSError args %r" % (e.args,))
        except Exception as e:  # noqa: BLE001
            problems.append("%s: %s %s" % (name, type(e).__name__, e))
    return problems


# Sizes that wrap to small ones when truncated to 32 or 64 bits (mp_obj_get_int in a natmod).
OVERSIZED = (2 ** 32, 2 ** 32 + 5, 2 ** 64, 2 ** 64 + 5)


def oversized_problems(module=None):
    """Declared sizes past the native int must be refused with ValueError (the contract), not
    silently truncated: BlobHasher(2**64 + 5) must not accept 5 bytes."""
    mod = module or M
    problems = []
    for size in OVERSIZED:
        for name in ("BlobHasher", "PatchReader"):
            try:
                if name == "BlobHasher":
                    h = mod.BlobHasher(size)
                    h.update(b"hello"[:size & 7])
                    h.digest()
                else:
                    drain(mod.PatchReader(Src(b"", 1), Old(b"", 4), size), 16, -1, 0)
                problems.append("%s(%d) accepted (as %d?)" % (name, size, size & 7))
            except ValueError:
                pass
            except Exception as e:  # noqa: BLE001
                problems.append("%s(%d): %s %s" % (name, size, type(e).__name__, e))
    return problems


def run(data_dir, n=N_CASES, seed=SEED, module=None, quiet=False):
    """Run cases 0..n-1 of the sequence `seed`; print one line per case (unless quiet) and a
    summary; returns (outcomes when quiet else None, failures)."""
    setup(data_dir, module)
    rng = Rng(seed)  # cases are drawn from it only: the sequence does not depend on outcomes
    t0 = ticks_ms()
    outcomes = [] if quiet else None
    counts = {}
    fails = 0
    for i in range(n):
        case = draw_case(rng)
        o = run_case(case)
        if o.startswith("FAIL"):
            fails += 1
        key = case[0] + " " + (o.split(" ", 1)[0] if o.startswith("ok") else o)
        counts[key] = counts.get(key, 0) + 1
        if quiet:
            outcomes.append((case[0], case[3], o))
        else:
            print("@@C %d %s %s %s %d %d %d %s" % (i, case[0], case[3], o, case[4], case[5], case[6], case[1]))
    problems = latch_check()
    for p in problems:
        print("@@CONTRACT " + p)
    ms = ticks_diff(ticks_ms(), t0)
    if not quiet:
        for key in sorted(counts):
            print("@@MSG %d %s" % (counts[key], key))
    ok = sum(v for k, v in counts.items() if k.endswith(" ok"))
    print("@@SUMMARY cases=%d ok=%d valueerror=%d fail=%d contract=%d ms=%d" % (
        n, ok, n - ok - fails, fails, len(problems), ms))
    return outcomes, fails + len(problems)
