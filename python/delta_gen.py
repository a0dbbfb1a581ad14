#!/usr/bin/env python3
"""delta_gen.py: make the delta patches of a release.

Run inside the application's git repository, before tagging the release::

    python delta_gen.py --old v1.0.0 --old v0.9.0 --new HEAD --output .deltas/
    git add .deltas && git commit -m "deltas for v1.1.0" && git tag v1.1.0

For every file that differs between an ``--old`` ref and ``--new`` (same path,
other blob SHA) and that the device takes (``ota.wanted``, imported from
ota.py next to this file: the device's own selection, with the allow/ignore
of ``--config``, ``--allow`` and ``--ignore``; never ``.deltas/``, the
device's state files or, without ``self_update``, the updater), it writes one
file named from the two blob SHAs alone, ``<base[:10]>-<target[:10]>``: the
name a device derives from what it already knows (its installed file's blob
SHA and the target's), so it needs no index.  The file is either a patch (one
header byte, then a raw deflate stream, window ``2**wbits`` bytes, of copy and
literal operations: copies of the installed file's bytes, found by the Rust
``bsdiff`` crate through ``ota_native.make_patch``, and the new bytes between
them) when that costs the device fewer bytes than the full download it replaces
(gzip -9 as the server sends it, or the plain file up to 300 bytes, which the
device asks without gzip), or empty ("no patch: take the full file").  Every
patch is applied once through the device's own code (``ota_delta.Patch``)
before it is written.

``index.json`` lists what was made, for people and host tools
(python/delta_apply.py); devices never download it.  Files of the naming
patterns that the new listing does not hold are removed.  Output is
deterministic for a given zlib and bsdiff crate.  The format and the device's
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

FORMAT = 2  # of index.json (format 1 was the index devices downloaded)
CODEC = "ops+deflate"
PATCH_VERSION = 2  # high nibble of a patch file's first byte (1: bsdiff, 2: operations); low: wbits - 8
NAME_HEX = 10  # hex digits of each blob SHA in a file name
INDEX_NAME = "index.json"
DELTA_DIR = ".deltas"
DEFAULT_WBITS = 10
DEFAULT_MIN_SAVING = 0.0
GZIP_MIN_SIZE = ota._GZIP_MIN_SIZE  # the device asks gzip only for larger files
GZIP_FRAME = 18  # gzip header (no name) + trailer, as the server sends it
# this tool's names, the current and format 1's: others in the folder are left alone
PATCH_RE = re.compile(r"^(?:[0-9a-f]{%d}-[0-9a-f]{%d}|[0-9a-f]{40}-[0-9a-f]{40}\.bsd)$" % (NAME_HEX, NAME_HEX))
_REGULAR_MODES = (b"100644", b"100755")
_TREE_MODE = b"40000"


def patch_name(base, target):
    """The file name of the (base, target) pair: what a device derives from the two blob SHAs."""
    return "%s-%s" % (base[:NAME_HEX], target[:NAME_HEX])


def header(wbits, version=PATCH_VERSION):
    return bytes(((version << 4) | (wbits - 8),))


def parse_header(byte):
    """(version, wbits) from a patch file's first byte; ValueError for an unknown version
    or window. Version 1: a bsdiff patch (ota_native.DeltaReader); 2: operations (ota_delta.Patch)."""
    v, w = byte >> 4, (byte & 15) + 8
    if v not in (1, 2) or not 9 <= w <= 15:
        raise ValueError("unknown patch header 0x%02x" % byte)
    return v, w


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


# --- compression ----------------------------------------------------------------------

def _native():
    import ota_native  # host build (pyshim); imported lazily for --help
    return ota_native


def deflate_raw(data, wbits=DEFAULT_WBITS):
    """Raw deflate stream of ``data`` that a 2**wbits window decodes: CPython's zlib,
    level 9, memLevel 6 (deterministic for a given zlib). zlib never emits a distance
    beyond its window, so the stream fits the device's window by construction."""
    if not 9 <= wbits <= 15:
        raise ValueError("wbits must be 9..15 (zlib's smallest raw window is 2**9)")
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits, 6)  # memLevel 6: the same streams here as 9, 4x faster
    return c.compress(data) + c.flush()


def full_cost(new):
    """Bytes of the full download a patch replaces: gzip -9 (the device asks gzip above
    GZIP_MIN_SIZE bytes; the test server sends -9, servers with lower levels send more),
    else the plain file."""
    if len(new) <= GZIP_MIN_SIZE:
        return len(new)
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return len(c.compress(new) + c.flush()) + GZIP_FRAME


def saves(size, new, min_saving=0.0):
    """True when a patch of ``size`` bytes costs less than (1 - min_saving) of the full
    download of ``new`` (full_cost). gzip -1 screens first (~10x faster than -9, and within
    ~15% of it on source files): -9 is computed only when the patch is not below half the
    -1 size (so a patch is never kept against a full download it does not beat)."""
    limit = 1.0 - min_saving
    if len(new) > GZIP_MIN_SIZE:
        c = zlib.compressobj(1, zlib.DEFLATED, -15, 6)
        if size < 0.5 * limit * (len(c.compress(new) + c.flush()) + GZIP_FRAME):
            return True
    return size < limit * full_cost(new)


# --- the patch (no git needed) -------------------------------------------------------

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


_NONZERO = re.compile(rb"[^\x00]+")
# Shortest copy kept (a copy operation costs ~3 bytes before deflate, a literal byte of source
# text ~0.5 after): make_delta tries each and keeps the smallest stream.
MIN_COPIES = (6, 10, 16)


def copies(patch, min_copy=1):
    """[(new pos, old pos, length)]: the exact copies of a bsdiff-crate patch, its mix regions
    cut where a byte differs, each at least ``min_copy`` bytes long."""
    out, npos, opos = [], 0, 0
    for mix, diff, extra, seek in parse_patch(patch):
        if mix:
            prev = 0
            for m in _NONZERO.finditer(diff):
                if m.start() > prev:
                    out.append((npos + prev, opos + prev, m.start() - prev))
                prev = m.end()
            if mix > prev:
                out.append((npos + prev, opos + prev, mix - prev))
        npos += mix + len(extra)
        opos += mix + seek
    return [c for c in out if c[2] >= min_copy] if min_copy > 1 else out


def _uvarint(n):
    out = bytearray()
    while n > 127:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_ops(copies, new):
    """The operations (version 2, before deflate) that rebuild ``new`` from the old file with
    ``copies`` [(new pos, old pos, length)], in new-file order, and literals between them: per
    operation the literal length, the copy length and the copy's offset from the end of the
    previous copy (LEB128, the offset zigzag), then the literal bytes."""
    parts, npos, oend = [], 0, 0
    for ns, os_, n in copies:
        off = os_ - oend
        parts += [_uvarint(ns - npos), _uvarint(n), _uvarint(off << 1 if off >= 0 else (-off << 1) - 1),
                  new[npos:ns]]
        npos, oend = ns + n, os_ + n
    if npos < len(new):
        parts += [_uvarint(len(new) - npos), b"\0\0", new[npos:]]
    return b"".join(parts)


def make_delta(old, new, wbits=DEFAULT_WBITS):
    """The patch file turning ``old`` into ``new``: the header byte (version 2), then the
    smallest raw deflate stream (window 2**wbits) of the operations made from the bsdiff
    crate's matches, cut into exact copies of each of MIN_COPIES bytes at least (the first on
    ties). Checked by applying it with ota_delta.Patch, the device's own code."""
    runs = copies(_native().make_patch(old, new))
    best = None
    for m in MIN_COPIES:
        stream = deflate_raw(encode_ops([c for c in runs if c[2] >= m], new), wbits)
        if best is None or len(stream) < len(best):
            best = stream
    data = header(wbits) + best
    if apply_digest(data, old, len(new)) != blob_sha1(new):
        raise RuntimeError("generated delta does not reproduce its target")
    return data


def apply_digest(data, old, new_size):
    """Git blob SHA1 of what a patch file (header byte included) makes from ``old``, through
    the device's code: ota_delta.Patch (version 2) or ota_native.DeltaReader (version 1)."""
    import hashlib
    import io
    import ota_delta
    on = _native()
    version, wbits = parse_header(data[0])
    src, old = io.BytesIO(data[1:]), io.BytesIO(old)
    r = on.DeltaReader(src, old, new_size, on.RAW, wbits) if version == 1 else \
        ota_delta.Patch(on.InflateReader(src, on.RAW, wbits), old, new_size)
    h = hashlib.sha1(b"blob %d\0" % new_size)
    buf = bytearray(4096)
    n = 0
    while True:
        k = r.readinto(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
    return h.hexdigest() if n == new_size else None


def _make(old, new, wbits, min_saving):
    """(file bytes, patch size, seconds) for one pair: the patch, or b"" when it saves nothing."""
    t0 = time.perf_counter()
    patch = make_delta(old, new, wbits)
    return patch if saves(len(patch), new, min_saving) else b"", len(patch), time.perf_counter() - t0


def plan_deltas(pairs, wbits=DEFAULT_WBITS, min_saving=DEFAULT_MIN_SAVING, stats=None, warn=None, jobs=None):
    """Decide and make the files.

    ``pairs``: iterable of (path, old_bytes, new_bytes).  Returns (entries, files):
    the sorted listing entries (``size`` 0: no patch, the full file) and {file name: bytes}
    (b"" for "no patch").  A patch is kept when its size, header included, is below
    (1 - min_saving) * full_cost(new).  Two pairs whose names collide both get "no patch"
    (a device checks every result by its blob SHA anyway).  The patches are made on
    ``jobs`` threads (default: the CPU count; the bsdiff crate and zlib release the GIL);
    the output does not depend on it.  ``stats`` (a dict, optional) receives per-pair
    figures for reports."""
    entries, work, pair_of, seen, collided = [], {}, {}, set(), set()
    for path, old, new in pairs:
        base, target = blob_sha1(old), blob_sha1(new)
        if base == target or (path, base, target) in seen:
            continue
        seen.add((path, base, target))
        name = patch_name(base, target)
        if pair_of.setdefault(name, (base, target)) != (base, target):
            if warn and name not in collided:
                warn("%s: two (base, target) pairs share this name; both get full downloads" % name)
            collided.add(name)
        work.setdefault(name, (old, new))
        entries.append({"path": path, "base": base, "target": target, "target_size": len(new),
                        "file": name, "wbits": wbits})
    names = sorted(n for n in work if n not in collided)
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(jobs, len(names))) as pool:
            made = dict(zip(names, pool.map(lambda n: _make(*work[n], wbits, min_saving), names)))
    else:
        made = {n: _make(*work[n], wbits, min_saving) for n in names}
    files = {n: made[n][0] if n in made else b"" for n in work}
    for e in entries:
        e["size"] = len(files[e["file"]])
        if stats is not None:
            m = made.get(e["file"], (b"", 0, 0.0))
            stats[(e["path"], e["base"], e["target"])] = {"patch": m[1], "raw": e["target_size"],
                                                          "kept": bool(e["size"]), "gen_s": m[2]}
    entries.sort(key=lambda e: (e["path"], e["base"], e["target"]))
    return entries, files


def index_bytes(entries):
    """index.json: valid JSON, one entry per line, keys sorted. ``deltas``: the patches;
    ``full``: the pairs whose file is empty (no patch)."""
    def body(es):
        return ",\n".join(json.dumps(e, sort_keys=True, separators=(",", ":")) for e in es)
    keep = [e for e in entries if e["size"]]
    none = [{k: e[k] for k in ("path", "base", "target", "file", "target_size")} for e in entries if not e["size"]]
    return ('{"format":%d,"codec":"%s","name_hex":%d,"deltas":[\n%s\n],"full":[\n%s\n]}\n' % (
        FORMAT, CODEC, NAME_HEX, body(keep), body(none))).replace("[\n\n]", "[]").encode()


def write_output(out_dir, entries, files):
    """Write the patch files and index.json; drop stale files of this tool's name patterns.
    Returns the index's path."""
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
    """Write ``data`` unless the file holds it already; a file replaced goes through a
    temporary file and a rename (readers never see a partial patch)."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        with open(path, "wb") as f:
            f.write(data)
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- git ------------------------------------------------------------------------

class Repo:
    """Read-only access to a git repository through one ``git cat-file --batch`` process:
    trees are read and compared here, subtrees with equal SHAs skipped."""

    def __init__(self, path="."):
        self.path = path
        self._cat = None

    def objects(self, specs):
        """[(SHA hex, type, bytes)] of the objects ``specs`` name (SHAs, or e.g.
        ``v1.0^{tree}``), asked all at once (one round trip)."""
        out = []
        for i in range(0, len(specs), 256):  # requests in slices: far below a pipe's buffer
            out += self._batch(specs[i:i + 256])
        return out

    def _batch(self, specs):
        for spec in specs:
            if "\n" in spec or not spec:
                raise SystemExit("git: bad name %r" % spec)
        if self._cat is None:
            self._cat = subprocess.Popen(["git", "-C", self.path, "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._cat.stdin.write("".join(spec + "\n" for spec in specs).encode())
        self._cat.stdin.flush()
        out = []
        for spec in specs:
            head = self._cat.stdout.readline().split()
            if len(head) != 3:  # "<spec> missing", "<spec> ambiguous", or git failed
                raise SystemExit("git: %s: %s" % (spec, b" ".join(head[1:]).decode(errors="replace") or "no answer"))
            out.append((head[0].decode(), head[1], self._cat.stdout.read(int(head[2]))))
            self._cat.stdout.read(1)  # the newline after the content
        return out

    def blobs(self, shas):
        """[bytes] of the blobs ``shas``."""
        out = []
        for sha, (_, kind, data) in zip(shas, self.objects(shas)):
            if kind != b"blob":
                raise SystemExit("git cat-file: %s is not a blob" % sha)
            out.append(data)
        return out

    def blob(self, sha):
        return self.blobs([sha])[0]

    @staticmethod
    def _entries(data):
        """{name: (mode, SHA hex)} of a tree object's bytes."""
        out, i, n = {}, 0, len(data)
        while i < n:
            sp = data.index(b" ", i)
            nul = data.index(b"\0", sp)
            out[data[sp + 1:nul].decode("utf-8", "surrogateescape")] = (data[i:sp], data[nul + 1:nul + 21].hex())
            i = nul + 21
        return out

    def changed(self, old_ref, new_ref):
        """[(path, old blob SHA, new blob SHA)] of the regular files present at both refs
        under the same path with other contents, in path order. Trees are compared level
        by level (one round trip each); subtrees with equal SHAs are skipped."""
        out, level = [], [("", old_ref + "^{tree}", new_ref + "^{tree}")]
        while level:
            got = self.objects([x for _, o, n in level for x in (o, n)])
            nxt = []
            for i, (prefix, o_spec, n_spec) in enumerate(level):
                (_, ok, od), (_, nk, nd) = got[2 * i], got[2 * i + 1]
                if ok != b"tree" or nk != b"tree":
                    raise SystemExit("git: %s does not name a commit or a tree" % (o_spec if ok != b"tree" else n_spec))
                old = self._entries(od)
                for name, (mode, sha) in self._entries(nd).items():
                    o = old.get(name)
                    if o is None or o[1] == sha:
                        continue
                    if mode == _TREE_MODE and o[0] == _TREE_MODE:
                        nxt.append((prefix + name + "/", o[1], sha))
                    elif mode in _REGULAR_MODES and o[0] in _REGULAR_MODES:
                        out.append((prefix + name, o[1], sha))
            level = nxt
        out.sort()
        return out

    def close(self):
        if self._cat is not None:
            self._cat.stdin.close()
            self._cat.wait()
            self._cat = None


def changed_pairs(repo, olds, new, cfg=None, warn=None):
    """(path, old bytes, new bytes) for each file present at both refs with another blob
    SHA, in path order, for each old ref in turn. Only the files the device takes
    (``ota.wanted(cfg, path)``; ``cfg`` from ``selection()``): never .deltas/ nor the device's
    own files; a changed path the device refuses (``ota.check_path``) is skipped with a
    warning (once)."""
    cfg = cfg or selection()
    refused = set()
    for old in olds:
        todo = []
        for path, base, target in repo.changed(old, new):
            if not ota.wanted(cfg, path):
                continue
            try:
                ota.check_path(path)
            except ota.OTAError:
                if warn and path not in refused:
                    warn("skipping %r: the device refuses this path (ota.check_path); a device that takes it "
                         "fails the update" % path)
                refused.add(path)
                continue
            todo.append((path, base, target))
        data = repo.blobs([sha for _, base, target in todo for sha in (base, target)])
        for i, (path, _, _) in enumerate(todo):
            yield path, data[2 * i], data[2 * i + 1]


def generate(repo_path, olds, new, out_dir, wbits=DEFAULT_WBITS, allow=(), ignore=(),
             min_saving=DEFAULT_MIN_SAVING, stats=None, config=None, warn=None, jobs=None):
    """The whole tool as a function; returns (entries, files). The files are those
    the device configured by ``config`` + ``allow``/``ignore`` takes (``selection()``)."""
    if not 9 <= wbits <= 15:
        raise ValueError("wbits must be 9..15")
    cfg = selection(allow, ignore, config)
    repo = Repo(repo_path)
    try:
        entries, files = plan_deltas(changed_pairs(repo, olds, new, cfg, warn), wbits, min_saving, stats, warn, jobs)
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
                    help="keep a patch only if it is at least this fraction smaller than the full "
                         "download it replaces (default 0: any saving)")
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
            print("%-6s %s %s..%s raw %d, patch %d" % (
                "delta" if s["kept"] else "full", path, base[:7], target[:7], s["raw"], s["patch"]))
        kept = [e for e in entries if e["size"]]
        print("%d delta(s), %d file(s), %d bytes -> %s" % (
            len(kept), len(files), sum(map(len, files.values())), os.path.join(a.output, INDEX_NAME)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
