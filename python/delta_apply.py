#!/usr/bin/env python3
"""delta_apply.py: host reference applier of a ``.deltas/`` folder (docs/delta-format.md).

Applies what ``delta_gen.py`` wrote to a base tree the way a device does: the patch
file's name derived from the installed file's blob SHA and the target's, its header
byte read, then the device's own code (version 2: ``ota_delta.Patch`` over
``ota_native.InflateReader``; version 1: ``ota_native.DeltaReader``) in small chunks,
every result checked against the target SHA.  The
targets come from ``index.json`` (a device knows them from the release's tree or
manifest).  Used by the tests and bench/bench_delta.py; also a command::

    python delta_apply.py --deltas .deltas --base old_checkout/ --out new_files/
"""

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ota  # noqa: E402  (the device's path rule: ota.check_path)
from delta_gen import FORMAT, parse_header, patch_name  # noqa: E402  (one definition of the names)
from manifest_gen import blob_sha1  # noqa: E402  (the one host-side Git blob SHA1)

CHUNK = 256  # bytes per readinto, like a device's small buffer


class DeltaError(Exception):
    pass


def parse_index(data):
    """Validate and return index.json's entries: the patches (``deltas``) and the pairs
    left to full downloads (``full``), each a dict with at least path, base, target."""
    idx = json.loads(data)
    if idx.get("format") != FORMAT:
        raise DeltaError("unsupported index.json format")
    out = []
    for e in idx.get("deltas", []) + idx.get("full", []):
        for k in ("path", "base", "target", "file"):
            if not isinstance(e.get(k), str):
                raise DeltaError("index entry without a valid %r" % k)
        if e["file"] != patch_name(e["base"], e["target"]):
            raise DeltaError("index entry for %s: its file is not named from its SHAs" % e["path"])
        try:
            ota.check_path(e["path"])  # the device's rule: no entry writes outside --out
        except ota.OTAError as x:
            raise DeltaError("index entry: %s" % x)
        out.append(e)
    return out


class Trickle:
    """A source that hands out at most ``step`` bytes per readinto (a slow link)."""

    def __init__(self, data, step=CHUNK):
        self._b, self._pos, self._step = memoryview(data), 0, step

    def readinto(self, buf):
        n = min(len(buf), self._step, len(self._b) - self._pos)
        buf[:n] = self._b[self._pos:self._pos + n]
        self._pos += n
        return n


def _drain(r, chunk):
    out = bytearray()
    buf = bytearray(chunk)
    while True:
        n = r.readinto(buf)
        if not n:
            break
        out += buf[:n]
    return bytes(out)


def apply_patch(stream, old, target_size, wbits, chunk=CHUNK):
    """Run the raw deflate stream of a version 1 (bsdiff) patch through
    ota_native.DeltaReader. Returns (new bytes, Git-blob SHA1 hex from the pipeline)."""
    import ota_native
    r = ota_native.DeltaReader(Trickle(stream, chunk), io.BytesIO(old), target_size,
                               ota_native.RAW, wbits)
    out = _drain(r, chunk)
    return out, r.hexdigest()


def apply_ops(stream, old, target_size, wbits, chunk=CHUNK):
    """Run the raw deflate stream of a version 2 patch (operations) through the device's
    code: ota_delta.Patch over ota_native.InflateReader. Returns (new bytes, Git-blob SHA1
    hex); ValueError for a corrupt stream."""
    import ota_delta
    import ota_native
    r = ota_delta.Patch(ota_native.InflateReader(Trickle(stream, chunk), ota_native.RAW, wbits),
                        io.BytesIO(old), target_size)
    out = _drain(r, chunk)
    return out, blob_sha1(out)


def apply_file(data, old, target_size, chunk=CHUNK):
    """Apply a patch file (header byte + stream) as a device does: (new bytes, SHA1 hex).
    DeltaError for an empty file (no patch) or an unknown header, ValueError from the
    pipeline for corrupt data."""
    if not data:
        raise DeltaError("no patch (empty file): the full file is downloaded")
    try:
        version, wbits = parse_header(data[0])
    except ValueError as e:
        raise DeltaError(str(e))
    return (apply_patch if version == 1 else apply_ops)(data[1:], old, target_size, wbits, chunk)


def apply_entry(entry, data, old):
    """Apply one listed patch the way the device must; DeltaError on any mismatch."""
    if blob_sha1(old) != entry["base"]:
        raise DeltaError("%s: installed file is not the entry's base" % entry["path"])
    if len(data) >= entry["target_size"]:
        raise DeltaError("%s: the patch is no smaller than the file" % entry["path"])
    try:
        new, digest = apply_file(data, old, entry["target_size"])
    except ValueError as e:
        raise DeltaError("%s: %s" % (entry["path"], e))
    if digest != entry["target"] or blob_sha1(new) != entry["target"]:
        raise DeltaError("%s: result does not hash to target" % entry["path"])
    return new


def apply_index(delta_dir, base_files):
    """For each target of ``delta_dir/index.json`` whose path holds a file in
    ``base_files`` ({path: bytes}), fetch the patch a device would ask for (named from the
    file's blob SHA and the target's) and apply it. Returns {path: new bytes} of the files
    patched (a missing or empty file means a full download: not in the result)."""
    with open(os.path.join(delta_dir, "index.json"), "rb") as f:
        entries = parse_index(f.read())
    out = {}
    for e in entries:
        old = base_files.get(e["path"])
        if old is None or blob_sha1(old) != e["base"] or e["path"] in out:
            continue
        try:
            with open(os.path.join(delta_dir, patch_name(e["base"], e["target"])), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        if data:
            out[e["path"]] = apply_entry(e, data, old)
    return out


def _read_tree(root):
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".deltas"))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                files[os.path.relpath(p, root).replace(os.sep, "/")] = f.read()
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description="apply a .deltas/ folder to a base tree")
    ap.add_argument("--deltas", default=".deltas", help="folder with index.json and the patch files")
    ap.add_argument("--base", required=True, help="folder holding the installed (old) files")
    ap.add_argument("--out", required=True, help="folder to write the patched files to")
    a = ap.parse_args(argv)
    done = apply_index(a.deltas, _read_tree(a.base))
    for path, data in sorted(done.items()):
        dest = os.path.join(a.out, path)
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
        print("patched %s %s" % (blob_sha1(data), path))
    print("%d file(s) patched and verified" % len(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
