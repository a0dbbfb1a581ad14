"""End to end: delta and gzip downloads through the GitHub-compatible server.

A repository with releases v1, v2, v3 (files change a little each time); the release
manager runs python/delta_gen.py (`--old v1 --old v2 --new HEAD --output .deltas/`) and
commits .deltas/ into the v3 tree, as a user would. A device at v1 (two releases behind)
updates to v3 by delta, asking each patch by the name it derives from its installed blob SHA
and the target's (no index is downloaded); a corrupt patch, a locally modified file, an
empty patch file ("no patch"), a patch no smaller than its file and a release without
.deltas/ (one 404, then no more patch requests) each fall back to full downloads at once;
gzip full downloads report the bytes saved; without ota_native everything is a plain
download. Each scenario runs under CPython (PyO3 ota_native) and in the MicroPython unix
interpreter (build/x64/ota_native.mpy), like tests/test_e2e.py. The repository (drepo) and
the device helpers are tests/conftest.py's.
"""
import os
import subprocess
import tempfile

from conftest import DELTA_CHANGED as CHANGED, DELTA_GEN, DELTA_V1 as V1, DELTA_V2 as V2, DELTA_V3 as V3  # noqa: F401
from conftest import NATMOD, at_v1, check_installed, power_cut_campaign, raw_requests
from gitrepo import blob_sha, git

import delta_gen

# V2 and DELTA_GEN stay importable from here: tests/flash/campaign.py takes this repository's shape


def paths(srv):
    """The repository paths of the raw downloads, in order."""
    return [x["path"].split("/", 5)[5] for x in raw_requests(srv)]


def patch_path(p, old=V1):
    """The .deltas/ file a device holding ``old[p]`` asks for to get V3's ``p``."""
    return ".deltas/" + delta_gen.patch_name(blob_sha(old[p]), blob_sha(V3[p]))


def updated_to_v3(d, commit_sha):
    """The device's next update, which must install exactly v3 at ``commit_sha``: its result."""
    res = d.update()
    assert res["updated"] is True, res
    check_installed(d, V3, commit_sha)
    return res


def v3_with(drepo, name, files):
    """A commit on top of v3 whose tree has ``files`` ({path: bytes}) replaced, made with
    plumbing (the shared repository's work tree is not touched); named ``name`` in drepo's
    commits, made once per session."""
    r, c, _ = drepo
    if name not in c:
        with tempfile.TemporaryDirectory() as t:
            env = dict(os.environ, GIT_INDEX_FILE=os.path.join(t, "index"))
            run = lambda *a, **kw: subprocess.run(["git", *a], cwd=r, env=env, check=True, capture_output=True,
                                                  **kw).stdout.decode().strip()  # noqa: E731
            run("read-tree", c[3])
            for p, data in files.items():
                sha = run("hash-object", "-w", "--stdin", input=data)
                run("update-index", "--add", "--cacheinfo", "100644,%s,%s" % (sha, p))
            tree = run("write-tree")
        c[name] = git(r, "commit-tree", tree, "-p", c[3], "-m", name)
    return c[name]


def test_two_releases_behind_by_delta(tmp_path, dsrv, drepo, kind):
    r, c, index = drepo
    assert {e["path"] for e in index["deltas"]} == set(CHANGED)  # delta_gen made all three
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True)
    res = updated_to_v3(d, c[3])
    m = res["result"]["methods"]
    assert {p: m[p][0] for p in CHANGED} == {p: "delta" for p in CHANGED}, m
    got = paths(dsrv)
    # ref, tree, one patch per changed file (named from the two SHAs), the added file in full
    assert sorted(p for p in got if p.startswith(".deltas/")) == sorted(patch_path(p) for p in CHANGED)
    assert ".deltas/index.json" not in got
    assert not [p for p in got if p in CHANGED]  # no full download of a patched file
    assert len(dsrv.requests) == 6 == res["requests"], [x["path"] for x in dsrv.requests]
    patch_bytes = sum(m[p][1] for p in CHANGED)
    full = sum(len(V3[p]) for p in CHANGED)
    assert patch_bytes < full / 5, (patch_bytes, full)
    assert res["result"]["saved"] > 0
    print("delta v1->v3 (%s): %d requests, %d body bytes; changed files: %d bytes by patch vs %d in full"
          % (kind, len(dsrv.requests), sum(x["bytes"] for x in dsrv.requests), patch_bytes, full))


def test_corrupt_patch_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    dsrv.add_fault("/.deltas/", "flip", at=5, times=None)
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert all(m[p][0] in ("gzip", "plain") for p in CHANGED), m
    got = paths(dsrv)
    assert sorted(p for p in got if p in CHANGED) == CHANGED  # each fell back to its full file
    assert len([p for p in got if p.startswith(".deltas/")]) == 3
    assert res["sec"] < 2  # no backoff wait


def test_index_is_never_read(tmp_path, dsrv, drepo, kind):
    """badbase: a v3 whose index.json names other bases. The device derives the names from the
    SHAs and never asks for index.json: the update is by delta all the same."""
    d = at_v1(tmp_path, kind, dsrv, drepo, "badbase", enable_delta_updates=True)
    res = updated_to_v3(d, drepo[1]["badbase"])
    m = res["result"]["methods"]
    assert {p: m[p][0] for p in CHANGED} == {p: "delta" for p in CHANGED}, m
    assert ".deltas/index.json" not in paths(dsrv)


def test_locally_modified_file_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    u = d.path / "lib" / "util.py"
    u.write_bytes(u.read_bytes().replace(b"def f1(", b"def g1("))  # same size, another base
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert m["lib/util.py"][0] in ("gzip", "plain") and m["app.py"][0] == "delta", m
    got = paths(dsrv)
    assert "lib/util.py" in got and len([p for p in got if p.startswith(".deltas/")]) == 3
    assert res["sec"] < 2


def test_no_patch_file_and_oversized_patch_fall_back(tmp_path, dsrv, drepo, kind):
    """An empty patch file ("no patch": delta_gen found none that saves bytes) and a patch no
    smaller than its file: each is a full download at once, its body never read, and the
    other files still come by patch."""
    size = len(V3["data/cal.bin"])
    c = v3_with(drepo, "nopatch", {patch_path("app.py"): b"", patch_path("data/cal.bin"): b"\x12" + bytes(size)})
    d = at_v1(tmp_path, kind, dsrv, drepo, "nopatch", enable_delta_updates=True, backoff_sec=5)
    res = updated_to_v3(d, c)
    m = res["result"]["methods"]
    assert m["lib/util.py"][0] == "delta" and m["app.py"][0] in ("gzip", "plain"), m
    assert m["data/cal.bin"][0] in ("gzip", "plain"), m
    full_bytes = [x["bytes"] for x in raw_requests(dsrv) if x["path"].endswith("/data/cal.bin")]
    assert m["data/cal.bin"][1] == sum(full_bytes), (m, full_bytes)  # the patch's body: not read
    got = paths(dsrv)
    assert len([p for p in got if p.startswith(".deltas/")]) == 3 and res["sec"] < 2


def test_version_1_patch_through_the_core(tmp_path, dsrv, drepo, kind):
    """A version 1 file (a bsdiff crate patch: ota_native.DeltaReader, the core's one-pass
    pipeline) next to version 2 files (operations: ota_delta.Patch): both apply."""
    import ota_native
    p = "lib/util.py"
    v1 = delta_gen.header(10, 1) + delta_gen.deflate_raw(ota_native.make_patch(V1[p], V3[p]), 10)
    c = v3_with(drepo, "v1patch", {patch_path(p): v1})
    d = at_v1(tmp_path, kind, dsrv, drepo, "v1patch", enable_delta_updates=True)
    res = updated_to_v3(d, c)
    m = res["result"]["methods"]
    assert {q: m[q][0] for q in CHANGED} == {q: "delta" for q in CHANGED}, m
    assert m[p][1] == len(v1)


def test_release_without_deltas_one_404(tmp_path, dsrv, drepo, kind):
    """noindex: no .deltas/ in the release. The first patch asked for is a 404: no other is
    asked for, every changed file comes in full at once."""
    d = at_v1(tmp_path, kind, dsrv, drepo, "noindex", enable_delta_updates=True, backoff_sec=5)
    res = updated_to_v3(d, drepo[1]["noindex"])
    got = paths(dsrv)
    assert len([p for p in got if p.startswith(".deltas/")]) == 1
    assert [x["status"] for x in dsrv.requests].count(404) == 1
    assert sorted(p for p in got if p in CHANGED) == CHANGED
    assert res["sec"] < 4.5 and len(dsrv.requests) == 2 + 1 + 4  # a backoff would take >= 5 s


def test_gzip_full_downloads(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3)  # deltas off: full downloads, gzip on the server
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert {p: m[p][0] for p in CHANGED} == {p: "gzip" for p in CHANGED}, m
    assert ".deltas/index.json" not in paths(dsrv)
    for x in raw_requests(dsrv):  # gzip asked for every file but the tiny one (gzip would add bytes)
        p = x["path"].split("/", 5)[5]
        assert x["headers"].get("Accept-Encoding") == ("gzip" if len(V3[p]) > 300 else None), p
    assert m["lib/new.py"][0] == "plain"
    wire = sum(m[p][1] for p in m)
    size = sum(m[p][2] for p in m)
    assert res["result"]["saved"] == size - wire > size // 3, m
    print("gzip v1->v3 (%s): %d file bytes, %d on the wire, %d saved" % (kind, size, wire, size - wire))

    dsrv.gzip = False  # a server without gzip: plain, nothing saved
    d2 = at_v1(tmp_path / "p", kind, dsrv, drepo, 3)
    res = d2.update()
    assert {m[0] for m in res["result"]["methods"].values()} == {"plain"} and res["result"]["saved"] == 0


def test_corrupt_gzip_falls_back_to_plain_without_using_a_retry(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, retries=0, backoff_sec=5)
    dsrv.add_fault("/app.py", "flip", at=20)  # inside the deflate data of the gzip response
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert m["app.py"][0] == "plain" and res["sec"] < 2, m  # at once, and the rest plain too
    assert {m[p][0] for p in CHANGED} == {"plain"}, m
    got = [x for x in raw_requests(dsrv) if x["path"].endswith("/app.py")]
    assert [x["headers"].get("Accept-Encoding") for x in got] == ["gzip", None]


def test_without_ota_native(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, native=False, enable_delta_updates=True)
    res = updated_to_v3(d, drepo[1][3])
    assert res["native"] is False, res
    assert {m[0] for m in res["result"]["methods"].values()} == {"plain"}
    got = paths(dsrv)
    assert not [p for p in got if p.startswith(".deltas/")]
    assert not [x for x in raw_requests(dsrv) if "Accept-Encoding" in x["headers"]]


def test_micropython_uses_the_natmod():
    assert NATMOD.exists(), "build/x64/ota_native.mpy missing: run `make natmod ARCH=x64`"


def test_power_cut_during_delta_update(tmp_path, dsrv, drepo):
    """Kill the device (SIGKILL) before every filesystem step of a delta update in turn, reboot
    (recovery), check old-set-or-new-set, then update again: the new set, by delta."""
    r, c, _ = drepo
    base = at_v1(tmp_path / "base", "micropython", dsrv, drepo, 3, enable_delta_updates=True, chunk=2048)
    res, total, seen = power_cut_campaign(base, tmp_path, {"old": (V1, c[1]), "new": (V3, c[3])})
    assert {m[0] for p, m in res["result"]["methods"].items() if p in CHANGED} == {"delta"}, res
    print("power-cut campaign (delta update, micropython): %d crash points checked, %d old, %d new, 0 mixed"
          % (total, seen["old"], seen["new"]))
    assert seen["old"] and seen["new"] and total > 20
