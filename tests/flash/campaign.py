"""Power-cut campaign on real littlefs (issue 9): the device's whole filesystem is a simulated
NOR flash (tests/flash/flashsim.py: 212 x 4 KiB blocks, littlefs 2 mounted as the rp2 port
does), and the power is cut at every program/erase operation of an update in turn, in three
modes (a: the operation does not happen, b: half of it, c: half plus random bits), by SIGKILL
of the interpreter. The flash image is kept; the next boot checks, before anything writes,
that littlefs mounts and the updater's files are readable and intact, then runs
`import main; main.main()` from littlefs with the server unreachable (recovery), checks that
the application files are exactly the old or the new set with an agreeing version.json, and
boots twice more with the server back: the target must be reached (and the release on trial
confirmed) with no stray file. The cuts cover the boot that installs ("update" phase) and the
next one, which confirms the release and frees the backups ("confirm" phase).

Scenarios: first install; v1->v2 change/add/delete by tree and by manifest (the app has a
boot.py, run before main as on the board); v1->v3 by delta (.deltas/ from python/delta_gen.py,
the shape of tests/test_delta_e2e.py); a self-update of ota.py (self_update: true). Power is
also cut during the recovery boot itself (each of its first 20 operations, sampled points).

    python tests/flash/campaign.py --all            every point (make powercut-flash)
    python tests/flash/campaign.py --sample 2       2 points per scenario and mode
    python tests/flash/campaign.py --scenario tree --points 17,18 --modes b -v
    python tests/flash/campaign.py --rev 112b5ad --scenario self --points 87 --modes a -v --keep DIR
        (the updater of a git revision, here the last one with cross-directory renames; --keep
        keeps the images: DIR/cut.img is the flash right after the cut, DIR/final.img the end;
        `micropython -X heapsize=4M tests/flash/flashsim.py boot DIR/cut.img noexec` lists it)

Failure kinds (a point can have several): unbootable (mount fails, an updater file is missing,
unreadable or neither old nor new, or `import main; main.main()` raises), mixed (after the
recovery boot the application files are neither exactly the old nor exactly the new set, or
version.json disagrees with them), stuck (the boot with the server back does not reach the
target), stray (files other than the updater's own state files are left at the end).
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

from ghserver import GitHubServer  # noqa: E402
from gitrepo import blob_sha, branch, commit, git, make_repo, tag  # noqa: E402
try:  # the delta e2e repository's shape (tests/test_delta_e2e.py)
    from conftest import DELTA_GEN, DELTA_V1, DELTA_V2, DELTA_V3  # noqa: E402
except ImportError:
    from test_delta_e2e import DELTA_GEN, V1 as DELTA_V1, V2 as DELTA_V2, V3 as DELTA_V3  # noqa: E402

FLASHSIM = HERE / "flashsim.py"
MICROPYTHON = Path(sys.executable).parent / "micropython"
NATMOD = ROOT / "build" / "x64" / "ota_native.mpy"
PY = ROOT / "python"
BS, NBLOCKS = 4096, 212
HOST_TOOLS = {"delta_apply.py", "delta_gen.py", "integration_test.py", "manifest_gen.py"}
STATE_OK = {"version.json", "ota_error.json", "ota_state.json"}  # may stay at the end
MODES = "abc"
RECOVERY_CUTS = 20  # cuts during the recovery boot: each of its first operations


def device_code(src=PY):
    """The updater's files as deployed: main.py, ota.py, the ota_*.py modules (from src, by
    default python/), ota_native.mpy."""
    files = {}
    for p in sorted(Path(src).iterdir()):
        if p.suffix == ".py" and p.name not in HOST_TOOLS and (p.name in ("ota.py", "main.py")
                                                                or p.name.startswith("ota_")):
            files[p.name] = p.read_bytes()
    files["ota_native.mpy"] = NATMOD.read_bytes()
    return files


def manifest(files, version, deletes=()):
    m = {"format": 1, "version": version, "deletes": list(deletes),
         "files": [{"path": p, "size": len(d), "sha1": blob_sha(d), "sha256": hashlib.sha256(d).hexdigest()}
                   for p, d in sorted(files.items())]}
    return json.dumps(m).encode()


# ---------------------------------------------------------------- the device
class Boot(dict):
    """One boot of the simulated board (a FLASH_RESULT dict), plus cut/out."""


def mp(*args, env=None, timeout=120):
    e = dict(os.environ, MICROPYPATH="")
    e.update(env or {})
    p = subprocess.run([str(MICROPYTHON), "-X", "heapsize=4M", str(FLASHSIM), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=e, cwd="/")
    b = Boot()
    b.out = p.stdout + p.stderr
    b.cut = None
    for line in p.stdout.splitlines():
        if line.startswith("FLASH_RESULT "):
            b.update(json.loads(line[13:]))
        elif line.startswith("FLASH_PRE "):
            b.update(json.loads(line[10:]))
        elif line.startswith("FLASH_CUT "):
            b.cut = line[10:]
    if not b and b.cut is None:
        raise RuntimeError("flashsim %s: no result (rc %s): %s" % (args[0], p.returncode, b.out[-3000:]))
    return b


def boot(img, cut=0, mode="a", seed=0, run=True):
    env = {"FLASH_CUT": str(cut), "FLASH_MODE": mode, "FLASH_SEED": str(seed)} if cut else None
    return mp("boot", img, *(() if run else ("noexec",)), env=env)


def mkfs(img, files):
    with tempfile.TemporaryDirectory() as src:
        for n, d in files.items():
            Path(src, n).write_bytes(d)
        Path(img).write_bytes(b"\xff" * (BS * NBLOCKS))  # erased flash
        r = mp("mkfs", img, src)
    assert sorted(r["files"]) == sorted(files), r


# ---------------------------------------------------------------- scenarios
class Scenario:
    """old -> new application files ({path: bytes}); setup() puts the server at old,
    advance() moves it to new. code: the updater's files as flashed (self-update: ota.py's
    old and new versions are both allowed)."""

    key = name = ""
    cfg = {}

    def __init__(self, work, code):
        self.work = Path(work) / self.key
        self.work.mkdir(parents=True, exist_ok=True)
        self.code = dict(code)
        self.old, self.new = {}, {}
        self.commits = {}
        self.refs = {}  # the refs version.json names, when not a branch (releases)

    def start(self):
        self.repo_dir = self.make_repo()
        self.srv = GitHubServer(self.repo_dir).start()
        cfg = {"owner": "octo", "repo": "app", "api_base": self.srv.api_base, "raw_base": self.srv.raw_base,
               "backoff_sec": 0.05, "max_backoff_sec": 1, "retries": 1, "reset_mode": "none",
               "connect_timeout_sec": 2, "http_timeout_sec": 5}
        cfg.update(self.cfg)
        self.code["ota_config.json"] = json.dumps(cfg).encode()
        self.setup()
        return self

    def stop(self):
        self.srv.stop()

    def allowed_code(self, name):
        """Blob SHAs an updater file may have on flash at any time."""
        return {blob_sha(self.code[name])} | ({blob_sha(self.new[name])} if name in self.new else set())


def _app(v, boot_py):
    return dict(v, **{"boot.py": boot_py})


APP1 = _app(DELTA_V1, b"BOOT = 1\n")
APP2 = _app(DELTA_V3, b"BOOT = 2  # v2\n")  # 3 changed, lib/new.py added, lib/old.py deleted


class FirstInstall(Scenario):
    key, name = "first", "first install (tree)"

    def make_repo(self):
        r = make_repo(self.work / "repo")
        self.commits["new"] = commit(r, APP1, "v1")
        branch(r, "dev", "HEAD")
        self.cfg = {"channel": "developer", "branch": "dev"}
        return r

    def setup(self):
        self.old, self.new = {}, APP1

    def advance(self):
        pass


class Tree(Scenario):
    key, name = "tree", "v1->v2 change/add/delete (tree)"

    def make_repo(self):
        r = make_repo(self.work / "repo")
        self.commits["old"] = commit(r, APP1, "v1")
        tag(r, "v1.0.0")
        self.commits["new"] = commit(r, {p: APP2.get(p) for p in set(APP1) | set(APP2)
                                         if APP2.get(p) != APP1.get(p)}, "v2")
        tag(r, "v2.0.0")
        branch(r, "dev", self.commits["old"])
        self.cfg = {"channel": "developer", "branch": "dev"}
        return r

    def setup(self):
        self.old, self.new = APP1, APP2

    def advance(self):
        branch(self.repo_dir, "dev", self.commits["new"])


class Manifest(Tree):
    key, name = "manifest", "v1->v2 change/add/delete (manifest)"

    def make_repo(self):
        r = super().make_repo()
        self.cfg = {"channel": "stable"}
        self.refs = {"old": "v1.0.0", "new": "v2.0.0"}
        return r

    def setup(self):
        super().setup()
        self.srv.add_release("v1.0.0", assets={"manifest.json": manifest(APP1, "1.0.0")})

    def advance(self):
        self.srv.add_release("v2.0.0", assets={"manifest.json": manifest(APP2, "2.0.0", deletes=["lib/old.py"])})


class Delta(Scenario):
    key, name = "delta", "v1->v3 by delta (tree, .deltas/)"

    def make_repo(self):
        V1, V2, V3 = DELTA_V1, DELTA_V2, DELTA_V3
        r = make_repo(self.work / "repo")
        self.commits["old"] = commit(r, V1, "v1")
        tag(r, "v1")
        commit(r, {p: V2[p] for p in V2 if V2[p] != V1[p]}, "v2")
        tag(r, "v2")
        commit(r, {p: V3.get(p) for p in set(V2) | set(V3) if V3.get(p) != V2.get(p)}, "v3 files")
        p = subprocess.run([sys.executable, str(DELTA_GEN), "--old", "v1", "--old", "v2", "--new", "HEAD",
                            "--output", ".deltas/"], cwd=r, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        git(r, "add", ".deltas")
        self.commits["new"] = commit(r, {}, "deltas for v3")
        tag(r, "v3")
        branch(r, "dev", self.commits["old"])
        self.cfg = {"channel": "developer", "branch": "dev", "enable_delta_updates": True, "chunk": 2048}
        return r

    def setup(self):
        self.old, self.new = DELTA_V1, DELTA_V3

    def advance(self):
        branch(self.repo_dir, "dev", self.commits["new"])


class SelfUpdate(Scenario):
    key, name = "self", "self-update of ota.py (tree, self_update)"

    def make_repo(self):
        ota = self.code["ota.py"]
        self.s_old = {"app.py": b"print('app v1')\n", "README.md": b"# app\n", "ota.py": ota}
        self.s_new = dict(self.s_old, **{"README.md": b"# app, with a new updater\n",
                                         "ota.py": ota + b"\n# updater v2\n"})
        r = make_repo(self.work / "repo")
        self.commits["old"] = commit(r, self.s_old, "v1")
        self.commits["new"] = commit(r, {p: self.s_new[p] for p in self.s_new if self.s_new[p] != self.s_old[p]},
                                     "a new updater")
        branch(r, "dev", self.commits["old"])
        self.cfg = {"channel": "developer", "branch": "dev", "self_update": True}
        return r

    def setup(self):
        self.old, self.new = self.s_old, self.s_new

    def advance(self):
        branch(self.repo_dir, "dev", self.commits["new"])


SCENARIOS = {c.key: c for c in (FirstInstall, Tree, Manifest, Delta, SelfUpdate)}


# ---------------------------------------------------------------- checks
def _tree(listing):
    return {p: v for p, v in listing.items() if not p.startswith("text:")}


def check_boot(sc, b, when):
    """Problems of one boot: the check right after mount ('pre'), and the run itself."""
    bad = []
    if "mount" in b:
        return ["unbootable: littlefs does not mount %s (%s)" % (when, b["mount"])]
    pre = _tree(b["pre"])
    for p, v in pre.items():
        if v.startswith("error"):
            bad.append("unbootable: %s unreadable %s (%s)" % (p, when, v))
    for n in sc.code:
        if n not in pre:
            bad.append("unbootable: %s missing %s" % (n, when))
        elif not pre[n].startswith("error") and pre[n] not in sc.allowed_code(n):
            bad.append("unbootable: %s neither old nor new %s" % (n, when))
    if "boot.py" in pre and pre["boot.py"] not in {blob_sha(v["boot.py"]) for v in (sc.old, sc.new) if "boot.py" in v}:
        bad.append("unbootable: boot.py neither old nor new %s" % when)
    if b.get("ro_writes"):
        bad.append("check wrote to flash (%d)" % b["ro_writes"])
    if "exc" in b:
        last = b["exc"].strip().splitlines()[-1]
        bad.append("unbootable: import main; main.main() raised %s %s" % (last, when))
    if "boot_py" in b:
        bad.append("unbootable: boot.py raised %s %s" % (b["boot_py"].strip().splitlines()[-1], when))
    return bad


def app_state(sc, listing):
    """'old' | 'new' | a description of what is wrong, for the files after a boot."""
    tree = _tree(listing)
    files = {p: v for p, v in tree.items() if not p.endswith("/") and (p in sc.old or p in sc.new or (
        p not in sc.code and p not in STATE_OK and p != "ota_journal.json"
        and not p.startswith(".ota_stage/") and not p.startswith(".ota_backup/")))}
    for p in sc.code:  # self-update: ota.py is also an application file
        if p in files and p not in sc.old and p not in sc.new:
            del files[p]
    vt = listing.get("text:version.json")
    try:
        v = json.loads(vt) if vt is not None else None
    except ValueError:
        v = "unparsable"
    for which in ("old", "new"):
        want = {p: blob_sha(d) for p, d in getattr(sc, which).items()}
        if files == want:
            if which == "old" and not want:
                return "old" if v is None else "version.json present with no application files"
            # the commit when the record has one (a release taken without the API may record
            # only its tag: then the ref)
            if not isinstance(v, dict) or v.get("files") != want or (
                    v.get("commit") != sc.commits.get(which) if v.get("commit") is not None
                    else v.get("ref") != sc.refs.get(which)):
                return "version.json disagrees with the %s set (%s)" % (
                    which, v if not isinstance(v, dict) else "commit %s" % str(v.get("commit"))[:7])
            return which
    old = {p: blob_sha(d) for p, d in sc.old.items()}
    new = {p: blob_sha(d) for p, d in sc.new.items()}
    diff = []
    for p in sorted(set(files) | set(new) | set(old)):
        g = files.get(p)
        if g != new.get(p) and g != old.get(p):
            diff.append("%s %s" % (p, "missing" if g is None else "foreign" if p not in old and p not in new
                                   else "neither"))
    if not diff:
        def which(p):
            w = "old" if files.get(p) == old.get(p) else "new"
            return w + ("(absent)" if files.get(p) is None else "")

        diff = ["some files old, some new: %s" % ", ".join(
            "%s=%s" % (p, which(p)) for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p))]
    return "mixed: " + "; ".join(diff)[:300]


def strays(sc, listing):
    tree = _tree(listing)
    keep = set(sc.code) | set(sc.new) | STATE_OK
    dirs = set()
    for p in sc.new:
        k = p.find("/")
        while k > 0:
            dirs.add(p[:k + 1])
            k = p.find("/", k + 1)
    return sorted(p for p in tree if p not in keep and p not in dirs)


# ---------------------------------------------------------------- the campaign
class Runner:
    """The images and the points of one scenario. An update takes two boots: the one that
    installs (phase "update") and the next one, which confirms the release on trial and frees
    the backups (phase "confirm"); each phase's operations are cut in turn."""

    def __init__(self, sc, verbose=False, keep=None):
        self.sc = sc
        self.verbose = verbose
        self.keep = Path(keep) if keep else None
        self.base = sc.work / "base.img"
        self.updated = sc.work / "updated.img"
        self.img = sc.work / "point.img"
        self.seed = zlib.crc32(sc.key.encode())

    def settle(self, img, when, n=3):
        """Boots with the server up until one is up to date and clean; its Boot."""
        for _ in range(n):
            b = boot(img)
            assert not check_boot(self.sc, b, when), (check_boot(self.sc, b, when), b.out[-2000:])
            if b.get("main") is False and "ota_journal.json" not in b["post"]:
                return b
        raise AssertionError("%s: not settled after %d boots: %s" % (when, n, b.out[-2000:]))

    def prepare(self):
        sc = self.sc
        mkfs(self.base, sc.code)
        if sc.old:  # install the old version with the server up, then confirm it
            b = boot(self.base)
            assert not check_boot(sc, b, "at setup") and b.get("main") is True, b.out[-2000:]
            b = self.settle(self.base, "at setup")
            assert app_state(sc, b["post"]) == "old", (app_state(sc, b["post"]), b.out[-2000:])
        sc.advance()
        shutil.copy(self.base, self.updated)
        b = boot(self.updated)  # the probe: the update without a cut, counting operations
        assert not check_boot(sc, b, "in the probe") and b.get("main") is True, b.out[-2000:]
        assert app_state(sc, b["post"]) == "new", (app_state(sc, b["post"]), b.out[-2000:])
        self.probe = b
        shutil.copy(self.updated, self.img)
        c = boot(self.img)  # the next boot: confirms, frees the backups
        assert not check_boot(sc, c, "in the probe") and c.get("main") is False, c.out[-2000:]
        d = self.settle(self.img, "in the probe")
        assert app_state(sc, d["post"]) == "new" and not strays(sc, d["post"]), (
            app_state(sc, d["post"]), strays(sc, d["post"]))
        self.upto = d["ops"]
        self.phases = {"update": (self.base, b["ops"]), "confirm": (self.updated, c["ops"])}
        return self.phases

    def point(self, phase, n, mode, rec=None):
        """Cut at operation n (mode) of the phase's boot; rec = (k, mode2): cut again at
        operation k of the recovery boot. Returns (problems, info); (None, info) when the
        recovery boot has fewer than k operations."""
        sc = self.sc
        shutil.copy(self.phases[phase][0], self.img)
        b = boot(self.img, n, mode, self.seed)
        if not b.cut:
            return ["cut not reached: the boot took %s operations" % b.get("ops")], {}
        if self.keep:
            self.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.img, self.keep / "cut.img")
        bad, info = [], {"cut": b.cut, "hidden": []}
        sc.srv.stop()  # the server unreachable for the recovery boot(s)
        try:
            if rec:
                k, m2 = rec
                b2 = boot(self.img, k, m2, self.seed + 1)
                if not b2.cut:
                    return None, {"recovery_ops": b2.get("ops")}
                info["cut2"] = b2.cut
                info["hidden"] += b2.get("hidden") or []
                bad += check_boot(sc, b2, "after the cut")
            r = boot(self.img)
        finally:
            sc.srv.start()
        info["recovery_ops"] = r.get("ops")
        info["hidden"] += r.get("hidden") or []
        bad += check_boot(sc, r, "after the cut in the recovery boot" if rec else "after the cut")
        if "post" in r:
            st = app_state(sc, r["post"])
            info["state"] = st
            if st not in ("old", "new"):
                bad.append(st if st.startswith("mixed") else "mixed: " + st)
        if "mount" not in r:
            # the server is back: the target is reached; one more boot confirms and cleans up
            for i in range(2):
                f = boot(self.img)
                bad += check_boot(sc, f, "at the boot with the server back")
            if "post" in f:
                st = app_state(sc, f["post"])
                if st != "new":
                    bad.append("stuck: %s after two boots with the server back" % st)
                s = strays(sc, f["post"])
                if s:
                    bad.append("stray: %s" % ", ".join(s[:5]))
        if self.keep:
            shutil.copy(self.img, self.keep / "final.img")
        if bad and info["hidden"]:  # the likely cause: a pending littlefs move
            bad = [p + " [littlefs hid %s until its first write]" % ", ".join(info["hidden"]) for p in bad]
        return bad, info


def kind(problem):
    return problem.split(":")[0].split(" ")[0]


KINDS = ("mixed", "unbootable", "stuck", "stray")


class Tally:
    def __init__(self):
        self.n = 0
        self.kinds = {k: 0 for k in KINDS}
        self.other = 0
        self.hid = 0
        self.failed = 0
        self.states = {}
        self.examples = {}

    def add(self, label, bad, info):
        self.n += 1
        ks = {kind(p) for p in bad}
        self.failed += bool(ks)
        for k in ks:
            if k in self.kinds:
                self.kinds[k] += 1
            else:
                self.other += 1
        if info.get("hidden"):
            self.hid += 1
        st = info.get("state")
        if st in ("old", "new"):
            self.states[st] = self.states.get(st, 0) + 1
        seen = set()
        for p in bad:
            key = _shape(p)
            if key not in seen:  # once per point
                seen.add(key)
                self.examples.setdefault(key, []).append((label, p, bool(info.get("hidden"))))

    def line(self):
        s = ", ".join("%d %s" % (self.kinds[k], k) for k in KINDS)
        if self.other:
            s += ", %d other" % self.other
        return s + "; littlefs hid an entry after the cut at %d" % self.hid


def _shape(p):
    # a failure kind: the message without the specifics that vary from point to point
    import re

    p = re.sub(r" \[littlefs hid .*\]", "", p)
    p = re.sub(r" \(.*?\)", "", p)
    p = re.sub(r"[0-9a-f]{7,40}", "<sha>", p)
    return p.strip()


def points_for(total, spec, sample):
    if not total:
        return []
    if spec:
        return [int(x) for x in spec.split(",") if 0 < int(x) <= total]
    if sample:
        return sorted({max(1, min(total, round(total * (i + 1) / (sample + 1)))) for i in range(sample)})
    return list(range(1, total + 1))


def run_scenario(sc, args, out=print):
    r = Runner(sc, args.verbose, args.keep)
    t0 = time.time()
    phases = r.prepare()
    out("%s: %d operations in the update (%d programs, %d erases), %d in the next boot (confirm), "
        "%d up to date" % (sc.name, phases["update"][1], r.probe["progs"], r.probe["erases"], phases["confirm"][1],
                           r.upto))
    results = {"name": sc.name, "phases": {p: v[1] for p, v in phases.items()}, "modes": {}, "recovery": None}
    rec_candidates = []
    for mode in args.modes:
        t = Tally()
        for phase in args.phases:
            for n in points_for(phases[phase][1], args.points, args.sample):
                bad, info = r.point(phase, n, mode)
                label = "%s op %d mode %s" % (phase, n, mode)
                t.add(label, bad, info)
                if (info.get("recovery_ops") or 0) > 0 and mode == args.modes[0]:
                    rec_candidates.append((phase, n, info["recovery_ops"]))
                if args.verbose or (bad and args.show):
                    out("  %s: cut %s, after recovery: %s; %s" % (
                        label, info.get("cut"), info.get("state") if info.get("state") in ("old", "new") else "-",
                        "; ".join(bad) or "ok"))
        out("%s, mode %s: %s points, %s (after recovery: %d old, %d new)"
            % (sc.name, mode, "+".join(str(len(points_for(phases[p][1], args.points, args.sample)))
                                       for p in args.phases), t.line(), t.states.get("old", 0), t.states.get("new", 0)))
        results["modes"][mode] = t
    # power cut again during the recovery boot: its first RECOVERY_CUTS operations, sampled points
    if args.recovery and rec_candidates:
        # points whose recovery does the most (inside the swap), spread over the update
        busy = [c for c in rec_candidates if c[2] >= RECOVERY_CUTS // 2] or rec_candidates
        step = max(1, len(busy) // args.recovery)
        chosen = busy[::step][:args.recovery]
        t = Tally()
        for phase, n, ops in chosen:
            for k in range(1, min(RECOVERY_CUTS, ops) + 1):
                for m2 in args.rec_modes:
                    bad, info = r.point(phase, n, args.modes[0], (k, m2))
                    if bad is None:
                        continue
                    label = "%s op %d mode %s, then recovery op %d mode %s" % (phase, n, args.modes[0], k, m2)
                    t.add(label, bad, info)
                    if args.verbose or (bad and args.show):
                        out("  %s: cut %s, after recovery: %s; %s" % (
                            label, info.get("cut2"), info.get("state") if info.get("state") in ("old", "new") else "-",
                            "; ".join(bad) or "ok"))
        out("%s, cut again in the recovery boot: %d points (%s) x up to its first %d operations x modes %s = %d runs, %s"
            % (sc.name, len(chosen), ", ".join("%s op %d" % (p, n) for p, n, _ in chosen), RECOVERY_CUTS,
               args.rec_modes, t.n, t.line()))
        results["recovery"] = t
    all_ex = {}
    for t in list(results["modes"].values()) + ([results["recovery"]] if results["recovery"] else []):
        for k, v in t.examples.items():
            all_ex.setdefault(k, []).extend(v)
    results["examples"] = all_ex
    for k, v in sorted(all_ex.items()):
        hid = [x for x in v if x[2]]
        out("  failure kind: %s: %d points%s, e.g. %s" % (
            k, len(v), " (%d with a pending littlefs move: %s)" % (len(hid), hid[0][1].rsplit("[", 1)[1][:-1])
            if hid else "", "; ".join(x[0] for x in v[:4])))
    out("  (%.0f s)" % (time.time() - t0))
    return results


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="every operation of every scenario, 3 modes")
    ap.add_argument("--sample", type=int, default=0, help="N evenly spaced points per scenario and mode")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="only these (repeatable)")
    ap.add_argument("--points", help="comma-separated operation numbers")
    ap.add_argument("--modes", default=MODES)
    ap.add_argument("--phases", default="update,confirm", help="update, confirm (the boot after the update)")
    ap.add_argument("--recovery", type=int, default=None,
                    help="points (per scenario) also cut during their recovery boot (default: 4 with --all)")
    ap.add_argument("--rec-modes", default=MODES)
    ap.add_argument("--code", default=str(PY),
                    help="folder with the updater's files (ota.py, main.py, ota_*.py); default python/")
    ap.add_argument("--rev", help="take them from this git revision of python/ instead (e.g. HEAD)")
    ap.add_argument("--keep", help="keep the images of the last point in this folder")
    ap.add_argument("--show", action="store_true", help="print every failing point")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if not (args.all or args.sample or args.points):
        ap.error("give --all, --sample N or --points")
    args.phases = args.phases.split(",")
    if args.recovery is None:
        args.recovery = 4 if args.all else 0
    return args


def main(argv=None):
    args = parse(argv)
    assert MICROPYTHON.exists(), "%s missing: run `make venv`" % MICROPYTHON
    assert NATMOD.exists(), "%s missing: run `make natmod ARCH=x64`" % NATMOD
    failed = 0
    with tempfile.TemporaryDirectory(prefix="flashcut") as work:
        src = args.code
        if args.rev:
            src = Path(work) / "code"
            src.mkdir()
            names = subprocess.run(["git", "ls-tree", "--name-only", args.rev, "python/"], cwd=ROOT, check=True,
                                   capture_output=True, text=True).stdout.split()
            for n in names:
                src.joinpath(Path(n).name).write_bytes(subprocess.run(
                    ["git", "show", "%s:%s" % (args.rev, n)], cwd=ROOT, check=True, capture_output=True).stdout)
        code = device_code(src)
        print("updater files: %s (%s)" % (", ".join(sorted(code)), args.rev or src))
        for key in args.scenario or list(SCENARIOS):
            sc = SCENARIOS[key](work, code).start()
            try:
                res = run_scenario(sc, args)
            finally:
                sc.stop()
            failed += sum(t.failed for t in res["modes"].values())
            if res["recovery"]:
                failed += res["recovery"].failed
            sys.stdout.flush()
    print("power-cut campaign on littlefs: %s" % ("no failure" if not failed else "%d failing points" % failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
