"""ota_native API cases: one file, run unchanged by CPython (PyO3 module, via
tests/test_api.py) and by the MicroPython unix port (build/x64/ota_native.mpy,
via tests/mpy_run_cases.py).  Plain functions `test_*` using only assert.

Vectors come from files that tests/test_api.py writes with CPython's zlib,
hashlib and ota_native.make_patch; call `setup(dir)` before any case.
"""
import json

import ota_native

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
