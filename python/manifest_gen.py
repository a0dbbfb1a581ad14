#!/usr/bin/env python3
"""Write the release manifest (manifest.json) that the device updater reads.

Usage:
    python manifest_gen.py --version v1.0.0 boot.py main.py lib/util.py
    python manifest_gen.py --version v1.1.0 --root src src --delete lib/old.py \\
        --post-update lib/migrate.py --out manifest.json

Files and directories may be given (directories are walked; ``.git``,
``__pycache__``, ``*.pyc``, the output file and the folders the device keeps
for itself, ``.ota_stage``, ``.ota_backup`` and ``.deltas``, are skipped).
Paths in the manifest are relative to ``--root`` (default: the current
directory), use "/" and are sorted. The rules are the device's own, imported
from ota.py (next to this file), so a manifest this tool writes never fails an
update: a path the device refuses (ota.check_path: "..", ".", a leading "/",
empty parts, "\\", ":", NUL) is refused here, and so are the device's own
state files (ota.wanted: ota_config.*, version.json, ota_error.json,
ota_journal.json, ota_state.json, .ota_stage/, .ota_backup/, .deltas/), which
an update never writes. Attach the result to the release as the asset
``manifest.json``. The format is described in manifests/README.md.
"""

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ota  # noqa: E402  (the device's path and selection rules: one policy for device and tools)

FORMAT = 1
SKIP_DIRS = {".git", "__pycache__"}  # not application files (the device's own folders: _device_takes)
SKIP_SUFFIXES = (".pyc",)
# The device's selection without a device configuration: a manifest may ship the updater's own
# files (self_update devices take them, the others skip them), never the device's state.
_ANY_DEVICE = ota.check_config({"owner": "x", "repo": "x", "self_update": True})


class ManifestError(ValueError):
    pass


def blob_sha1(data):
    """Git blob SHA1 (what `git hash-object` prints): sha1(b"blob <size>\\0" + data).
    The one host-side helper: delta_gen.py and delta_apply.py import it from here."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _safe(path, what="path"):
    """``path`` if the device accepts it (ota.check_path), else ManifestError saying why."""
    try:
        return ota.check_path(path)
    except ota.OTAError:
        raise ManifestError("%s %r is refused by the device (ota.check_path): a device that takes it fails "
                            "the update. Use a relative path (no leading '/') of '/'-separated parts, none "
                            "empty, '.' or '..', without '\\', ':' or NUL" % (what, path))


def _device_takes(path):
    """False for the device's own state (ota.wanted), which no update writes or deletes."""
    return ota.wanted(_ANY_DEVICE, path)


def _rel(path, root):
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    rel = rel.replace(os.sep, "/")
    if rel == ".." or rel.startswith("../"):
        raise ManifestError("%r is outside the root %r (use --root)" % (path, root))
    return rel


def collect(args, root=".", out=None, warn=None):
    """{manifest path: file system path} for files and directories in ``args``."""
    found = {}
    out_abs = os.path.abspath(out) if out else None
    for arg in args:
        if os.path.isdir(arg):
            for dirpath, dirnames, filenames in os.walk(arg):
                # the device's own folders too (stage, backup, .deltas: nothing under them is taken)
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                                     and _device_takes(_rel(os.path.join(dirpath, d), root) + "/"))
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    if name.endswith(SKIP_SUFFIXES) or os.path.abspath(full) == out_abs:
                        continue
                    rel = _rel(full, root)  # checked with the rest by build_manifest
                    if not _device_takes(rel):      # e.g. a template config in the app folder
                        if warn:
                            warn("skipping %s: the device's own state is never updated" % rel)
                        continue
                    found[rel] = full
        elif os.path.isfile(arg):
            rel = _rel(arg, root)  # checked by build_manifest, the device's own state included
            if rel in found:
                raise ManifestError("%s given twice" % rel)
            found[rel] = arg
        else:
            raise ManifestError("no such file or directory: %s" % arg)
    return found


def file_entry(path, data):
    return {"path": path, "size": len(data), "sha1": blob_sha1(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def build_manifest(version, files, deletes=(), post_update=None):
    """Manifest dict from {path: bytes}; validates every path."""
    if not isinstance(version, str) or not version.strip():
        raise ManifestError("version is empty")
    entries = []
    for path in sorted(files):
        _safe(path)
        if not _device_takes(path):
            raise ManifestError("%s is the device's own state and cannot be in a manifest" % path)
        entries.append(file_entry(path, files[path]))
    dels = sorted(set(deletes))
    for path in dels:
        _safe(path, "delete")
        if not _device_takes(path):
            raise ManifestError("delete %s: the device's own state cannot be deleted" % path)
        if path in files:
            raise ManifestError("%s is both a file and a delete" % path)
    manifest = {"format": FORMAT, "version": version, "files": entries, "deletes": dels}
    if post_update:
        _safe(post_update, "post_update")
        manifest["post_update"] = post_update
    return manifest


def dumps(manifest):
    return json.dumps(manifest, indent=2) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="manifest_gen.py",
        description="Write a release manifest.json (path, size, Git blob SHA1 and sha256 of each file).",
        epilog="example: python manifest_gen.py --version v1.0.0 boot.py main.py lib/util.py")
    ap.add_argument("paths", nargs="+", help="files and directories (directories are walked)")
    ap.add_argument("--version", required=True, help="release version, e.g. the tag v1.0.0")
    ap.add_argument("--out", default="manifest.json", help="output file (default manifest.json; - for stdout)")
    ap.add_argument("--root", default=".", help="manifest paths are relative to this directory (default .)")
    ap.add_argument("--delete", action="append", default=[], metavar="PATH",
                    help="a path the device must delete (repeatable)")
    ap.add_argument("--post-update", metavar="MODULE_OR_FILE",
                    help="hook the device runs after a successful update (module name or .py path)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def warn(msg):
        print("manifest_gen: " + msg, file=sys.stderr)

    try:
        out = None if args.out == "-" else args.out
        found = collect(args.paths, args.root, out, warn)
        if not found:
            raise ManifestError("no files")
        files = {}
        for rel, full in found.items():
            with open(full, "rb") as f:
                files[rel] = f.read()
        post = args.post_update
        if post and post.endswith(".py") and os.path.exists(post):
            post = _rel(post, args.root)
        manifest = build_manifest(args.version, files, args.delete, post)
        text = dumps(manifest)
        if out is None:
            sys.stdout.write(text)
        else:
            tmp = out + ".tmp"
            with open(tmp, "w", newline="\n") as f:
                f.write(text)
            os.replace(tmp, out)
    except (ManifestError, OSError) as e:
        print("manifest_gen: error: %s" % e, file=sys.stderr)
        return 2
    if out is not None and not args.quiet:
        total = sum(e["size"] for e in manifest["files"])
        print("wrote %s: %s, %d files, %d bytes, %d deletes" % (
            out, args.version, len(manifest["files"]), total, len(manifest["deletes"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
