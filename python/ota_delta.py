# ota_delta.py: delta updates (docs/delta-format.md). A changed file is rebuilt from the
# installed one and a bsdiff patch from the release's .deltas/, in one pass through
# ota_native.DeltaReader (inflate -> bspatch -> Git-blob SHA1). Imported by ota.py only with
# enable_delta_updates (or a cellular/lora transport) and ota_native; copy it to the board then.
# No index: a patch's name comes from the installed file's blob SHA and the target's,
# .deltas/<base[:10]>-<target[:10]>. Any failure (404, an empty file, a patch no smaller than
# the file, corrupt data, wrong digest, no memory) returns None and ota.py downloads the full
# file at once, with no backoff and no retry used; after a 404 no other patch is asked for in
# this update (the release has none for this device's files).
import ota_native
from ota import NotFound, _free_memory, _hashers, _open_new, _remove_tree, _rename, _size, _verified

_PIPELINE_STATE = 14336  # bytes free besides the window: ~12 KB of state + a margin


class Deltas:
    def __init__(self, u, base, files, get, have):
        # entries: {path: patch file name} of the changed files installed already (no request:
        # the name is all a device needs; ota.py imports this module only when a delta can fit)
        self.u = u
        self.base = base + ".deltas/"
        self.files = files
        self.off = False  # a 404: this release has no patch for this device
        self.entries = e = {}
        for p in get:
            b = have.get(p)
            t = files[p][0]
            # both Git blob SHA1s (a manifest entry may give a sha256 alone: no delta, and the
            # result could not be checked by its blob SHA)
            if b and b != t and len(b) == len(t) == 40:
                e[p] = b[:10] + "-" + t[:10]

    def stage(self, path, dest, sha256):
        # stage path into dest by patching the installed file: "delta", or None on any failure
        name = self.entries.get(path)
        if not name or self.off or _size(path) < 0:
            return None
        u = self.u
        sha, size = self.files[path][0], self.files[path][1]
        part = dest + ".dpart"  # its own name: a full download never resumes from a delta's output
        r = None
        try:
            try:
                r = u.get(self.base + name)
            except NotFound:
                self.off = True
                raise
            n = int(r.headers.get("length", -1))
            if n == 0 or n >= size:  # "no patch", or one that saves nothing: its body is not read
                raise ValueError("no saving (%d B for %d B)" % (n, size))
            b = u.buf[:1]  # the header byte: version 1, window 2**wbits
            if r.readinto(b) != 1 or b[0] >> 4 != 1 or not 1 <= b[0] & 15 <= 7:
                raise ValueError("header")
            w = (b[0] & 15) + 8
            if _free_memory() < (1 << w) + _PIPELINE_STATE:
                raise MemoryError
            h = _hashers(size, sha256)
            with open(path, "rb") as old:
                with _open_new(part) as f:
                    u.pump(ota_native.DeltaReader(r, old, size, ota_native.RAW, w), f, h, 0, size)
            if not _verified(h, sha, sha256):
                raise ValueError("SHA")
            _rename(part, dest)
            return "delta"
        except Exception as x:
            u.log("delta %s: %r", path, x)
            _remove_tree(part)
            return None
        finally:
            if r:
                r.close()
