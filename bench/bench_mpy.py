"""ota_native natmod vs MicroPython built-ins, in the MicroPython unix interpreter.

Run with CPython (`make bench`): writes the inputs to bench/data/ (zlib from
CPython, the patch from the PyO3 module's make_patch), then runs this same file
in .venv/bin/micropython with build/x64/ota_native.mpy on its path, which prints:
  - Git-blob SHA1: natmod BlobHasher vs built-in hashlib.sha1 (target >= 0.5x)
  - inflate: natmod InflateReader vs built-in deflate.DeflateIO, zlib and raw (target >= 5x)
  - bspatch: natmod PatchReader vs a straightforward pure-Python bspatch (target >= 50x)
Each ratio is measured in one run on the same data (best of REPEAT). Data: 256 KiB of
Python source (CPython's stdlib files) for SHA1 and inflate; a 64 KiB file with
scattered edits and an insertion for bspatch.
"""
import sys

REPEAT = 5
SIZE = 256 * 1024       # bytes hashed / inflated
PATCH_SIZE = 64 * 1024  # bytes of the patched file
CHUNK = 4096


def sample(seed, n):
    """Deterministic, source-like bytes (a tiny LCG: same output in both interpreters)."""
    words = [b"def ", b"return ", b"self.", b"import ", b"ota", b"manifest", b"sha1(", b")",
             b"window", b"\n    ", b"\n", b" = ", b"buf[", b"]", b"len(", b"for ", b"in ", b"0x1f"]
    out = bytearray()
    x = seed
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out += words[(x >> 16) % len(words)]
        if (x >> 8) & 15 == 0:
            out += b"%d" % (x & 0xFFFF)
    return bytes(out[:n])


# ---- CPython side: make the inputs, then run the benchmark in MicroPython -------------------------
def python_source(n):
    """What the updater ships: Python source (this CPython's stdlib modules, sorted by name)."""
    import glob
    import os
    out = b""
    for f in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(f, "rb") as fh:
            out += fh.read()
        if len(out) >= n:
            return out[:n]
    return (out + sample(1, n))[:n]


def prepare_and_run():
    import os
    import subprocess
    import zlib
    from pathlib import Path

    import ota_native  # PyO3 module: make_patch

    root = Path(__file__).resolve().parent.parent
    data = root / "bench" / "data"
    data.mkdir(exist_ok=True)
    text = python_source(SIZE)
    (data / "text.bin").write_bytes(text)
    (data / "text.z").write_bytes(zlib.compress(text, 9))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    (data / "text.raw").write_bytes(c.compress(text) + c.flush())
    old = sample(2, PATCH_SIZE)
    new = bytearray(old)
    for i in range(0, len(new) - 64, 997):   # scattered edits: every block has diff bytes
        new[i:i + 3] = b"xyz"
    new[20000:20000] = sample(3, 4000)
    new = bytes(new[:PATCH_SIZE])
    (data / "old.bin").write_bytes(old)
    (data / "new.bin").write_bytes(new)
    (data / "patch.bin").write_bytes(ota_native.make_patch(old, new))
    mpy = root / "build" / "x64" / "ota_native.mpy"
    if not mpy.exists():
        sys.exit("missing %s: run `make natmod ARCH=x64`" % mpy)
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(mpy.parent), ".frozen"]))
    exe = Path(sys.executable).parent / "micropython"
    r = subprocess.run([str(exe), "-X", "heapsize=16M", __file__, str(data)], env=env)
    sys.exit(r.returncode)


# ---- MicroPython side ----------------------------------------------------------------------
def py_bspatch(old, patch, new_size):
    """Straightforward pure-Python bspatch (bsdiff crate format: no header)."""
    new = bytearray(new_size)
    np = op = pp = 0
    while pp < len(patch):
        mix = int.from_bytes(patch[pp:pp + 8], "little")
        copy = int.from_bytes(patch[pp + 8:pp + 16], "little")
        seek = int.from_bytes(patch[pp + 16:pp + 24], "little")
        if seek >> 63:
            seek = -(seek & 0x7FFFFFFFFFFFFFFF)
        pp += 24
        for i in range(mix):
            new[np + i] = (patch[pp + i] + old[op + i]) & 0xFF
        pp += mix
        np += mix
        op += mix
        new[np:np + copy] = patch[pp:pp + copy]
        pp += copy
        np += copy
        op += seek
    return new


def best(fn):
    import time
    t = None
    for _ in range(REPEAT):
        t0 = time.ticks_us()
        fn()
        dt = time.ticks_diff(time.ticks_us(), t0)
        t = dt if t is None or dt < t else t
    return max(t, 1)


def run_mpy(data_dir):
    import gc
    import io
    import deflate
    import hashlib
    import ota_native

    def load(name):
        with open(data_dir + "/" + name, "rb") as f:
            return f.read()

    text, z, raw = load("text.bin"), load("text.z"), load("text.raw")
    old, new, patch = load("old.bin"), load("new.bin"), load("patch.bin")
    buf = bytearray(CHUNK)
    results = []
    print("MicroPython %s, x64 natmod; best of %d runs, same data and same %d-byte output buffer for both sides"
          % (".".join(str(v) for v in sys.implementation.version[:3]), REPEAT, CHUNK))
    print("sha1: one update() over %d bytes of Python source (Git-blob header included on both sides)" % len(text))
    print("inflate: readinto() loop from io.BytesIO of %d (zlib) / %d (raw) bytes, window 32 KiB -> %d bytes"
          % (len(z), len(raw), len(text)))
    print("bspatch: natmod PatchReader streaming from io.BytesIO vs pure Python on bytes, %d-byte patch -> %d bytes"
          % (len(patch), len(new)))

    def report(name, n, t_nat, t_ref, ref, target):
        ratio = t_ref / t_nat
        results.append(ratio >= target)
        print("%-8s natmod %6.1f MB/s | %-23s %6.1f MB/s | ratio %6.2fx (target >= %gx)" % (
            name, n / t_nat, ref, n / t_ref, ratio, target))

    # SHA1: the whole buffer in one call, both sides.
    def nat_sha1():
        h = ota_native.BlobHasher(len(text))
        h.update(text)
        return h.digest()

    def ref_sha1():
        h = hashlib.sha1(b"blob %d\0" % len(text))
        h.update(text)
        return h.digest()

    assert nat_sha1() == ref_sha1()
    gc.collect()
    report("sha1", len(text), best(nat_sha1), best(ref_sha1), "hashlib.sha1", 0.5)

    # Inflate: both pull from io.BytesIO into the same 4 KiB buffer.
    def drain(r):
        n = 0
        while True:
            k = r.readinto(buf)
            if not k:
                return n
            n += k

    def nat_inflate():
        return drain(ota_native.InflateReader(io.BytesIO(z), ota_native.ZLIB, 15))

    def ref_inflate():
        return drain(deflate.DeflateIO(io.BytesIO(z), deflate.ZLIB, 15))

    assert nat_inflate() == ref_inflate() == len(text)
    gc.collect()
    report("inflate", len(text), best(nat_inflate), best(ref_inflate), "deflate.DeflateIO zlib", 5)

    # Same for raw deflate (no adler32; the format DeltaReader uses by default).
    def nat_raw():
        return drain(ota_native.InflateReader(io.BytesIO(raw), ota_native.RAW, 15))

    def ref_raw():
        return drain(deflate.DeflateIO(io.BytesIO(raw), deflate.RAW, 15))

    assert nat_raw() == ref_raw() == len(text)
    gc.collect()
    report("inflate", len(text), best(nat_raw), best(ref_raw), "deflate.DeflateIO raw", 5)

    # bspatch: natmod streams patch and old from io.BytesIO; pure Python works on bytes.
    out = bytearray(len(new))

    def nat_patch():
        r = ota_native.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new))
        mv = memoryview(out)
        n = 0
        while True:
            k = r.readinto(mv[n:])
            if not k:
                return n
            n += k

    assert nat_patch() == len(new) and out == new
    assert py_bspatch(old, patch, len(new)) == new
    gc.collect()
    t_nat = best(nat_patch)
    t_py = best(lambda: py_bspatch(old, patch, len(new)))
    report("bspatch", len(new), t_nat, t_py, "pure-Python bspatch", 50)
    print("all targets met" if all(results) else "TARGET MISSED")


if __name__ == "__main__":
    if sys.implementation.name == "micropython":
        run_mpy(sys.argv[1])
    else:
        prepare_and_run()
