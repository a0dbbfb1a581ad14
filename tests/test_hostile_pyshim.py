"""Hostile inputs through the CPython binding (PyO3): only ValueError, never a
crash or hang; plus the exception pass-through and host-only helpers.

Seeded; runs in a few seconds. Skipped as a module only if the extension is not
built (make pyshim)."""
import hashlib
import io
import random
import zlib

import pytest

ota_native = pytest.importorskip("ota_native")

RAW, ZLIB, GZIP = ota_native.RAW, ota_native.ZLIB, ota_native.GZIP


def git_blob(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def drain(reader, size=97, limit=1_000_000):
    buf, out = bytearray(size), bytearray()
    for _ in range(limit):
        n = reader.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]
    raise AssertionError("reader did not finish")


def mutate(rng, data):
    b = bytearray(data)
    op = rng.randrange(5)
    if op == 0:
        del b[rng.randrange(len(b) + 1):]
    elif op == 1 and b:
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 2:
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randrange(1, 64))
    elif op == 3 and len(b) >= 8:
        i = rng.randrange(len(b) // 8) * 8
        b[i:i + 8] = rng.choice([2**64 - 1, 2**63, 2**63 + 1, 2**63 - 1, 0, 1]).to_bytes(8, "little")
    else:
        b = bytearray(rng.randbytes(rng.randrange(600)))
    return bytes(b)


def test_deflate_wbits_decodes_with_exactly_that_window():
    rng = random.Random(3)
    data = bytes(rng.choice(b"acgt") for _ in range(20000)) * 2
    for w in range(8, 16):
        for fmt, wb in ((RAW, -w), (ZLIB, w), (GZIP, 16 + w)):
            z = ota_native.deflate(data, 9, w, fmt)
            if w >= 9:
                assert zlib.decompress(z, wb) == data
            assert drain(ota_native.InflateReader(io.BytesIO(z), fmt, w)) == data


def test_smaller_window_than_the_zlib_header_is_refused():
    z = zlib.compress(b"x" * 1000, 9)  # CINFO 7 (32 KiB)
    with pytest.raises(ValueError, match="larger window"):
        drain(ota_native.InflateReader(io.BytesIO(z), ZLIB, 14))


def test_delta_reader_and_digest():
    rng = random.Random(4)
    old = rng.randbytes(30000)
    new = old[:5000] + b"inserted" + old[7000:] + b"tail"
    z = ota_native.deflate(ota_native.make_patch(old, new), 9, 12, RAW)
    r = ota_native.DeltaReader(io.BytesIO(z), io.BytesIO(old), len(new))
    with pytest.raises(ValueError):
        r.digest()
    assert drain(r) == new
    assert r.digest() == git_blob(new) and r.hexdigest() == git_blob(new).hex()


def test_callback_exceptions_propagate_unchanged():
    class Boom:
        def readinto(self, buf):
            raise OSError(5, "boom")

        def seek(self, off):
            raise KeyError("seek")

    with pytest.raises(OSError, match="boom"):
        ota_native.InflateReader(Boom()).readinto(bytearray(8))
    patch = ota_native.make_patch(b"abcdef" * 10, b"abcdef" * 11)
    with pytest.raises(KeyError):
        drain(ota_native.PatchReader(io.BytesIO(patch), Boom(), 66))


def test_hostile_inputs_only_value_errors():
    rng = random.Random(2024)
    old = rng.randbytes(3000)
    new = old[:1000] + rng.randbytes(200) + old[1500:]
    patch = ota_native.make_patch(old, new)
    zp = {f: ota_native.deflate(patch, 9, 10, f) for f in (RAW, ZLIB, GZIP)}
    plain = bytes(rng.choice(b"ab c") for _ in range(5000))
    streams = [(f, w, ota_native.deflate(plain, 9, w, f)) for f in (RAW, ZLIB, GZIP) for w in (9, 12, 15)]
    errors = 0
    for case in range(3000):
        size = rng.choice([1, 7, 512])
        try:
            if case % 3 == 0:
                f, w, s = rng.choice(streams)
                drain(ota_native.InflateReader(io.BytesIO(mutate(rng, s)), f, w), size)
            elif case % 3 == 1:
                n = len(new) if rng.random() < 0.5 else rng.randrange(5000)
                drain(ota_native.PatchReader(io.BytesIO(mutate(rng, patch)), io.BytesIO(old), n), size)
            else:
                f = rng.choice((RAW, ZLIB, GZIP))
                r = ota_native.DeltaReader(io.BytesIO(mutate(rng, zp[f])), io.BytesIO(old), len(new), f, 10)
                if drain(r, size) == new:
                    assert r.digest() == git_blob(new)
        except ValueError:
            errors += 1
    assert errors > 2500
