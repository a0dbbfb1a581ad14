"""Instructions and Cortex-M0+ cycles per byte of the armv6m ota_native.mpy (emulated RP2040),
and the time of an Ed25519 verification by the second module, ota_ed25519.mpy (SignBench).

Run: .venv/bin/python bench/emu/bench_emu.py   (make bench-emu)

The .mpy is loaded and relocated by tests/emu/mpyload.py (unicorn), the objects are made through
the glue as MicroPython would (BlobHasher(...), InflateReader(...), ...); the measured loops call
the Rust entry point ota_read (the call the glue's update/readinto make: update for a hasher)
with buffers in SRAM.

Cycle model: rp2040js 1.4.1's Cortex-M0+ timings, code and data in SRAM, no wait states (MicroPython
loads native modules into RAM). Two counts are printed: unicorn + this harness's block tracer (same
timing table), and rp2040js itself running the very same SRAM image and calls (needs node; the npm
package is installed into build/emu/node_modules on first use). memmove/memset are newlib's ARMv6-M
routines (MicroPython on rp2 uses the bootrom's, which are faster). Source reads (the socket or
file) are outside the count: their bytes appear in the SRAM buffer the callback is handed.
"""

import glob
import io
import json
import os
import random
import shutil
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "emu"))
import mpyload  # noqa: E402
import mpymap  # noqa: E402

MHZ = 125
ABSENT = 0x80000000  # ota_core::api::ABSENT (n not given) as a 32-bit argument
STATE_OFFSET = 56  # offsetof(ota_obj_t, state) in natmod/ota_native.c (checked below)
N = 32 * 1024


def corpus(n):
    """n bytes of Python source (the standard library's, sorted file order): realistic OTA text."""
    lib = os.path.dirname(os.__file__)
    out = bytearray()
    for f in sorted(glob.glob(os.path.join(lib, "*.py"))):
        with open(f, "rb") as fh:
            out += fh.read()
        if len(out) >= n:
            return bytes(out[:n])
    return bytes(out[:n])


def edited(old, seed, n_edits=40):
    rnd = random.Random(seed)
    new = bytearray(old)
    for _ in range(n_edits):
        p = rnd.randrange(len(new))
        new[p:p + rnd.randint(0, 30)] = bytes(rnd.choice(b"abcdefgh_ =()\n") for _ in range(rnd.randint(0, 40)))
    return bytes(new)


def make_patch(old, new):
    try:
        import ota_native
        if hasattr(ota_native, "make_patch"):
            return ota_native.make_patch(old, new), "bsdiff crate (PyO3 ota_native.make_patch)"
    except ImportError:
        pass
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_armv6m import make_patch_by_hand
    patch, new2 = make_patch_by_hand(old, 3)
    return patch, "hand-made (PyO3 module missing): %d bytes out" % len(new2)


class Bench:
    def __init__(self):
        self.m = mpyload.Machine()
        self.mod = self.m.load(os.path.join(ROOT, "build", "armv6m", "ota_native.mpy"))
        lm = mpymap.LinkMap("armv6m")
        self.sym = {s.name: self.m.text_addr + s.addr for s in lm.symbols if s.name.startswith("ota_")}
        self.rows = []
        self.jobs = []

    def measure(self, fn, args):
        m = self.m
        i0, c0 = m.instructions, m.cycles
        r = m.call(fn, *args)
        return r, m.instructions - i0, m.cycles - c0

    def run(self):
        m, mod = self.m, self.mod
        data = corpus(N)
        buf = m.alloc_buffer(N)
        out = m.alloc_buffer(4096)
        digest = m.alloc_buffer(20)

        # -- SHA1: one update over N bytes in SRAM
        h = mod.BlobHasher(N)
        buf.write(data)
        st = h.addr + STATE_OFFSET
        _, ni, nc = self.measure(self.sym["ota_read"], (st, 0, buf.addr, N, ABSENT))
        assert self.m.call(self.sym["ota_state_digest"], st, digest.addr) == 0
        import hashlib
        assert digest.bytes() == hashlib.sha1(b"blob %d\0" % N + data).digest(), "SHA1 result"
        assert h.digest() == digest.bytes()  # the glue reads the same state: offset is right
        self.rows.append(("Git-blob SHA1", N, ni, nc))
        h2 = mod.BlobHasher(N)
        self.jobs.append(("Git-blob SHA1", N, [(self.sym["ota_read"], [h2.addr + STATE_OFFSET, 0, buf.addr, N, ABSENT], False)], [], h2))

        # -- inflate (zlib, window 32 KiB; raw, window 4 KiB)
        for label, fmt, wbits in (("inflate zlib w=15", 2, 15), ("inflate raw w=12", 1, 12)):
            c = zlib.compressobj(9, zlib.DEFLATED, wbits if fmt == 2 else -wbits)
            comp = c.compress(data) + c.flush()
            r = mod.InflateReader(io.BytesIO(comp), fmt, wbits)
            got, ni, nc = self.loop(r, "ota_read", out)
            assert got == data, label
            self.rows.append((label + " (per output byte)", N, ni, nc))
            self.rp_stream(label + " (per output byte)", mod.InflateReader, comp, (fmt, wbits), "ota_read", out, None)

        # -- bspatch and the delta pipeline
        old = data
        new = edited(old, 5)
        patch, how = make_patch(old, new)
        if not how.startswith("bsdiff"):
            sys.path.insert(0, os.path.join(ROOT, "tests"))
            from test_armv6m import make_patch_by_hand
            patch, new = make_patch_by_hand(old, 3)
        self.patch_how = how
        r = mod.PatchReader(io.BytesIO(patch), io.BytesIO(old), len(new))
        got, ni, nc = self.loop(r, "ota_read", out)
        assert got == new, "bspatch"
        self.rows.append(("bspatch (per output byte)", len(new), ni, nc))
        self.rp_stream("bspatch (per output byte)", mod.PatchReader, patch, None, "ota_read", out, (old, len(new)))
        c = zlib.compressobj(9, zlib.DEFLATED, -12)
        comp = c.compress(patch) + c.flush()
        r = mod.DeltaReader(io.BytesIO(comp), io.BytesIO(old), len(new), 1, 12)
        got, ni, nc = self.loop(r, "ota_read", out)
        assert got == new and r.hexdigest() == hashlib.sha1(b"blob %d\0" % len(new) + new).hexdigest(), "delta"
        self.rows.append(("delta pipeline (per output byte)", len(new), ni, nc))
        self.rp_stream("delta pipeline (per output byte)", mod.DeltaReader, comp, None, "ota_read", out, (old, len(new), 1, 12))

    def loop(self, reader, entry, out):
        """readinto loop through the Rust entry point (what the glue's readinto calls)."""
        st = reader.addr + STATE_OFFSET
        got = bytearray()
        ni = nc = 0
        while True:
            r, i, c = self.measure(self.sym[entry], (st, reader.addr, out.addr, out.n, ABSENT))
            ni += i
            nc += c
            r = r - (1 << 32) if r & 0x80000000 else r
            assert r >= 0, "error %d" % -r
            if r == 0:
                return bytes(got), ni, nc
            got += out.bytes(r)

    def rp_stream(self, label, cls, stream, fmt_args, entry, out, patch_args):
        """The same loop, for rp2040js: a fresh object whose callbacks node answers."""
        class Src:
            def readinto(self, b):
                return 0

            def seek(self, off):
                return off

        src, old = Src(), Src()
        if patch_args is None:
            r = cls(src, *fmt_args)
        else:
            r = cls(src, old, *patch_args[1:])
        # the bound methods' objects, as the glue stored them in ota_obj_t {base, src[2], seek[2], read[2]}
        meth_src = self.m.r32(r.addr + 4)
        streams = [{"readinto": meth_src, "data": stream}]
        if patch_args is not None:
            streams.append({"readinto": self.m.r32(r.addr + 20), "seek": self.m.r32(r.addr + 12),
                            "data": patch_args[0]})
        calls = [(self.sym[entry], [r.addr + STATE_OFFSET, r.addr, out.addr, out.n, ABSENT], True)]
        self.jobs.append((label, patch_args[1] if patch_args else N, calls, streams, r))

    def rp2040js(self):
        emu = os.path.join(ROOT, "build", "emu")
        os.makedirs(emu, exist_ok=True)
        mod_dir = os.path.join(emu, "node_modules", "rp2040js")
        if not os.path.isdir(mod_dir):
            if not shutil.which("npm"):
                return "node/npm not installed"
            shutil.copy(os.path.join(HERE, "package.json"), emu)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=emu, check=True)
        shutil.copy(os.path.join(HERE, "run_rp2040.mjs"), emu)
        sram = bytes(self.m.uc.mem_read(mpyload.SRAM, mpyload.SRAM_SIZE))
        with open(os.path.join(emu, "sram.bin"), "wb") as f:
            f.write(sram)
        hooks = {n: (mpyload.HOOKS + 4 * i) for i, n in enumerate(mpyload.FUN_TABLE_NAMES)}
        results = {}
        for label, nbytes, calls, streams, obj in self.jobs:
            sfiles = []
            for k, s in enumerate(streams):
                p = os.path.join(emu, "stream%d.bin" % k)
                with open(p, "wb") as f:
                    f.write(s["data"])
                sfiles.append(dict(s, data=p))
            job = {"sram": os.path.join(emu, "sram.bin"), "sram_out": os.path.join(emu, "sram_out.bin"),
                   "hooks": hooks, "streams": sfiles, "sp": mpyload.STACK_TOP, "ret": mpyload.RET_MAGIC,
                   "calls": [{"fn": fn, "args": args, "until_zero": uz} for fn, args, uz in calls]}
            jp = os.path.join(emu, "job.json")
            with open(jp, "w") as f:
                json.dump(job, f)
            res = json.loads(subprocess.check_output(["node", os.path.join(emu, "run_rp2040.mjs"), jp], cwd=emu))
            produced = 0
            cyc = ins = 0
            for c in res["calls"]:
                cyc += c["cycles"]
                ins += c["instructions"]
                if label.startswith(("Git", "Ed25519")):  # 0 or an error code
                    assert c["r0"] == 0, "%s: rp2040js run returned error %d" % (label, c["r0"])
                else:
                    assert c["r0"] < 0x80000000, "rp2040js run returned an error %d" % (c["r0"] - (1 << 32))
                    produced += c["r0"]
            if not label.startswith(("Git", "Ed25519")):
                assert produced == nbytes, "%s: rp2040js produced %d of %d bytes" % (label, produced, nbytes)
            results[label] = (ins, cyc)
        return results

    def report(self):
        rp = self.rp2040js()
        print("armv6m ota_native.mpy on an emulated RP2040 (Cortex-M0+ @ %d MHz)" % MHZ)
        print("cycle model: rp2040js 1.4.1 Cortex-M0+ timings, SRAM, no wait states;"
              " memmove/memset = newlib ARMv6-M")
        print("input: %d KiB of Python source; bspatch/delta patch: %s" % (N // 1024, self.patch_how))
        print("%-36s %9s %9s %9s %9s %9s" % ("", "instr/B", "cyc/B", "MB/s", "rp2040js", "MB/s"))
        for label, n, ni, nc in self.rows:
            rpc = ""
            rpm = ""
            if isinstance(rp, dict) and label in rp:
                rpc = "%.2f" % (rp[label][1] / n)
                rpm = "%.2f" % (MHZ / (rp[label][1] / n))
            print("%-36s %9.2f %9.2f %9.2f %9s %9s" % (label, ni / n, nc / n, MHZ / (nc / n), rpc, rpm))
        if not isinstance(rp, dict):
            print("rp2040js:", rp)
        print("targets: SHA1 >= 2.5 MB/s, inflate >= 2 MB/s of output (MB = 10^6 bytes)")
        print("peak stack use: %d bytes" % self.m.stack_used())


class SignBench(Bench):
    """Ed25519 verification of a signed manifest by ota_ed25519.mpy: Verifier() (ota_ed_new), the
    message in 1 KiB pieces (ota_ed_update: the updater's default chunk) and verify()
    (ota_ed_verify), the Rust entry points the glue calls, with everything in SRAM. (The glue runs
    ota_ed_new and ota_ed_verify on the module's own stack; here they run on the bench's.)"""

    SIZES = (2048, 10240)

    def __init__(self):
        self.m = mpyload.Machine()
        self.mod = self.m.load(os.path.join(ROOT, "build", "armv6m", "ota_ed25519.mpy"))
        lm = mpymap.LinkMap("armv6m", module="ota_ed25519")
        self.sym = {s.name: self.m.text_addr + s.addr for s in lm.symbols if s.name.startswith("ota_ed_")}
        self.rows = []
        self.jobs = []

    def run(self):
        import ota_native  # the PyO3 module signs

        m = self.m
        seed = bytes(range(1, 33))
        key = m.alloc_buffer(32)
        key.write(ota_native.ed25519_public_key(seed))
        st = m.alloc_buffer(m.call(self.sym["ota_ed_state_size"]))
        for size in self.SIZES:  # (each its own buffers: rp2040js runs on the final SRAM image)
            data = corpus(size)
            msg = m.alloc_buffer(size)
            sig = m.alloc_buffer(64)
            msg.write(data)
            sig.write(ota_native.ed25519_sign(seed, data))
            calls = [(self.sym["ota_ed_new"], [st.addr, key.addr, 32, sig.addr, 64], False)]
            calls += [(self.sym["ota_ed_update"], [st.addr, msg.addr + i, min(1024, size - i), 0xFFFFFFFF], False)
                      for i in range(0, size, 1024)]
            calls.append((self.sym["ota_ed_verify"], [st.addr], False))
            ni = nc = 0
            for fn, args, _ in calls:
                r, i, c = self.measure(fn, args)
                assert r == 0, "error %d" % r
                ni += i
                nc += c
            label = "Ed25519 verify, %d KiB" % (size // 1024)
            self.rows.append((label, size, ni, nc))
            self.jobs.append((label, size, calls, [], None))

    def report(self):
        rp = self.rp2040js()
        print("armv6m ota_ed25519.mpy: Verifier(), update() in 1 KiB pieces, verify() (Cortex-M0+ @ %d MHz)" % MHZ)
        print("%-36s %12s %9s %12s %9s" % ("", "cycles", "ms", "rp2040js", "ms"))
        for label, n, ni, nc in self.rows:
            rpc = rp[label][1] if isinstance(rp, dict) and label in rp else None
            print("%-36s %12d %9.1f %12s %9s" % (label, nc, nc / (MHZ * 1e3), rpc or "",
                                                 "%.1f" % (rpc / (MHZ * 1e3)) if rpc else ""))
        if not isinstance(rp, dict):
            print("rp2040js:", rp)
        print("target: 10 KiB in <= 150 ms; peak stack of these calls: %d bytes" % self.m.stack_used())


if __name__ == "__main__":
    b = Bench()
    b.run()
    b.report()
    print()
    b = SignBench()
    b.run()
    b.report()
