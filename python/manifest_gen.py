#!/usr/bin/env python3
"""Write the release manifest (manifest.json) that the device updater reads.

Usage:
    python manifest_gen.py --version v1.0.0 boot.py main.py lib/util.py
    python manifest_gen.py --version v1.1.0 --root src src --delete lib/old.py \\
        --post-update lib/migrate.py --out manifest.json

Files and directories may be given (directories are walked; ``.git``,
``__pycache__``, ``.deltas``, ``*.pyc`` and the output file are skipped).
Paths in the manifest are relative to ``--root`` (default: the current
directory), use "/" and are sorted. Paths with "..", absolute paths and
empty parts are refused, and so are the device's own state files
(ota_config.*, version.json, ota_error.json, ota_journal.json, ota_state.json,
.ota_stage/, .ota_backup/),
which an update never writes. Attach the result to the release as the
asset ``manifest.json``. The format is described in manifests/README.md.
"""

import argparse
import hashlib
import json
import os
import sys

FORMAT = 1
SKIP_DIRS = {".git", "__pycache__", ".deltas", ".ota_stage", ".ota_backup"}
SKIP_SUFFIXES = (".pyc",)
# What the device keeps for itself: an update may never write or delete these.
STATE_FILES = {"ota_config.json", "ota_config.yaml", "ota_config.yml", "ota_config.toml",
               "version.json", "ota_error.json", "ota_journal.json", "ota_state.json"}
STATE_DIRS = (".ota_stage", ".ota_backup")


class ManifestError(ValueError):
    pass


def blob_sha1(data):
    """Git blob SHA1 (what `git hash-object` prints): sha1(b"blob <size>\\0" + data)."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def check_path(path, what="path"):
    """Return ``path`` if it is a safe relative "/" path, else raise ManifestError."""
    if not isinstance(path, str) or not path:
        raise ManifestError("%s is empty" % what)
    if "\\" in path or "\0" in path:
        raise ManifestError("%s %r: use '/' separators only" % (what, path))
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise ManifestError("%s %r is absolute" % (what, path))
    parts = path.split("/")
    if any(p == "" for p in parts):
        raise ManifestError("%s %r has an empty part" % (what, path))
    if any(p in ("..", ".") for p in parts):
        raise ManifestError("%s %r contains '..' or '.'" % (what, path))
    return path


def is_state_path(path):
    return path in STATE_FILES or any(path == d or path.startswith(d + "/") for d in STATE_DIRS)


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
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    if name.endswith(SKIP_SUFFIXES) or os.path.abspath(full) == out_abs:
                        continue
                    rel = check_path(_rel(full, root))
                    if is_state_path(rel):      # e.g. a template config in the app folder
                        if warn:
                            warn("skipping %s: the device's own state is never updated" % rel)
                        continue
                    found[rel] = full
        elif os.path.isfile(arg):
            rel = check_path(_rel(arg, root))
            if is_state_path(rel):
                raise ManifestError("%s is the device's own state and cannot be in a manifest" % rel)
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
        check_path(path)
        if is_state_path(path):
            raise ManifestError("%s is the device's own state and cannot be in a manifest" % path)
        entries.append(file_entry(path, files[path]))
    dels = sorted(set(deletes))
    for path in dels:
        check_path(path, "delete")
        if is_state_path(path):
            raise ManifestError("delete %s: the device's own state cannot be deleted" % path)
        if path in files:
            raise ManifestError("%s is both a file and a delete" % path)
    manifest = {"format": FORMAT, "version": version, "files": entries, "deletes": dels}
    if post_update:
        check_path(post_update, "post_update")
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
