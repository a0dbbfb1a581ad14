"""ota_native API cases: one file, run unchanged by CPython (PyO3 module) and by the
MicroPython unix port (build/x64/ota_native.mpy), both from tests/test_api.py (MicroPython
through its MPY_RUNNER script).

- Plain functions `test_*` using only assert: the same expectations on both bindings.
- `agreement()`: the differential cases. Each call of AGREEMENT_CALLS (good and bad calls:
  wrong, missing and repeated arguments, unknown keywords, values out of range, non-ints,
  non-buffers, callbacks returning bad counts or raising) gives one outcome string (the
  result, or the exception's type and args); tests/test_api.py asserts that both bindings give
  the same string for every call.

- The Ed25519 Verifier (issue 11): in ota_native on CPython, in the second native module
  ota_ed25519 (build/x64/ota_ed25519.mpy) on MicroPython (SIGN below); `test_verifier_*` and
  `sign_agreement(M)`, which tests/test_api.py compares across the two bindings and
  tests/test_sign_native.py against the armv6m module on the emulated Cortex-M0+.

Vectors come from files that tests/test_api.py writes with CPython's zlib,
hashlib and ota_native.make_patch; call `setup(dir)` before any case (the Ed25519 vectors are
written out below: RFC 8032's, and signatures made by ota_native.ed25519_sign).
"""
import json

import ota_native

try:
    import ota_ed25519 as SIGN  # MicroPython: the verifier is a module of its own
except ImportError:
    SIGN = ota_native  # CPython: the PyO3 module has it too

DATA = None  # directory with the vector files
V = None     # vectors.json


def setup(data_dir):
    global DATA, V
    DATA = data_dir
    with open(data_dir + "/vectors.json") as f:
        V = json.load(f)


def load(name):
    with open(DATA + "/" + name, "rb") as f:
        return f.read()


# ---- helpers ------------------------------------------------------------------


class Src:
    """A source: readinto() gives at most `chunk` bytes; raises OSError(5) once `fail_at` bytes were given."""

    def __init__(self, data, chunk=4096, fail_at=-1):
        self.data = memoryview(data)
        self.pos = 0
        self.chunk = chunk
        self.fail_at = fail_at

    def readinto(self, buf):
        if 0 <= self.fail_at <= self.pos:
            raise OSError(5)
        n = min(len(buf), self.chunk, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class NoneSrc(Src):
    """Ends the stream with None instead of 0."""

    def readinto(self, buf):
        n = Src.readinto(self, buf)
        return n if n else None


class Old:
    """The installed file: seek(offset) + readinto(buf); raises OSError(5) on reads if `fail`."""

    def __init__(self, data, fail=False):
        self.data = memoryview(data)
        self.pos = 0
        self.fail = fail

    def seek(self, offset, whence=0):
        self.pos = offset
        return offset

    def readinto(self, buf):
        if self.fail:
            raise OSError(5)
        n = max(0, min(len(buf), len(self.data) - self.pos))
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def read_all(r, size=1000, n=-1, limit=1 << 22):
    """Pull everything from a reader with readinto(buf[, n])."""
    out = bytearray()
    buf = bytearray(size)
    while True:
        k = r.readinto(buf) if n < 0 else r.readinto(buf, n)
        assert 0 <= k <= (size if n < 0 else min(n, size))
        if k == 0:
            break
        out.extend(buf[:k])
        assert len(out) <= limit, "reader does not end"
    assert r.readinto(buf) == 0  # the end is sticky
    return bytes(out)


def raises(exc, fn, *args):
    """Call fn(*args); assert it raises exc (other exceptions propagate)."""
    try:
        fn(*args)
    except exc as e:
        return e
    assert False, "no %s from %s" % (exc.__name__, fn)


def blob_hex(data, chunks=(4096,)):
    h = ota_native.BlobHasher(len(data))
    pos = 0
    i = 0
    while pos < len(data):
        c = chunks[i % len(chunks)]
        h.update(data[pos:pos + c])
        pos += c
        i += 1
    d = h.digest()
    assert len(d) == 20 and d == h.digest()  # digest does not consume
    hx = h.hexdigest()
    assert hx == "".join("%02x" % b for b in d)
    return hx


# ---- constants ------------------------------------------------------------------


def test_constants():
    assert (ota_native.RAW, ota_native.ZLIB, ota_native.GZIP) == (1, 2, 3)


# ---- BlobHasher -----------------------------------------------------------------


def test_blob_vectors():
    assert blob_hex(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert blob_hex(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert blob_hex(b"hello\n", (1,)) == "ce013625030ba8dba906f756967f9e9ca394464a"
    text = load("text.bin")
    assert len(text) > 8000
    for chunks in ((len(text),), (1, 7, 64, 1000), (4096,)):
        assert blob_hex(text, chunks) == V["text_blob"]


def test_blob_update_n_and_buffers():
    text = load("text.bin")
    h = ota_native.BlobHasher(100)
    buf = bytearray(text[:64])
    h.update(buf, 50)               # first 50 bytes only
    h.update(memoryview(text)[50:100], -1)
    assert h.hexdigest() == V["text100_blob"]
    h = ota_native.BlobHasher(3)
    h.update(b"abcdef", 3)
    assert h.hexdigest() == V["abc_blob"]


def test_blob_wrong_size():
    h = ota_native.BlobHasher(6)
    h.update(b"hello")
    raises(ValueError, h.digest)           # too few
    raises(ValueError, h.hexdigest)
    h.update(b"\n")
    assert h.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"
    raises(ValueError, h.update, b"x")     # too many
    raises(ValueError, h.digest)           # errors latch
    h = ota_native.BlobHasher(0)
    raises(ValueError, h.update, b"x")
    raises(ValueError, ota_native.BlobHasher, -1)


# ---- InflateReader ----------------------------------------------------------------


def test_inflate_zlib_every_window():
    text = load("text.bin")
    for w in range(9, 16):
        z = load("z%d.bin" % w)
        for rw in (w, 15):
            assert read_all(ota_native.InflateReader(Src(z), ota_native.ZLIB, rw)) == text
    # defaults: ZLIB, wbits 15
    assert read_all(ota_native.InflateReader(Src(load("z15.bin")))) == text


def test_inflate_raw_and_gzip():
    text = load("text.bin")
    assert read_all(ota_native.InflateReader(Src(load("raw15.bin")), ota_native.RAW, 15)) == text
    assert read_all(ota_native.InflateReader(Src(load("raw9.bin")), ota_native.RAW, 9)) == text
    assert read_all(ota_native.InflateReader(Src(load("gzip15.bin")), ota_native.GZIP, 15)) == text
    assert read_all(ota_native.InflateReader(NoneSrc(load("gzip15.bin")), format=ota_native.GZIP)) == text


def test_inflate_one_byte_chunks_and_small_buffers():
    text = load("text.bin")
    for name, fmt, w in (("z12.bin", 2, 12), ("raw15.bin", 1, 15), ("gzip15.bin", 3, 15)):
        data = load(name)
        assert read_all(ota_native.InflateReader(Src(data, 1), fmt, w), 1000) == text
        assert read_all(ota_native.InflateReader(Src(data, 3), fmt, w), 1) == text
        assert read_all(ota_native.InflateReader(Src(data), fmt, w), 4096, 77) == text


def test_inflate_empty():
    assert read_all(ota_native.InflateReader(Src(load("empty_z.bin")))) == b""


def test_inflate_window_too_small():
    z = load("z15.bin")
    for w in (9, 12, 14):
        raises(ValueError, read_all, ota_native.InflateReader(Src(z), ota_native.ZLIB, w))


def test_inflate_bad_arguments():
    z = load("z15.bin")
    for w in (7, 16, -1):
        raises(ValueError, ota_native.InflateReader, Src(z), ota_native.ZLIB, w)
    for fmt in (0, 4):
        raises(ValueError, ota_native.InflateReader, Src(z), fmt, 15)


def test_inflate_corrupt_and_truncated():
    for name, fmt in (("z15.bin", 2), ("gzip15.bin", 3), ("raw15.bin", 1)):
        data = load(name)
        # truncated anywhere (end of input before the end of the stream)
        for cut in (0, 1, len(data) // 2, len(data) - 1):
            if fmt == 1 and cut == 0:
                continue
            raises(ValueError, read_all, ota_native.InflateReader(Src(data[:cut]), fmt, 15))
    z = bytearray(load("z15.bin"))
    z[-1] ^= 1                                   # adler32
    raises(ValueError, read_all, ota_native.InflateReader(Src(z)))
    g = bytearray(load("gzip15.bin"))
    g[-8] ^= 1                                   # crc32
    raises(ValueError, read_all, ota_native.InflateReader(Src(g), ota_native.GZIP))
    g = bytearray(load("gzip15.bin"))
    g[-1] ^= 1                                   # length
    raises(ValueError, read_all, ota_native.InflateReader(Src(g), ota_native.GZIP))
    raises(ValueError, read_all, ota_native.InflateReader(Src(b"\x00" * 64)))  # bad zlib header
    raises(ValueError, read_all, ota_native.InflateReader(Src(load("z15.bin")), ota_native.GZIP))
    raises(ValueError, read_all, ota_native.InflateReader(Src(b"\xff" * 64), ota_native.RAW))


def test_inflate_source_oserror_propagates():
    z = load("z15.bin")
    e = raises(OSError, read_all, ota_native.InflateReader(Src(z, 100, 0)))
    assert e.args[0] == 5
    r = ota_native.InflateReader(Src(z, 100, 300))
    e = raises(OSError, read_all, r)
    assert e.args[0] == 5


# ---- PatchReader ----------------------------------------------------------------------


def test_bspatch_reproduces_target():
    old, new, patch = load("old.bin"), load("new.bin"), load("patch.bin")
    for chunk, size in ((4096, 1000), (1, 4096), (5, 17)):
        r = ota_native.PatchReader(Src(patch, chunk), Old(old), len(new))
        assert read_all(r, size) == new
    r = ota_native.PatchReader(source=Src(patch), old=Old(old), new_size=len(new))
    assert read_all(r, 300, 100) == new


def test_bspatch_empty_and_identity():
    old = load("old.bin")
    assert read_all(ota_native.PatchReader(Src(load("patch_same.bin")), Old(old), len(old))) == old
    assert read_all(ota_native.PatchReader(Src(b""), Old(old), 0)) == b""


def test_bspatch_wrong_size_and_truncated():
    old, new, patch = load("old.bin"), load("new.bin"), load("patch.bin")
    raises(ValueError, read_all, ota_native.PatchReader(Src(patch), Old(old), len(new) - 1))
    raises(ValueError, read_all, ota_native.PatchReader(Src(patch), Old(old), len(new) + 1))
    for cut in (5, 24, len(patch) // 2, len(patch) - 1):
        raises(ValueError, read_all, ota_native.PatchReader(Src(patch[:cut]), Old(old), len(new)))
    raises(ValueError, read_all, ota_native.PatchReader(Src(patch), Old(old[:100]), len(new)))  # old too short


def test_bspatch_hostile_controls():
    old = load("old.bin")
    for name in V["hostile"]:
        raises(ValueError, read_all, ota_native.PatchReader(Src(load(name)), Old(old), 4096))


def test_bspatch_callbacks_raise():
    old, new, patch = load("old.bin"), load("new.bin"), load("patch.bin")
    e = raises(OSError, read_all, ota_native.PatchReader(Src(patch, 64, 100), Old(old), len(new)))
    assert e.args[0] == 5
    e = raises(OSError, read_all, ota_native.PatchReader(Src(patch), Old(old, True), len(new)))
    assert e.args[0] == 5


# ---- DeltaReader ------------------------------------------------------------------------


def test_delta_reproduces_target_and_digest():
    old, new = load("old.bin"), load("new.bin")
    r = ota_native.DeltaReader(Src(load("patch_raw12.bin")), Old(old), len(new))  # RAW, wbits 12
    raises(ValueError, r.digest)                      # before the end
    assert read_all(r, 512) == new
    assert r.hexdigest() == V["new_blob"]
    assert r.digest() == r.digest() and len(r.digest()) == 20
    r = ota_native.DeltaReader(Src(load("patch_z15.bin"), 1), Old(old), len(new), ota_native.ZLIB, 15)
    assert read_all(r, 4096) == new
    assert r.hexdigest() == V["new_blob"]


def test_delta_errors():
    old, new = load("old.bin"), load("new.bin")
    pz = load("patch_z15.bin")
    raises(ValueError, read_all, ota_native.DeltaReader(Src(pz), Old(old), len(new), ota_native.ZLIB, 9))
    raises(ValueError, read_all, ota_native.DeltaReader(Src(pz[:-10]), Old(old), len(new), ota_native.ZLIB, 15))
    raises(ValueError, read_all, ota_native.DeltaReader(Src(load("patch_raw12.bin")), Old(old), len(new) + 5))
    e = raises(OSError, read_all, ota_native.DeltaReader(Src(pz, 50, 60), Old(old), len(new), ota_native.ZLIB, 15))
    assert e.args[0] == 5
    raises(ValueError, ota_native.DeltaReader, Src(pz), Old(old), len(new), 9, 12)
    raises(ValueError, ota_native.DeltaReader, Src(pz), Old(old), len(new), ota_native.RAW, 16)


# ---- agreement: the same calls on both bindings give the same outcome --------------------------


def show(r):
    """A result as text that reads the same on both interpreters."""
    if isinstance(r, (bytes, bytearray)):
        if len(r) <= 24:
            return "b:" + "".join("%02x" % b for b in r)
        return "b:%d:%d" % (len(r), sum(r[i] * (i % 251 + 1) for i in range(len(r))) % 1000003)
    if isinstance(r, tuple):
        return "(" + ", ".join(show(x) for x in r) + ")"
    if r is None or isinstance(r, (bool, int, str)):
        return repr(r)
    return type(r).__name__


def outcome(fn):
    """'-> result' or 'ExceptionType: arg|arg' for one call."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 - every outcome is compared
        return "%s: %s" % (type(e).__name__, "|".join(str(a) for a in e.args))
    return "-> " + show(r)


class Ret:
    """A source or old file whose readinto returns `value` (and writes nothing); seek is fine."""

    def __init__(self, value):
        self.value = value

    def seek(self, offset, whence=0):
        return offset

    def readinto(self, buf):
        return self.value


class SeekOnly:
    def seek(self, offset, whence=0):
        return offset


class Nothing:
    pass


class BadSeek(Old):
    def seek(self, offset, whence=0):
        raise OSError(7)


class Reenter(Src):
    """A source whose readinto calls readinto of the reader it feeds (set `.reader`)."""

    reader = None

    def readinto(self, buf):
        return self.reader.readinto(bytearray(4))


class Counting(Old):
    """An old file that counts its seek and readinto calls (the bindings seek alike)."""

    def __init__(self, data):
        Old.__init__(self, data)
        self.seeks = 0
        self.reads = 0

    def seek(self, offset, whence=0):
        self.seeks += 1
        return Old.seek(self, offset)

    def readinto(self, buf):
        self.reads += 1
        return Old.readinto(self, buf)


def reader_then(make, *calls):
    """Outcomes of calls on one reader: each call is (method name, args)."""
    r = make()
    return tuple(outcome(lambda: getattr(r, m)(*a)) for m, a in calls)


def reenter():
    src = Reenter(b"")
    r = ota_native.InflateReader(src)
    src.reader = r
    return (outcome(lambda: r.readinto(bytearray(8))), outcome(lambda: r.readinto(bytearray(8))))


def counted_patch():
    old, new, patch = load("old.bin"), load("new.bin"), load("patch.bin")
    f = Counting(old)
    out = read_all(ota_native.PatchReader(Src(patch, 300), f, len(new)), 700)
    return (out == new, f.seeks, f.reads)


def readinto_into(buf, *args):
    """A fresh zlib InflateReader's first readinto into buf: the count and the buffer after."""
    r = ota_native.InflateReader(Src(load("z15.bin")))
    k = r.readinto(buf, *args)
    return (k, bytes(buf[:24]))


def update_then_digest(size, *updates):
    h = ota_native.BlobHasher(size)
    for u in updates:
        h.update(*u)
    return h.hexdigest()


def agreement_calls():
    """(name, call) pairs, run by agreement() on both bindings."""
    import array

    M = ota_native
    z15, raw15, gz = load("z15.bin"), load("raw15.bin"), load("gzip15.bin")
    old, new, patch, praw12 = load("old.bin"), load("new.bin"), load("patch.bin"), load("patch_raw12.bin")
    pz15 = load("patch_z15.bin")
    big = (2**30 - 1, 2**30, 2**31, 2**62, 2**64, -(2**70))
    c = []

    def add(name, fn):
        c.append((name, fn))

    add("constants", lambda: (M.RAW, M.ZLIB, M.GZIP))
    # BlobHasher(size)
    add("BlobHasher()", lambda: M.BlobHasher())
    add("BlobHasher(1, 2)", lambda: M.BlobHasher(1, 2))
    add("BlobHasher(size=3)", lambda: M.BlobHasher(size=3))
    add("BlobHasher(sz=3)", lambda: M.BlobHasher(sz=3))
    add("BlobHasher(new_size=3)", lambda: M.BlobHasher(new_size=3))
    add("BlobHasher(3, size=3)", lambda: M.BlobHasher(3, size=3))
    add("BlobHasher(3, x=1)", lambda: M.BlobHasher(3, x=1))
    for v in (-1, 0) + big + ("3", 3.0, None, True, b"3"):
        add("BlobHasher(%r)" % (v,), lambda v=v: M.BlobHasher(v))
    # InflateReader(source, format=ZLIB, wbits=15): defaults, keywords, bad values
    add("InflateReader()", lambda: M.InflateReader())
    add("InflateReader(format=2)", lambda: M.InflateReader(format=2))
    add("InflateReader defaults", lambda: read_all(M.InflateReader(Src(z15))))
    add("InflateReader default is ZLIB", lambda: read_all(M.InflateReader(Src(raw15))))
    add("InflateReader keywords", lambda: read_all(M.InflateReader(wbits=15, format=M.RAW, source=Src(raw15))))
    add("InflateReader GZIP kw", lambda: read_all(M.InflateReader(Src(gz), format=M.GZIP)))
    add("InflateReader 4 args", lambda: M.InflateReader(Src(z15), 2, 15, 0))
    add("InflateReader(s, 2, format=2)", lambda: M.InflateReader(Src(z15), 2, format=2))
    add("InflateReader(s, source=s)", lambda: M.InflateReader(Src(z15), source=Src(z15)))
    add("InflateReader(s, old=s)", lambda: M.InflateReader(Src(z15), old=Src(z15)))
    add("InflateReader(s, fmt=1)", lambda: M.InflateReader(Src(z15), fmt=1))
    add("InflateReader(s, n=1)", lambda: M.InflateReader(Src(z15), n=1))
    for v in (0, 4, -1, 2**40, "1", None, True, 1.0):
        add("InflateReader(format=%r)" % (v,), lambda v=v: M.InflateReader(Src(z15), v))
    for v in (7, 8, 16, -1, 2**40, "15", None, False):
        add("InflateReader(wbits=%r)" % (v,), lambda v=v: M.InflateReader(Src(z15), wbits=v))
    add("InflateReader window too small", lambda: read_all(M.InflateReader(Src(z15), M.ZLIB, 9)))
    add("InflateReader(1)", lambda: M.InflateReader(1))
    add("InflateReader(Nothing())", lambda: M.InflateReader(Nothing()))
    add("InflateReader(1, format=9)", lambda: M.InflateReader(1, format=9))
    # PatchReader(source, old, new_size)
    add("PatchReader()", lambda: M.PatchReader())
    add("PatchReader(s, o)", lambda: M.PatchReader(Src(patch), Old(old)))
    add("PatchReader(s, o, n, 1)", lambda: M.PatchReader(Src(patch), Old(old), len(new), 1))
    add("PatchReader keywords", lambda: read_all(M.PatchReader(new_size=len(new), old=Old(old), source=Src(patch))))
    add("PatchReader(s, o, size=n)", lambda: M.PatchReader(Src(patch), Old(old), size=len(new)))
    add("PatchReader(s, o, n, format=1)", lambda: M.PatchReader(Src(patch), Old(old), len(new), format=1))
    add("PatchReader(s, new_size=n)", lambda: M.PatchReader(Src(patch), new_size=len(new)))
    for v in (-1,) + big + ("1", None):
        add("PatchReader(new_size=%r)" % (v,), lambda v=v: M.PatchReader(Src(patch), Old(old), v))
    add("PatchReader(s, 1, n)", lambda: M.PatchReader(Src(patch), 1, 5))
    add("PatchReader(s, SeekOnly(), n)", lambda: M.PatchReader(Src(patch), SeekOnly(), 5))
    add("PatchReader(1, 1, n)", lambda: M.PatchReader(1, 1, 5))
    add("PatchReader seeks", counted_patch)
    # DeltaReader(source, old, new_size, format=RAW, wbits=12)
    add("DeltaReader(s, o)", lambda: M.DeltaReader(Src(praw12), Old(old)))
    add("DeltaReader defaults", lambda: read_all(M.DeltaReader(Src(praw12), Old(old), len(new))))
    add("DeltaReader default is RAW/12", lambda: read_all(M.DeltaReader(Src(pz15), Old(old), len(new))))
    add("DeltaReader keywords", lambda: read_all(M.DeltaReader(Src(pz15), Old(old), wbits=15, new_size=len(new), format=M.ZLIB)))
    add("DeltaReader 6 args", lambda: M.DeltaReader(Src(praw12), Old(old), 1, 1, 12, 0))
    add("DeltaReader(..., size=1)", lambda: M.DeltaReader(Src(praw12), Old(old), size=1))
    add("DeltaReader order: size first", lambda: M.DeltaReader(Src(praw12), Old(old), -1, 9, 99))
    add("DeltaReader order: format", lambda: M.DeltaReader(Src(praw12), Old(old), 1, 9, 99))
    add("DeltaReader order: int first", lambda: M.DeltaReader(Src(praw12), Old(old), 1, "x", 99))
    add("DeltaReader order: args before objects", lambda: M.DeltaReader(1, 2, 1, 9))
    for v in (7, 16, 2**64):
        add("DeltaReader(wbits=%r)" % (v,), lambda v=v: M.DeltaReader(Src(praw12), Old(old), 1, M.RAW, v))
    # BlobHasher.update(buf, n=-1, /), digest(), hexdigest()
    add("update()", lambda: M.BlobHasher(3).update())
    add("update(b, 1, 2)", lambda: M.BlobHasher(3).update(b"abc", 1, 2))
    add("update(b, n=2)", lambda: M.BlobHasher(3).update(b"abc", n=2))
    add("update(buf=b)", lambda: M.BlobHasher(3).update(buf=b"abc"))
    add("update(5)", lambda: M.BlobHasher(3).update(5))
    add("update(str)", lambda: M.BlobHasher(3).update("abc"))
    add("update(None)", lambda: M.BlobHasher(3).update(None))
    add("update kinds", lambda: update_then_digest(11, (b"ab",), (bytearray(b"cd"),), (memoryview(b"xefx")[1:3],),
                                                   (array.array("H", [0x6867]),), (b"ijk", -5), (b"", 0)))
    for v in (0, 1, 2, 3, 4, -1, -2**70, 2**40, 2**64, "1", None, True, 1.0):
        add("update(b, %r)" % (v,), lambda v=v: update_then_digest(2, (b"ab", v)))
    add("update past size", lambda: update_then_digest(2, (b"abc",)))
    add("update after error", lambda: reader_then(lambda: M.BlobHasher(1), ("update", (b"ab",)), ("update", (b"",)),
                                                   ("digest", ())))
    add("digest early", lambda: reader_then(lambda: M.BlobHasher(3), ("digest", ()), ("hexdigest", ()), ("update", (b"abc",)),
                                            ("hexdigest", ()), ("digest", ())))
    add("digest(1)", lambda: M.BlobHasher(0).digest(1))
    add("hexdigest(x=1)", lambda: M.BlobHasher(0).hexdigest(x=1))
    # readinto(buf, n=-1, /)
    add("readinto()", lambda: M.InflateReader(Src(z15)).readinto())
    add("readinto(b, 1, 2)", lambda: M.InflateReader(Src(z15)).readinto(bytearray(4), 1, 2))
    add("readinto(b, n=1)", lambda: M.InflateReader(Src(z15)).readinto(bytearray(4), n=1))
    add("readinto(buf=b)", lambda: M.InflateReader(Src(z15)).readinto(buf=bytearray(4)))
    for name, buf in (("bytes", b"abcd"), ("str", "abcd"), ("int", 4), ("None", None),
                      ("memoryview(bytes)", memoryview(b"abcd"))):
        add("readinto(%s)" % name, lambda buf=buf: readinto_into(buf))
    add("readinto(bytearray(30))", lambda: readinto_into(bytearray(30)))
    add("readinto(bytearray(0))", lambda: readinto_into(bytearray(0)))
    add("readinto(memoryview slice)", lambda: readinto_into(memoryview(bytearray(30))[5:15]))
    add("readinto(array)", lambda: readinto_into(array.array("H", [0] * 6)))
    for v in (0, 1, 5, -1, -2**70, 2**40, 2**64, "1", None, True, 1.0):
        add("readinto(b, %r)" % (v,), lambda v=v: readinto_into(bytearray(10), v))
    add("InflateReader has no digest", lambda: hasattr(M.InflateReader(Src(z15)), "digest"))
    # callbacks: counts, None, exceptions, latching, re-entry
    for v in (None, 0, -1, 4097, 2**40, "1", 1.0, True):
        add("source readinto -> %r" % (v,), lambda v=v: reader_then(lambda: M.InflateReader(Ret(v)), ("readinto", (bytearray(8),)),
                                                                    ("readinto", (bytearray(8),))))
    for v in (None, -1, 257, "1"):
        add("old readinto -> %r" % (v,), lambda v=v: reader_then(lambda: M.PatchReader(Src(patch), Ret(v), len(new)),
                                                                 ("readinto", (bytearray(64),)), ("readinto", (bytearray(64),))))
    add("source raises", lambda: reader_then(lambda: M.InflateReader(Src(z15, 100, 0)), ("readinto", (bytearray(90),)),
                                             ("readinto", (bytearray(90),))))
    add("source raises later", lambda: reader_then(lambda: M.InflateReader(Src(z15, 100, 300)),
                                                   *[("readinto", (bytearray(9000),))] * 5))
    add("old raises", lambda: reader_then(lambda: M.PatchReader(Src(patch), Old(old, True), len(new)),
                                          ("readinto", (bytearray(64),)), ("readinto", (bytearray(64),))))
    add("seek raises", lambda: reader_then(lambda: M.DeltaReader(Src(praw12), BadSeek(old), len(new)),
                                           ("readinto", (bytearray(64),)), ("readinto", (bytearray(64),))))
    add("corrupt latches", lambda: reader_then(lambda: M.InflateReader(Src(b"\xff" * 64), M.RAW, 15),
                                               ("readinto", (bytearray(16),)), ("readinto", (bytearray(16),))))
    add("delta digest", lambda: reader_then(lambda: M.DeltaReader(Src(praw12), Old(old), len(new)), ("digest", ()),
                                            ("readinto", (bytearray(100000),)), ("readinto", (bytearray(10),)),
                                            ("hexdigest", ()), ("digest", (1,))))
    add("delta wrong size", lambda: reader_then(lambda: M.DeltaReader(Src(praw12), Old(old), len(new) + 1),
                                                ("readinto", (bytearray(100000),)), ("readinto", (bytearray(10),)),
                                                ("digest", ())))
    add("re-entry", reenter)
    return c


def agreement():
    """[(name, outcome)] of every call of agreement_calls()."""
    return [(name, outcome(fn)) for name, fn in agreement_calls()]


# ---- Ed25519 Verifier ------------------------------------------------------------------------

def unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


# RFC 8032 section 7.1, TEST 1, 2, 3 and SHA(abc): (public key, message, signature)
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]
# MSG signed by the seeds bytes(range(1, 33)) (KEY, SIG) and bytes(range(33, 65)) (KEY2, SIG2)
MSG = bytes((i * 7 + 3) & 255 for i in range(300))
KEY = unhex("79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664")
SIG = unhex("d1ca05e22a78e371beb1f67032ba5e256b63e8340a53e03133a915e5034a57de"
            "6e389692aa976d610255399b3c847f23e8cf5eadded5e8872032527f2156cd03")
KEY2 = unhex("e7f162a10bec559afea195e4dce84b69568d5d2cb0963eb446c0685e2b17f2f0")
SIG2 = unhex("b029de181cf88a41d468c5ac20c170848ca4e01aab4c6497c0038f68a446666d"
             "d695169b2684d20e82eae0ec098c8f4597ff4b23ab72ad209d81dcea5c9f850b")
# the group order L (little-endian), and the canonical encodings of the small-order points
L = unhex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
]
NOT_A_POINT = unhex("02" + "00" * 31)
NON_CANONICAL_Y = unhex("ee" + "ff" * 30 + "7f")  # p + 1


def add256(a, b):
    """a + b, 32-byte little-endian numbers (mod 2**256)."""
    out = bytearray(32)
    carry = 0
    for i in range(32):
        v = a[i] + b[i] + carry
        out[i] = v & 255
        carry = v >> 8
    return bytes(out)


def flip(data, bit):
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def check_sig(M, key, sig, msg, chunk=0):
    """Verifier(key, sig) fed msg (in pieces of `chunk`), then verify(): its result or exception."""
    v = M.Verifier(key, sig)
    if chunk:
        for i in range(0, len(msg), chunk):
            v.update(msg[i:i + chunk])
    else:
        v.update(msg)
    return v.verify()


def calls_on(make, *calls):
    """Outcomes of calls on one Verifier: each call is (method name, args)."""
    v = make()
    return tuple(outcome(lambda: getattr(v, m)(*a)) for m, a in calls)


def sign_agreement_calls(M, flips=1):
    """(name, call) pairs of Verifier calls on module M; ``flips``: every flips-th bit of the
    message, signature and key is flipped (1: every bit)."""
    c = []

    def add(name, fn):
        c.append((name, fn))

    for i, (k, m, s) in enumerate(RFC8032):
        add("rfc8032 %d" % i, lambda k=k, m=m, s=s: check_sig(M, unhex(k), unhex(s), unhex(m)))
    add("msg", lambda: check_sig(M, KEY, SIG, MSG))
    add("msg by 7", lambda: check_sig(M, KEY, SIG, MSG, 7))
    add("msg by 1", lambda: check_sig(M, KEY, SIG, MSG, 1))
    add("key2", lambda: check_sig(M, KEY2, SIG2, MSG))
    add("key2 sig of key", lambda: check_sig(M, KEY2, SIG, MSG))
    add("key sig of key2", lambda: check_sig(M, KEY, SIG2, MSG))
    add("sig of rfc 3", lambda: check_sig(M, KEY, unhex(RFC8032[3][2]), MSG))
    for bit in range(0, len(MSG) * 8, flips):
        add("msg bit %d" % bit, lambda bit=bit: check_sig(M, KEY, SIG, flip(MSG, bit)))
    for bit in range(0, 512, max(1, flips // 8)):
        add("sig bit %d" % bit, lambda bit=bit: check_sig(M, KEY, flip(SIG, bit), MSG))
    for bit in range(0, 256, max(1, flips // 8)):
        add("key bit %d" % bit, lambda bit=bit: check_sig(M, flip(KEY, bit), SIG, MSG))
    # S >= L (malleability), and L - 1
    add("S + L", lambda: check_sig(M, KEY, SIG[:32] + add256(SIG[32:], L), MSG))
    add("S = L", lambda: M.Verifier(KEY, SIG[:32] + L))
    add("S = 2**256-1", lambda: M.Verifier(KEY, SIG[:32] + b"\xff" * 32))
    add("S = L-1", lambda: check_sig(M, KEY, SIG[:32] + bytes([L[0] - 1]) + L[1:], MSG))
    # small-order keys and R, keys off the curve or not canonical
    for i, p in enumerate(SMALL_ORDER):
        add("small-order key %d" % i, lambda p=p: M.Verifier(unhex(p), SIG))
        add("small-order R %d" % i, lambda p=p: M.Verifier(KEY, unhex(p) + SIG[32:]))
    add("key not a point", lambda: M.Verifier(NOT_A_POINT, SIG))
    add("key y = p + 1", lambda: M.Verifier(NON_CANONICAL_Y, SIG))
    add("R not a point", lambda: M.Verifier(KEY, NOT_A_POINT + SIG[32:]))
    # truncated and oversized inputs
    for n in (0, 1, 31, 33, 64):
        add("key of %d bytes" % n, lambda n=n: M.Verifier((KEY * 3)[:n], SIG))
    for n in (0, 32, 63, 65, 128):
        add("sig of %d bytes" % n, lambda n=n: M.Verifier(KEY, (SIG * 3)[:n]))
    add("key 31 sig 63", lambda: M.Verifier(KEY[:31], SIG[:63]))
    add("msg truncated", lambda: check_sig(M, KEY, SIG, MSG[:-1]))
    add("msg + 1 byte", lambda: check_sig(M, KEY, SIG, MSG + b"\0"))
    add("msg empty", lambda: check_sig(M, KEY, SIG, b""))
    # arguments: the core's table on both bindings
    add("Verifier()", lambda: M.Verifier())
    add("Verifier(key)", lambda: M.Verifier(KEY))
    add("Verifier(key, sig, 1)", lambda: M.Verifier(KEY, SIG, 1))
    add("Verifier(kw)", lambda: calls_on(lambda: M.Verifier(signature=SIG, public_key=KEY), ("update", (MSG,)),
                                         ("verify", ())))
    add("Verifier(key, signature=)", lambda: calls_on(lambda: M.Verifier(KEY, signature=SIG), ("verify", ())))
    add("Verifier(key, public_key=)", lambda: M.Verifier(KEY, public_key=KEY))
    add("Verifier(key=)", lambda: M.Verifier(key=KEY, signature=SIG))
    add("Verifier(source=)", lambda: M.Verifier(KEY, source=SIG))
    add("Verifier(str)", lambda: M.Verifier("ab" * 16, SIG))
    add("Verifier(5)", lambda: M.Verifier(5, SIG))
    add("Verifier(None)", lambda: M.Verifier(KEY, None))
    add("Verifier(bytearray, memoryview)", lambda: check_sig(M, bytearray(KEY), memoryview(SIG), bytearray(MSG)))
    good = lambda: M.Verifier(KEY, SIG)  # noqa: E731
    add("update()", lambda: calls_on(good, ("update", ())))
    add("update(b, 1, 2)", lambda: calls_on(good, ("update", (MSG, 1, 2))))
    add("update(str)", lambda: calls_on(good, ("update", ("abc",))))
    add("update(5)", lambda: calls_on(good, ("update", (5,))))
    add("update(b, 'x')", lambda: calls_on(good, ("update", (MSG, "x"))))
    add("update(b, True)", lambda: calls_on(good, ("update", (MSG, True))))
    add("update n", lambda: calls_on(good, ("update", (MSG + b"xyz", len(MSG))), ("verify", ())))
    add("update n big", lambda: calls_on(good, ("update", (MSG, 2 ** 40)), ("verify", ())))
    add("update n -1", lambda: calls_on(good, ("update", (bytearray(MSG), -1)), ("verify", ())))
    add("update n 0", lambda: calls_on(good, ("update", (MSG, 0)), ("update", (MSG,)), ("verify", ())))
    add("update kw", lambda: good().update(MSG, n=1))
    add("verify(1)", lambda: calls_on(good, ("verify", (1,))))
    add("verify kw", lambda: good().verify(x=1))
    add("after verify", lambda: calls_on(good, ("update", (MSG,)), ("verify", ()), ("verify", ()),
                                         ("update", (b"",)), ("verify", ())))
    add("after mismatch", lambda: calls_on(good, ("verify", ()), ("update", (MSG,)), ("verify", ())))
    return c


def sign_agreement(M=SIGN, flips=1):
    """[(name, outcome)] of every call of sign_agreement_calls(M, flips)."""
    return [(name, outcome(fn)) for name, fn in sign_agreement_calls(M, flips)]


def test_verifier_rfc8032():
    for k, m, s in RFC8032:
        assert check_sig(SIGN, unhex(k), unhex(s), unhex(m)) is True
        assert check_sig(SIGN, unhex(k), unhex(s), unhex(m), 1) is True


def test_verifier_streams_and_latches():
    v = SIGN.Verifier(KEY, SIG)
    for i in range(0, len(MSG), 64):
        v.update(memoryview(MSG)[i:i + 64])
    assert v.verify() is True and v.verify() is True
    raises(ValueError, v.update, b"")  # complete
    v = SIGN.Verifier(public_key=KEY, signature=SIG)
    v.update(MSG, 299)
    e = raises(ValueError, v.verify)
    assert str(e) == "signature mismatch"
    assert str(raises(ValueError, v.verify)) == "signature mismatch"  # latched
    assert str(raises(ValueError, v.update, MSG)) == "signature mismatch"


def test_verifier_refuses():
    assert str(raises(ValueError, SIGN.Verifier, KEY, SIG[:32] + add256(SIG[32:], L))) == "signature not canonical (S >= L)"
    for p in SMALL_ORDER:
        assert str(raises(ValueError, SIGN.Verifier, unhex(p), SIG)) == "public key of small order"
        assert str(raises(ValueError, SIGN.Verifier, KEY, unhex(p) + SIG[32:])) == "signature R not a valid point"
    assert str(raises(ValueError, SIGN.Verifier, NOT_A_POINT, SIG)) == "public key not a curve point"
    assert str(raises(ValueError, SIGN.Verifier, KEY[:31], SIG)) == "key not 32 bytes"
    assert str(raises(ValueError, SIGN.Verifier, KEY, SIG + b"\0")) == "signature not 64 bytes"
    assert str(raises(TypeError, SIGN.Verifier, KEY)) == "wrong number of arguments"
    assert str(raises(TypeError, SIGN.Verifier, "x" * 32, SIG)) == "bad buffer"
