"""Issue 12, items 3 and 4, and what the fleet simulation found (bench/fleet/README.md): the check
is a conditional request (ETag / If-None-Match, a 304 is "up to date"); GitHub's secondary rate
limits are read as documented (a bare 403 that says "rate limit", a 429 whose X-RateLimit-Remaining
is not 0) and waited for at least a minute; every wait has jitter; the github.com redirect of the
API-free channel is retried; any answer of the server confirms a release on trial; a trial counts
boots, not checks. Both interpreters."""
import json
import re
import subprocess
import sys

from conftest import MICROPYTHON, PY, V1, V2, check_installed, dev_branch
from gitrepo import branch

TOKEN = "ghp_fleetT0ken"


def _state(dev, name="ota_state.json"):
    p = dev.path / name
    return json.loads(p.read_text()) if p.exists() else None


def _check_requests(srv):
    return [x for x in srv.requests if "/git/ref/heads/" in x["path"]]


def test_conditional_check_304_is_up_to_date(dev, srv, repo):
    b = dev_branch(repo, dev, "etag", repo[1][1])
    dev.config(channel="developer", branch=b)
    assert dev.update()["updated"] is True
    etag = _state(dev)["etag"]
    assert etag[0] == "git/ref/heads/" + b and etag[1].startswith('W/"'), etag
    srv.clear_log()
    r = dev.update()  # the same commit: If-None-Match, 304, up to date, one request
    assert r["updated"] is False and "error" not in r, r
    (req,) = srv.requests
    assert req["status"] == 304 and req["headers"].get("If-None-Match") == etag[1], req
    check_installed(dev, V1, repo[1][1])
    branch(repo[0], b, repo[1][2])  # the branch moves: a 200 with the new commit
    srv.clear_log()
    assert dev.update()["updated"] is True
    assert _check_requests(srv)[0]["status"] == 200
    check_installed(dev, V2, repo[1][2])
    assert _state(dev)["etag"] != etag


def test_conditional_check_is_free_with_a_token(dev, srv, repo):
    srv.token = TOKEN
    dev.config(channel="developer", branch=dev_branch(repo, dev, "etagtok", repo[1][1]), token=TOKEN)
    assert dev.update()["updated"] is True
    used = srv._used
    for _ in range(3):
        assert dev.update()["updated"] is False
    assert srv._used == used  # three 304s with Authorization: no API request counted
    assert [x["status"] for x in _check_requests(srv)][-3:] == [304] * 3


def test_force_and_a_lost_version_json_ask_unconditionally(dev, srv, repo):
    b = dev_branch(repo, dev, "etagforce", repo[1][1])
    dev.config(channel="developer", branch=b)
    assert dev.update()["updated"] is True
    (dev.path / "version.json").unlink()  # a 304 must not mean "up to date" with nothing recorded
    srv.clear_log()
    dev.update()
    assert "If-None-Match" not in _check_requests(srv)[0]["headers"]
    check_installed(dev, V1, repo[1][1])


def test_secondary_limit_as_a_bare_403(dev, srv, repo):
    """GitHub may answer a secondary limit with a 403 and only its message: wait a minute (here
    more than max_backoff_sec: fail at once and say so), not "check the token's permissions"."""
    srv.add_fault("/git/ref/heads/", "status", status=403,
                  message="You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
    dev.config(channel="developer", branch=dev_branch(repo, dev, "sec403", repo[1][1]), max_backoff_sec=30)
    r = dev.update()
    assert "retry in 60 s" in r["error"] and "permissions" not in r["error"], r
    srv.add_fault("/git/ref/heads/", "status", status=403, message="Resource not accessible by integration")
    r = dev.update()
    assert "permissions" in r["error"], r


def test_429_with_the_primary_window_is_a_secondary_limit(dev, srv, repo):
    """Every API answer carries X-RateLimit-Reset; with X-RateLimit-Remaining above 0 a 429 is a
    secondary limit (a minute), not a wait for the primary window's reset."""
    srv.add_fault("/git/ref/heads/", "status", status=429,
                  headers={"X-RateLimit-Remaining": "42", "X-RateLimit-Reset": "4102444800"})
    dev.config(channel="developer", branch=dev_branch(repo, dev, "sec429", repo[1][1]), max_backoff_sec=30)
    r = dev.update()
    assert "retry in 60 s" in r["error"] and "add a 'token'" in r["error"], r
    dev.config(channel="developer", branch=dev_branch(repo, dev, "sec429t", repo[1][1]), max_backoff_sec=30,
               token="ghp_x")
    srv.add_fault("/git/ref/heads/", "status", status=429, headers={"X-RateLimit-Remaining": "0",
                                                                            "X-RateLimit-Reset": "4102444800"})
    r = dev.update()
    assert "resets in" in r["error"] and "shares its limit" in r["error"] and "add a" not in r["error"], r


def test_waits_have_jitter_and_grow_from_retry_after(dev, srv, repo):
    srv.add_fault("/git/ref/heads/", "status", status=429, times=2, headers={"Retry-After": "1"})
    dev.config(channel="developer", branch=dev_branch(repo, dev, "jitter", repo[1][1]), debug=True, backoff_sec=0.05)
    assert dev.update()["updated"] is True
    waits = [float(w) for w in re.findall(r"rate limited; wait ([0-9.]+)", dev.out)]
    assert len(waits) == 2 and all(1 <= w <= 1.25 for w in waits[:1]) and 2 <= waits[1] <= 2.5, waits


def test_web_redirect_is_retried(dev, srv, repo):
    """The API-free channel's github.com/{o}/{r}/releases/latest goes through OTA.retry()."""
    srv.add_release("v1.0.0")
    srv.add_fault("/releases/latest", "status", status=503, times=2)
    dev.config(channel="stable")
    r = dev.update()
    assert "error" not in r and r["result"]["target"]["ref"], r
    assert [x["status"] for x in srv.requests if x["path"].endswith("/releases/latest")][:3] == [503, 503, 302]


def test_any_answer_confirms_the_trial(dev, srv, repo):
    """A release on trial is confirmed by a check that reaches the server, whatever it answers: a
    rate-limited fleet must not roll back healthy releases."""
    b = dev_branch(repo, dev, "confirm429", repo[1][1])
    dev.config(channel="developer", branch=b, max_backoff_sec=30)
    assert dev.update()["updated"] is True
    assert _state(dev, "ota_journal.json")["state"] == "trial"
    dev.run("recover")  # the reset: a boot of the trial
    srv.add_fault("/git/ref/heads/", "status", status=429, times=5)
    r = dev.update()
    assert "rate limit" in r["error"], r
    assert _state(dev, "ota_journal.json") is None and not (dev.path / ".ota_backup").exists()  # confirmed, backups freed


def test_a_trial_counts_boots_not_checks(dev, srv, repo):
    """An application that checks again without a reset (OTA() twice in one boot) is one boot."""
    b = dev_branch(repo, dev, "boots", repo[1][1])
    dev.config(channel="developer", branch=b, confirm="app")
    assert dev.update()["updated"] is True
    r = dev.run("recover", "again")  # one process: two OTA() objects
    assert "crash" not in r, r
    assert _state(dev, "ota_journal.json")["boots"] == 1
    dev.run("recover")
    assert _state(dev, "ota_journal.json")["boots"] == 2


# ------------------------------------------------------------------ one connection per host
def test_first_install_uses_one_connection_per_host(dev, srv, repo):
    """HTTP/1.1 keep-alive: the 16 requests of a first install of 14 files go over one connection
    (the test server is the API host and the raw host at once)."""
    dev.config(channel="developer", branch=dev_branch(repo, dev, "keep", repo[1][1]))
    srv.clear_log()
    assert dev.update()["updated"] is True
    assert len(srv.requests) == 16 and len({x["conn"] for x in srv.requests}) == 1, srv.requests
    check_installed(dev, V1, repo[1][1])


def test_two_hosts_two_connections(dev, srv, repo):
    """The raw host under another name: the API requests share one connection, the downloads
    another; each host's connection is opened once."""
    raw = srv.raw_base.replace("127.0.0.1", "localhost")
    dev.config(channel="developer", branch=dev_branch(repo, dev, "hosts", repo[1][1]), raw_base=raw)
    srv.clear_log()
    assert dev.update()["updated"] is True
    api = {x["conn"] for x in srv.requests if x["path"].startswith("/repos/")}
    files = {x["conn"] for x in srv.requests if x["path"].startswith("/raw/")}
    assert len(api) == 1 and len(files) == 1 and api != files, srv.requests


def test_a_connection_the_server_closed_is_replaced_at_once(dev, srv, repo):
    """A server that ends every connection after one response without saying so: each kept
    connection fails at its next request and is replaced at once, with no backoff and no
    retry counted (retries 0 here)."""
    srv.drop_idle = True
    dev.config(channel="developer", branch=dev_branch(repo, dev, "drop", repo[1][1]), retries=0, debug=True)
    srv.clear_log()
    assert dev.update()["updated"] is True
    assert len(srv.requests) == 16 and len({x["conn"] for x in srv.requests}) == 16
    assert "; wait " not in dev.out
    check_installed(dev, V1, repo[1][1])


# ------------------------------------------------------------------ a stable per-device offset
OFFSETS = r"""
import json, ota_schedule
T = 1767225600  # any time
v = [ota_schedule.next_check_in({"device_id": "dev%d" % i, "repo": "app"}, 3600, T) for i in range(400)]
one = {"device_id": "dev7", "repo": "app"}
w = ota_schedule.next_check_in(one, 3600, T)
print("OFFSETS", json.dumps([v, w, ota_schedule.next_check_in(one, 3600, T + 3600),
      ota_schedule.next_check_in(one, 3600, T + w - 1),
      ota_schedule.next_check_in({"repo": "app", "update_scheduling": {"min_update_interval_sec": 600}}, None, T) <= 600]))
"""


def test_next_check_in_spreads_a_fleet_over_the_interval(kind, tmp_path):
    """ota_schedule.next_check_in(): the application loop's sleep; each device checks once per
    interval at its own stable offset, so 400 devices booted together spread over the hour."""
    exe = [sys.executable] if kind == "cpython" else [str(MICROPYTHON)]
    p = subprocess.run(exe + ["-c", OFFSETS], cwd=PY, capture_output=True, text=True, timeout=60,
                       env={"MICROPYPATH": str(PY), "PYTHONPATH": str(PY), "PATH": "/usr/bin:/bin"})
    line = [x for x in p.stdout.splitlines() if x.startswith("OFFSETS ")]
    assert line, p.stdout + p.stderr
    v, w, w_later, w_next, default = json.loads(line[0][8:])
    assert all(0 < x <= 3600 for x in v)
    quarters = [sum(1 for x in v if q * 900 < x <= (q + 1) * 900) for q in range(4)]
    assert all(60 <= n <= 140 for n in quarters), quarters  # about 100 each
    assert w_later == w and w_next == 1 and default is True
