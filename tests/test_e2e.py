"""End to end: the device updater (python/ota.py) against the GitHub-compatible
server (tests/ghserver.py) serving a real git repository.

Every scenario runs twice: under CPython (a subprocess with cwd = a temporary device
folder) and inside the real MicroPython unix interpreter (.venv/bin/micropython, with
build/x64/ota_native.mpy when it exists). The device side is tests/device/drive.py,
which prints one `OTA_RESULT {json}` line.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import (BIG, ca_and_server_cert, NATMOD, PY, SELF_MAIN, SELF_OTA, V1, V2, V3, Device, basic_code,
                      check_installed, dev_branch, manifest, raw_requests)
from ghserver import GitHubServer
from gitrepo import blob_sha, branch

TOKEN = "ghp_s3cretT0ken"


# ------------------------------------------------------------------ developer channel
def test_first_install_up_to_date_one_file_changed_delete(dev, srv, repo):
    b = dev_branch(repo, dev, "dev", repo[1][1])
    dev.config(channel="developer", branch=b)
    r = dev.update()
    assert r["updated"] is True, r
    check_installed(dev, V1, repo[1][1])
    if dev.kind == "micropython" and NATMOD.exists():
        assert r["native"] is True

    srv.clear_log()  # up to date: exactly one request, no download
    r = dev.update()
    assert r["updated"] is False and "error" not in r, r
    assert len(srv.requests) == 1 and r["requests"] == 1
    assert "/git/ref/heads/" in srv.requests[0]["path"]

    branch(repo[0], b, repo[1][2])  # one of many files changed
    srv.clear_log()
    r = dev.update()
    assert r["updated"] is True and r["result"]["download"] == ["lib/util.py"], r
    assert len(srv.requests) <= 3 and r["requests"] == len(srv.requests)
    raws = raw_requests(srv)
    assert [x["path"].rsplit("/", 2)[-2:] for x in raws] == [["lib", "util.py"]]
    body = sum(x["bytes"] for x in srv.requests)
    print("one file changed (%s): %d requests, %d body bytes (file %d bytes)"
          % (dev.kind, len(srv.requests), body, raws[0]["bytes"]))
    check_installed(dev, V2, repo[1][2])

    branch(repo[0], b, repo[1][3])  # upstream delete + additions
    r = dev.update()
    assert r["updated"] is True and r["result"]["delete"] == ["lib/old.py"], r
    assert not (dev.path / "lib/old.py").exists()
    check_installed(dev, V3, repo[1][3])


def test_developer_channel_ignores_releases(dev, srv, repo):
    srv.add_release("v1.0.0")
    dev.config(channel="developer", branch=dev_branch(repo, dev, "tip", repo[1][3]))
    assert dev.update()["updated"] is True
    check_installed(dev, V3, repo[1][3])
    assert not [x for x in srv.requests if "/releases" in x["path"]]


# ------------------------------------------------------------------ stable channel
def test_stable_with_manifest_and_hook(dev, srv, repo):
    srv.add_release("v1.0.0", assets={"manifest.json": manifest(V1, "1.0.0")})
    dev.config(channel="stable")
    r = dev.update()
    assert r["updated"] is True, r
    check_installed(dev, V1, repo[1][1])
    assert dev.version()["version"] == "1.0.0" and dev.version()["ref"] == "v1.0.0"
    assert not [x for x in srv.requests if "/git/trees/" in x["path"]]  # manifest mode: no tree
    # public: the asset by browser_download_url, which costs no API request
    assert [x for x in srv.requests if "/releases/download/v1.0.0/manifest.json" in x["path"]]
    assert not [x for x in srv.requests if "/releases/assets/" in x["path"]]

    srv.clear_log()
    assert dev.update()["updated"] is False
    # up to date: one request, to the web page of the latest release (no API request)
    assert len(srv.requests) == 1 and srv.requests[0]["path"] == "/octo/app/releases/latest"

    v3 = {k: v for k, v in V3.items()}
    srv.add_release("v2.0.0", assets={"manifest.json": manifest(v3, "2.0.0", deletes=["lib/old.py"],
                                                                post_update="hook_ok.py")})
    r = dev.update()
    assert r["updated"] is True, r
    assert (dev.path / "hook_ran.txt").read_text() == "ok"
    (dev.path / "hook_ran.txt").unlink()
    check_installed(dev, V3, repo[1][3])


def test_failing_post_update_hook_rolls_back(dev, srv, repo):
    srv.add_release("v1.0.0", assets={"manifest.json": manifest(V1, "1.0.0")})
    dev.config(channel="stable")
    assert dev.update()["updated"] is True
    srv.add_release("v2.0.0", assets={"manifest.json": manifest(V3, "2.0.0", post_update="hook_bad")})
    r = dev.update()
    assert "post_update hook hook_bad failed" in r["error"], r
    check_installed(dev, V1, repo[1][1])
    assert "hook_bad" in dev.errors()[-1]["reason"]


def test_stable_without_manifest(dev, srv, repo):
    srv.add_release("v1.0.0")
    dev.config(channel="stable")
    assert dev.update()["updated"] is True
    check_installed(dev, V1, repo[1][1])
    srv.add_release("v1.1.0")
    srv.clear_log()
    r = dev.update()
    assert r["result"]["download"] == ["lib/util.py"], r
    # the latest release's web page (its tag), its missing manifest, then through the API: the tag
    # ref, the annotated tag object, the tree; and the file
    paths = [x["path"] for x in srv.requests]
    assert paths[:2] == ["/octo/app/releases/latest", "/octo/app/releases/download/v1.1.0/manifest.json"], paths
    assert len(paths) == 6 and len([p for p in paths if p.startswith("/repos/")]) == 3, paths
    check_installed(dev, V2, repo[1][2])


def test_pinned_tag(dev, srv, repo):
    srv.add_release("v1.0.0")
    srv.add_release("v2.0.0")
    dev.config(channel="stable", tag="v1.0.0")
    assert dev.update()["updated"] is True
    check_installed(dev, V1, repo[1][1])
    paths = [x["path"] for x in srv.requests]
    assert "/repos/octo/app/git/ref/tags/v1.0.0" in paths  # no manifest: the pinned tag's tree
    assert not [p for p in paths if "/releases/latest" in p or "/releases/tags/" in p], paths


# ------------------------------------------------------------------ access
def test_private_repo_token(dev, srv, repo):
    srv.token = TOKEN
    dev.config(channel="stable", debug=True)
    srv.add_release("v1.0.0", assets={"manifest.json": manifest(V1, "1.0.0")})
    r = dev.update()
    assert r["error"].startswith("GitHub API returned 401") and "token" in r["error"], r
    assert r["sec"] < 1 and len(srv.requests) == 1
    dev.config(channel="stable", token="ghp_wrong", debug=True)
    r = dev.update()
    assert "401" in r["error"] and r["sec"] < 1
    assert dev.files() == {}
    dev.config(channel="stable", token=TOKEN, debug=True)
    r = dev.update()
    assert r["updated"] is True, r
    check_installed(dev, V1, repo[1][1])
    # with a token the manifest comes through the asset API (browser_download_url takes no token)
    assert [x for x in srv.requests if "/releases/assets/" in x["path"] and x["status"] == 302]
    assert TOKEN not in dev.out and TOKEN not in (dev.path / "ota_error.json").read_text()
    assert len(dev.errors()) == 2


def test_404_fails_at_once(dev, srv):
    dev.config(channel="stable", repo="nope", backoff_sec=2)
    r = dev.update()
    assert r["error"].startswith("GitHub API returned 404") and "release exists" in r["error"], r
    assert r["sec"] < 1 and len(srv.requests) == 1


def test_far_rate_limit_fails_at_once(dev, srv):
    srv.rate_limit_reset = int(time.time()) + 3600
    dev.config(channel="developer", backoff_sec=2)
    r = dev.update()
    assert "rate limit exceeded" in r["error"] and "resets in" in r["error"], r
    assert r["sec"] < 1 and len(srv.requests) == 1


def test_secondary_rate_limit_waits_a_minute(dev, srv, repo):
    """A 429 without Retry-After or X-RateLimit-Reset is a secondary limit: GitHub says wait at
    least a minute. With max_backoff_sec below that the device gives up at once (the next
    check comes later) instead of hammering the API."""
    srv.add_fault("/git/ref/heads/", "status", status=429, times=5)
    dev.config(channel="developer", branch=dev_branch(repo, dev, "second", repo[1][1]), max_backoff_sec=30)
    r = dev.update()
    assert "rate limit" in r["error"] and "60 s" in r["error"], r
    assert r["sec"] < 1 and len(srv.requests) == 1


def test_500s_then_success(dev, srv, repo):
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    srv.add_fault("/raw/", "status", status=503, times=1)
    dev.config(channel="developer", branch=dev_branch(repo, dev, "flaky", repo[1][1]))
    r = dev.update()
    assert r["updated"] is True, r
    assert [x["status"] for x in srv.requests].count(500) == 2
    assert [x["status"] for x in srv.requests].count(503) == 1
    check_installed(dev, V1, repo[1][1])


# ------------------------------------------------------------------ selection and safety
def test_allow_ignore(dev, srv, repo):
    dev.config(channel="developer", branch=dev_branch(repo, dev, "sel", repo[1][1]),
               allow=["lib/", "app.py", "mods"], ignore=["lib/old.py", "mods/m3.py"])
    assert dev.update()["updated"] is True
    want = {k: v for k, v in V1.items() if k.startswith(("lib/", "app.py", "mods/"))}
    del want["lib/old.py"], want["mods/m3.py"]
    check_installed(dev, want, repo[1][1])


def test_tree_entry_cannot_overwrite_config_or_updater(dev, srv, repo):
    dev.config(channel="developer", branch=dev_branch(repo, dev, "evil", repo[1]["evil"]))
    before = (dev.path / "ota_config.json").read_bytes()
    r = dev.update()
    assert r["updated"] is True, r
    assert (dev.path / "ota_config.json").read_bytes() == before
    assert not (dev.path / "main.py").exists()
    assert (dev.path / "lib/util.py").read_bytes() == b"X = 'evil'\n"
    assert "ota_config.json" not in dev.version()["files"]


def test_hostile_paths_in_tree(dev, srv, repo):
    orig = srv.git.tree
    evil = b"print('escaped')\n"

    def tree(sha, recursive=True):
        return orig(sha, recursive) + [{"path": "../evil.py", "mode": "100644", "type": "blob",
                                        "sha": blob_sha(evil), "size": len(evil)}]

    srv.git.tree = tree
    dev.config(channel="developer", branch=dev_branch(repo, dev, "hostile", repo[1][1]))
    r = dev.update()
    assert "unsafe path" in r["error"], r
    assert dev.files() == {} and dev.version() is None
    assert not (dev.path.parent / "evil.py").exists()


@pytest.mark.parametrize("bad", ["../evil.py", "/etc/evil.py", "lib//x.py", "lib\\x.py"])
def test_hostile_paths_in_manifest(dev, srv, repo, bad):
    m = json.loads(manifest(V1, "1.0.0"))
    m["files"].append({"path": bad, "size": 1, "sha1": "0" * 40})
    srv.add_release("v1.0.0", assets={"manifest.json": json.dumps(m).encode()})
    dev.config(channel="stable")
    r = dev.update()
    assert "unsafe path" in r["error"], r
    assert dev.files() == {} and dev.version() is None


def test_sha_mismatch_installs_nothing(dev, srv, repo):
    b = dev_branch(repo, dev, "flip", repo[1][1])
    dev.config(channel="developer", branch=b)
    assert dev.update()["updated"] is True
    branch(repo[0], b, repo[1][3])
    srv.add_fault("/lib/util.py", "flip", at=2, times=None)
    r = dev.update()
    assert "SHA mismatch" in r["error"] and "lib/util.py" in r["error"], r
    check_installed(dev, V1, repo[1][1], clean=False)  # verified downloads stay staged for the next try
    staged = os.listdir(dev.path / ".ota_stage")
    assert not [n for n in staged if n.startswith(blob_sha(V2["lib/util.py"]))], staged
    assert "SHA mismatch" in dev.errors()[-1]["reason"]


def test_connection_cut_resumes_with_range(dev, srv, repo):
    srv.add_fault("/data/big.bin", "cut", after=15000)
    dev.config(channel="developer", branch=dev_branch(repo, dev, "cut", repo[1][1]))
    r = dev.update()
    assert r["updated"] is True, r
    big = [x for x in srv.requests if x["path"].endswith("/data/big.bin")]
    assert len(big) == 2 and big[0]["bytes"] == 15000
    rng = big[1]["headers"].get("Range")
    assert rng and rng.startswith("bytes=") and int(rng[6:].rstrip("-")) >= 14000, big[1]
    assert big[1]["status"] == 206 and big[1]["bytes"] == len(BIG) - int(rng[6:].rstrip("-"))
    check_installed(dev, V1, repo[1][1])


def test_chunked_transfer(dev, srv, repo):
    srv.chunked = True
    dev.config(channel="developer", branch=dev_branch(repo, dev, "chunked", repo[1][1]), chunk=512)
    assert dev.update()["updated"] is True
    check_installed(dev, V1, repo[1][1])


# ------------------------------------------------------------------ memory (MicroPython only)
# The smallest -X heapsize for a first install of V1 (14 files, one of 40 KB) the way a device
# runs it: `import main; main.main()` with ota + main from source or precompiled by mpy-cross.
# Measured on the x64 unix port (64-bit objects; the 32-bit figure of the import from source is
# tests/test_heap32.py's): 180.5k from source (the peak is the compile of ota.py: docs/design.md,
# Memory); from .mpy (`make device`), `make bench-heap SCAN=1` (docs/design.md has the figures). HEAP_MPY is the
# 48k target; the x64 source figure is only guarded against growth, with a small margin.
# Measured after conditional checks (ETag) and keep-alive landed: 219,945 B from source,
# 53,658 B precompiled (the lean mpy-cross of `make device`); the 48k target of issue 8 is not met
# since trial boots, HTTPS verification, the hostile-input checks, ETag and keep-alive landed
# (docs/design.md, Memory); the guards below only stop further growth.
HEAP_SOURCE = 222
HEAP_MPY = 55


def _heap_run(tmp_path, srv, repo, kb, mpy, key=1, **cfg):
    # a basic update (only ota and main, from source or .mpy) of the commit `key`: (ok, output)
    name = "heap%d%s" % (kb, mpy) + ("" if key == 1 else key)
    d = Device(tmp_path / name, "micropython", srv, code=basic_code(tmp_path / ("code%s" % mpy), mpy))
    d.config(channel="developer", branch=dev_branch(repo, d, name, repo[1][key]), **cfg)
    ok = d.boot("%dk" % kb)
    return ok and {k: v for k, v in d.files().items() if not k.startswith("main.")} == V1, d.out


@pytest.mark.parametrize("mpy,kb", [(False, HEAP_SOURCE), (True, HEAP_MPY)])
def test_heap(tmp_path, srv, repo, mpy, kb):
    ok, out = _heap_run(tmp_path, srv, repo, kb, mpy)
    assert ok, out[-1500:]
    print("update completes with -X heapsize=%dk (%s)" % (kb, ".mpy" if mpy else "source"))
    ok, out = _heap_run(tmp_path, srv, repo, kb * 3 // 4, mpy)  # the guard is not loose
    assert not ok


def test_heap_tree_mostly_ignored(tmp_path, srv, repo):
    """54 files in the tree, the device takes V1's 14 (docs/ and tests/ ignored): only those are
    held while the tree streams in. Measured 47.6k (the same V1 without the 40 others: 47.2k);
    it needed ~71k when every record was kept until the filter. Guarded at 52k: the 40 ignored
    entries pass through as garbage, which moves the layout."""
    ok, out = _heap_run(tmp_path, srv, repo, HEAP_MPY + 2, True, "docs", ignore=["docs", "tests"])
    assert ok, out[-1500:]


# ------------------------------------------------------------------ the updater's own files
def test_self_update(dev, srv, repo):
    """ota.py/main.py from the repository replace ours only with self_update, through the swap."""
    shutil.copy(PY / "main.py", dev.path / "main.py")
    b = dev_branch(repo, dev, "selfup", repo[1]["selfup"])
    dev.config(channel="developer", branch=b)
    r = dev.update()
    assert r["updated"] is True, r
    assert (dev.path / "ota.py").read_bytes() == (PY / "ota.py").read_bytes()
    assert (dev.path / "main.py").read_bytes() == (PY / "main.py").read_bytes()
    assert not {"ota.py", "main.py"} & set(dev.version()["files"])
    assert not [x for x in raw_requests(srv) if x["path"].endswith(("/ota.py", "/main.py"))]
    assert dev.update()["updated"] is False  # and it stays so

    dev.config(channel="developer", branch=b, self_update=True)
    branch(repo[0], b, repo[1]["selfup2"])  # the next release: now the updater's files come too
    r = dev.update()
    assert r["updated"] is True and r["result"]["download"] == ["README.md", "main.py", "ota.py"], r
    assert (dev.path / "ota.py").read_bytes() == SELF_OTA
    assert (dev.path / "main.py").read_bytes() == SELF_MAIN
    v = dev.version()
    assert v["files"]["ota.py"] == blob_sha(SELF_OTA) and v["files"]["main.py"] == blob_sha(SELF_MAIN)
    assert json.loads((dev.path / "ota_journal.json").read_text())["state"] == "trial"  # until confirmed
    r = dev.update()  # the new updater runs, finds nothing to do and confirms its release
    assert r["updated"] is False and "error" not in r, r
    assert not (dev.path / ".ota_backup").exists() and not (dev.path / "ota_journal.json").exists()


# ------------------------------------------------------------------ HTTPS
def test_https_verifies_the_server_with_ca_file(kind, tmp_path, repo):
    """Over HTTPS the server certificate is checked against ca_file: the right CA installs,
    another CA fails the TLS handshake and installs nothing (and is not retried forever)."""
    good, cert, key = ca_and_server_cert(tmp_path, "server")
    other = ca_and_server_cert(tmp_path, "other")[0]
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        assert srv.url.startswith("https://")
        dev = Device(tmp_path / "device", kind, srv)
        b = dev_branch(repo, dev, "tls", repo[1][1])
        shutil.copy(other, dev.path / "ca.pem")
        dev.config(channel="developer", branch=b, ca_file="ca.pem")
        r = dev.update()
        assert "error" in r and not r.get("updated"), r
        assert "TLS to 127.0.0.1" in r["error"] and "cert" in r["error"].lower(), r["error"]
        assert dev.version() is None and dev.files() == {"ca.pem": other.read_bytes()}
        print("wrong CA (%s): %s" % (kind, r["error"]))

        shutil.copy(good, dev.path / "ca.pem")
        r = dev.update()
        assert r.get("updated") is True, r
        files = dev.files()
        assert files.pop("ca.pem") == good.read_bytes()
        assert files == V1

        # without ca_file: the device's trust store (ota_ca.der, GitHub's roots) refuses this
        # server's CA on both interpreters: HTTPS is verified by default
        dev.config(channel="developer", branch=b, force=True)
        r = dev.update()
        assert "TLS to 127.0.0.1" in r.get("error", "") and "cert" in r["error"].lower(), r

        # "tls_verify": false connects unverified; a token is then never sent
        srv.clear_log()
        dev.config(channel="developer", branch=b, force=True, tls_verify=False, token="ghp_s3cret")
        r = dev.update()
        assert r.get("updated") is True, r
        assert srv.requests and all(q.get("auth") is None for q in srv.requests), srv.requests
