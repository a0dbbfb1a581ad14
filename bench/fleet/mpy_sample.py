"""MicroPython devices against the model on 127.0.0.1, compared with the simulated CPython devices.

For each mode and with/without a token, one device runs the real ota.py in .venv/bin/micropython
(tests/device/drive.py: OTA(cfg), connect(), update_if_available()) against LoopbackServer (the
same rules and content, served over real sockets), and its twin runs in CPython the way the fleet
simulation runs every device (sim.Fleet, in-process FleetServer, virtual clock). Both go through
the same steps:

  install      first boot of an empty device: the old release
  confirm      the next boot's check (confirms the trial)
  up to date   an hourly check
  update       the release has landed
  boot         the check after the reset
  primary      the API budget of the client is used up (X-RateLimit-Remaining: 0, reset in an hour)
  secondary    the next API request meets a secondary limit: 403 + Retry-After: 1
  secondary-   the same without Retry-After (GitHub: "otherwise, wait for at least one minute")
  429-         the same answered 429 (with the X-RateLimit headers every API answer has)
  web 503      the next request to github.com / downloads / raw is answered 503 (once)

and the two request sequences (class of host, path, status, Authorization sent, If-None-Match
sent) and outcomes (updated, error) must be equal step by step.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "python", ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from fleet import scenario  # noqa: E402
from fleet.model import FLEET_IP, LoopbackServer, classify  # noqa: E402

MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
DRIVER = ROOT / "tests" / "device" / "drive.py"
NATMOD = ROOT / "build" / "x64" / "ota_native.mpy"
STEPS = ("install", "confirm", "up to date", "update", "boot", "primary", "secondary", "secondary-", "429-",
         "web 503")
_HOST_CLASS = {"api.github.com": "api", "github.com": None, "raw.githubusercontent.com": "raw",
               "objects.githubusercontent.com": "download"}


def _canon(cls, path, status, auth, inm):
    # The asset bytes: on GitHub another host than the redirect's (the token is dropped there); on
    # the one-host loopback server the same host (the token stays): not a difference of the
    # interpreters, so the Authorization flag of these requests is left out.
    auth = auth and not path.startswith("/_objects/")
    path, _, q = path.partition("?")
    q = "&".join(x for x in q.split("&") if x and not x.startswith("sig="))
    return "%s %s%s %d%s%s" % (cls, path, "?" + q if q else "", status, " auth" if auth else "",
                              " if-none-match" if inm else "")


def _outcome(updated, error):
    # (the seconds of a rate limit's reset differ by the clocks: numbers are left out)
    # and the server's URL differs (127.0.0.1 / api.github.com)
    if error:
        error = re.sub(r"\d+", "N", re.sub(r"\w+://[^/\s]+", "", error))
    return "updated" if updated else ("error: " + error[:100] if error else "no change")


def _step_setup(step, rules, client):
    """Put the server's rules in the state of the step (both servers the same way)."""
    rules.retry_after = 1 if step == "secondary" else None if step in ("secondary-", "429-") else rules.retry_after
    rules.secondary_status = 429 if step == "429-" else 403
    if step == "primary":
        rules.windows[client] = [rules.clock() + 3600, rules.ip_limit if client[0] == "ip" else rules.token_limit]
    rules.fail_web[1] = 1 if step == "web 503" else 0
    if step in ("secondary", "secondary-", "429-"):
        rules.windows.pop(client, None)
        rules.refuse = 1


def _mpy_device(where, srv, mode, token):
    d = Path(where)
    d.mkdir(parents=True)
    shutil.copy(ROOT / "python" / "ota.py", d)
    if NATMOD.exists():
        shutil.copy(NATMOD, d)
    cfg = scenario.config(mode, token, srv)
    cfg["reset_mode"] = "none"  # drive.py runs the update itself (no reset off a board anyway)
    (d / "ota_config.json").write_text(json.dumps(cfg))
    return d


def _mpy_run(d, srv):
    n = len(srv.requests)
    p = subprocess.run([str(MICROPYTHON), str(DRIVER), "update"], cwd=d, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MICROPYPATH=""))
    res = None
    for line in p.stdout.splitlines():
        if line.startswith("OTA_RESULT "):
            res = json.loads(line[11:])
    if res is None:
        raise RuntimeError("micropython device crashed: %s" % (p.stdout + p.stderr)[-1500:])
    seq = []
    for r in srv.requests[n:]:
        parts = r["path"].split("?")[0].split("/")[1:]
        path = r["path"][4:] if r["path"].startswith("/raw/") else r["path"]
        seq.append(_canon(classify(parts, srv.owner, srv.repo), path, r["status"], r["auth"] is not None,
                          "If-None-Match" in r["headers"]))
    return seq, _outcome(res.get("updated"), res.get("error"))


def _cpy_run(f, d):
    updated, error = f.run_once(d)
    seq = []
    for t, host, path, status, auth, inm in d.requests:
        cls = _HOST_CLASS.get(host) or classify(path.split("?")[0].split("/")[1:], f.server.owner, f.server.repo)
        seq.append(_canon(cls, path, status, auth, inm))
    return seq, _outcome(updated, error)


def compare(modes=scenario.MODES):
    """{"same": bool, "cases": [{mode, token, steps: [{step, micropython, cpython, same}]}]}"""
    from fleet import sim

    if not MICROPYTHON.exists():
        return {"same": False, "error": "%s missing: make venv" % MICROPYTHON, "cases": []}
    cwd = os.getcwd()
    work = Path(tempfile.mkdtemp(prefix="fleet-mpy-"))
    out = {"same": True, "cases": [], "micropython": subprocess.run(
        [str(MICROPYTHON), "-c", "import sys; print(sys.version)"], capture_output=True, text=True).stdout.strip()}
    try:
        repo, commits = scenario.make_app_repo(work)
        for mode in modes:
            for token in (False, True):
                tok = scenario.TOKEN if token else None
                case = {"mode": mode, "token": token, "steps": []}
                out["cases"].append(case)
                branch_reset(repo, commits)
                lsrv = LoopbackServer(repo, owner=scenario.OWNER, repo=scenario.REPO)
                lsrv.start()
                try:
                    scenario.publish_old(lsrv, mode, commits)
                    mdev = _mpy_device(work / ("mpy-%s-%d" % (mode, token)), lsrv, mode, tok)
                    f = sim.Fleet(repo, work / ("cpy-%s-%d" % (mode, token)), scenario.config(mode, tok, sim.FleetServer),
                                  0, "spread")
                    scenario.publish_old(f.server, mode, commits)
                    folder = f.work / "twin"
                    folder.mkdir(parents=True)
                    cdev = sim.Device(f, 0, folder)
                    client = ("token", tok) if tok else ("ip", FLEET_IP)
                    for step in STEPS:
                        if step == "update":  # the release lands (the branch moves once: both servers see it)
                            f.server.publish(scenario.publish_new, f.server, mode, commits)
                            if mode != "developer":
                                scenario.publish_new(lsrv, mode, commits)
                        f.sched.run(f.sched.now + 3600)  # an hour between checks
                        for rules in (lsrv.rules, f.server.rules):
                            _step_setup(step, rules, client)
                        m = _mpy_run(mdev, lsrv)
                        c = _cpy_run(f, cdev)
                        same = m == c
                        out["same"] &= same
                        case["steps"].append({"step": step, "micropython": m, "cpython": c, "same": same})
                    f.sched.stop()
                finally:
                    lsrv.stop()
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)
    return out


def branch_reset(repo, commits):
    from gitrepo import branch

    branch(repo, scenario.DEV_BRANCH, commits[1])


def report(out):
    if out.get("error"):
        return "MicroPython sample: " + out["error"]
    lines = ["MicroPython sample (%s): %s" % (out.get("micropython", "?"),
             "every step's request sequence and outcome equal to the simulated CPython device's"
             if out["same"] else "DIFFERENT from the simulated CPython devices (below)")]
    for case in out["cases"]:
        lines.append("  %s, token %s:" % (scenario.MODE_NAMES[case["mode"]], "yes" if case["token"] else "no"))
        for s in case["steps"]:
            seq, outcome = s["micropython"]
            lines.append("    %-11s %s  [%s]%s" % (s["step"], "; ".join(x.split(" ", 1)[0] + " " + _short(x) for x in seq)
                                                 or "(no request)", outcome, "" if s["same"] else "  <- DIFFERS"))
            if not s["same"]:
                lines.append("      cpython:     %s  [%s]" % ("; ".join(s["cpython"][0]), s["cpython"][1]))
                lines.append("      micropython: %s  [%s]" % ("; ".join(seq), outcome))
    return "\n".join(lines)


def _short(x):
    # "api /repos/octo/fleetapp/releases/latest 200 auth" -> "releases/latest 200 auth"
    cls, rest = x.split(" ", 1)
    for p in ("/repos/%s/%s/" % (scenario.OWNER, scenario.REPO), "/%s/%s/" % (scenario.OWNER, scenario.REPO)):
        if rest.startswith(p):
            rest = rest[len(p):]
    return re.sub(r"\b([0-9a-f]{7})[0-9a-f]{33}\b", r"\1", rest)


if __name__ == "__main__":
    r = compare([m for m in sys.argv[1:]] or scenario.MODES)
    print(report(r))
    sys.exit(0 if r["same"] else 1)
