"""Tests of the GitHub-compatible test server (tests/ghserver.py) with http.client.

This module's own ``repo`` and ``srv`` fixtures (a small repository with an annotated and a
lightweight tag and a branch name with "/") override tests/conftest.py's sample repository."""

import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import PY, TESTS
from ghserver import GitHubServer
from gitrepo import blob_sha, branch, commit, make_repo, tag

TOKEN = "ghp_s3cr3tTOKENvalue0123456789"
BIG = bytes(range(256)) * 40 + b"tail\n"      # 10,245 bytes, not text


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = make_repo(tmp_path_factory.mktemp("srv") / "app")
    info = {"dir": d}
    info["c1"] = commit(d, {"app.py": b"print('v1')\n", "lib/util.py": b"X = 1\n",
                            "lib/old.py": b"OLD = True\n", "data/big.bin": BIG}, "v1")
    info["t1"] = tag(d, "v1.0.0")                           # annotated
    info["c2"] = commit(d, {"app.py": b"print('v2')\n" * 50, "lib/old.py": None,
                            "lib/new.py": b"NEW = 1\n"}, "v2")
    tag(d, "v1.1.0", annotated=False)                        # lightweight
    branch(d, "feature/x", info["c1"])
    return info


@pytest.fixture
def srv(repo):
    s = GitHubServer(repo["dir"], owner="octo", repo="app")
    s.start()
    yield s
    s.stop()


def get(srv, path, headers=None, method="GET", timeout=5):
    """(status, headers dict with lower-case names, body) over a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def get_json(srv, path, headers=None):
    status, h, body = get(srv, path, headers)
    assert h["content-type"].startswith("application/json")
    return status, json.loads(body)


def follow(srv, path, headers=None):
    """GET following one 302 on the same server; returns (status, headers, body, location)."""
    status, h, body = get(srv, path, headers)
    assert status == 302, (status, body)
    loc = h["location"]
    assert loc.startswith(srv.url)
    s2, h2, b2 = get(srv, loc[len(srv.url):], headers)
    return s2, h2, b2, loc


# -- releases -----------------------------------------------------------------

def test_release_latest_and_by_tag(srv, repo):
    assert get_json(srv, "/repos/octo/app/releases/latest") == (404, {
        "message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
    srv.add_release("v1.0.0", {"manifest.json": b'{"version": "v1.0.0"}'})
    srv.add_release("v1.1.0", prerelease=True)
    status, rel = get_json(srv, "/repos/octo/app/releases/latest")
    assert status == 200
    assert rel["tag_name"] == "v1.0.0" and rel["target_commitish"] == repo["c1"]
    assert rel["draft"] is False and rel["prerelease"] is False
    (asset,) = rel["assets"]
    assert asset["name"] == "manifest.json" and asset["size"] == 21
    assert asset["browser_download_url"] == srv.url + "/octo/app/releases/download/v1.0.0/manifest.json"
    assert asset["url"].startswith(srv.url + "/repos/octo/app/releases/assets/")
    status, rel2 = get_json(srv, "/repos/octo/app/releases/tags/v1.1.0")
    assert status == 200 and rel2["prerelease"] is True and rel2["assets"] == []
    assert get_json(srv, "/repos/octo/app/releases/tags/v9")[0] == 404
    srv.add_release("v1.1.0")                     # a newer full release becomes latest
    assert get_json(srv, "/repos/octo/app/releases/latest")[1]["tag_name"] == "v1.1.0"
    status, rels = get_json(srv, "/repos/octo/app/releases")
    assert [r["tag_name"] for r in rels] == ["v1.1.0", "v1.1.0", "v1.0.0"]


def test_draft_is_invisible(srv):
    srv.add_release("v1.0.0", draft=True)
    assert get_json(srv, "/repos/octo/app/releases/latest")[0] == 404
    assert get_json(srv, "/repos/octo/app/releases/tags/v1.0.0")[0] == 404


def test_add_release_needs_existing_tag(srv):
    with pytest.raises(ValueError):
        srv.add_release("v404")


def test_asset_download_redirects(srv):
    data = os.urandom(3000)
    rel = srv.add_release("v1.0.0", {"manifest.json": data})
    asset = rel["assets"][0]
    s, h, body, loc = follow(srv, "/octo/app/releases/download/v1.0.0/manifest.json")
    assert s == 200 and body == data and h["content-length"] == "3000"
    assert "/_objects/" in loc
    # the API asset URL redirects with Accept: application/octet-stream, else gives JSON
    path = asset["url"][len(srv.url):]
    s, h, body, loc2 = follow(srv, path, {"Accept": "application/octet-stream"})
    assert s == 200 and body == data
    status, meta = get_json(srv, path)
    assert status == 200 and meta["name"] == "manifest.json" and meta["size"] == 3000
    # object URLs are signed: a wrong signature is refused
    assert get(srv, loc.split("?")[0] + "?sig=0000")[0] == 403
    assert get(srv, "/octo/app/releases/download/v1.0.0/other.json")[0] == 404


# -- refs, tags, commits, trees -----------------------------------------------------

def test_refs_and_annotated_tags(srv, repo):
    status, ref = get_json(srv, "/repos/octo/app/git/ref/heads/main")
    assert status == 200 and ref["ref"] == "refs/heads/main"
    assert ref["object"] == {"sha": repo["c2"], "type": "commit", "url": ref["object"]["url"]}
    status, ref = get_json(srv, "/repos/octo/app/git/ref/heads/feature/x")
    assert status == 200 and ref["object"]["sha"] == repo["c1"]
    status, ref = get_json(srv, "/repos/octo/app/git/ref/tags/v1.0.0")
    assert ref["object"]["type"] == "tag" and ref["object"]["sha"] == repo["t1"]
    status, t = get_json(srv, "/repos/octo/app/git/tags/" + repo["t1"])
    assert status == 200 and t["tag"] == "v1.0.0"
    assert t["object"]["sha"] == repo["c1"] and t["object"]["type"] == "commit"
    status, ref = get_json(srv, "/repos/octo/app/git/ref/tags/v1.1.0")
    assert ref["object"] == {"sha": repo["c2"], "type": "commit", "url": ref["object"]["url"]}
    assert get_json(srv, "/repos/octo/app/git/ref/heads/nope")[0] == 404
    assert get_json(srv, "/repos/octo/app/git/tags/" + repo["c1"])[0] == 404   # a commit, not a tag
    status, c = get_json(srv, "/repos/octo/app/commits/v1.0.0")
    assert status == 200 and c["sha"] == repo["c1"] and len(c["commit"]["tree"]["sha"]) == 40
    assert get_json(srv, "/repos/octo/app")[1]["default_branch"] == "main"


def test_tree_recursive_by_commit_tree_and_ref(srv, repo):
    status, t = get_json(srv, "/repos/octo/app/git/trees/%s?recursive=1" % repo["c1"])
    assert status == 200 and t["truncated"] is False
    blobs = {e["path"]: e for e in t["tree"] if e["type"] == "blob"}
    assert sorted(blobs) == ["app.py", "data/big.bin", "lib/old.py", "lib/util.py"]
    assert blobs["lib/util.py"]["sha"] == blob_sha(b"X = 1\n") and blobs["lib/util.py"]["size"] == 6
    assert blobs["data/big.bin"]["size"] == len(BIG) and blobs["app.py"]["mode"] == "100644"
    assert {e["path"] for e in t["tree"] if e["type"] == "tree"} == {"lib", "data"}
    assert all("size" not in e for e in t["tree"] if e["type"] == "tree")
    # the same tree by its own SHA and by a ref name
    assert get_json(srv, "/repos/octo/app/git/trees/%s?recursive=1" % t["sha"])[1]["tree"] == t["tree"]
    assert get_json(srv, "/repos/octo/app/git/trees/v1.0.0?recursive=1")[1]["sha"] == t["sha"]
    # non-recursive: top level only
    top = get_json(srv, "/repos/octo/app/git/trees/" + repo["c1"])[1]["tree"]
    assert sorted(e["path"] for e in top) == ["app.py", "data", "lib"]
    assert get_json(srv, "/repos/octo/app/git/trees/" + "0" * 40)[0] == 404


def test_truncated_tree(srv, repo):
    srv.truncate_trees = True
    t = get_json(srv, "/repos/octo/app/git/trees/%s?recursive=1" % repo["c1"])[1]
    assert t["truncated"] is True and 0 < len(t["tree"]) < 6


# -- raw content --------------------------------------------------------------------

def test_raw_by_branch_tag_sha_and_redirect(srv, repo):
    assert get(srv, "/raw/octo/app/main/app.py")[2] == b"print('v2')\n" * 50
    assert get(srv, "/raw/octo/app/v1.0.0/app.py")[2] == b"print('v1')\n"
    assert get(srv, "/raw/octo/app/%s/lib/old.py" % repo["c1"])[2] == b"OLD = True\n"
    assert get(srv, "/raw/octo/app/feature/x/lib/old.py")[2] == b"OLD = True\n"   # branch with "/"
    s, h, body = get(srv, "/raw/octo/app/main/data/big.bin")
    assert s == 200 and body == BIG and h["content-length"] == str(len(BIG))
    assert h["etag"] == '"%s"' % blob_sha(BIG)
    assert get(srv, "/raw/octo/app/main/lib/old.py")[0] == 404                       # deleted in v2
    assert get(srv, "/raw/octo/app/nope/app.py")[0] == 404
    s, h, body, loc = follow(srv, "/octo/app/raw/v1.0.0/lib/util.py")
    assert loc == srv.raw_base + "/octo/app/v1.0.0/lib/util.py" and body == b"X = 1\n"
    s, h, body = get(srv, "/raw/octo/app/main/data/big.bin", {"If-None-Match": h["etag"]})
    assert s == 200   # other file's etag
    s, _, body = get(srv, "/raw/octo/app/main/lib/util.py", {"If-None-Match": '"%s"' % blob_sha(b"X = 1\n")})
    assert s == 304 and body == b""


@pytest.mark.parametrize("rng,status,expect,crange", [
    ("bytes=10-", 206, BIG[10:], "bytes 10-%d/%d" % (len(BIG) - 1, len(BIG))),
    ("bytes=0-99", 206, BIG[:100], "bytes 0-99/%d" % len(BIG)),
    ("bytes=10000-99999", 206, BIG[10000:], "bytes 10000-%d/%d" % (len(BIG) - 1, len(BIG))),
    ("bytes=-5", 206, b"tail\n", "bytes %d-%d/%d" % (len(BIG) - 5, len(BIG) - 1, len(BIG))),
    ("bytes=%d-" % len(BIG), 416, b"", "bytes */%d" % len(BIG)),
])
def test_range(srv, rng, status, expect, crange):
    s, h, body = get(srv, "/raw/octo/app/main/data/big.bin", {"Range": rng, "Accept-Encoding": "gzip"})
    assert (s, body, h["content-range"]) == (status, expect, crange)
    assert "content-encoding" not in h          # never gzip with Range


def test_range_on_release_asset(srv):
    data = os.urandom(5000)
    srv.add_release("v1.0.0", {"pkg.bin": data})
    s, h, body = get(srv, "/octo/app/releases/download/v1.0.0/pkg.bin")
    s, h, body = get(srv, h["location"][len(srv.url):], {"Range": "bytes=4000-"})
    assert s == 206 and body == data[4000:]


def test_gzip(srv):
    s, h, body = get(srv, "/raw/octo/app/main/app.py", {"Accept-Encoding": "gzip, deflate"})
    assert s == 200 and h["content-encoding"] == "gzip"
    assert gzip.decompress(body) == b"print('v2')\n" * 50 and len(body) < 100
    assert h["content-length"] == str(len(body))
    assert "content-encoding" not in get(srv, "/raw/octo/app/main/app.py")[1]
    assert "content-encoding" not in get(srv, "/raw/octo/app/main/app.py", {"Accept-Encoding": "gzip;q=0"})[1]
    srv.gzip = False
    s, h, body = get(srv, "/raw/octo/app/main/app.py", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in h and body == b"print('v2')\n" * 50


def test_chunked(srv):
    srv.chunked = True
    srv.chunk_size = 1000
    c = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    c.sendall(b"GET /raw/octo/app/main/data/big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        raw += d
    c.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert rest.startswith(b"3e8\r\n") and rest.endswith(b"\r\n0\r\n\r\n")
    s, h, body = get(srv, "/raw/octo/app/main/data/big.bin")   # http.client decodes it
    assert s == 200 and body == BIG
    assert get_json(srv, "/repos/octo/app/git/ref/heads/main")[0] == 200


def test_keep_alive_reuses_connection(srv):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    for path in ("/repos/octo/app/git/ref/heads/main", "/raw/octo/app/main/app.py", "/nope"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.getheader("Connection") != "close"
    c.close()
    assert [r["status"] for r in srv.requests] == [200, 200, 404]


def test_unknown_paths(srv):
    for path in ("/nope", "/repos/other/app/releases/latest", "/repos/octo/app/unknown"):
        status, body = get_json(srv, path)
        assert status == 404 and body["message"] == "Not Found" and "documentation_url" in body


# -- private repositories -----------------------------------------------------------

def test_private_repo_needs_token(srv, repo):
    srv.token = TOKEN
    rel = srv.add_release("v1.0.0", {"manifest.json": b"{}"})
    paths = ["/repos/octo/app/releases/latest", "/repos/octo/app/git/ref/heads/main",
             "/raw/octo/app/main/app.py", "/repos/octo/app/releases/assets/%d" % rel["assets"][0]["id"]]
    for p in paths:
        status, _, body = get(srv, p)
        assert status == 401 and json.loads(body)["message"] == "Requires authentication", p
        status, _, body = get(srv, p, {"Authorization": "token wrong"})
        assert status == 401 and json.loads(body)["message"] == "Bad credentials", p
        assert get(srv, p, {"Authorization": "token " + TOKEN})[0] in (200, 302), p
        assert get(srv, p, {"Authorization": "Bearer " + TOKEN})[0] in (200, 302), p
    # the object store URL is signed and needs no Authorization (clients drop it on redirect)
    s, h, _ = get(srv, paths[3], {"Authorization": "token " + TOKEN, "Accept": "application/octet-stream"})
    assert s == 302
    assert get(srv, h["location"][len(srv.url):])[2] == b"{}"
    assert rel["assets"][0]["size"] == 2
    # like github.com, browser_download_url takes no API token: private assets come via the API
    dl = "/octo/app/releases/download/v1.0.0/manifest.json"
    assert get(srv, dl, {"Authorization": "token " + TOKEN})[0] == 404
    assert TOKEN not in repr(srv.requests)
    assert {r["auth"] for r in srv.requests} == {None, "valid", "invalid"}
    assert srv.requests[2]["headers"]["Authorization"] == "token <redacted>"


# -- faults --------------------------------------------------------------------------

def test_fault_cut(srv):
    srv.add_fault("big.bin", "cut", after=1000)
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    c.request("GET", "/raw/octo/app/main/data/big.bin")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == str(len(BIG))
    with pytest.raises(http.client.IncompleteRead) as e:
        r.read()
    assert e.value.partial == BIG[:1000]
    c.close()
    assert srv.requests[-1]["bytes"] == 1000 and srv.requests[-1]["faults"] == ["cut"]
    # applies once by default: the resume with Range then works
    s, h, body = get(srv, "/raw/octo/app/main/data/big.bin", {"Range": "bytes=1000-"})
    assert s == 206 and BIG[:1000] + body == BIG


def test_fault_cut_chunked(srv):
    srv.chunked = True
    srv.add_fault("big.bin", "cut", after=5000)
    with pytest.raises(http.client.IncompleteRead):
        get(srv, "/raw/octo/app/main/data/big.bin")
    assert srv.requests[-1]["bytes"] == 5000


def test_fault_flip(srv):
    srv.add_fault("big.bin", "flip", at=7)
    body = get(srv, "/raw/octo/app/main/data/big.bin")[2]
    assert len(body) == len(BIG) and body[7] == BIG[7] ^ 0xFF and body[:7] + body[8:] == BIG[:7] + BIG[8:]
    assert get(srv, "/raw/octo/app/main/data/big.bin")[2] == BIG


def test_fault_status_times_and_headers(srv):
    srv.add_fault("releases/latest", "status", status=503, headers={"Retry-After": "1"}, times=2)
    srv.add_release("v1.0.0")
    for _ in range(2):
        s, h, body = get(srv, "/repos/octo/app/releases/latest")
        assert s == 503 and h["retry-after"] == "1" and json.loads(body)["message"] == "Service Unavailable"
    assert get(srv, "/repos/octo/app/releases/latest")[0] == 200
    f = srv.add_fault("app.py", "status", status=500, times=None)
    for _ in range(3):
        assert get(srv, "/raw/octo/app/main/app.py")[0] == 500
    assert f.hits == 3
    srv.clear_faults()
    assert get(srv, "/raw/octo/app/main/app.py")[0] == 200
    srv.add_fault("heads/main", "status", status=429, message="slow down")
    s, _, body = get(srv, "/repos/octo/app/git/ref/heads/main")
    assert s == 429 and json.loads(body)["message"] == "slow down"


def test_fault_stall(srv):
    srv.add_fault("app.py", "stall", seconds=0.6)
    t = time.monotonic()
    assert get(srv, "/raw/octo/app/main/app.py")[0] == 200
    assert time.monotonic() - t >= 0.55
    # a client timeout shorter than the stall fails mid-body
    srv.add_fault("big.bin", "stall", seconds=1.5, after=2000)
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=0.5)
    c.request("GET", "/raw/octo/app/main/data/big.bin")
    r = c.getresponse()
    assert r.read(2000) == BIG[:2000]
    with pytest.raises((socket.timeout, TimeoutError)):
        r.read(10)
    c.close()
    # before the headers
    srv.add_fault("util.py", "stall", seconds=1.0, before_headers=True)
    with pytest.raises((socket.timeout, TimeoutError)):
        get(srv, "/raw/octo/app/main/lib/util.py", timeout=0.3)


def test_fault_does_not_hit_redirects(srv):
    srv.add_release("v1.0.0", {"manifest.json": b"0123456789"})
    srv.add_fault("manifest.json", "flip", at=0)
    s, h, body, _ = follow(srv, "/octo/app/releases/download/v1.0.0/manifest.json")
    assert body == b"\xcf123456789"          # the flip hit the bytes, not the bodiless 302


# -- rate limit ----------------------------------------------------------------------

def test_rate_limit(srv):
    s, h, _ = get(srv, "/repos/octo/app/git/ref/heads/main")
    assert s == 200 and int(h["x-ratelimit-remaining"]) == 59 and h["x-ratelimit-limit"] == "60"
    reset = int(time.time()) + 3000
    srv.rate_limit_reset = reset
    s, h, body = get(srv, "/repos/octo/app/releases/latest")
    assert s == 403 and json.loads(body)["message"].startswith("API rate limit exceeded")
    assert h["x-ratelimit-remaining"] == "0" and h["x-ratelimit-reset"] == str(reset)
    assert get(srv, "/raw/octo/app/main/app.py")[0] == 200     # raw content is not rate-limited
    srv.rate_limit_reset = None
    assert get(srv, "/repos/octo/app/git/ref/heads/main")[0] == 200


# -- log, HEAD, script mode ------------------------------------------------------------

def test_request_log(srv):
    get(srv, "/raw/octo/app/main/data/big.bin", {"X-Test": "1"})
    get(srv, "/raw/octo/app/main/data/big.bin", method="HEAD")
    (r, h) = srv.requests
    assert (r["method"], r["path"], r["status"], r["bytes"]) == ("GET", "/raw/octo/app/main/data/big.bin",
                                                                 200, len(BIG))
    assert r["headers"]["X-Test"] == "1"
    assert (h["method"], h["bytes"]) == ("HEAD", 0)
    srv.clear_log()
    assert srv.requests == []


def test_script_mode(repo, tmp_path):
    p = subprocess.Popen([sys.executable, str(TESTS / "ghserver.py"), "--repo",
                          str(repo["dir"]), "--owner", "o", "--name", "r", "--token", TOKEN],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = p.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/raw/o/r/v1.0.0/lib/util.py", headers={"Authorization": "token " + TOKEN})
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"X = 1\n"
        c.close()
    finally:
        p.terminate()
        out, err = p.communicate(timeout=5)
    assert TOKEN not in out + err and "private" in err


# -- python/integration_test.py (the user's smoke test) against this server -----------

def run_integration_test(cfg, tmp_path, *args):
    (tmp_path / "ota_config.json").write_text(json.dumps(cfg))
    before = sorted(os.listdir(tmp_path))
    r = subprocess.run([sys.executable, str(PY / "integration_test.py"), *args],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert sorted(os.listdir(tmp_path)) == before          # it writes nothing
    return r


def test_integration_test_channels(srv, repo, tmp_path):
    manifest = subprocess.run([sys.executable, str(PY / "manifest_gen.py"), "--version",
                               "v1.0.0", "--out", "-", "app.py", "lib/util.py"], cwd=repo["dir"],
                              capture_output=True).stdout
    assert manifest.startswith(b"{")
    cfg = {"owner": "octo", "repo": "app", "api_base": srv.api_base, "raw_base": srv.raw_base,
           "retries": 1, "backoff_sec": 0}
    r = run_integration_test(cfg, tmp_path)
    assert r.returncode == 1 and "404" in r.stdout                  # no release yet
    assert "ok    developer (branch main)" in r.stdout and repo["c2"][:12] in r.stdout
    srv.add_release("v1.0.0", {"manifest.json": manifest})
    srv.add_release("v1.1.0")
    srv.clear_log()
    r = run_integration_test(cfg, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ref v1.1.0, commit %s" % repo["c2"][:12] in r.stdout
    assert "manifest.json: no (the device uses the git tree: 4 files)" in r.stdout
    assert not any(q["path"].startswith("/raw/") for q in srv.requests)   # nothing downloaded
    cfg["tag"] = "v1.0.0"
    r = run_integration_test(cfg, tmp_path, "--channel", "stable")
    assert r.returncode == 0 and "stable (tag v1.0.0)" in r.stdout and "developer" not in r.stdout
    assert "ref v1.0.0, commit %s" % repo["c1"][:12] in r.stdout
    assert "manifest.json: yes (2 files, 0 deletes)" in r.stdout


def test_integration_test_private_and_bad_config(srv, tmp_path):
    srv.token = TOKEN
    srv.add_release("v1.0.0")
    cfg = {"owner": "octo", "repo": "app", "api_base": srv.api_base, "raw_base": srv.raw_base,
           "retries": 1, "backoff_sec": 0}
    r = run_integration_test(cfg, tmp_path)
    assert r.returncode == 1 and r.stdout.count("GitHub API returned 401") == 2, r.stdout + r.stderr
    cfg["token"] = TOKEN
    r = run_integration_test(cfg, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert TOKEN not in r.stdout + r.stderr
    r = run_integration_test({"owner": "octo"}, tmp_path)
    assert r.returncode == 2 and "repo" in r.stderr, r.stdout + r.stderr
