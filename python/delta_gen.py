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
header byte, then a raw deflate stream of a bsdiff patch whose window is
``2**wbits`` bytes) when that costs the device fewer bytes than the full
download it replaces (gzip -9 as the server sends it, or the plain file up to
300 bytes, which the device asks without gzip), or empty ("no patch: take the
full file").  The patch is the Rust ``bsdiff`` crate's (``ota_native.make_patch``),
with each match kept only over the stretch where it costs less than the same
bytes as literals (same patch format, same output); every file is applied
once through ``ota_native.DeltaReader`` before it is written.

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
CODEC = "bsdiff+deflate"
PATCH_VERSION = 1  # high nibble of a patch file's first byte; the low nibble is wbits - 8
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


def header(wbits):
    return bytes(((PATCH_VERSION << 4) | (wbits - 8),))


def parse_header(byte):
    """wbits from a patch file's first byte; ValueError for an unknown version or window."""
    w = (byte & 15) + 8
    if byte >> 4 != PATCH_VERSION or not 9 <= w <= 15:
        raise ValueError("unknown patch header 0x%02x" % byte)
    return w


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


# What the bytes of a patch cost once deflated, relative to a literal byte of the new file
# (fitted on bench/datasets.txt with zlib -9 and 1-4 KiB windows): a changed (non-zero) diff
# byte ~4.7 literal bytes, an unchanged one (a zero, in long runs) almost nothing; a control
# entry 13-37 literal bytes, depending on the file: make_delta tries the values of ENTRY_COSTS
# and keeps the smallest stream. (Units: a third of a literal byte.)
ENTRY_COSTS = (40.0, 70.0, 110.0)
NONZERO_COST = 14.0
ZERO_COST = 0.02
LITERAL_COST = 3.0
_NONZERO = re.compile(rb"[^\x00]")


def _best_span(diff):
    """(start, end, gain) of the stretch of a match worth keeping: the one whose bytes cost
    the most less as mix than as literals (maximum subarray over runs of zero diff bytes and
    the non-zero ones between them), gain in cost units before the entry's cost."""
    g0, g1 = LITERAL_COST - ZERO_COST, LITERAL_COST - NONZERO_COST
    best = cur = 0.0
    best_a = best_b = cur_a = prev = 0
    for m in _NONZERO.finditer(diff):
        i = m.start()
        if i > prev:  # the zero run prev..i
            if cur <= 0:
                cur, cur_a = 0.0, prev
            cur += (i - prev) * g0
            if cur > best:
                best, best_a, best_b = cur, cur_a, i
        if cur <= 0:  # the non-zero byte i
            cur, cur_a = 0.0, i
        cur += g1
        if cur > best:
            best, best_a, best_b = cur, cur_a, i + 1
        prev = i + 1
    if len(diff) > prev:
        if cur <= 0:
            cur, cur_a = 0.0, prev
        cur += (len(diff) - prev) * g0
        if cur > best:
            best, best_a, best_b = cur, cur_a, len(diff)
    return best_a, best_b, best


def _spans(patch, new):
    """[(gain, new pos, old pos, diff)] of the matches of a crate patch, each cut to its
    best stretch (_best_span)."""
    spans, npos, opos = [], 0, 0
    for mix, diff, extra, seek in parse_patch(patch):
        if mix:
            a, b, gain = _best_span(diff)
            if gain > 0:
                spans.append((gain, npos + a, opos + a, diff[a:b]))
        npos += mix + len(extra)
        opos += mix + seek
    if npos != len(new):
        raise ValueError("the patch does not produce len(new) bytes")
    return spans


def _build(kept, new):
    """The patch of the matches ``kept`` [(new pos, old pos, diff)], literals between them."""
    parts = []
    if not kept or kept[0][:2] != (0, 0):  # a first entry: the literals before the first match, its seek
        nxt = kept[0][0] if kept else len(new)
        parts += [bytes(8), nxt.to_bytes(8, "little"), _offtout(kept[0][1] if kept else 0), new[:nxt]]
    for i, (ns, os_, diff) in enumerate(kept):
        end = ns + len(diff)
        nn, no = kept[i + 1][:2] if i + 1 < len(kept) else (len(new), os_ + len(diff))
        parts += [len(diff).to_bytes(8, "little"), (nn - end).to_bytes(8, "little"),
                  _offtout(no - os_ - len(diff)), diff, new[end:nn]]
    return b"".join(parts)


def optimize_patch(patch, new, entry_cost=ENTRY_COSTS[1]):
    """An equivalent patch (same format, same output) that deflates smaller.

    bsdiff matches a short run of the old file inside an edited region, or extends a match
    over bytes that differ; each entry costs 24 bytes (~6-8 once deflated) and each differing
    byte about as much as a literal or more. Each match of ``patch`` is kept only over its
    most profitable stretch, and only when that pays for its entry (``entry_cost``);
    everything else becomes literal bytes (copied from ``new``)."""
    return _build([x[1:] for x in _spans(patch, new) if x[0] > entry_cost], new)


def make_delta(old, new, wbits=DEFAULT_WBITS):
    """The patch file turning ``old`` into ``new``: the header byte, then the smallest raw
    deflate stream (window 2**wbits) of the crate's patch optimized for each of ENTRY_COSTS
    (the first on ties). Checked by applying it with ota_native.DeltaReader, the device's
    own pipeline."""
    spans = _spans(_native().make_patch(old, new), new)
    best, seen = None, set()
    for cost in ENTRY_COSTS:
        kept = [x[1:] for x in spans if x[0] > cost]
        if len(kept) in seen:  # the same matches as a cost tried already
            continue
        seen.add(len(kept))
        stream = deflate_raw(_build(kept, new), wbits)
        if best is None or len(stream) < len(best):
            best = stream
    if _pipeline_digest(best, old, len(new), wbits) != blob_sha1(new):
        raise RuntimeError("generated delta does not reproduce its target")
    return header(wbits) + best


def _pipeline_digest(stream, old, new_size, wbits):
    import io
    on = _native()
    r = on.DeltaReader(io.BytesIO(stream), io.BytesIO(old), new_size, on.RAW, wbits)
    buf = bytearray(4096)
    while r.readinto(buf):
        pass
    return r.hexdigest()


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
