"""The armv6m ota_native.mpy on an emulated Cortex-M0+, against the host's results.

tests/emu/mpyload.py loads build/armv6m/ota_native.mpy as MicroPython's loader does (relocations
included) and calls the module through MicroPython's object model; every executed block is checked
to be ARMv6-M. Vectors are small (a few KB): unicorn runs ~10 M instructions/s with the tracer.
`make test` builds the .mpy first; when it is missing these tests fail, they never skip.
"""

import hashlib
import io
import os
import random
import struct
import sys
import zlib

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "emu"))
import mpyload  # noqa: E402
import mpymap  # noqa: E402

MPY = os.path.join(mpyload.ROOT, "build", "armv6m", "ota_native.mpy")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture(scope="module")
def machine():
    assert os.path.exists(MPY), "%s is missing: run `make natmod ARCH=armv6m` (make test does)" % MPY
    m = mpyload.Machine()
    m.load(MPY)
    return m


@pytest.fixture(scope="module")
def mod(machine):
    return machine.module


def text_data(n, seed):
    """Compressible text-like bytes with long and short repeats."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(rnd.randint(2, 9))) for _ in range(60)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + rnd.choice([b" ", b"\n", b", "])
    return bytes(out[:n])


class Chunks:
    """A source whose readinto returns at most `step` bytes (1 = byte by byte)."""

    def __init__(self, data, step):
        self.data, self.pos, self.step = data, 0, step

    def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def read_all(reader, bufsize=700):
    out = bytearray()
    buf = bytearray(bufsize)
    while True:
        n = reader.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]


# ---- the module as loaded ------------------------------------------------------------------

def test_loads_like_micropython(machine, mod):
    mpy = machine.mpy
    assert (mpy.arch, mpy.sub_version) == (mpyload.MP_NATIVE_ARCH_ARMV6M, 3)
    assert mpy.scope_flags & mpyload.MP_SCOPE_FLAG_VIPERRELOC
    assert sorted(dir(mod)) == ["BlobHasher", "DeltaReader", "GZIP", "InflateReader", "PatchReader", "RAW", "ZLIB"]
    assert (mod.RAW, mod.ZLIB, mod.GZIP) == (1, 2, 3)
    # Relocations reached mp_fun_table entries and the qstr table, and the glue used them.
    kinds = {d if isinstance(d, str) else "fun" for _, _, d, _ in mpy.relocs}
    assert {"text", "fun", "qstr_table"} <= kinds
    assert machine.calls["store_global"] == 7


def test_static_isa_whole_text():
    """Every instruction of the .mpy's code ($t ranges of the re-linked, byte-identical text)."""
    lm = mpymap.LinkMap("armv6m", MPY)
    ranges = lm.code_ranges()
    code_bytes = sum(b - a for a, b in ranges)
    assert code_bytes > len(lm.text) // 2
    bad = [p for a, b in ranges for p in mpyload.scan_thumb(lm.text[a:b], a)]
    assert bad == [], "non-ARMv6-M instructions: %s" % bad[:10]
    # the checker itself rejects Thumb-2: b.w, cbz, it, ldr.w
    assert mpyload.scan_thumb(b"\x00\xf0\x00\xb8")
    assert mpyload.scan_thumb(b"\x08\xb1")
    assert mpyload.scan_thumb(b"\x08\xbf")
    assert mpyload.scan_thumb(b"\xd1\xf8\x00\x00")
    assert not mpyload.scan_thumb(b"\x00\xf0\x00\xf8\x70\x47")  # bl; bx lr


def test_executed_blocks_are_checked(machine):
    assert machine.blocks, "the block tracer saw nothing"
    with pytest.raises(mpyload.IsaError):
        mpyload.decode_block(b"\x00\xf0\x00\xb8", 0)


# ---- Git-blob SHA1 ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(random.Random(7).getrandbits(8) for _ in range(5000))],
                         ids=["empty", "hello", "random5000"])
def test_blob_sha1(mod, data):
    h = mod.BlobHasher(len(data))
    rnd = random.Random(len(data))
    pos = 0
    while pos < len(data):
        n = rnd.choice([1, 3, 63, 64, 65, 500])
        h.update(data[pos:pos + n])
        pos += n
    assert h.hexdigest() == git_blob_sha1(data)
    assert h.digest() == bytes.fromhex(git_blob_sha1(data))


def test_blob_sha1_known_vector(mod):
    h = mod.BlobHasher(6)
    h.update(bytearray(b"hello\nXX"), 6)
    assert h.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_blob_sha1_size_enforced(mod):
    h = mod.BlobHasher(3)
    h.update(b"ab")
    with pytest.raises(ValueError):
        h.digest()
    with pytest.raises(ValueError):
        h.update(b"cd")


# ---- inflate ---------------------------------------------------------------------------------

FORMATS = {"raw": (1, -1), "zlib": (2, 1), "gzip": (3, 16)}


def compress(data, fmt, wbits, level=9):
    sign = FORMATS[fmt][1]
    c = zlib.compressobj(level, zlib.DEFLATED, wbits * sign if fmt != "gzip" else 16 + wbits)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("wbits", range(9, 16))
def test_inflate_windows(mod, fmt, wbits):
    data = text_data(3000, wbits)
    comp = compress(data, fmt, wbits)
    assert zlib.decompress(comp, {"raw": -wbits, "zlib": wbits, "gzip": 16 + wbits}[fmt]) == data
    r = mod.InflateReader(io.BytesIO(comp), FORMATS[fmt][0], wbits)
    assert read_all(r) == data


def test_inflate_byte_by_byte_input(mod):
    data = text_data(2000, 1)
    comp = compress(data, "zlib", 15)
    assert read_all(mod.InflateReader(Chunks(comp, 1), mod.ZLIB, 15), 33) == data


def test_inflate_stored_and_incompressible(mod):
    data = bytes(random.Random(3).getrandbits(8) for _ in range(3000))
    for level in (0, 6):
        comp = compress(data, "gzip", 15, level)
        assert read_all(mod.InflateReader(io.BytesIO(comp), mod.GZIP, 15)) == data


def test_inflate_window_too_small(mod):
    rnd = random.Random(5)
    block = bytes(rnd.getrandbits(8) for _ in range(1500))
    data = block + bytes(rnd.getrandbits(8) for _ in range(500)) + block  # a match 2000 back
    comp = compress(data, "raw", 15)
    with pytest.raises(ValueError):
        read_all(mod.InflateReader(io.BytesIO(comp), mod.RAW, 9))
    assert read_all(mod.InflateReader(io.BytesIO(comp), mod.RAW, 11)) == data


@pytest.mark.parametrize("damage", ["truncated", "bad_checksum", "garbage"])
def test_inflate_corrupt(mod, damage):
    data = text_data(2000, 9)
    comp = bytearray(compress(data, "zlib", 15))
    if damage == "truncated":
        comp = comp[:len(comp) // 2]
    elif damage == "bad_checksum":
        comp[-1] ^= 1
    else:
        comp = bytearray(b"\x78\x9c" + bytes(random.Random(2).getrandbits(8) for _ in range(200)))
    with pytest.raises(ValueError):
        read_all(mod.InflateReader(io.BytesIO(bytes(comp)), mod.ZLIB, 15))


def test_source_exception_propagates(mod):
    class Broken:
        def readinto(self, buf):
            raise OSError(5, "io")

    r = mod.InflateReader(Broken(), mod.ZLIB, 15)
    with pytest.raises(OSError):
        r.readinto(bytearray(10))


# ---- bspatch and the delta pipeline -----------------------------------------------------------

def make_patch_by_hand(old, seed):
    """A patch in the bsdiff crate's format and the new file it makes (reference apply)."""
    rnd = random.Random(seed)
    patch, new = bytearray(), bytearray()
    oldpos = 0
    for _ in range(12):
        mix = rnd.randint(0, min(400, len(old) - oldpos))
        copy = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 60)))
        diff = bytes(rnd.choice([0, 0, 0, 1, 255, 7]) for _ in range(mix))
        target = rnd.randint(0, len(old) - 1)
        seek = target - (oldpos + mix)
        patch += struct.pack("<QQ", mix, len(copy))
        patch += struct.pack("<Q", abs(seek) | (1 << 63 if seek < 0 else 0))
        patch += diff + copy
        new += bytes((old[oldpos + i] + diff[i]) & 0xFF for i in range(mix)) + copy
        oldpos = target
    return bytes(patch), bytes(new)


def pyo3_module():
    try:
        import ota_native
    except ImportError:
        return None
    return ota_native if hasattr(ota_native, "make_patch") else None


@pytest.fixture(scope="module")
def patch_case():
    old = text_data(4000, 11)
    patch, new = make_patch_by_hand(old, 12)
    return old, patch, new


def test_bspatch_hand_made(mod, patch_case):
    old, patch, new = patch_case
    r = mod.PatchReader(Chunks(patch, 97), io.BytesIO(old), len(new))
    assert read_all(r, 333) == new


def test_bspatch_size_enforced(mod, patch_case):
    old, patch, new = patch_case
    with pytest.raises(ValueError):
        read_all(mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new) - 1))
    with pytest.raises(ValueError):
        read_all(mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new) + 1))


def test_bspatch_hostile_seek(mod):
    old = b"x" * 100
    patch = struct.pack("<QQQ", 10, 0, 1000) + bytes(10) + struct.pack("<QQQ", 10, 0, 0) + bytes(10)
    with pytest.raises(ValueError):
        read_all(mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), 20))
    patch = struct.pack("<QQQ", 200, 0, 0) + bytes(200)  # mix past the old file
    with pytest.raises(ValueError):
        read_all(mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), 200))


def test_delta_pipeline_hand_made(mod, patch_case):
    old, patch, new = patch_case
    comp = compress(patch, "raw", 12)
    r = mod.DeltaReader(Chunks(comp, 50), io.BytesIO(old), len(new), mod.RAW, 12)
    with pytest.raises(ValueError):
        r.digest()  # not complete yet
    assert read_all(r, 512) == new
    assert r.hexdigest() == git_blob_sha1(new)


def test_bspatch_and_delta_vs_pyo3(mod):
    host = pyo3_module()
    assert host is not None, "PyO3 ota_native (with make_patch) is not importable: run `make pyshim` (make test does)"
    old = text_data(5000, 21)
    new = bytearray(old)
    rnd = random.Random(22)
    for _ in range(30):
        p = rnd.randrange(len(new))
        new[p:p + rnd.randint(0, 20)] = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 25)))
    new = bytes(new)
    patch = host.make_patch(old, new)
    expect = read_all(host.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new)))
    assert expect == new
    assert read_all(mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new))) == new
    comp = host.deflate(patch, 9, 12, host.RAW)
    r = mod.DeltaReader(io.BytesIO(comp), io.BytesIO(old), len(new), mod.RAW, 12)
    assert read_all(r) == new
    h = host.DeltaReader(io.BytesIO(comp), io.BytesIO(old), len(new), host.RAW, 12)
    read_all(h)
    assert r.digest() == h.digest() == bytes.fromhex(git_blob_sha1(new))


def test_stack_use_is_small(machine):
    # MicroPython on rp2 runs natmods on its main stack; keep well under the 16 KiB painted here.
    assert 0 < machine.stack_used() < 4096


def test_argument_errors_match_pyo3(mod):
    """The armv6m module binds and checks arguments with the same core table as the PyO3 module
    (tests/test_api.py::test_bindings_agree does this in full on x64): the same calls give the
    same outcome, exception type and message included."""
    host = pyo3_module()
    assert host is not None, "PyO3 ota_native is not importable: run `make pyshim` (make test does)"
    z = zlib.compress(b"hello " * 50)

    def outcome(fn):
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - compared
            return "%s: %s" % (type(e).__name__, "|".join(str(a) for a in e.args))
        return "-> %r" % (r if isinstance(r, (int, str, bytes, type(None))) else "an object",)

    calls = {
        "BlobHasher()": lambda M: M.BlobHasher(),
        "BlobHasher(1, 2)": lambda M: M.BlobHasher(1, 2),
        "BlobHasher(size=3)": lambda M: M.BlobHasher(size=3),
        "BlobHasher(sz=3)": lambda M: M.BlobHasher(sz=3),
        "BlobHasher(3, size=3)": lambda M: M.BlobHasher(3, size=3),
        "BlobHasher(-1)": lambda M: M.BlobHasher(-1),
        "BlobHasher(2**30)": lambda M: M.BlobHasher(2**30),
        "BlobHasher(2**40)": lambda M: M.BlobHasher(2**40),
        "BlobHasher('3')": lambda M: M.BlobHasher("3"),
        "BlobHasher(True)": lambda M: M.BlobHasher(True),
        "InflateReader()": lambda M: M.InflateReader(),
        "InflateReader(s, fmt=1)": lambda M: M.InflateReader(Chunks(z, 9), fmt=1),
        "InflateReader(s, 2, format=2)": lambda M: M.InflateReader(Chunks(z, 9), 2, format=2),
        "InflateReader(s, 2, 15, 0)": lambda M: M.InflateReader(Chunks(z, 9), 2, 15, 0),
        "InflateReader(s, format=4)": lambda M: M.InflateReader(Chunks(z, 9), format=4),
        "InflateReader(s, wbits=16)": lambda M: M.InflateReader(Chunks(z, 9), wbits=16),
        "InflateReader(s, wbits=None)": lambda M: M.InflateReader(Chunks(z, 9), wbits=None),
        "InflateReader(wbits=9, source=s)": lambda M: read_all(M.InflateReader(wbits=9, source=Chunks(z, 9))),
        "InflateReader(s) defaults": lambda M: read_all(M.InflateReader(Chunks(z, 9))),
        "PatchReader(s, o)": lambda M: M.PatchReader(Chunks(b"", 1), io.BytesIO(b"")),
        "PatchReader(s, o, size=0)": lambda M: M.PatchReader(Chunks(b"", 1), io.BytesIO(b""), size=0),
        "PatchReader(s, new_size=0, old=o)": lambda M: read_all(M.PatchReader(Chunks(b"", 1), new_size=0, old=io.BytesIO(b""))),
        "DeltaReader(s, o, 1, 1, 12, 0)": lambda M: M.DeltaReader(Chunks(b"", 1), io.BytesIO(b""), 1, 1, 12, 0),
        "DeltaReader(s, o, -1, 9)": lambda M: M.DeltaReader(Chunks(b"", 1), io.BytesIO(b""), -1, 9),
        "update()": lambda M: M.BlobHasher(1).update(),
        "update(b, 1, 2)": lambda M: M.BlobHasher(1).update(b"a", 1, 2),
        "update(b, n=1)": lambda M: M.BlobHasher(1).update(b"a", n=1),
        "update(5)": lambda M: M.BlobHasher(1).update(5),
        "update('a')": lambda M: M.BlobHasher(1).update("a"),
        "update(b, 'x')": lambda M: M.BlobHasher(1).update(b"a", "x"),
        "digest(1)": lambda M: M.BlobHasher(0).digest(1),
        "readinto()": lambda M: M.InflateReader(Chunks(z, 9)).readinto(),
        "readinto(b'')": lambda M: M.InflateReader(Chunks(z, 9)).readinto(b"abc"),
        "readinto(ba, 2**40)": lambda M: M.InflateReader(Chunks(z, 9)).readinto(bytearray(5), 2**40),
        "readinto(ba, 1.0)": lambda M: M.InflateReader(Chunks(z, 9)).readinto(bytearray(5), 1.0),
    }
    differ = []
    for name, call in calls.items():
        a, b = outcome(lambda: call(mod)), outcome(lambda: call(host))
        if a != b:
            differ.append("%s: armv6m %s, PyO3 %s" % (name, a, b))
    assert not differ, "\n".join(differ)
    assert outcome(lambda: calls["BlobHasher(sz=3)"](mod)) == "TypeError: bad keyword argument"
