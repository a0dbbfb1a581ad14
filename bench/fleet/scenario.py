"""The application repository of the fleet simulation and one scenario run (CPython devices).

A scenario: a mode (stable with manifest, stable without manifest, developer), with or without
a token, a boot pattern (spread or herd), N devices that hold the old release (installed and
confirmed by the real updater), a new release at `release_h`, `hours` simulated in all.
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "python", ROOT / "tests", ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from gitrepo import branch, commit, make_repo, tag  # noqa: E402
from fleet.model import API, DOWNLOAD, HOUR, RAW, WEB  # noqa: E402

OWNER, REPO = "octo", "fleetapp"
TOKEN = "ghp_fleet0000000000000000000000000000000"  # one token in every device's configuration
MODES = ("manifest", "tree", "developer")
MODE_NAMES = {"manifest": "stable, manifest", "tree": "stable, no manifest", "developer": "developer"}
DEV_BRANCH = "fleet"

# The application: 6 small files; the new release changes two of them and adds one (each file a
# raw request; fewer files keep the simulation short: the API requests do not depend on the count).
V1 = {"main_app.py": b"import lib.sensor\nlib.sensor.run()\n", "lib/__init__.py": b"",
      "lib/sensor.py": b"def run():\n    print('v1')\n" * 20, "lib/net.py": b"# network helpers\n" + b"X = 1\n" * 50,
      "lib/util.py": b"N = 1\n" * 30, "README.md": b"# fleet app\n"}
V2 = dict(V1, **{"lib/sensor.py": b"def run():\n    print('v2')\n" * 20, "lib/net.py": V1["lib/net.py"] + b"Y = 2\n",
                 "lib/extra.py": b"E = 1\n"})


def manifest(files, version):
    import manifest_gen

    return json.dumps(manifest_gen.build_manifest(version, files)).encode()


def make_app_repo(where):
    """The repository: v1.0.0 and v1.1.0 (annotated tags, as `git tag -a` makes), the developer
    branch at v1's commit (moved to v2's at the release). -> (path, {1: sha, 2: sha})"""
    r = make_repo(Path(where) / "app")
    c = {1: commit(r, V1, "v1")}
    tag(r, "v1.0.0")
    c[2] = commit(r, {p: d for p, d in V2.items() if V1.get(p) != d}, "v1.1")
    tag(r, "v1.1.0")
    branch(r, DEV_BRANCH, c[1])
    return r, c


def config(mode, token, server):
    cfg = {"owner": OWNER, "repo": REPO, "api_base": server.api_base, "raw_base": server.raw_base,
           "channel": "developer" if mode == "developer" else "stable", "reset_mode": "hard"}
    if mode == "developer":
        cfg["branch"] = DEV_BRANCH
    if token:
        cfg["token"] = token
    return cfg


def publish_old(srv, mode, commits):
    """The state before the release: v1.0.0 published (with its manifest in manifest mode)."""
    if mode != "developer":
        srv.add_release("v1.0.0", {"manifest.json": manifest(V1, "v1.0.0")} if mode == "manifest" else {})


def publish_new(srv, mode, commits):
    """The release lands: v1.1.0 published, or the developer branch moves to v2's commit."""
    if mode == "developer":
        branch(srv.git.repo_dir, DEV_BRANCH, commits[2])
    else:
        srv.add_release("v1.1.0", {"manifest.json": manifest(V2, "v1.1.0")} if mode == "manifest" else {})


def is_new(mode, commits):
    if mode == "developer":
        return lambda v: v.get("commit") == commits[2]
    return lambda v: v.get("ref") == "v1.1.0"


def run(p):
    """One scenario (p: a dict, see bench_fleet.py); returns its measurements."""
    from fleet import sim

    t_start = time.time()
    work = Path(tempfile.mkdtemp(prefix="fleet-", dir=p.get("tmp")))
    try:
        repo, commits = make_app_repo(work)
        f = sim.Fleet(repo, work / "devices", config(p["mode"], p["token"] and TOKEN, sim.FleetServer),
                      p["n"], p["boot"], seed=p.get("seed", 1), rules=p.get("rules"),
                      release_check=is_new(p["mode"], commits), loop=p.get("loop", "offset"))
        publish_old(f.server, p["mode"], commits)
        f.populate(0.0)
        release = p["release_h"] * HOUR
        f.sched.at(release, "call", lambda: f.server.publish(publish_new, f.server, p["mode"], commits))
        hours = p["hours"]
        for h in range(hours * 6):
            f.run((h + 1) * HOUR / 6)
        f.sched.stop()
        return summarize(f, p, release, time.time() - t_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarize(f, p, release, wall):
    st = f.server.rules.stats
    hours = p["hours"]
    rows = []
    for h in range(hours):
        rows.append({
            "hour": h,
            "api": st.hour(h, API, "ok"), "api_304_free": st.hour(h, API, "free304"),
            "api_refused_primary": st.hour(h, API, "primary"), "api_refused_secondary": st.hour(h, API, "secondary"),
            "web": st.hour(h, WEB, "ok", "limited"), "download": st.hour(h, DOWNLOAD, "ok", "limited"),
            "raw": st.hour(h, RAW, "ok", "limited"), "runs": f.runs_hours.get(h, 0),
            "web_refused": sum(st.hour(h, c, "limited") for c in (WEB, DOWNLOAD, RAW)),
            "failed_runs": f.error_hours.get(h, 0)})
    done = sorted(d.updated_at - release for d in f.devices if d.updated_at is not None)
    states = {}
    for d in f.devices:
        states[d.state] = states.get(d.state, 0) + 1
    n = len(f.devices)

    def q(x):
        return done[min(len(done) - 1, int(x * n) - 1)] if len(done) >= x * n else None

    hs = [h for h, _ in f.handshakes]
    return {
        "params": {k: v for k, v in p.items() if k != "tmp"}, "hours": rows, "states": states,
        "updated": len(done), "t50": q(0.5), "t99": q(0.99), "t100": done[-1] if len(done) == n else None,
        "rate_after": _rate(done, hours * HOUR - release),
        "errors": f.errors, "rollbacks": f.rollbacks, "secondary": f.server.rules.secondary_why,
        "crashes": f.crashes[:3], "threads": f.sched.threads,
        "peak_minute": {c: st.peak_minute(c) for c in (API, WEB, DOWNLOAD, RAW)},
        "max_handshakes_per_run": max(hs or [0]), "wall_sec": wall,
    }


def _rate(done, span):
    """Devices updated per hour over the last half of the time after the release (a steady rate)."""
    half = span / 2
    late = [t for t in done if t >= half]
    return len(late) / (half / HOUR) if half > 0 else 0
