#!/usr/bin/env python3
"""Delta benchmark on real release histories (prints figures; not a test).

Dataset: bench/datasets.txt (packages and versions from PyPI, wheels cached
under the ignored bench/data/).  Each package's versions are committed in
turn to a scratch git repository, and every release step (consecutive
versions) is run through python/delta_gen.py exactly as a release manager
would (``--old <prev> --new <cur>``), then applied with python/delta_apply.py
(ota_native.DeltaReader, 256-byte chunks) and verified by Git blob SHA1.

Bytes a device downloads per release step (body bytes; an extra request that
brings no file, a 404 or an empty "no patch" file, also costs its response's
headers, --header-bytes):
  (a) every file raw                (b) the changed files raw (added included)
  (c) the changed files as the device downloads them without deltas: gzip -9
      (what the server sends when asked) above 300 B, else plain (ota.py)
  (d) the delta path, every byte included: per changed file the patch the
      device asks for by name (its header byte included), else the marker or
      404 and then (c)'s download; added files as in (c)
  bsdiff4 (BSDIFF40, bz2), detools (sequential; heatshrink, lzma) with the same
  fallback: per modified file the patch if smaller than (c)'s download, else
  that download (no metadata counted for them); zstd -19 --patch-from per
  modified file, zstd -19 per added file.

Needs: make pyshim; .venv/bin/pip install bsdiff4 detools; Debian zstd.
Usage: .venv/bin/python bench/bench_delta.py [--wbits 10,12] [--steps] [--micropython]
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
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
# Response headers of a request that brings no file (a 404, an empty "no patch" file): GitHub's
# raw server sends ~0.8 KB of headers (security, cache and CDN fields) with every response.
HEADER_BYTES = 800


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

def gzip_cost(data):
    """What the device downloads for a full file without deltas (ota.py: gzip above 300 B)."""
    return delta_gen.full_cost(data)


def zstd_full(data):
    r = subprocess.run(["zstd", "-q", "-19", "-c"], input=data, check=True, capture_output=True)
    return len(r.stdout)


def delta_path(out, pt, ct, changed, header_bytes):
    """(bytes, metadata bytes, extra requests, patched paths) of the delta path for one step,
    as ota_delta.py does it: each modified file's patch asked for by the name derived from
    the two blob SHAs; an empty file or one no smaller than the file: its headers, then the
    full download; a 404: its headers and body, then full downloads for the rest."""
    total = meta = extra = 0
    patched, off = [], False
    for p in changed:
        full = gzip_cost(ct[p])
        if p in pt and not off:
            f = out / delta_gen.patch_name(delta_gen.blob_sha1(pt[p]), delta_gen.blob_sha1(ct[p]))
            data = f.read_bytes() if f.exists() else None
            if data and len(data) < len(ct[p]):
                total += len(data)
                meta += 1  # the header byte
                patched.append(p)
                continue
            extra += 1
            cost = header_bytes + (len(b"404: Not Found") if data is None else 0)
            total += cost
            meta += cost
            off = data is None
        total += full
    return total, meta, extra, patched


def run(wbits_list, show_steps, mpy, header_bytes):
    if not shutil.which("zstd"):
        raise SystemExit("zstd not found (Debian package zstd)")
    datasets = read_datasets()
    tmp = Path(tempfile.mkdtemp(prefix="bench_delta_"))
    W = wbits_list
    K = ("a", "b", "c", "bsdiff4", "detools_hs", "detools_lzma", "zstd")
    tot = {k: 0 for k in K + ("steps", "changed", "modified", "added", "verified")}
    for w in W:
        for k in ("d", "meta", "extra", "kept", "gen", "apply", "worse", "ours_patch"):
            tot[(k, w)] = 0
    raw = {k: 0 for k in ("bsdiff4", "detools_hs", "detools_lzma", "zstd")}  # patches alone
    ctime = {k: 0.0 for k in raw}
    rows, mpy_jobs = [], []
    try:
        for name, versions in datasets:
            trees = [(v, device_tree(fetch(name, v))) for v in versions]
            repo = tmp / name
            repo.mkdir()
            build_repo(repo, trees)
            for (pv, pt), (cv, ct) in zip(trees, trees[1:]):
                changed = sorted(p for p in ct if pt.get(p) != ct[p])
                modified = [p for p in changed if p in pt]
                row = {"step": "%s %s->%s" % (name, pv, cv), "files": len(ct), "changed": len(changed),
                       "a": sum(map(len, ct.values())), "b": sum(len(ct[p]) for p in changed),
                       "c": sum(gzip_cost(ct[p]) for p in changed)}
                for k in ("bsdiff4", "detools_hs", "detools_lzma"):
                    row[k] = 0
                row["zstd"] = sum(zstd_full(ct[p]) for p in changed if p not in pt)
                for p in changed:
                    if p not in pt:
                        for k in ("bsdiff4", "detools_hs", "detools_lzma"):
                            row[k] += gzip_cost(ct[p])
                for p in modified:
                    full = gzip_cost(ct[p])
                    for k, f in (("bsdiff4", lambda o, n: bsdiff4_patch(o, n)),
                                 ("detools_hs", lambda o, n: detools_patch(o, n, "heatshrink")),
                                 ("detools_lzma", lambda o, n: detools_patch(o, n, "lzma")),
                                 ("zstd", lambda o, n: zstd_patch(o, n, tmp))):
                        r, t = timed(f, pt[p], ct[p])
                        raw[k] += len(r)
                        ctime[k] += t
                        row[k] += len(r) if k == "zstd" else min(len(r), full)
                for w in W:
                    out = tmp / ("out-%s-%s-%d" % (name, cv, w))
                    (entries, files), tg = timed(delta_gen.generate, str(repo), [pv], cv, str(out), w)
                    applied, ta = timed(delta_apply.apply_index, str(out), pt)
                    d, meta, extra, patched = delta_path(out, pt, ct, changed, header_bytes)
                    assert sorted(applied) == sorted(patched)
                    for p in patched:   # every patch the device would take reproduces its target
                        assert applied[p] == ct[p]
                    tot["verified"] += len(applied)
                    if mpy:
                        mpy_jobs += [(out / e["file"], pt[e["path"]], e) for e in entries if e["size"]]
                    row[("d", w)], row[("meta", w)] = d, meta
                    tot[("d", w)] += d
                    tot[("meta", w)] += meta
                    tot[("extra", w)] += extra
                    tot[("kept", w)] += sum(1 for e in entries if e["size"])
                    tot[("gen", w)] += tg
                    tot[("apply", w)] += ta
                    tot[("worse", w)] += d > row["c"]
                    tot[("ours_patch", w)] += sum(len(files[e["file"]]) for e in entries if e["size"])
                for k in K:
                    tot[k] += row[k]
                tot["steps"] += 1
                tot["changed"] += len(changed)
                tot["modified"] += len(modified)
                tot["added"] += len(changed) - len(modified)
                rows.append(row)
            log("%-36s %2d steps" % (name, len(versions) - 1))
        report(tot, raw, ctime, rows, W, show_steps, header_bytes)
        if mpy:
            verify_micropython(mpy_jobs, W, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ratio(x, y):
    return "%.2fx" % (x / y) if y else "-"


def report(t, raw, ctime, rows, W, show_steps, header_bytes):
    w0 = W[0]
    cols = ("a", "b", "c", ("d", w0), ("meta", w0), "bsdiff4", "detools_hs", "detools_lzma", "zstd")
    head = ("all raw", "chg raw", "chg gzip", "delta", "of which meta", "bsdiff4", "detools hs", "detools lzma",
            "zstd -19")
    fmt = "  %-48s %9s %8s %8s %7s %6s %8s %10s %12s %8s"
    if show_steps:
        print("\nPer release step, bytes a device downloads (delta path: window %d B):" % 2 ** w0)
        print(fmt % (("step",) + head))
        for r in rows:
            print(fmt % ((r["step"],) + tuple(r[k] for k in cols)))
    print("\nDataset: %d release steps, %d changed files (%d modified, %d added); %d patches (all windows) "
          "applied by ota_native.DeltaReader (CPython) and verified by blob SHA1" % (
              t["steps"], t["changed"], t["modified"], t["added"], t["verified"]))
    print("\nWhole release steps, bytes a device downloads:")
    print(fmt % (("total",) + head))
    print(fmt % (("all steps",) + tuple(t[k] if k in t else t[k] for k in cols)))
    print("\n  %-56s %10s %8s %8s  %s" % ("path", "bytes", "vs (c)", "vs zstd", "decoder memory"))
    zs = t["zstd"]
    lines = [("(a) every file raw", t["a"], "chunk buffer"),
             ("(b) changed files raw", t["b"], "chunk buffer"),
             ("(c) changed files, gzip -9 (no deltas)", t["c"], "32 KiB window + %d B state" % INFLATE_STATE)]
    for w in W:
        lines.append(("(d) delta path, window %d B, metadata included" % 2 ** w, t[("d", w)],
                      "%d B window + %d B state" % (2 ** w, INFLATE_STATE + PIPE_STATE)))
    lines += [("bsdiff4 (BSDIFF40, bz2), same fallback", t["bsdiff4"], "bz2 -9: MiBs, whole files in RAM"),
              ("detools sequential heatshrink, same fallback", t["detools_hs"], "heatshrink 256 B window + state"),
              ("detools sequential lzma, same fallback", t["detools_lzma"], "LZMA dictionary (MiBs)"),
              ("zstd -19 --patch-from (added: zstd -19)", zs, "window >= old+new, ~%d KiB DCtx" % (_zstd_dctx() // 1024))]
    for label, v, mem in lines:
        print("  %-56s %10d %8s %8s  %s" % (label, v, ratio(v, t["c"]), ratio(v, zs), mem))
    for w in W:
        print("      window %d B: %d patches kept; metadata %d B (%.2f%% of the delta path: header bytes, %d extra "
              "requests at %d B of headers); generate %.2f s, apply+verify %.2f s (host)" % (
                  2 ** w, t[("kept", w)], t[("meta", w)], 100.0 * t[("meta", w)] / t[("d", w)], t[("extra", w)],
                  header_bytes, t[("gen", w)], t[("apply", w)]))
    print("\nModified files only (%d pairs), patch bytes alone (no fallback):" % t["modified"])
    for w in W:
        print("  %-48s %10d" % ("ours: operations + raw deflate, %d B window" % 2 ** w, t[("ours_patch", w)]))
    for k, label in (("bsdiff4", "bsdiff4"), ("detools_hs", "detools heatshrink"), ("detools_lzma", "detools lzma"),
                     ("zstd", "zstd -19 --patch-from")):
        print("  %-48s %10d   (%.2f s)" % (label, raw[k], ctime[k]))
    d = t[("d", w0)]
    print("\nDone-when (window %d B): steps where the delta path downloads more than (c): %d; metadata %.2f%% "
          "(<= 5%%: %s); delta path < bsdiff4: %s, < detools heatshrink: %s, < detools lzma: %s; "
          "delta path / zstd = %.2fx (<= 1.4x: %s)" % (
              2 ** w0, t[("worse", w0)], 100.0 * t[("meta", w0)] / d, "yes" if t[("meta", w0)] <= 0.05 * d else "NO",
              "yes" if d < t["bsdiff4"] else "NO", "yes" if d < t["detools_hs"] else "NO",
              "yes" if d < t["detools_lzma"] else "NO", d / zs, "yes" if d <= 1.4 * zs else "NO"))


def _zstd_dctx():
    try:
        import zstandard
        return zstandard.estimate_decompression_context_size()
    except ImportError:
        return 95 * 1024


MPY_SCRIPT = r"""
import sys, hashlib, binascii, ota_native, ota_delta
class Src:
    def __init__(s, f): s.f = f
    def readinto(s, b): return s.f.readinto(b)
ok = 0
buf = bytearray(256)
for line in open(sys.argv[1]):
    patch, old, size, wbits, target = line.split()
    size = int(size)
    with open(patch, "rb") as pf, open(old, "rb") as of:
        b = pf.read(1)[0]  # the header byte: version 2 (operations), window 2**wbits
        assert b >> 4 == 2 and (b & 15) + 8 == int(wbits)
        r = ota_delta.Patch(ota_native.InflateReader(Src(pf), ota_native.RAW, int(wbits)), of, size)
        h = hashlib.sha1(b"blob %d\0" % size)
        n = 0
        while True:
            k = r.readinto(buf)
            if not k: break
            h.update(memoryview(buf)[:k])
            n += k
        d = binascii.hexlify(h.digest()).decode()
    if d == target and n == size: ok += 1
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
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(d), str(ROOT / "python")]))
    r = subprocess.run([str(mp), "apply.py", "jobs.txt"], cwd=d, capture_output=True, text=True, env=env)
    print("\nMicroPython unix (natmod %s), windows %s B: %s / %d deltas%s" % (
        mod.name, "/".join(str(2 ** w) for w in W), r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "no output",
        len(jobs), (" [stderr: %s]" % r.stderr.strip()[-300:]) if r.returncode else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wbits", default="10,12", help="comma list of deflate window bits (first = headline)")
    ap.add_argument("--steps", action="store_true", help="print every release step")
    ap.add_argument("--micropython", action="store_true",
                    help="also apply every kept delta in .venv/bin/micropython with build/x64/ota_native.mpy")
    ap.add_argument("--header-bytes", type=int, default=HEADER_BYTES,
                    help="response headers of a request that brings no file (404, empty file); default %d" % HEADER_BYTES)
    a = ap.parse_args()
    run([int(x) for x in a.wbits.split(",")], a.steps, a.micropython, a.header_bytes)


if __name__ == "__main__":
    main()
