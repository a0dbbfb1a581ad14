"""Smallest -X heapsize at which a device's first install completes, the way a device runs it.

Run: .venv/bin/python bench/heap_update.py [--scan]        (`make bench-heap`)

A device folder (ota + main from source, or precompiled by mpy-cross; build/x64/ota_native.mpy;
a developer-channel config) runs `micropython -X heapsize=N -c "import main; main.main()"` against
the GitHub-compatible server over a real git repository; N is bisected (64-byte resolution) until
"OTA: updated" is printed and the device holds exactly the files it should. Scenarios:
  v1        the e2e tests' V1 (tests/conftest.py): 14 files, one of 40 KB, one empty
  ignored   V1 + 40 files under docs/ and tests/ (conftest's DOCS), which the config ignores
--scan: for the precompiled v1 install, -X heapsize from 48,000 to 49,400 in 100-byte steps with
5 branch-name shapes (the name's length and digits move the heap layout): one bisection is not
enough where fragmentation decides, so this prints the highest failing and lowest passing sizes.
"""
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import DOCS, V1, Device, basic_code  # noqa: E402  (the tests' device harness and sample files)
from ghserver import GitHubServer  # noqa: E402
from gitrepo import branch, commit, make_repo  # noqa: E402

SHAPES = ("b%04d", "x%d", "%d", "heap%dTrue-micropython", "feature/long-branch-name-%06d")


def main():
    work = Path(tempfile.mkdtemp(prefix="heap-update-"))
    try:
        repo = make_repo(work / "app")
        commits = {"v1": commit(repo, V1, "v1")}
        branch(repo, "docs", commits["v1"], switch=True)
        commits["ignored"] = commit(repo, DOCS, "docs and tests")
        code = {mpy: basic_code(work / ("code-mpy" if mpy else "code-py"), mpy) for mpy in (False, True)}
        runs = [0]

        def run(srv, nbytes, scenario, form, shape="b%04d"):
            runs[0] += 1
            d = Device(work / ("d%d" % runs[0]), "micropython", srv, code=code[form == "mpy"])
            name = shape % runs[0]
            branch(repo, name, commits[scenario])
            d.config(channel="developer", branch=name, ignore=["docs", "tests"] if scenario == "ignored" else None)
            ok = d.boot(nbytes) and {k: v for k, v in d.files().items() if not k.startswith("main.")} == V1
            shutil.rmtree(d.path)
            return ok

        with GitHubServer(repo) as srv:
            print("Smallest -X heapsize (bytes) for a first install, `import main; main.main()`, x64 unix port")
            print("%-10s %10s %10s" % ("scenario", "source", ".mpy"))
            for scenario in ("v1", "ignored"):
                got = []
                for form in ("source", "mpy"):
                    lo, hi = 16384, 400000
                    while hi - lo > 64:
                        mid = (lo + hi) // 2
                        lo, hi = (lo, mid) if run(srv, mid, scenario, form) else (mid, hi)
                    got.append(hi)
                print("%-10s %10d %10d" % (scenario, got[0], got[1]))
            if "--scan" in sys.argv:
                print("scan, v1 .mpy, 48,000..49,400 step 100:")
                for shape in SHAPES:
                    res = [(n, run(srv, n, "v1", "mpy", shape)) for n in range(48000, 49401, 100)]
                    top = max([n for n, ok in res if not ok] or [0])
                    print("  %-32s highest failing %s, passes from %s" % (
                        shape, top or "-", min([n for n, ok in res if n > top] or ["-"])))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
