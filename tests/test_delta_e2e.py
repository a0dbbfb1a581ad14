"""End to end: delta and gzip downloads through the GitHub-compatible server.

A repository with releases v1, v2, v3 (files change a little each time); the release
manager runs python/delta_gen.py (`--old v1 --old v2 --new HEAD --output .deltas/`) and
commits .deltas/ into the v3 tree, as a user would. A device at v1 (two releases behind)
updates to v3 by delta; a corrupt patch, a patch for another base (index rewritten, or a
locally modified file) and a missing index each fall back to full downloads; gzip full
downloads report the bytes saved; without ota_native everything is a plain download.
Each scenario runs under CPython (PyO3 ota_native) and in the MicroPython unix
interpreter (build/x64/ota_native.mpy), like tests/test_e2e.py. The repository (drepo) and
the device helpers are tests/conftest.py's.
"""
from conftest import DELTA_CHANGED as CHANGED, DELTA_GEN, DELTA_V1 as V1, DELTA_V2 as V2, DELTA_V3 as V3  # noqa: F401
from conftest import NATMOD, at_v1, check_installed, power_cut_campaign, raw_requests
from gitrepo import blob_sha

# V2 and DELTA_GEN stay importable from here: tests/flash/campaign.py takes this repository's shape


def paths(srv):
    """The repository paths of the raw downloads, in order."""
    return [x["path"].split("/", 5)[5] for x in raw_requests(srv)]


def updated_to_v3(d, commit_sha):
    """The device's next update, which must install exactly v3 at ``commit_sha``: its result."""
    res = d.update()
    assert res["updated"] is True, res
    check_installed(d, V3, commit_sha)
    return res


def test_two_releases_behind_by_delta(tmp_path, dsrv, drepo, kind):
    r, c, index = drepo
    assert {e["path"] for e in index["deltas"]} == set(CHANGED)  # delta_gen kept all three
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True)
    res = updated_to_v3(d, c[3])
    m = res["result"]["methods"]
    assert {p: m[p][0] for p in CHANGED} == {p: "delta" for p in CHANGED}, m
    got = paths(dsrv)
    # ref, tree, the index once, one patch per changed file, the added file in full
    bsd = sorted(p for p in got if p.endswith(".bsd"))
    want = {e["file"] for e in index["deltas"] if e["base"] == blob_sha(V1[e["path"]])}
    assert sorted(want) == [p[len(".deltas/"):] for p in bsd] and len(bsd) == 3
    assert got.count(".deltas/index.json") == 1
    assert not [p for p in got if p in CHANGED]  # no full download of a patched file
    assert len(dsrv.requests) == 7 == res["requests"], [x["path"] for x in dsrv.requests]
    patch_bytes = sum(m[p][1] for p in CHANGED)
    full = sum(len(V3[p]) for p in CHANGED)
    assert patch_bytes < full / 5, (patch_bytes, full)
    assert res["result"]["saved"] > 0
    print("delta v1->v3 (%s): %d requests, %d body bytes; changed files: %d bytes by patch vs %d in full"
          % (kind, len(dsrv.requests), sum(x["bytes"] for x in dsrv.requests), patch_bytes, full))


def test_corrupt_patch_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    dsrv.add_fault(".bsd", "flip", at=5, times=None)
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert all(m[p][0] in ("gzip", "plain") for p in CHANGED), m
    got = paths(dsrv)
    assert sorted(p for p in got if p in CHANGED) == CHANGED  # each fell back to its full file
    assert len([p for p in got if p.endswith(".bsd")]) == 3
    assert res["sec"] < 2  # no backoff wait


def test_index_for_other_base_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, "badbase", enable_delta_updates=True)
    updated_to_v3(d, drepo[1]["badbase"])
    got = paths(dsrv)
    assert got.count(".deltas/index.json") == 1 and not [p for p in got if p.endswith(".bsd")]
    assert sorted(p for p in got if p in CHANGED) == CHANGED


def test_locally_modified_file_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    u = d.path / "lib" / "util.py"
    u.write_bytes(u.read_bytes().replace(b"def f1(", b"def g1("))  # same size, another base
    res = updated_to_v3(d, drepo[1][3])
    m = res["result"]["methods"]
    assert m["lib/util.py"][0] in ("gzip", "plain") and m["app.py"][0] == "delta", m
    got = paths(dsrv)
    assert "lib/util.py" in got and len([p for p in got if p.endswith(".bsd")]) == 3
    assert res["sec"] < 2


def test_missing_index_falls_back_without_wait(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, "noindex", enable_delta_updates=True, backoff_sec=5)
    res = updated_to_v3(d, drepo[1]["noindex"])
    got = paths(dsrv)
    assert got.count(".deltas/index.json") == 1 and [x["status"] for x in dsrv.requests].count(404) == 1
    assert sorted(p for p in got if p in CHANGED) == CHANGED
    assert res["sec"] < 2 and len(dsrv.requests) == 2 + 1 + 4


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
