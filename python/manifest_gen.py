#!/usr/bin/env python3
"""Write the release manifest (manifest.json) that the device updater reads.

Usage:
    python manifest_gen.py --version v1.0.0 boot.py main.py lib/util.py
    python manifest_gen.py --version v1.1.0 --root src src --delete lib/old.py \\
        --post-update lib/migrate.py --out manifest.json
    python manifest_gen.py --keygen release.key     # prints the public key (64 hex digits)
    python manifest_gen.py --version v1.2.0 --sign-key release.key app.py lib
        # also writes manifest.json.sig; the manifest gets a "sequence" (--sequence N, default
        # the current Unix time) and, with --expires, an "expires" time

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
``manifest.json`` (and, signed, ``manifest.json.sig``). The format, signatures included, is
described in manifests/README.md.

Signing (Ed25519, RFC 8032) uses the PyO3 module ``ota_native`` (``make pyshim``): the same Rust
core that verifies on the device. The private key file is PKCS#8 PEM (what ``openssl genpkey
-algorithm ed25519`` writes, and reads back); the signature file is the 64 raw bytes of the
signature over the exact bytes of manifest.json.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time

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


def build_manifest(version, files, deletes=(), post_update=None, sequence=None, expires=None):
    """Manifest dict from {path: bytes}; validates every path. ``sequence`` (signed manifests: a
    device refuses one lower than the installed release's) and ``expires`` (Unix time after which
    a device with a set clock refuses it) are whole numbers, written when given."""
    if not isinstance(version, str) or not version.strip():
        raise ManifestError("version is empty")
    for name, v in (("sequence", sequence), ("expires", expires)):
        if v is not None and (type(v) is not int or v < 0):
            raise ManifestError("%s must be a whole number >= 0, got %r" % (name, v))
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
    manifest = {"format": FORMAT, "version": version}
    if sequence is not None:
        manifest["sequence"] = sequence
    if expires is not None:
        manifest["expires"] = expires
    manifest.update(files=entries, deletes=dels)
    if post_update:
        _safe(post_update, "post_update")
        manifest["post_update"] = post_update
    return manifest


def dumps(manifest):
    return json.dumps(manifest, indent=2) + "\n"


# ---- signatures (Ed25519) ----------------------------------------------------------------
# PKCS#8 DER of an Ed25519 private key: this prefix, then the 32-byte seed (RFC 8410).
_PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420")
_PEM = ("-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----")
SIG_SUFFIX = ".sig"


def _ed25519():
    try:
        import ota_native
    except ImportError:
        ota_native = None
    if ota_native is None or not hasattr(ota_native, "ed25519_sign"):
        raise ManifestError("signing needs the PyO3 module ota_native with Ed25519 (make pyshim)")
    return ota_native


def public_key_hex(seed):
    """The public key of a private key (32-byte seed) as the device's config wants it: 64 hex."""
    return _ed25519().ed25519_public_key(seed).hex()


def keygen(path):
    """Write a new private key to ``path`` (PKCS#8 PEM, mode 0600; an existing file is never
    overwritten) and return its public key as 64 hex digits."""
    seed = os.urandom(32)
    pem = "%s\n%s\n%s\n" % (_PEM[0], base64.b64encode(_PKCS8_ED25519 + seed).decode(), _PEM[1])
    pub = public_key_hex(seed)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ManifestError("%s exists: a private key is never overwritten" % path)
    with os.fdopen(fd, "w") as f:
        f.write(pem)
    return pub


def load_key(path):
    """The 32-byte seed of a private key file written by keygen (or ``openssl genpkey -algorithm
    ed25519``)."""
    with open(path) as f:
        text = f.read().strip()
    if not (text.startswith(_PEM[0]) and text.endswith(_PEM[1])):
        raise ManifestError("%s is not a PEM private key (%s)" % (path, _PEM[0]))
    try:
        der = base64.b64decode("".join(text[len(_PEM[0]):-len(_PEM[1])].split()), validate=True)
    except ValueError:
        der = b""
    if len(der) != 48 or not der.startswith(_PKCS8_ED25519):
        raise ManifestError("%s is not an Ed25519 private key" % path)
    return der[16:]


def sign(seed, data):
    """The detached Ed25519 signature (64 bytes) of ``data`` by the private key ``seed``."""
    return _ed25519().ed25519_sign(seed, data)


def _expires(text, now):
    """--expires: a Unix time, or +N with a unit s, h or d (from now)."""
    units = {"s": 1, "h": 3600, "d": 86400}
    try:
        if text.startswith("+"):
            n, unit = (text[1:-1], text[-1]) if text[-1] in units else (text[1:], "s")
            return int(now) + int(n) * units[unit]
        return int(text)
    except ValueError:
        raise ManifestError("--expires %r: a Unix time, or +N followed by s, h or d" % text)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="manifest_gen.py",
        description="Write a release manifest.json (path, size, Git blob SHA1 and sha256 of each file).",
        epilog="example: python manifest_gen.py --version v1.0.0 boot.py main.py lib/util.py")
    ap.add_argument("paths", nargs="*", help="files and directories (directories are walked)")
    ap.add_argument("--version", help="release version, e.g. the tag v1.0.0 (required)")
    ap.add_argument("--out", default="manifest.json", help="output file (default manifest.json; - for stdout)")
    ap.add_argument("--root", default=".", help="manifest paths are relative to this directory (default .)")
    ap.add_argument("--delete", action="append", default=[], metavar="PATH",
                    help="a path the device must delete (repeatable)")
    ap.add_argument("--post-update", metavar="MODULE_OR_FILE",
                    help="hook the device runs after a successful update (module name or .py path)")
    ap.add_argument("--keygen", metavar="KEYFILE",
                    help="write a new Ed25519 private key to KEYFILE, print its public key (64 hex digits) and stop")
    ap.add_argument("--sign-key", metavar="KEYFILE",
                    help="sign: also write OUT.sig, the Ed25519 signature of the exact bytes of the manifest")
    ap.add_argument("--sequence", type=int, metavar="N",
                    help="the release's sequence number, higher than every earlier release's (default with "
                         "--sign-key: the current Unix time)")
    ap.add_argument("--expires", metavar="TIME",
                    help="devices refuse the manifest after TIME: a Unix time or +N[s|h|d] from now")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def warn(msg):
        print("manifest_gen: " + msg, file=sys.stderr)

    if args.keygen:
        try:
            print(keygen(args.keygen))
        except (ManifestError, OSError) as e:
            print("manifest_gen: error: %s" % e, file=sys.stderr)
            return 2
        if not args.quiet:
            warn("wrote %s (keep it secret); the line above is its public key for manifest_pubkeys" % args.keygen)
        return 0
    if not args.version or not args.paths:
        ap.error("--version and at least one path are required")
    if args.sign_key and args.out == "-":
        ap.error("--sign-key writes OUT.sig: give --out FILE")

    try:
        out = None if args.out == "-" else args.out
        seed = load_key(args.sign_key) if args.sign_key else None
        now = time.time()
        sequence = args.sequence if args.sequence is not None else (int(now) if seed else None)
        expires = _expires(args.expires, now) if args.expires else None
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
        manifest = build_manifest(args.version, files, args.delete, post, sequence, expires)
        text = dumps(manifest)
        if out is None:
            sys.stdout.write(text)
        else:
            data = text.encode()  # the exact bytes written, and signed
            outputs = [(out, data)]
            if seed:
                outputs.append((out + SIG_SUFFIX, sign(seed, data)))
            else:
                try:
                    os.remove(out + SIG_SUFFIX)  # an old signature would not match the new manifest
                except FileNotFoundError:
                    pass
            for path, blob in outputs:
                tmp = path + ".tmp"
                with open(tmp, "wb") as f:
                    f.write(blob)
                os.replace(tmp, path)
    except (ManifestError, OSError) as e:
        print("manifest_gen: error: %s" % e, file=sys.stderr)
        return 2
    if out is not None and not args.quiet:
        total = sum(e["size"] for e in manifest["files"])
        print("wrote %s: %s, %d files, %d bytes, %d deletes" % (
            out, args.version, len(manifest["files"]), total, len(manifest["deletes"])))
        if seed:
            print("wrote %s: signed by %s, sequence %d%s" % (
                out + SIG_SUFFIX, public_key_hex(seed), sequence, ", expires %d" % expires if expires else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
