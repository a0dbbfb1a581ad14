"""The ota_native API cases (tests/api_cases.py) under both bindings, same expectations:
- CPython: the PyO3 module `ota_native` in .venv (`make pyshim`);
- MicroPython unix port: build/x64/ota_native.mpy (`make natmod ARCH=x64`), one run of
  every case, reported per case;
- test_bindings_agree: the differential test. The same calls (api_cases.agreement(): good
  calls, wrong/missing/repeated arguments, unknown keywords, bad values and types, callbacks
  returning bad counts or raising) on both bindings must give identical outcomes (return
  value, or exception type and message).
- test_verifier_bindings_agree: the same for the Ed25519 Verifier (api_cases.sign_agreement():
  RFC 8032 vectors, every bit of a message, signature and key flipped, S >= L, small-order keys
  and R, truncated and oversized inputs, argument errors): PyO3 against build/x64/ota_ed25519.mpy.
Vectors are written here with CPython's zlib/gzip/hashlib and ota_native.make_patch.
"""
import ast
import gzip
import hashlib
import json
import random
import struct
import zlib
from pathlib import Path

import pytest

CASES_FILE = Path(__file__).with_name("api_cases.py")
CASES = [n.name for n in ast.parse(CASES_FILE.read_text()).body
         if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def git_blob(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sample_text(seed, n):
    """Compressible, source-like bytes."""
    rnd = random.Random(seed)
    words = [b"def", b"return", b"self", b"import", b"ota", b"manifest", b"sha1", b"0x%04x",
             b"window", b"(", b")", b":", b"\n    ", b"\n", b" = ", b"buf", b"len", b"for"]
    out = bytearray()
    while len(out) < n:
        w = rnd.choice(words)
        out += w % rnd.randrange(65536) if b"%" in w else w
        out += b" "
    return bytes(out[:n])


def deflate(data, wbits, level=9):
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


def control(mix, copy, seek):
    """One bsdiff control block: two u64 lengths and a sign-magnitude seek."""
    s = -seek | (1 << 63) if seek < 0 else seek
    return struct.pack("<QQQ", mix & (2**64 - 1), copy & (2**64 - 1), s)


def write_vectors(d):
    import ota_native  # the PyO3 module: make_patch

    text = sample_text(1, 20000) + bytes(random.Random(2).randrange(256) for _ in range(3000))
    files = {"text.bin": text, "empty_z.bin": deflate(b"", 15)}
    for w in range(9, 16):
        z = deflate(text, w)
        assert z[0] >> 4 == w - 8  # zlib CINFO: the stream declares its window
        files["z%d.bin" % w] = z
    files["raw15.bin"] = deflate(text, -15)
    files["raw9.bin"] = deflate(text, -9)
    files["gzip15.bin"] = gzip.compress(text, 9)

    old = sample_text(3, 20000)
    new = bytearray(old)
    new[100:200] = b"x" * 50          # change, shrink, insert, append
    new[5000:5000] = sample_text(4, 3000)
    new[12000:12010] = b"0123456789"
    new += sample_text(5, 2000)
    new = bytes(new)
    patch = ota_native.make_patch(old, new)
    files.update({"old.bin": old, "new.bin": new, "patch.bin": patch,
                  "patch_same.bin": ota_native.make_patch(old, old),
                  "patch_raw12.bin": deflate(patch, -12), "patch_z15.bin": deflate(patch, 15)})

    hostile = {
        "h_mix_huge.bin": control(2**62, 0, 0) + b"\0" * 64,
        "h_copy_huge.bin": control(0, 2**62, 0) + b"\0" * 64,
        "h_mix_u64.bin": control(2**64 - 1, 0, 0) + b"\0" * 64,
        "h_sum_overflow.bin": control(2**63, 2**63, 0) + b"\0" * 64,
        "h_seek_negative.bin": control(0, 0, -100) + control(10, 0, 0) + b"\0" * 10,
        "h_seek_past_old.bin": control(0, 0, 10**9) + control(10, 0, 0) + b"\0" * 10,
        "h_seek_min.bin": control(0, 0, -(2**63 - 1)) + control(10, 0, 0) + b"\0" * 10,
        "h_mix_past_old.bin": control(0, 0, len(old) - 50) + control(100, 0, 0) + b"\0" * 100,
        "h_past_new_size.bin": control(0, 4000, 0) + b"a" * 4000 + control(0, 200, 0) + b"b" * 200,
    }
    files.update(hostile)
    for name, data in files.items():
        (d / name).write_bytes(data)
    vectors = {
        "text_blob": git_blob(text), "text100_blob": git_blob(text[:100]), "abc_blob": git_blob(b"abc"),
        "new_blob": git_blob(new), "hostile": sorted(hostile),
    }
    (d / "vectors.json").write_text(json.dumps(vectors))


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    d = tmp_path_factory.mktemp("api_vectors")
    write_vectors(d)
    return d


def test_cases_found():
    assert len(CASES) >= 15, CASES


@pytest.mark.parametrize("case", CASES)
def test_cpython(case, vectors):
    import api_cases
    api_cases.setup(str(vectors))
    getattr(api_cases, case)()


# Runs every case in MicroPython and prints one line per case (tracebacks follow FAIL lines).
MPY_RUNNER = """
import sys, api_cases
api_cases.setup(%r)
for name in sorted(n for n in dir(api_cases) if n.startswith("test_")):
    try:
        getattr(api_cases, name)()
        print("@@PASS", name)
    except Exception as e:
        print("@@FAIL", name, repr(e))
        sys.print_exception(e, sys.stdout)
print("@@DONE")
"""


@pytest.fixture(scope="module")
def mpy_results(micropython, vectors):
    # cwd = tests/: sys.path[0] is "" for -c, so api_cases comes from here.
    p = micropython.run("-X", "heapsize=8M", "-c", MPY_RUNNER % str(vectors), cwd=CASES_FILE.parent,
                        timeout=600)
    out = p.stdout + p.stderr
    assert "@@DONE" in out, "MicroPython run did not finish (rc %d):\n%s" % (p.returncode, out[-4000:])
    results, current = {}, None
    for line in out.splitlines():
        if line.startswith(("@@PASS ", "@@FAIL ")):
            current = line.split()[1]
            results[current] = [line]
        elif current and line != "@@DONE":
            results[current].append(line)
    return results


def test_micropython_ran_every_case(mpy_results):
    assert sorted(mpy_results) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_micropython(case, mpy_results):
    lines = mpy_results.get(case, ["(case did not run)"])
    assert lines[0].startswith("@@PASS"), "\n".join(lines)


# ---- the differential test: the same calls, the same outcomes ----------------------------------

AGREE_RUNNER = """
import api_cases
api_cases.setup(%r)
for name, out in api_cases.agreement():
    print("@@A\\t" + name + "\\t" + out)
print("@@DONE")
"""


def test_bindings_agree(micropython, vectors):
    import api_cases
    api_cases.setup(str(vectors))
    cpython = api_cases.agreement()
    p = micropython.run("-X", "heapsize=8M", "-c", AGREE_RUNNER % str(vectors), cwd=CASES_FILE.parent, timeout=600)
    out = p.stdout + p.stderr
    assert "@@DONE" in out, "MicroPython run did not finish (rc %d):\n%s" % (p.returncode, out[-4000:])
    mpy = [tuple(line.split("\t")[1:3]) for line in p.stdout.splitlines() if line.startswith("@@A\t")]
    assert [n for n, _ in mpy] == [n for n, _ in cpython]  # the same calls, in the same order
    assert len(cpython) >= 150
    differ = ["%s\n    CPython:     %s\n    MicroPython: %s" % (n, c, m)
              for (n, c), (_, m) in zip(cpython, mpy) if c != m]
    assert not differ, "%d of %d calls differ:\n%s" % (len(differ), len(cpython), "\n".join(differ))
    # The outcomes cover what the test is for (a call that suddenly passes would show here too).
    outcomes = dict(cpython)
    assert outcomes["BlobHasher()"] == "TypeError: wrong number of arguments"
    assert outcomes["InflateReader(s, fmt=1)"] == "TypeError: bad keyword argument"
    assert outcomes["update(b, n=2)"] == "TypeError: function doesn't take keyword arguments"
    assert outcomes["BlobHasher(-1)"] == "ValueError: size not 0..2**30-1"
    assert outcomes["InflateReader(wbits=16)"] == "ValueError: wbits not 8..15"
    assert outcomes["InflateReader(format=4)"] == "ValueError: format not RAW/ZLIB/GZIP"
    assert outcomes["BlobHasher(True)"] == "TypeError: int expected"
    assert outcomes["update(str)"] == "TypeError: bad buffer"
    assert outcomes["source readinto -> -1"].count("ValueError: bad readinto count") == 2
    assert outcomes["constants"] == "-> (1, 2, 3)"


SIGN_RUNNER = """
import api_cases
print("@@M " + api_cases.SIGN.__name__)
for name, out in api_cases.sign_agreement():
    print("@@A\\t" + name + "\\t" + out)
print("@@DONE")
"""


def test_verifier_bindings_agree(micropython):
    import api_cases
    cpython = api_cases.sign_agreement()
    p = micropython.run("-X", "heapsize=8M", "-c", SIGN_RUNNER, cwd=CASES_FILE.parent, timeout=600)
    out = p.stdout + p.stderr
    assert "@@DONE" in out, "MicroPython run did not finish (rc %d):\n%s" % (p.returncode, out[-4000:])
    assert "@@M ota_ed25519" in out  # the second native module, not ota_native
    mpy = [tuple(line.split("\t")[1:3]) for line in p.stdout.splitlines() if line.startswith("@@A\t")]
    assert [n for n, _ in mpy] == [n for n, _ in cpython]
    assert len(cpython) > 3000
    differ = ["%s\n    CPython:     %s\n    MicroPython: %s" % (n, c, m)
              for (n, c), (_, m) in zip(cpython, mpy) if c != m]
    assert not differ, "%d of %d calls differ:\n%s" % (len(differ), len(cpython), "\n".join(differ[:20]))
    o = dict(cpython)
    assert all(o["rfc8032 %d" % i] == "-> True" for i in range(4))
    assert o["msg"] == o["msg by 1"] == o["key2"] == "-> True"
    assert o["key2 sig of key"] == "ValueError: signature mismatch"
    flipped = [v for n, v in cpython if n.startswith(("msg bit", "sig bit", "key bit"))]
    assert len(flipped) == 300 * 8 + 512 + 256 and "-> True" not in flipped
    assert {v for n, v in cpython if n.startswith("msg bit")} == {"ValueError: signature mismatch"}
    assert o["S + L"] == o["S = L"] == "ValueError: signature not canonical (S >= L)"
    assert o["S = L-1"] == "ValueError: signature mismatch"
    assert {o["small-order key %d" % i] for i in range(6)} == {"ValueError: public key of small order"}
    assert {o["small-order R %d" % i] for i in range(6)} == {"ValueError: signature R not a valid point"}
    assert o["key y = p + 1"] == o["key not a point"] == "ValueError: public key not a curve point"
    assert o["key of 31 bytes"] == "ValueError: key not 32 bytes"
    assert o["sig of 65 bytes"] == "ValueError: signature not 64 bytes"
    assert o["Verifier(key)"] == "TypeError: wrong number of arguments"
    assert o["Verifier(key=)"] == "TypeError: bad keyword argument"
    assert o["Verifier(str)"] == "TypeError: bad buffer"
    assert o["update kw"] == "TypeError: function doesn't take keyword arguments"
    assert o["after verify"] == "-> ('-> None', '-> True', '-> True', 'ValueError: bad argument', '-> True')"
