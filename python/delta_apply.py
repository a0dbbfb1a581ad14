#!/usr/bin/env python3
"""delta_apply.py: host reference applier of a delta index (docs/delta-format.md).

Applies what ``delta_gen.py`` wrote to a base tree through the same pipeline a
device runs (``ota_native.DeltaReader``: inflate, bspatch, Git-blob SHA1), in
small chunks, and checks every result against the index's ``target`` SHA.
Used by the tests and bench/bench_delta.py; also a command::

    python delta_apply.py --deltas .deltas --base old_checkout/ --out new_files/
"""

import argparse
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ota  # noqa: E402  (the device's path rule: ota.check_path)
from manifest_gen import blob_sha1  # noqa: E402  (the one host-side Git blob SHA1)

FORMAT = 1
CODEC = "bsdiff+deflate"
CHUNK = 256  # bytes per readinto, like a device's small buffer


class DeltaError(Exception):
    pass


def parse_index(data):
    """Validate and return the index's entries (a list of dicts)."""
    idx = json.loads(data)
    if idx.get("format") != FORMAT or idx.get("codec") != CODEC:
        raise DeltaError("unsupported delta index format/codec")
    out = []
    for e in idx.get("deltas", []):
        for k, t in (("path", str), ("base", str), ("target", str), ("file", str),
                     ("target_size", int), ("size", int), ("sha1", str), ("wbits", int)):
            if not isinstance(e.get(k), t):
                raise DeltaError("index entry without a valid %r" % k)
        if "/" in e["file"] or not 9 <= e["wbits"] <= 15:  # as the device (docs/delta-format.md)
            raise DeltaError("bad index entry for %s" % e["path"])
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


def apply_patch(patch, old, target_size, wbits, chunk=CHUNK):
    """Run one compressed patch through ota_native.DeltaReader.

    Returns (new bytes, Git-blob SHA1 hex from the pipeline)."""
    import ota_native
    r = ota_native.DeltaReader(Trickle(patch, chunk), io.BytesIO(old), target_size,
                               ota_native.RAW, wbits)
    out = bytearray()
    buf = bytearray(chunk)
    while True:
        n = r.readinto(buf)
        if not n:
            break
        out += buf[:n]
    return bytes(out), r.hexdigest()


def apply_entry(entry, patch, old):
    """Apply one index entry the way the device must; DeltaError on any mismatch."""
    if blob_sha1(old) != entry["base"]:
        raise DeltaError("%s: installed file is not the entry's base" % entry["path"])
    if len(patch) != entry["size"] or blob_sha1(patch) != entry["sha1"]:
        raise DeltaError("%s: patch file size/SHA1 differs from the index" % entry["path"])
    try:
        new, digest = apply_patch(patch, old, entry["target_size"], entry["wbits"])
    except ValueError as e:
        raise DeltaError("%s: %s" % (entry["path"], e))
    if digest != entry["target"] or blob_sha1(new) != entry["target"]:
        raise DeltaError("%s: result does not hash to target" % entry["path"])
    return new


def apply_index(delta_dir, base_files):
    """Apply every entry of ``delta_dir/index.json`` whose base matches the file
    at its path in ``base_files`` ({path: bytes}).  Returns {path: new bytes}."""
    with open(os.path.join(delta_dir, "index.json"), "rb") as f:
        entries = parse_index(f.read())
    out = {}
    for e in entries:
        old = base_files.get(e["path"])
        if old is None or blob_sha1(old) != e["base"]:
            continue
        with open(os.path.join(delta_dir, e["file"]), "rb") as f:
            out[e["path"]] = apply_entry(e, f.read(), old)
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
    ap = argparse.ArgumentParser(description="apply a delta index to a base tree")
    ap.add_argument("--deltas", default=".deltas", help="folder with index.json")
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
