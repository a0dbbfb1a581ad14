#!/usr/bin/env python3
"""Delta benchmark on real release histories (prints figures; not a test).

Dataset: bench/datasets.txt (packages and versions from PyPI, wheels cached
under the ignored bench/data/).  Each package's versions are committed in
turn to a scratch git repository, and every release step (consecutive
versions) is run through python/delta_gen.py exactly as a release manager
would (``--old <prev> --new <cur>``), then applied with python/delta_apply.py
(ota_native.DeltaReader, 256-byte chunks) and verified by Git blob SHA1.

Bytes a device downloads per release step:
  (a) every file in full
  (b) only changed files (other blob SHA; added files included) in full
  (c) changed files, raw deflate with window 2**wbits
  (d) our delta path: index.json + per changed file the delta if delta_gen
      kept one, else (c)'s compressed full file
On the modified files (present in both versions) the same run compares
bsdiff4 (BSDIFF40, bz2), detools (sequential bsdiff, heatshrink and lzma) and
``zstd -19 --patch-from``.

Needs: make pyshim; .venv/bin/pip install bsdiff4 detools; Debian zstd.
Usage: .venv/bin/python bench/bench_delta.py [--wbits 10,12] [--steps] [--micropython]
"""

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
DL = DATA / "dl"
sys.path.insert(0, str(ROOT / "python"))

import delta_apply  # noqa: E402
import delta_gen  # noqa: E402

# Decoder memory beyond the caller's chunk buffer, in bytes.
INFLATE_STATE = 10_600       # ota_core Inflater (miniz_oxide DecompressorOxide), see core/src/inflate.rs
PIPE_STATE = 300             # bspatch control state + Git-blob SHA1 state (approx.)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- dataset ------------------------------------------------------------------------

def read_datasets(path=HERE / "datasets.txt"):
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if line:
            out.append((line[0], line[1:]))
    return out


def wheel_path(name, version):
    stem = name.replace("-", "_").replace(".", "_").lower() + "-" + version + "-"
    for p in sorted(DL.glob("*.whl")):
        if p.name.lower().startswith(stem):
            return p
    return None


def fetch(name, version):
    p = wheel_path(name, version)
    if p is None:
        DL.mkdir(parents=True, exist_ok=True)
        log("pip download %s==%s" % (name, version))
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary", ":all:", "-d", str(DL), "%s==%s" % (name, version)],
                       check=True)
        p = wheel_path(name, version)
    if p is None:
        raise SystemExit("no wheel for %s==%s" % (name, version))
    return p


def device_tree(wheel):
    """{path: bytes}: the *.py files of the wheel outside *.dist-info/."""
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in sorted(z.namelist())
                if n.endswith(".py") and ".dist-info/" not in n}


# --- scratch git repo -------------------------------------------------------------------

def _git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid",
               GIT_AUTHOR_DATE="1704067200 +0000", GIT_COMMITTER_DATE="1704067200 +0000",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "-C", str(repo), "-c", "commit.gpgsign=false", *args],
                   check=True, capture_output=True, env=env)


def build_repo(repo, versions):
    """Commit each version's tree in turn, tagged with the version."""
    _git(repo, "init", "-q", "-b", "main")
    for ver, tree in versions:
        for p in repo.iterdir():
            if p.name != ".git":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        for path, data in tree.items():
            dest = repo / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "--allow-empty", "-m", ver)
        _git(repo, "tag", ver)


# --- competitors -------------------------------------------------------------------------

def bsdiff4_patch(old, new):
    import bsdiff4
    p = bsdiff4.diff(old, new)
    assert bsdiff4.patch(old, p) == new
    return p


def detools_patch(old, new, compression):
    import detools
    fp = io.BytesIO()
    detools.create_patch(io.BytesIO(old), io.BytesIO(new), fp, compression=compression)
    p = fp.getvalue()
    out = io.BytesIO()
    detools.apply_patch(io.BytesIO(old), io.BytesIO(p), out)
    assert out.getvalue() == new
    return p


def zstd_patch(old, new, tmp):
    o, n, p = tmp / "old", tmp / "new", tmp / "patch"
    o.write_bytes(old)
    n.write_bytes(new)
    subprocess.run(["zstd", "-q", "-f", "-19", "--patch-from=%s" % o, str(n), "-o", str(p)],
                   check=True, capture_output=True)
    r = subprocess.run(["zstd", "-q", "-d", "-c", "--patch-from=%s" % o, str(p)],
                       check=True, capture_output=True)
    assert r.stdout == new
    return p.read_bytes()


def timed(f, *a):
    t = time.perf_counter()
    r = f(*a)
    return r, time.perf_counter() - t


# --- the run -----------------------------------------------------------------------------

def run(wbits_list, show_steps, mpy):
    if not shutil.which("zstd"):
        raise SystemExit("zstd not found (Debian package zstd)")
    datasets = read_datasets()
    tmp = Path(tempfile.mkdtemp(prefix="bench_delta_"))
    W = wbits_list
    tot = {k: 0 for k in ("a", "b", "steps", "changed", "modified", "added", "verified")}
    for w in W:
        for k in ("c", "d", "d_nofb", "idx", "idx_z", "ours_patch", "kept", "gen", "apply", "full_mod"):
            tot[(k, w)] = 0
    comp = {k: 0 for k in ("bsdiff4", "detools_hs", "detools_lzma", "zstd")}
    ctime = {k: 0.0 for k in comp}
    rows = []
    mpy_jobs = []
    try:
        for name, versions in datasets:
            trees = [(v, device_tree(fetch(name, v))) for v in versions]
            repo = tmp / name
            repo.mkdir()
            build_repo(repo, trees)
            pk = {k: 0 for k in ("a", "b")}
            pk.update({("c", w): 0 for w in W})
            pk.update({("d", w): 0 for w in W})
            for (pv, pt), (cv, ct) in zip(trees, trees[1:]):
                changed = sorted(p for p in ct if pt.get(p) != ct[p])
                modified = [p for p in changed if p in pt]
                a = sum(map(len, ct.values()))
                b = sum(len(ct[p]) for p in changed)
                tot["steps"] += 1
                tot["changed"] += len(changed)
                tot["modified"] += len(modified)
                tot["added"] += len(changed) - len(modified)
                tot["a"] += a
                tot["b"] += b
                pk["a"] += a
                pk["b"] += b
                step = {"step": "%s %s->%s" % (name, pv, cv), "files": len(ct),
                        "changed": len(changed), "a": a, "b": b}
                for w in W:
                    full = {p: len(delta_gen.deflate_raw(ct[p], w)) for p in changed}
                    out = tmp / ("out-%s-%s-%d" % (name, cv, w))
                    (entries, files), tg = timed(delta_gen.generate, str(repo), [pv], cv,
                                                 str(out), w)
                    idx = (out / "index.json").stat().st_size
                    idx_z = len(delta_gen.deflate_raw((out / "index.json").read_bytes(), w))
                    by_path = {e["path"]: e for e in entries}
                    applied, ta = timed(delta_apply.apply_index, str(out), pt)
                    for p, e in by_path.items():   # every kept delta reproduces its target
                        assert applied[p] == ct[p] and delta_gen.blob_sha1(applied[p]) == e["target"]
                    tot["verified"] += len(applied)
                    if mpy:
                        mpy_jobs += [(out / e["file"], pt[e["path"]], e) for e in entries]
                    c = sum(full.values())
                    d = idx + sum(by_path[p]["size"] if p in by_path else full[p] for p in changed)
                    ours = {}
                    for p in modified:   # our patch even when delta_gen would not keep it
                        ours[p] = by_path[p]["size"] if p in by_path else \
                            len(delta_gen.make_delta(pt[p], ct[p], w))
                    tot[("c", w)] += c
                    tot[("d", w)] += d
                    tot[("idx", w)] += idx
                    tot[("idx_z", w)] += idx_z
                    tot[("kept", w)] += len(entries)
                    tot[("gen", w)] += tg
                    tot[("apply", w)] += ta
                    tot[("ours_patch", w)] += sum(ours.values())
                    tot[("d_nofb", w)] += sum(min(ours[p], full[p]) for p in modified)
                    tot[("full_mod", w)] += sum(full[p] for p in modified)
                    pk[("c", w)] += c
                    pk[("d", w)] += d
                    step[("c", w)], step[("d", w)] = c, d
                for p in modified:
                    for k, f in (("bsdiff4", lambda o, n: bsdiff4_patch(o, n)),
                                 ("detools_hs", lambda o, n: detools_patch(o, n, "heatshrink")),
                                 ("detools_lzma", lambda o, n: detools_patch(o, n, "lzma")),
                                 ("zstd", lambda o, n: zstd_patch(o, n, tmp))):
                        r, t = timed(f, pt[p], ct[p])
                        comp[k] += len(r)
                        ctime[k] += t
                rows.append(step)
            log("%-36s %2d steps  (a) %8d  (b) %7d  %s" % (
                name, len(versions) - 1, pk["a"], pk["b"],
                "  ".join("w%d (c) %6d (d) %6d" % (w, pk[("c", w)], pk[("d", w)]) for w in W)))
        report(tot, comp, ctime, rows, W, show_steps)
        if mpy:
            verify_micropython(mpy_jobs, W, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pct(x, y):
    return "%5.1f%%" % (100.0 * x / y) if y else "  -  "


def report(t, comp, ctime, rows, W, show_steps):
    if show_steps:
        print("\nper release step (bytes): a b " + " ".join("c%d d%d" % (w, w) for w in W))
        for r in rows:
            print("  %-48s %3d/%3d files  %7d %6d  %s" % (
                r["step"], r["changed"], r["files"], r["a"], r["b"],
                " ".join("%6d %6d" % (r[("c", w)], r[("d", w)]) for w in W)))
    a, b = t["a"], t["b"]
    print("\nDataset: %d release steps, %d changed files (%d modified, %d added); "
          "%d deltas (all windows) applied by ota_native.DeltaReader (CPython) and verified by blob SHA1" % (
              t["steps"], t["changed"], t["modified"], t["added"], t["verified"]))
    print("\nWhole release steps, bytes a device downloads:")
    print("  %-44s %10s %8s %8s  %s" % ("path", "bytes", "% of a", "% of b", "decoder memory"))
    print("  %-44s %10d %8s %8s  %s" % ("(a) every file in full", a, pct(a, a), pct(a, b), "0 (chunk buffer)"))
    print("  %-44s %10d %8s %8s  %s" % ("(b) changed files in full", b, pct(b, a), pct(b, b), "0 (chunk buffer)"))
    for w in W:
        c = t[("c", w)]
        print("  %-44s %10d %8s %8s  %s" % ("(c) changed files deflated, window %d B" % 2 ** w, c,
                                             pct(c, a), pct(c, b), "%d B window + %d B state" % (2 ** w, INFLATE_STATE)))
    for w in W:
        d = t[("d", w)]
        print("  %-44s %10d %8s %8s  %s" % ("(d) delta with fallback, window %d B" % 2 ** w, d,
                                             pct(d, a), pct(d, b), "%d B window + %d B state" % (
                                                 2 ** w, INFLATE_STATE + PIPE_STATE)))
        dz = d - t[("idx", w)] + t[("idx_z", w)]
        print("  %-44s %10d %8s %8s  %s" % ("(d') same, index.json sent deflated", dz,
                                             pct(dz, a), pct(dz, b), "same"))
        print("      %d deltas kept; index.json %d B in all (%d B deflated); generate %.2f s, "
              "apply+verify %.2f s (host)" % (t[("kept", w)], t[("idx", w)], t[("idx_z", w)],
                                             t[("gen", w)], t[("apply", w)]))
    print("\nModified files only (%d pairs present in both versions), patch bytes:" % t["modified"])
    w0 = W[0]
    base = t[("d_nofb", w0)]
    print("  %-48s %10s %10s %10s  %s" % ("codec", "bytes", "vs ours", "host time", "decoder memory"))
    for w in W:
        print("  %-48s %10d %10s %10s  %s" % ("full files deflated, window %d B" % 2 ** w,
                                              t[("full_mod", w)], "", "", ""))
        print("  %-48s %10d %10s %9.2fs  %s" % ("ours: bsdiff+deflate %d B window (patch only)" % 2 ** w,
                                                t[("ours_patch", w)], "", t[("gen", w)],
                                                "%.1f KiB" % ((2 ** w + INFLATE_STATE + PIPE_STATE) / 1024)))
        print("  %-48s %10d %10s %10s  %s" % ("ours with fallback, %d B window" % 2 ** w,
                                              t[("d_nofb", w)], "1.00x", "", ""))
    mem = {"bsdiff4": "bz2 -9: ~2.2-3.5 MiB x3 streams, whole old+new in RAM",
           "detools_hs": "heatshrink 256 B window + 128 B lookahead + detools state",
           "detools_lzma": "LZMA dictionary (8 MiB at preset 6..9 encoder default)",
           "zstd": "window >= old+new size, old file as dictionary, ~%d KiB DCtx" % (
               _zstd_dctx() // 1024)}
    labels = {"bsdiff4": "bsdiff4 (BSDIFF40, bz2)", "detools_hs": "detools sequential, heatshrink",
              "detools_lzma": "detools sequential, lzma", "zstd": "zstd -19 --patch-from"}
    for k in ("bsdiff4", "detools_hs", "detools_lzma", "zstd"):
        print("  %-48s %10d %9.2fx %9.2fs  %s" % (labels[k], comp[k], comp[k] / base if base else 0,
                                                  ctime[k], mem[k]))
    ok_bs = base < comp["bsdiff4"]
    ok_hs = base < comp["detools_hs"]
    ok_z = base <= 2 * comp["zstd"]
    print("\nDone-when (window %d B): ours < detools heatshrink: %s; ours < bsdiff4: %s; "
          "ours <= 2x zstd --patch-from: %s (%.2fx)" % (
              2 ** w0, "yes" if ok_hs else "NO",
              "yes" if ok_bs else "NO", "yes" if ok_z else "NO",
              base / comp["zstd"] if comp["zstd"] else 0))


def _zstd_dctx():
    try:
        import zstandard
        return zstandard.estimate_decompression_context_size()
    except ImportError:
        return 95 * 1024


MPY_SCRIPT = r"""
import sys, ota_native
class Src:
    def __init__(s, f): s.f = f
    def readinto(s, b): return s.f.readinto(b)
ok = 0
buf = bytearray(256)
for line in open(sys.argv[1]):
    patch, old, size, wbits, target = line.split()
    with open(patch, "rb") as pf, open(old, "rb") as of:
        r = ota_native.DeltaReader(Src(pf), of, int(size), ota_native.RAW, int(wbits))
        n = 0
        while True:
            k = r.readinto(buf)
            if not k: break
            n += k
        d = r.hexdigest()
    if d == target and n == int(size): ok += 1
    else: print("MISMATCH", patch, d, target)
print("micropython verified", ok)
"""


def verify_micropython(jobs, W, tmp):
    mp = ROOT / ".venv" / "bin" / "micropython"
    mod = ROOT / "build" / "x64" / "ota_native.mpy"
    if not (mp.exists() and mod.exists()):
        print("MicroPython check skipped: %s or %s missing" % (mp, mod))
        return
    d = tmp / "mpy"
    d.mkdir()
    shutil.copy(mod, d / "ota_native.mpy")
    (d / "apply.py").write_text(MPY_SCRIPT)
    lines = []
    for i, (patch, old, e) in enumerate(jobs):
        (d / ("old%d" % i)).write_bytes(old)
        lines.append("%s old%d %d %d %s\n" % (patch, i, e["target_size"], e["wbits"], e["target"]))
    (d / "jobs.txt").write_text("".join(lines))
    r = subprocess.run([str(mp), "apply.py", "jobs.txt"], cwd=d, capture_output=True, text=True)
    print("\nMicroPython unix (natmod %s), windows %s B: %s / %d deltas%s" % (
        mod.name, "/".join(str(2 ** w) for w in W), r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "no output",
        len(jobs), (" [stderr: %s]" % r.stderr.strip()[-300:]) if r.returncode else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wbits", default="10,12", help="comma list of deflate window bits (first = headline)")
    ap.add_argument("--steps", action="store_true", help="print every release step")
    ap.add_argument("--micropython", action="store_true",
                    help="also apply every kept delta in .venv/bin/micropython with build/x64/ota_native.mpy")
    a = ap.parse_args()
    run([int(x) for x in a.wbits.split(",")], a.steps, a.micropython)


if __name__ == "__main__":
    main()
