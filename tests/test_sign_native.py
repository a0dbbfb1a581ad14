"""The Ed25519 verifier module for the RP2040, build/armv6m/ota_ed25519.mpy, on the emulated
Cortex-M0+ (tests/emu/mpyload.py loads it as MicroPython's loader does), against the PyO3 module:

- the same outcomes for the same calls (tests/api_cases.py sign_agreement: RFC 8032 vectors,
  flipped bits (a sample here: each verification takes ~1.7 s of unicorn), S >= L, small-order
  keys and R, truncated and oversized inputs, argument errors);
- its own 64-bit multiply (natmod/src/lib.rs) against the host's arithmetic;
- its stack: the curve arithmetic runs on the module's stack from the heap (natmod/ota_ed25519.c),
  whose peak is measured here, and the interpreter's stack sees only the glue;
- its speed on the cycle model (rp2040js's Cortex-M0+ timings, 125 MHz): 10 KiB in <= 150 ms;
- the sizes: ota_native.mpy stays <= 20,480 bytes without the verifier in it.
The x64 module and PyO3 are compared in full by tests/test_api.py::test_verifier_bindings_agree.
"""
import os
import random
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "emu"))
import api_cases  # noqa: E402
import mpyload  # noqa: E402
import mpymap  # noqa: E402

BUILD = os.path.join(mpyload.ROOT, "build", "armv6m")
MPY = os.path.join(BUILD, "ota_ed25519.mpy")
BASE = os.path.join(BUILD, "ota_native.mpy")
GLUE = os.path.join(mpyload.ROOT, "natmod", "ota_ed25519.c")
MHZ = 125


def glue_define(name):
    with open(GLUE) as f:
        return int(re.search(r"#define %s (\d+)" % name, f.read()).group(1))


STACK = glue_define("OTA_ED_STACK")
GUARD = glue_define("OTA_ED_GUARD")
PAINT = 0xA5


@pytest.fixture(scope="module")
def machine():
    assert os.path.exists(MPY), "%s is missing: run `make natmod ARCH=armv6m` (make test does)" % MPY
    m = mpyload.Machine()
    allocs = []
    realloc = m.f_realloc_

    def f_realloc_(ptr, n, *rest):
        a = realloc(ptr, n, *rest)
        if n:
            allocs.append((a, n))
        return a

    m.f_realloc_ = f_realloc_
    m.load(MPY)
    m.f_realloc_ = realloc
    stacks = [a for a, n in allocs if n == STACK]
    assert len(stacks) == 1, allocs  # the import made the stack of its own
    m.ed_stack = stacks[0]
    return m


@pytest.fixture(scope="module")
def mod(machine):
    return machine.module


@pytest.fixture(scope="module")
def host():
    import ota_native

    assert hasattr(ota_native, "Verifier"), "PyO3 ota_native without Verifier: run `make pyshim`"
    return ota_native


def stack_peak(m):
    """Bytes of the module's stack used by the last call (it is painted before each call)."""
    data = bytes(m.uc.mem_read(m.ed_stack, STACK))
    n = 0
    while n < STACK and data[n] == PAINT:
        n += 1
    return STACK - n


def test_loads_like_micropython(machine, mod):
    assert sorted(dir(mod)) == ["Verifier"]
    assert machine.calls["store_global"] == 1


def test_static_isa_whole_text():
    lm = mpymap.LinkMap("armv6m", MPY, module="ota_ed25519")
    bad = [p for a, b in lm.code_ranges() for p in mpyload.scan_thumb(lm.text[a:b], a)]
    assert bad == [], "non-ARMv6-M instructions: %s" % bad[:10]


def test_same_outcomes_as_pyo3(mod, host):
    flips = 900  # bits 0, 900, 1800 of the message; every 112th of the signature and the key
    emu = api_cases.sign_agreement(mod, flips)
    ref = api_cases.sign_agreement(host, flips)
    assert [n for n, _ in emu] == [n for n, _ in ref]
    differ = ["%s\n    PyO3:   %s\n    armv6m: %s" % (n, r, e) for (n, r), (_, e) in zip(ref, emu) if r != e]
    assert not differ, "%d of %d calls differ:\n%s" % (len(differ), len(ref), "\n".join(differ))
    o = dict(emu)
    assert all(o["rfc8032 %d" % i] == "-> True" for i in range(4)), o
    assert o["msg by 1"] == o["key2"] == "-> True"
    assert o["msg bit 900"] == "ValueError: signature mismatch"
    assert o["S + L"] == "ValueError: signature not canonical (S >= L)"
    assert o["small-order key 4"] == "ValueError: public key of small order"
    assert o["Verifier(key=)"] == "TypeError: bad keyword argument"


def test_lmul_against_the_host(machine):
    """__aeabi_lmul (natmod/src/lib.rs): (r1:r0) * (r3:r2) mod 2**64, on edge and random values."""
    lm = mpymap.LinkMap("armv6m", MPY, module="ota_ed25519")
    fn = machine.text_addr + next(s.addr for s in lm.symbols if s.name == "__aeabi_lmul")
    rnd = random.Random(11)
    edges = [0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, (1 << 51) - 1,
             (1 << 63), (1 << 64) - 1]
    vals = [(a, b) for a in edges for b in edges]
    vals += [(rnd.getrandbits(rnd.choice((32, 51, 52, 64))), rnd.getrandbits(rnd.choice((32, 51, 52, 64))))
             for _ in range(2000)]
    for a, b in vals:
        r0 = machine.call(fn, a & 0xFFFFFFFF, a >> 32, b & 0xFFFFFFFF, b >> 32)
        import unicorn.arm_const as A
        r1 = machine.uc.reg_read(A.UC_ARM_REG_R1)
        assert (r1 << 32 | r0) == (a * b) & ((1 << 64) - 1), (hex(a), hex(b))


def test_stack_and_time(machine, mod, host, record_property):
    """Peak stack of each call, and verify time on the cycle model for 2 and 10 KiB."""
    m = machine
    seed = bytes(range(1, 33))
    key = host.ed25519_public_key(seed)
    peaks = {}
    times = {}
    main0 = m.stack_used()
    for size in (2048, 10240):
        msg = bytes((i * 31 + 7) & 255 for i in range(size))
        sig = host.ed25519_sign(seed, msg)
        c0 = m.cycles
        v = mod.Verifier(key, sig)
        c1 = m.cycles
        peaks["Verifier()"] = max(peaks.get("Verifier()", 0), stack_peak(m))
        for i in range(0, size, 1024):  # the updater's default chunk
            v.update(msg[i:i + 1024])
        c2 = m.cycles
        assert v.verify() is True
        c3 = m.cycles
        peaks["verify()"] = max(peaks.get("verify()", 0), stack_peak(m))
        times[size] = (c1 - c0, c2 - c1, c3 - c2)
    for size, (new, upd, ver) in times.items():
        total = (new + upd + ver) / (MHZ * 1000.0)
        print("\narmv6m, %5d B at %d MHz: Verifier() %.1f ms, update %.1f ms (%.0f cycles/B), verify() %.1f ms: "
              "%.1f ms" % (size, MHZ, new / MHZ / 1e3, upd / MHZ / 1e3, upd / size, ver / MHZ / 1e3, total))
        record_property("verify_ms_%d" % size, round(total, 1))
    print("stack of its own (%d B, guard %d B): peaks %s; interpreter's stack: %d B"
          % (STACK, GUARD, peaks, m.stack_used()))
    total10 = sum(times[10240]) / (MHZ * 1000.0)
    assert total10 <= 150, "10 KiB verify takes %.1f ms at 125 MHz" % total10
    # room left for interrupt frames (an interrupt pushes onto the stack in use) above the guard
    for call, peak in peaks.items():
        assert 3000 < peak <= STACK - GUARD - 1024, (call, peak)
    # the glue and the SHA-512 of update() on the interpreter's stack: well under 1 KB
    assert m.stack_used() < 1024, m.stack_used()
    assert main0 <= m.stack_used()


def test_guard_trips(machine, mod):
    """A call that reaches into the guard raises (Internal) when it returns: here verify() with a
    write into the guard made as it starts (as a deeper stack, or an interrupt, would)."""
    from unicorn import UC_HOOK_CODE

    m = machine
    lm = mpymap.LinkMap("armv6m", MPY, module="ota_ed25519")
    entry = m.text_addr + next(s.addr for s in lm.symbols if s.name == "ota_ed_verify")
    v = mod.Verifier(api_cases.KEY, api_cases.SIG)
    v.update(api_cases.MSG)
    h = m.uc.hook_add(UC_HOOK_CODE, lambda uc, *_: uc.mem_write(m.ed_stack + GUARD - 1, b"\0"),
                      begin=entry, end=entry + 1)
    m.uc.ctl_remove_cache(entry, entry + 2)  # code translated before the hook would not see it
    try:
        e = api_cases.raises(ValueError, v.verify)
    finally:
        m.uc.hook_del(h)
        m.uc.ctl_remove_cache(entry, entry + 2)
    assert str(e) == "internal error"
    v = mod.Verifier(api_cases.KEY, api_cases.SIG)
    v.update(api_cases.MSG)
    assert v.verify() is True  # the next call paints the stack again


def test_sizes():
    """ota_native.mpy stays at or under 20,480 bytes (the verifier is a module of its own)."""
    base, sign = os.path.getsize(BASE), os.path.getsize(MPY)
    print("\narmv6m sizes: ota_native.mpy %d B, ota_ed25519.mpy %d B" % (base, sign))
    assert base <= 20480
    with open(BASE, "rb") as f:
        assert b"signature" not in f.read()  # no verifier code or message in the base module
    assert sign < 24 * 1024
