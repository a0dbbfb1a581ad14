# ota_delta.py: delta updates (docs/delta-format.md). A changed file is rebuilt from the
# installed one and a bsdiff patch from the release's .deltas/, in one pass through
# ota_native.DeltaReader (inflate -> bspatch -> Git-blob SHA1). Imported by ota.py only with
# enable_delta_updates (or a cellular/lora transport) and ota_native; copy it to the board then.
# Any failure (no index, no entry, 404, corrupt patch, wrong digest, no memory) returns None,
# and ota.py downloads the full file at once, with no backoff and no retry used.
import ota_native
from ota import _free_memory, _hashers, _open_new, _remove_tree, _rename, _verified

_PIPELINE_STATE = 14336  # bytes free besides the window: ~12 KB of state + a margin


class Deltas:
    def __init__(self, u, base, files, get, have):
        # the entries of the target's .deltas/index.json that fit: {path: entry}
        # (one attempt, no backoff; ota.py imports this module only when a delta can fit in memory)
        self.u = u
        self.base = base
        self.entries = entries = {}

        def entry(e):
            p = e.get("path")
            if (p in get and e.get("base") == have.get(p) and e.get("target") == files[p][0]
                    and "/" not in e["file"] and e["target_size"] == files[p][1] and 9 <= e["wbits"] <= 15):
                entries[p] = e

        try:
            d = u.json(base + ".deltas/index.json", entry, 0)
            if d.get("format") != 1 or d.get("codec") != "bsdiff+deflate":
                entries.clear()
        except Exception as e:
            u.log("delta index: %r", e)
            entries.clear()

    def stage(self, path, dest, sha256):
        # stage path into dest by patching the installed file: "delta", or None on any failure
        e = self.entries.get(path)
        if not e:
            return None
        u = self.u
        part = dest + ".dpart"  # its own name: a full download never resumes from a delta's output
        size = e["target_size"]
        try:
            if _free_memory() < (1 << e["wbits"]) + _PIPELINE_STATE:
                raise MemoryError
            h = _hashers(size, sha256)
            r = u.get(self.base + ".deltas/" + e["file"])
            try:
                with open(path, "rb") as old:
                    with _open_new(part) as f:
                        u.pump(ota_native.DeltaReader(r, old, size, ota_native.RAW, e["wbits"]), f, h, 0, size)
            finally:
                r.close()
            if not _verified(h, e["target"], sha256):
                raise ValueError("SHA")
            _rename(part, dest)
            return "delta"
        except Exception as x:
            u.log("delta %s: %r", path, x)
            _remove_tree(part)
            return None
