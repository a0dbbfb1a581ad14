"""End to end: delta and gzip downloads through the GitHub-compatible server.

A repository with releases v1, v2, v3 (files change a little each time); the release
manager runs python/delta_gen.py (`--old v1 --old v2 --new HEAD --output .deltas/`) and
commits .deltas/ into the v3 tree, as a user would. A device at v1 (two releases behind)
updates to v3 by delta; a corrupt patch, a patch for another base (index rewritten, or a
locally modified file) and a missing index each fall back to full downloads; gzip full
downloads report the bytes saved; without ota_native everything is a plain download.
Each scenario runs under CPython (PyO3 ota_native) and in the MicroPython unix
interpreter (build/x64/ota_native.mpy), like tests/test_e2e.py.
"""
import json
import random
import subprocess
import sys

import pytest

from ghserver import GitHubServer
from gitrepo import blob_sha, branch, commit, git, make_repo, tag
from test_e2e import NATMOD, ROOT, Device, raw_requests

DELTA_GEN = ROOT / "python" / "delta_gen.py"


def _text(seed, lines):
    rnd = random.Random(seed)
    words = ["sock", "recv", "send", "topic", "payload", "self", "buf", "len", "timeout", "retry", "mqtt"]
    return "".join("def f%d(%s):  # %s\n    return %s(%d)\n" % (
        i, rnd.choice(words), " ".join(rnd.choice(words) for _ in range(5)), rnd.choice(words),
        rnd.randrange(1000)) for i in range(lines)).encode()


def _edit(data, seed, n=4):
    rnd = random.Random(seed)
    lines = data.split(b"\n")
    for _ in range(n):
        i = rnd.randrange(len(lines))
        lines[i] += b"  # changed %d" % rnd.randrange(10 ** 6)
    lines.insert(rnd.randrange(len(lines)), b"NEW_%d = %d" % (seed, seed))
    return b"\n".join(lines)


def _poke(data, seed):
    b = bytearray(data)
    rnd = random.Random(seed)
    for _ in range(6):
        b[rnd.randrange(len(b))] ^= 0x55
    return bytes(b)


V1 = {"app.py": _text(1, 80), "lib/util.py": _text(2, 250), "lib/old.py": b"OLD = 1\n",
      "data/cal.bin": random.Random(3).randbytes(6000), "README.md": b"# app\n"}
V2 = dict(V1, **{"lib/util.py": _edit(V1["lib/util.py"], 20), "data/cal.bin": _poke(V1["data/cal.bin"], 21)})
V3 = dict(V2, **{"lib/util.py": _edit(V2["lib/util.py"], 30), "app.py": _edit(V1["app.py"], 31),
                 "data/cal.bin": _poke(V2["data/cal.bin"], 32), "lib/new.py": b"NEW = 3\n"})
del V3["lib/old.py"]
CHANGED = ["app.py", "data/cal.bin", "lib/util.py"]  # changed v1 -> v3 and present in both
NOT_APP = {"ota_native.mpy"}


@pytest.fixture(scope="module")
def drepo(tmp_path_factory):
    r = make_repo(tmp_path_factory.mktemp("drepo") / "app")
    c = {1: commit(r, V1, "v1")}
    tag(r, "v1")
    c[2] = commit(r, {p: V2[p] for p in V2 if V2[p] != V1[p]}, "v2")
    tag(r, "v2")
    commit(r, {p: V3.get(p) for p in set(V2) | set(V3) if V3.get(p) != V2.get(p)}, "v3 files")
    # the release manager's step, in the application repository
    p = subprocess.run([sys.executable, str(DELTA_GEN), "--old", "v1", "--old", "v2", "--new", "HEAD",
                        "--output", ".deltas/"], cwd=r, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    git(r, "add", ".deltas")
    c[3] = commit(r, {}, "deltas for v3")
    tag(r, "v3")
    index = json.loads((r / ".deltas" / "index.json").read_text())
    # a v3 whose index names other bases, and a v3 without .deltas/ (index 404)
    bad = dict(index, deltas=[dict(e, base="0" * 40) for e in index["deltas"]])
    (r / ".deltas" / "index.json").write_text(json.dumps(bad))
    git(r, "add", ".deltas")
    c["badbase"] = commit(r, {}, "index for other bases")
    git(r, "rm", "-r", "-q", ".deltas")
    c["noindex"] = commit(r, {}, "no deltas")
    return r, c, index


@pytest.fixture
def dsrv(drepo):
    with GitHubServer(drepo[0]) as s:
        yield s


class Dev(Device):
    def __init__(self, path, kind, srv, native=True):
        super().__init__(path, kind, srv)
        self.native = native
        if not native:
            (self.path / "ota_native.mpy").unlink(missing_ok=True)

    def run(self, *args, **kw):
        return super().run(*(args + (() if self.native else ("nonative",))), **kw)

    def files(self):
        return {p: d for p, d in super().files().items() if p not in NOT_APP}


def at_v1(tmp_path, kind, srv, repo, name, native=True, **cfg):
    """A device with v1 installed, its branch then moved to `name`'s commit."""
    r, c, _ = repo
    b = "%s-%s-%d" % (name, kind, native)
    branch(r, b, c[1])
    d = Dev(tmp_path / "dev", kind, srv, native)
    d.config(channel="developer", branch=b, **cfg)
    res = d.update()
    assert res["updated"] is True and d.files() == V1, res
    branch(r, b, c[name])
    srv.clear_log()
    return d


def check(d, commit_sha):
    assert d.files() == V3
    v = d.version()
    assert v["commit"] == commit_sha and v["files"] == {p: blob_sha(x) for p, x in V3.items()}
    assert not (d.path / ".deltas").exists() and not (d.path / ".ota_stage").exists()


def paths(srv):
    return [x["path"].split("/", 5)[5] for x in raw_requests(srv)]


KINDS = ["cpython", "micropython"]


@pytest.mark.parametrize("kind", KINDS)
def test_two_releases_behind_by_delta(tmp_path, dsrv, drepo, kind):
    r, c, index = drepo
    assert {e["path"] for e in index["deltas"]} == set(CHANGED)  # delta_gen kept all three
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True)
    res = d.update()
    assert res["updated"] is True, res
    check(d, c[3])
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


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_patch_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    dsrv.add_fault(".bsd", "flip", at=5, times=None)
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1][3])
    m = res["result"]["methods"]
    assert all(m[p][0] in ("gzip", "plain") for p in CHANGED), m
    got = paths(dsrv)
    assert sorted(p for p in got if p in CHANGED) == CHANGED  # each fell back to its full file
    assert len([p for p in got if p.endswith(".bsd")]) == 3
    assert res["sec"] < 2  # no backoff wait


@pytest.mark.parametrize("kind", KINDS)
def test_index_for_other_base_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, "badbase", enable_delta_updates=True)
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1]["badbase"])
    got = paths(dsrv)
    assert got.count(".deltas/index.json") == 1 and not [p for p in got if p.endswith(".bsd")]
    assert sorted(p for p in got if p in CHANGED) == CHANGED


@pytest.mark.parametrize("kind", KINDS)
def test_locally_modified_file_falls_back(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, enable_delta_updates=True, backoff_sec=3)
    u = d.path / "lib" / "util.py"
    u.write_bytes(u.read_bytes().replace(b"def f1(", b"def g1("))  # same size, another base
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1][3])
    m = res["result"]["methods"]
    assert m["lib/util.py"][0] in ("gzip", "plain") and m["app.py"][0] == "delta", m
    got = paths(dsrv)
    assert "lib/util.py" in got and len([p for p in got if p.endswith(".bsd")]) == 3
    assert res["sec"] < 2


@pytest.mark.parametrize("kind", KINDS)
def test_missing_index_falls_back_without_wait(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, "noindex", enable_delta_updates=True, backoff_sec=5)
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1]["noindex"])
    got = paths(dsrv)
    assert got.count(".deltas/index.json") == 1 and [x["status"] for x in dsrv.requests].count(404) == 1
    assert sorted(p for p in got if p in CHANGED) == CHANGED
    assert res["sec"] < 2 and len(dsrv.requests) == 2 + 1 + 4


@pytest.mark.parametrize("kind", KINDS)
def test_gzip_full_downloads(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3)  # deltas off: full downloads, gzip on the server
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1][3])
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


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_gzip_falls_back_to_plain_without_using_a_retry(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, retries=0, backoff_sec=5)
    dsrv.add_fault("/app.py", "flip", at=20)  # inside the deflate data of the gzip response
    res = d.update()
    assert res["updated"] is True, res
    check(d, drepo[1][3])
    m = res["result"]["methods"]
    assert m["app.py"][0] == "plain" and res["sec"] < 2, m  # at once, and the rest plain too
    assert {m[p][0] for p in CHANGED} == {"plain"}, m
    got = [x for x in raw_requests(dsrv) if x["path"].endswith("/app.py")]
    assert [x["headers"].get("Accept-Encoding") for x in got] == ["gzip", None]


@pytest.mark.parametrize("kind", KINDS)
def test_without_ota_native(tmp_path, dsrv, drepo, kind):
    d = at_v1(tmp_path, kind, dsrv, drepo, 3, native=False, enable_delta_updates=True)
    res = d.update()
    assert res["updated"] is True and res["native"] is False, res
    check(d, drepo[1][3])
    assert {m[0] for m in res["result"]["methods"].values()} == {"plain"}
    got = paths(dsrv)
    assert not [p for p in got if p.startswith(".deltas/")]
    assert not [x for x in raw_requests(dsrv) if "Accept-Encoding" in x["headers"]]


def test_micropython_uses_the_natmod():
    assert NATMOD.exists(), "build/x64/ota_native.mpy missing: run `make natmod ARCH=x64`"


def test_power_cut_during_delta_update(tmp_path, dsrv, drepo):
    """Kill the device (SIGKILL) before every filesystem step of a delta update in turn, reboot
    (recovery), check old-set-or-new-set, then update again: the new set, by delta."""
    import shutil

    r, c, _ = drepo
    base = at_v1(tmp_path / "base", "micropython", dsrv, drepo, 3, enable_delta_updates=True, chunk=2048)
    probe = Dev(tmp_path / "probe", "micropython", dsrv)
    shutil.rmtree(probe.path)
    shutil.copytree(base.path, probe.path)
    res = probe.update()
    assert {m[0] for p, m in res["result"]["methods"].items() if p in CHANGED} == {"delta"}, res
    total = res["mutations"]
    seen = {"old": 0, "new": 0}
    for n in range(1, total + 1):
        d = Dev(tmp_path / ("n%d" % n), "micropython", dsrv)
        shutil.rmtree(d.path)
        shutil.copytree(base.path, d.path)
        out = d.run(env={"OTA_KILL_AT": str(n)})
        assert out.get("crash") and "OTA_KILLED %d " % n in d.out, (n, out)
        assert "error" not in d.run("recover"), n
        files, v = d.files(), d.version()
        state = "old" if files == V1 and v["commit"] == c[1] else "new" if files == V3 and v["commit"] == c[3] else None
        assert state, "crash point %d: mixed %s" % (n, sorted(set(files) ^ set(V3)))
        seen[state] += 1
        assert not (d.path / "ota_journal.json").exists() and not (d.path / ".ota_backup").exists()
        res = d.update()
        assert "error" not in res and d.files() == V3, (n, res.get("error"), res.get("result"))
    print("power-cut campaign (delta update, micropython): %d crash points checked, %d old, %d new, 0 mixed"
          % (total, seen["old"], seen["new"]))
    assert seen["old"] and seen["new"] and total > 20
