# ota_delta.py: delta updates (docs/delta-format.md). A changed file is rebuilt from the
# installed one and a patch from the release's .deltas/, streamed: version 2 (what delta_gen.py
# writes) inflates copy/literal operations (ota_native.InflateReader) and copies the installed
# file's bytes they name; version 1 is a bsdiff patch through ota_native.DeltaReader. Imported by
# ota.py only with enable_delta_updates (or a cellular/lora transport) and ota_native; copy it to
# the board then. No index: a patch's name comes from the installed file's blob SHA and the
# target's, .deltas/<base[:10]>-<target[:10]>. Any failure (404, an empty file, a patch no smaller
# than the file, corrupt data, wrong digest, no memory) returns None and ota.py downloads the full
# file at once, with no backoff and no retry used; after a 404 no other patch is asked for in
# this update (the release has none for this device's files).
import ota_native
from ota import NotFound, _free_memory, _hashers, _open_new, _remove_tree, _rename, _size, _verified

_PIPELINE_STATE = 14336  # bytes free besides the window: ~12 KB of state + a margin


class Patch:
    # Version 2: the target file through readinto, from src (the inflated operations) and old
    # (the installed file: seek + readinto). Each operation: literal length, copy length, offset
    # (LEB128; the offset zigzag, from the end of the previous copy), then the literal bytes,
    # then the copy from old. Exactly size bytes, then the end of src; ValueError otherwise.
    def __init__(self, src, old, size):
        self.src = src
        self.old = old
        self.left = size  # bytes of the target not yet announced by an operation
        self.lit = self.copy = self.pos = 0
        self.b = bytearray(1)

    def _u(self):
        n = s = 0
        while s < 35:
            if self.src.readinto(self.b) != 1:
                raise ValueError("truncated")
            c = self.b[0]
            n |= (c & 127) << s
            if c < 128:
                return n
            s += 7
        raise ValueError("varint")

    def readinto(self, buf):
        if not (self.lit or self.copy):
            if not self.left:
                if self.src.readinto(self.b):
                    raise ValueError("data after the end")
                return 0
            a = self._u()
            c = self._u()
            z = self._u()
            self.pos += (z >> 1) ^ -(z & 1)
            if not 0 < a + c <= self.left or self.pos < 0:
                raise ValueError("operation")
            self.lit = a
            self.copy = c
            self.left -= a + c
        n = len(buf)
        if self.lit:
            k = self.src.readinto(buf, self.lit if self.lit < n else n)
            if not k:
                raise ValueError("truncated")
            self.lit -= k
            return k
        old = self.old
        old.seek(self.pos)
        k = old.readinto(memoryview(buf)[:self.copy if self.copy < n else n])
        if not k:
            raise ValueError("old file")
        self.pos += k
        self.copy -= k
        return k


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
            b = u.buf[:1]  # the header byte: version (1, 2), window 2**wbits
            if r.readinto(b) != 1:
                raise ValueError("header")
            v = b[0] >> 4
            w = b[0] & 15
            if v not in (1, 2) or not 1 <= w <= 7:
                raise ValueError("header %d" % b[0])
            w += 8
            if _free_memory() < (1 << w) + _PIPELINE_STATE:
                raise MemoryError
            h = _hashers(size, sha256)
            with open(path, "rb") as old:
                with _open_new(part) as f:
                    u.pump(ota_native.DeltaReader(r, old, size, ota_native.RAW, w) if v == 1 else
                           Patch(ota_native.InflateReader(r, ota_native.RAW, w), old, size), f, h, 0, size)
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
