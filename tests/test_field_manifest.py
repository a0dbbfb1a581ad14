"""Releases whose manifest.json was written the way the original system's manifest_gen.py writes
it (manifests/README.md, "The original system's format"): file entries with path, size, sha (the
Git blob SHA1, in its later versions), sha256 and crc32 (an integer); top level version,
generated_at, files, and deletes / post_update when there are any; sorted keys, indent 2. They
install verified, under CPython and inside the MicroPython unix interpreter."""
import hashlib
import json
import zlib

from conftest import V1, V3, blob_sha, check_installed


def original_manifest(files, version, deletes=(), post_update=None, sha=True, hashes=True):
    """manifest.json as the original manifest_gen.py writes it (sha: its later versions' Git blob
    SHA1 too; hashes=False: an entry with only crc32, which no device may trust)."""
    entries = []
    for p in sorted(files):
        data = files[p]
        e = {"path": p, "size": len(data), "crc32": zlib.crc32(data) & 0xFFFFFFFF}
        if hashes:
            e["sha256"] = hashlib.sha256(data).hexdigest()
            if sha:
                e["sha"] = blob_sha(data)
        entries.append(e)
    m = {"version": version, "generated_at": "2025-06-01T12:00:00Z", "files": entries}
    if deletes:
        m["deletes"] = list(deletes)
    if post_update:
        m["post_update"] = post_update
    return json.dumps(m, sort_keys=True, indent=2).encode()


def test_original_manifest_installs_verified(dev, srv, repo):
    srv.add_release("v1.0.0", assets={"manifest.json": original_manifest(V1, "1.0.0")})
    dev.config(channel="stable")
    r = dev.update()
    assert r["updated"] is True, r
    check_installed(dev, V1, repo[1][1])
    assert dev.version()["version"] == "1.0.0" and dev.version()["ref"] == "v1.0.0"
    assert not [x for x in srv.requests if "/git/trees/" in x["path"]]  # the manifest's list, no tree

    # the next release: a delete, new files, a post_update hook; a corrupted download is refused
    srv.add_release("v2.0.0", assets={"manifest.json": original_manifest(V3, "2.0.0", deletes=["lib/old.py"],
                                                                           post_update="hook_ok.py")})
    srv.add_fault("lib/new.py", "flip", at=0)
    r = dev.update()
    assert "lib/new.py: SHA mismatch; nothing installed" in r.get("error", ""), r
    check_installed(dev, V1, repo[1][1], clean=False)
    r = dev.update()
    assert r["updated"] is True and r["result"]["delete"] == ["lib/old.py"], r
    assert (dev.path / "hook_ran.txt").read_text() == "ok"
    (dev.path / "hook_ran.txt").unlink()
    check_installed(dev, V3, repo[1][3])


def test_original_manifest_with_sha256_only(dev, srv, repo):
    """Entries without "sha" (the original's earlier manifest_gen): the SHA-256 verifies each file,
    and identifies it in version.json."""
    srv.add_release("v1.0.0", assets={"manifest.json": original_manifest(V1, "1.0.0", sha=False)})
    dev.config(channel="stable")
    srv.add_fault("lib/util.py", "flip", at=2)
    r = dev.update()
    assert "lib/util.py: SHA mismatch; nothing installed" in r.get("error", ""), r
    assert dev.files() == {} and dev.version() is None
    r = dev.update()
    assert r["updated"] is True, r
    assert dev.files() == V1
    assert dev.version()["files"] == {p: hashlib.sha256(d).hexdigest() for p, d in V1.items()}
    srv.clear_log()
    assert dev.update()["updated"] is False and len(srv.requests) == 1  # up to date


def test_entry_without_a_usable_hash_is_refused(dev, srv, repo):
    """An entry with only crc32 is never installed unverified: the manifest is refused."""
    srv.add_release("v1.0.0", assets={"manifest.json": original_manifest(V1, "1.0.0", hashes=False)})
    dev.config(channel="stable")
    r = dev.update()
    # (refused as the entry is parsed, naming the first entry without a usable hash)
    assert r.get("error", "").startswith("manifest.json of v1.0.0: bad entry for "), r
    assert dev.files() == {} and dev.version() is None
    assert not [x for x in srv.requests if x["path"].startswith("/raw/")]
