#!/usr/bin/env python3
"""delta_gen.py: make the delta patches and the delta index of a release.

Run inside the application's git repository, before tagging the release::

    python delta_gen.py --old v1.0.0 --old v0.9.0 --new HEAD --output .deltas/
    git add .deltas && git commit -m "deltas for v1.1.0" && git tag v1.1.0

For every file that differs between an ``--old`` ref and ``--new`` (same path,
other blob SHA) and that the device takes (``ota.wanted``, imported from
ota.py next to this file: the device's own selection, with the allow/ignore
of ``--config``, ``--allow`` and ``--ignore``; never ``.deltas/``, the
device's state files or, without ``self_update``, the updater), it makes a
bsdiff patch (the Rust ``bsdiff`` crate, through ``ota_native.make_patch``),
folds short matches into literals where that compresses better (same patch
format, same output, verified through ``ota_native.DeltaReader``),
compresses it as a raw deflate stream whose window is ``2**wbits`` bytes (the
decoder window the device must afford), and keeps it only when it saves at
least ``--min-saving`` of the compressed full file.  It writes
``<output>/index.json`` and one ``<base>-<target>.bsd`` file per kept patch
(named from the two blob SHAs, never from the path).  Patch files of the
same naming pattern that the new index does not list are removed, so the
folder always matches its index.

Output is deterministic: entries sorted, no timestamps, the smaller of two
deterministic compressors kept per patch.  The format and the device's
contract are in docs/delta-format.md.

Requires the host build of ``ota_native`` (``make pyshim``).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ota  # noqa: E402  (the device's path and selection rules: check_path, wanted, load_config)
from manifest_gen import blob_sha1  # noqa: E402  (the one host-side Git blob SHA1)

FORMAT = 1
CODEC = "bsdiff+deflate"
INDEX_NAME = "index.json"
DELTA_DIR = ".deltas"
DEFAULT_WBITS = 10
DEFAULT_MIN_SAVING = 0.2
PATCH_RE = re.compile(r"^[0-9a-f]{40}-[0-9a-f]{40}\.bsd$")
_REGULAR_MODES = ("100644", "100755")


# --- which files: the device's own selection (ota.wanted) ---------------------------

def selection(allow=(), ignore=(), config=None):
    """The device configuration whose ``ota.wanted`` picks the files to make deltas for.

    ``config``: a device configuration file (ota.load_config: .json, .yaml/.yml, .toml),
    else a minimal one; ``allow``/``ignore`` are added to its lists. SystemExit when the
    configuration is invalid (the device would refuse it too)."""
    try:
        cfg = ota.load_config(config) if config else ota.check_config({"owner": "x", "repo": "x"})
        cfg["allow"] = cfg["allow"] + list(allow or ())
        cfg["ignore"] = cfg["ignore"] + list(ignore or ())
        return ota.check_config(cfg, cfg["_path"])
    except ota.OTAError as e:
        raise SystemExit("delta_gen: %s" % e)


# --- hashing and compression ---------------------------------------------------



def _native():
    import ota_native  # host build (pyshim); imported lazily for --help
    return ota_native


def deflate_raw(data, wbits=DEFAULT_WBITS):
    """Smallest raw deflate stream of ``data`` that a 2**wbits window decodes.

    Deterministic candidates, first smallest wins: CPython's zlib at level 9
    (memLevel 9 and 8, default and filtered strategies) and ota_native.deflate
    (miniz_oxide).  The result is checked by inflating it with zlib at the same
    window (a longer distance is an error there), so a stream the device could
    not decode is never shipped."""
    if not 9 <= wbits <= 15:
        raise ValueError("wbits must be 9..15 (zlib's smallest raw window is 2**9)")
    best = None
    for mem, strategy in _ZLIB_VARIANTS:
        c = zlib.compressobj(9, zlib.DEFLATED, -wbits, mem, strategy)
        z = c.compress(data) + c.flush()
        if best is None or len(z) < len(best):
            best = z
    on = _native()
    try:
        alt = on.deflate(data, level=9, wbits=wbits, format=on.RAW)
    except (AttributeError, ValueError):
        alt = None
    if alt is not None and len(alt) < len(best) and _inflates_to(alt, wbits, data):
        best = alt
    if not _inflates_to(best, wbits, data):
        raise RuntimeError("deflate stream does not round-trip at wbits=%d" % wbits)
    return best


_ZLIB_VARIANTS = ((9, zlib.Z_DEFAULT_STRATEGY), (8, zlib.Z_DEFAULT_STRATEGY),
                  (9, zlib.Z_FILTERED))


def _inflates_to(stream, wbits, data):
    try:
        d = zlib.decompressobj(-wbits)
        return d.decompress(stream) == data and d.eof and not d.unused_data
    except zlib.error:
        return False


# --- the delta computation (no git needed) ---------------------------------------

# Thresholds tried by merge_short_matches (0 = the bsdiff crate's patch as is).
MERGE_THRESHOLDS = (0, 8, 12, 16, 24, 32, 48, 64)


def _offtin(b):
    y = int.from_bytes(b, "little")
    return -(y & ~(1 << 63)) if y & (1 << 63) else y


def _offtout(x):
    return (x if x >= 0 else (-x) | (1 << 63)).to_bytes(8, "little")


def parse_patch(patch):
    """The control entries of a bsdiff-crate patch: [mix_len, diff, extra, seek]."""
    out, i, n = [], 0, len(patch)
    while i < n:
        if n - i < 24:
            raise ValueError("truncated control entry")
        mix = int.from_bytes(patch[i:i + 8], "little")
        copy = int.from_bytes(patch[i + 8:i + 16], "little")
        seek = _offtin(patch[i + 16:i + 24])
        i += 24
        if n - i < mix + copy:
            raise ValueError("truncated patch data")
        out.append([mix, patch[i:i + mix], patch[i + mix:i + mix + copy], seek])
        i += mix + copy
    return out


def build_patch(entries):
    return b"".join(b"".join((mix.to_bytes(8, "little"), len(extra).to_bytes(8, "little"),
                              _offtout(seek), diff, extra))
                    for mix, diff, extra, seek in entries)


def merge_short_matches(patch, old, threshold):
    """An equivalent patch (same format, same output) with fewer control entries.

    bsdiff often matches short runs of the old file inside an edited region;
    each costs a 24-byte control entry, which deflate shrinks to about 6-7
    bytes, more than the few literal bytes it saves.  Every entry (but the
    first) whose mix part is at most ``threshold`` bytes is folded into the
    previous entry's literal part: its new bytes are computed (old + diff)
    and the previous entry's seek absorbs the old bytes it skipped."""
    out, opos = [], 0
    for mix, diff, extra, seek in parse_patch(patch):
        if out and mix <= threshold:
            if opos < 0 or opos + mix > len(old):
                raise ValueError("patch reads outside the old file")
            prev = out[-1]
            new = bytes((d + o) & 0xFF for d, o in zip(diff, old[opos:opos + mix]))
            prev[2] = prev[2] + new + extra
            prev[3] += mix + seek
        else:
            out.append([mix, diff, extra, seek])
        opos += mix + seek
    return build_patch(out)


def make_delta(old, new, wbits=DEFAULT_WBITS):
    """Compressed patch bytes turning ``old`` into ``new``.

    The patch comes from the Rust ``bsdiff`` crate (ota_native.make_patch);
    variants of it with short matches folded into literals are compressed
    too and the smallest stream wins (first on ties).  The winner is checked
    by applying it with ota_native.DeltaReader, the device's own pipeline."""
    patch = _native().make_patch(old, new)
    best = None
    for t in MERGE_THRESHOLDS:
        p = patch if t == 0 else merge_short_matches(patch, old, t)
        z = deflate_raw(p, wbits)
        if best is None or len(z) < len(best):
            best = z
    if _pipeline_digest(best, old, len(new), wbits) != blob_sha1(new):
        raise RuntimeError("generated delta does not reproduce its target")
    return best


def _pipeline_digest(stream, old, new_size, wbits):
    import io
    on = _native()
    src = io.BytesIO(stream)
    r = on.DeltaReader(src, io.BytesIO(old), new_size, on.RAW, wbits)
    buf = bytearray(4096)
    while r.readinto(buf):
        pass
    return r.hexdigest()


def plan_deltas(pairs, wbits=DEFAULT_WBITS, min_saving=DEFAULT_MIN_SAVING, stats=None):
    """Decide and make the deltas.

    ``pairs``: iterable of (path, old_bytes, new_bytes).  Returns
    (entries, files): the sorted index entries and {file name: patch bytes}.
    A patch is kept when size <= (1 - min_saving) * compressed full size.
    ``stats`` (a dict, optional) receives per-pair figures for reports."""
    entries, files, seen = [], {}, set()
    for path, old, new in pairs:
        base, target = blob_sha1(old), blob_sha1(new)
        if base == target or (path, base, target) in seen:
            continue
        seen.add((path, base, target))
        name = "%s-%s.bsd" % (base, target)
        t0 = time.perf_counter()
        patch = files.get(name) or make_delta(old, new, wbits)
        t1 = time.perf_counter()
        full = len(deflate_raw(new, wbits))
        keep = len(patch) <= (1.0 - min_saving) * full
        if stats is not None:
            stats[(path, base, target)] = {"patch": len(patch), "full_deflated": full,
                                           "raw": len(new), "kept": keep, "gen_s": t1 - t0}
        if not keep:
            continue
        files[name] = patch
        entries.append({"path": path, "base": base, "target": target, "target_size": len(new), "file": name,
                        "size": len(patch), "sha1": blob_sha1(patch), "wbits": wbits})
    entries.sort(key=lambda e: (e["path"], e["base"], e["target"]))
    return entries, files


def index_bytes(entries):
    """The index file: valid JSON, one entry per line, keys sorted."""
    lines = ['{"format":%d,"codec":"%s","deltas":[' % (FORMAT, CODEC)]
    body = [json.dumps(e, sort_keys=True, separators=(",", ":")) for e in entries]
    lines.append(",\n".join(body)) if body else None
    lines.append("]}")
    return ("\n".join(lines) + "\n").encode()


def write_output(out_dir, entries, files):
    """Write patch files and index.json; drop stale patch files. Returns index path."""
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(out_dir)):
        if PATCH_RE.match(name) and name not in files:
            os.remove(os.path.join(out_dir, name))
    for name in sorted(files):
        _write_if_changed(os.path.join(out_dir, name), files[name])
    path = os.path.join(out_dir, INDEX_NAME)
    _write_if_changed(path, index_bytes(entries))
    return path


def _write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- git ------------------------------------------------------------------------

class Repo:
    """Read-only access to a git repository through plumbing commands."""

    def __init__(self, path="."):
        self.path = path
        self._cat = None

    def git(self, *args):
        r = subprocess.run(["git", "-C", self.path, *args], capture_output=True)
        if r.returncode:
            raise SystemExit("git %s: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()))
        return r.stdout

    def commit(self, ref):
        return self.git("rev-parse", "--verify", "-q", ref + "^{commit}").decode().strip()

    def tree(self, ref):
        """{path: blob sha} of the regular files at ``ref`` (symlinks and
        submodules are not files a device installs)."""
        out = {}
        for rec in self.git("ls-tree", "-r", "-z", "--full-tree", self.commit(ref)).split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, kind, sha = meta.decode().split()
            if kind == "blob" and mode in _REGULAR_MODES:
                out[path.decode("utf-8", "surrogateescape")] = sha
        return out

    def blob(self, sha):
        if self._cat is None:
            self._cat = subprocess.Popen(["git", "-C", self.path, "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._cat.stdin.write(sha.encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise SystemExit("git cat-file: %s is not a blob" % sha)
        data = self._cat.stdout.read(int(header[2]))
        self._cat.stdout.read(1)  # the newline after the content
        return data

    def close(self):
        if self._cat is not None:
            self._cat.stdin.close()
            self._cat.wait()
            self._cat = None


def changed_pairs(repo, olds, new, cfg=None, warn=None):
    """(path, old bytes, new bytes) for each file present at both refs with
    another blob SHA, in path order, for each old ref in turn. Only the files
    the device takes (``ota.wanted(cfg, path)``; ``cfg`` from ``selection()``):
    never .deltas/ nor the device's own files; a taken path the device refuses
    (``ota.check_path``) is skipped with a warning."""
    cfg = cfg or selection()
    new_tree = repo.tree(new)
    paths = []
    for path in sorted(new_tree):
        if not ota.wanted(cfg, path):
            continue
        try:
            paths.append(ota.check_path(path))
        except ota.OTAError:
            if warn:
                warn("skipping %r: the device refuses this path (ota.check_path); a device that takes it "
                     "fails the update" % path)
    for old in olds:
        old_tree = repo.tree(old)
        for path in paths:
            base = old_tree.get(path)
            if base is None or base == new_tree[path]:
                continue
            yield path, repo.blob(base), repo.blob(new_tree[path])


def generate(repo_path, olds, new, out_dir, wbits=DEFAULT_WBITS, allow=(), ignore=(),
             min_saving=DEFAULT_MIN_SAVING, stats=None, config=None, warn=None):
    """The whole tool as a function; returns (entries, files). The files are those
    the device configured by ``config`` + ``allow``/``ignore`` takes (``selection()``)."""
    cfg = selection(allow, ignore, config)
    repo = Repo(repo_path)
    try:
        entries, files = plan_deltas(changed_pairs(repo, olds, new, cfg, warn), wbits, min_saving, stats)
    finally:
        repo.close()
    write_output(out_dir, entries, files)
    return entries, files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", action="append", required=True, metavar="REF",
                    help="a release devices may have installed (repeat for several)")
    ap.add_argument("--new", required=True, metavar="REF", help="the release being made")
    ap.add_argument("--output", default=DELTA_DIR + "/", help="output folder (default .deltas/)")
    ap.add_argument("--repo", default=".", help="git repository (default: current folder)")
    ap.add_argument("--wbits", type=int, default=DEFAULT_WBITS,
                    help="deflate window 2**WBITS bytes, 9..15 (default 10 = 1 KiB)")
    ap.add_argument("--allow", action="append", default=None, metavar="PATH",
                    help="only these files / directory prefixes (repeatable)")
    ap.add_argument("--ignore", action="append", default=None, metavar="PATH",
                    help="never these files / directory prefixes (repeatable; wins over allow)")
    ap.add_argument("--config", help="the device's configuration (ota_config.json, .yaml/.yml, .toml): "
                                     "its allow/ignore, self_update, stage/backup folders")
    ap.add_argument("--min-saving", type=float, default=DEFAULT_MIN_SAVING,
                    help="keep a patch only if it is at least this fraction smaller than "
                         "the compressed full file (default 0.2)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    if not 9 <= a.wbits <= 15:
        ap.error("--wbits must be between 9 and 15")
    if not 0.0 <= a.min_saving < 1.0:
        ap.error("--min-saving must be in [0, 1)")
    stats = {}
    entries, files = generate(a.repo, a.old, a.new, a.output, a.wbits, a.allow, a.ignore, a.min_saving,
                              stats, a.config, lambda msg: print("delta_gen: " + msg, file=sys.stderr))
    if not a.quiet:
        for (path, base, target), s in sorted(stats.items()):
            print("%-6s %s %s..%s raw %d, deflated %d, patch %d" % (
                "delta" if s["kept"] else "full", path, base[:7], target[:7],
                s["raw"], s["full_deflated"], s["patch"]))
        print("%d delta(s), %d patch file(s), %d bytes -> %s" % (
            len(entries), len(files), sum(map(len, files.values())),
            os.path.join(a.output, INDEX_NAME)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
