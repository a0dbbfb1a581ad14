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
the shape of tests/test_delta_e2e.py); a self-update of ota.py (self_update: true); trial (a
failed trial and its rollback, class Trial / TrialRunner): v1 installed and confirmed, the server
moves to v2, whose application (app_main: app.py, run by ota_app.py from main.py; reset_mode hard
as on the board) raises at import; the cuts cover four boots, each from its own image: the one
that installs v2 ("update"), the first trial boot, whose application raises ("fail"), the boot
that puts v1 back, a swap in reverse ("rollback"), and the next check, which keeps v1 and skips
v2 ("skip"; it writes nothing at present, so it has no point). After the recovery boot the files
must be exactly v1 or exactly v2 with an agreeing version.json; the target is v1 with v2 in
ota_state.json's skip (reached within 6 boots with the server back), then one more check that
downloads nothing, then v3 (which works) installs and its first check confirms it. Its extra
failure kinds: reinstall (v2 installed again after its commit, or by the check after the
rollback), unskipped (v1 kept, but without v2 in the skip), unrecorded (no ota_error.json entry
for v2's rollback). Power is also cut during the recovery boot itself (each of its first 20
operations, sampled points).

    python tests/flash/campaign.py --all            every point (make powercut-flash)
    python tests/flash/campaign.py --sample 2       2 points per scenario and mode
    python tests/flash/campaign.py --scenario tree --points 17,18 --modes b -v
    python tests/flash/campaign.py --all --scenario trial          the trial scenario alone
    python tests/flash/campaign.py --scenario trial --phases rollback --points 60 --modes a -v
    python tests/flash/campaign.py --rev 112b5ad --scenario self --points 87 --modes a -v --keep DIR
        (the updater of a git revision, here the last one with cross-directory renames; --keep
        keeps the images: DIR/cut.img is the flash right after the cut, DIR/final.img the end;
        `micropython -X heapsize=4M tests/flash/flashsim.py boot DIR/cut.img noexec` lists it)

Failure kinds (a point can have several): unbootable (mount fails, an updater file is missing,
unreadable or neither old nor new, or `import main; main.main()` raises), mixed (after the
recovery boot the application files are neither exactly the old nor exactly the new set, or
version.json disagrees with them), stuck (the boot with the server back does not reach the
target), stray (files other than the updater's own state files are left at the end); trial also
reinstall, unskipped and unrecorded (above).
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
# the updater's own records half written by a cut (tmp + rename): never application files (a
# later save overwrites them); stray if still there at the end
STATE_TMP = {"ota_error.json.tmp", "ota_state.json.tmp"}
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


# trial: an application (app_main) whose import checks that lib/rel.py is its own release's
APP_GOOD = (b"import rel\n\nif rel.V != @:\n    raise RuntimeError('app v@ with lib/rel.py v%d' % rel.V)\n\n\n"
            b"def main():\n    print('app v@ runs')\n")
APP_BAD = b"import rel\n\nraise RuntimeError('v2 is broken: it raises at import')\n"


def _trial_app(v, base, app, **more):
    return dict(base, **{"app.py": app.replace(b"@", b"%d" % v), "lib/rel.py": b"V = %d\n" % v}, **more)


TRIAL_V1 = _trial_app(1, DELTA_V1, APP_GOOD)
# v1 -> v2: app.py, lib/rel.py, lib/util.py, data/cal.bin changed, lib/new.py added, lib/old.py deleted
TRIAL_V2 = _trial_app(2, DELTA_V3, APP_BAD)
TRIAL_V2_GOOD = _trial_app(2, DELTA_V3, APP_GOOD)  # the same release, working
TRIAL_V3 = _trial_app(3, DELTA_V3, APP_GOOD, **{"README.md": b"# app v3\n", "lib/new.py": b"NEW = 4\n"})


class Trial(Scenario):
    """v1 installed and confirmed; the server moves to v2, whose application (app_main) raises at
    import: its trial fails and the next boot puts v1 back (a swap in reverse), then the checks
    skip v2; v3, which works, installs. reset_mode "hard" as on the board: the boot that installs
    does not run the application (on the unix port the reset itself is a no-op, the next boot is
    the next process)."""

    key, name = "trial", "trial: v2 raises at import, rolled back to v1, v2 skipped, v3 installs"

    def make_repo(self):
        r = make_repo(self.work / "repo")
        self.commits["old"] = commit(r, TRIAL_V1, "v1")

        def moves(a, b):
            return {p: b.get(p) for p in set(a) | set(b) if b.get(p) != a.get(p)}

        self.commits["new"] = commit(r, moves(TRIAL_V1, TRIAL_V2), "v2: raises at import")
        self.commits["v3"] = commit(r, moves(TRIAL_V2, TRIAL_V3), "v3: works again")
        branch(r, "good", self.commits["old"], switch=True)
        self.commits["good"] = commit(r, moves(TRIAL_V1, TRIAL_V2_GOOD), "v2, working")
        branch(r, "main", self.commits["v3"], switch=True)  # dev moves: never checked out
        branch(r, "dev", self.commits["old"])
        self.cfg = {"channel": "developer", "branch": "dev", "app_main": "app", "reset_mode": "hard"}
        return r

    def setup(self):
        self.old, self.new = TRIAL_V1, TRIAL_V2

    def advance(self, to="new"):
        branch(self.repo_dir, "dev", self.commits[to])

    def view(self, old, new):
        """The same device seen as going from release old to new ("old", "new", "v3", "good"):
        what app_state() and strays() take."""
        files = {"old": TRIAL_V1, "new": TRIAL_V2, "v3": TRIAL_V3, "good": TRIAL_V2_GOOD}
        return _View(self, files[old], files[new], self.commits[old], self.commits[new])

    def skip(self, listing):
        """The skip record of ota_state.json, or None."""
        try:
            return json.loads(listing.get("text:ota_state.json") or "null")["skip"]
        except (ValueError, TypeError, KeyError):
            return None


class _View:
    def __init__(self, sc, old, new, c_old, c_new):
        self.code, self.refs, self.old, self.new = sc.code, {}, old, new
        self.commits = {"old": c_old, "new": c_new}
        self.allowed_code = sc.allowed_code


SCENARIOS = {c.key: c for c in (FirstInstall, Tree, Manifest, Delta, SelfUpdate, Trial)}


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
        p not in sc.code and p not in STATE_OK and p not in STATE_TMP and p != "ota_journal.json"
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

    PHASES = ("update", "confirm")
    KINDS = ()  # failure kinds of this runner besides KINDS

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

    def describe(self):
        ph = self.phases
        return ("%s: %d operations in the update (%d programs, %d erases), %d in the next boot (confirm), "
                "%d up to date" % (self.sc.name, ph["update"][1], self.probe["progs"], self.probe["erases"],
                                   ph["confirm"][1], self.upto))

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


class TrialRunner(Runner):
    """The trial scenario: four phases, each the boot of its own image (server at v2):
    "update" installs v2 (on trial, boots 0); "fail" counts the first trial boot, runs the
    application, which raises: the trial is marked failed; "rollback" puts v1 back (the swap in
    reverse), records it in ota_error.json and the skip in ota_state.json; "skip" is the next
    check, which must keep v1. The target: v1 with v2 skipped, then one more check that downloads
    nothing, then v3 (which works) installs and is confirmed."""

    PHASES = ("update", "fail", "rollback", "skip")
    KINDS = ("reinstall", "unskipped", "unrecorded")
    SETTLE = 6  # boots with the server back to reach the target (a cut before v2's commit: 3)

    def _v(self, listing):
        """The commit version.json names (None without one, "?" unreadable)."""
        try:
            return json.loads(listing.get("text:version.json") or "null")["commit"]
        except (ValueError, TypeError, KeyError):
            return None if listing.get("text:version.json") is None else "?"

    def at_target(self, b):
        """v1 in place, no trial, v2 skipped (the state a failed trial's rollback ends in)."""
        sc = self.sc
        post = b.get("post") or {}
        return (app_state(sc, post) == "old" and "ota_journal.json" not in post
                and sc.skip(post) == {"ref": "dev", "commit": sc.commits["new"]})

    def prepare(self):
        sc = self.sc
        c = sc.commits
        mkfs(self.base, sc.code)
        b = boot(self.base)  # v1, then confirmed by the next check (the application imported)
        assert not check_boot(sc, b, "at setup") and b.get("main") is True, b.out[-2000:]
        b = self.settle(self.base, "at setup")
        assert app_state(sc, b["post"]) == "old" and not strays(sc.view("new", "old"), b["post"]), b.out[-2000:]
        sc.advance()
        cur = sc.work / "probe.img"
        shutil.copy(self.base, cur)
        self.phases, boots = {"update": (self.base, 0)}, {}
        for phase, nxt in zip(self.PHASES, self.PHASES[1:] + (None,)):
            b = boots[phase] = boot(cur)
            assert not check_boot(sc, b, "in the probe (%s)" % phase), (check_boot(sc, b, phase), b.out[-3000:])
            self.phases[phase] = (self.phases[phase][0], b["ops"])
            if nxt:
                img = sc.work / ("%s.img" % nxt)
                shutil.copy(cur, img)
                self.phases[nxt] = (img, 0)
        self.probe = boots["update"]
        j = lambda b: json.loads(b["post"].get("text:ota_journal.json") or "null")  # noqa: E731
        u, f, r, k = (boots[p] for p in self.PHASES)
        assert u["main"] is True and app_state(sc, u["post"]) == "new" and j(u)["state"] == "trial", u.out[-2000:]
        assert app_state(sc, f["post"]) == "new" and "v2 is broken" in (j(f) or {}).get("failed", ""), f.out[-2000:]
        assert "failed on its trial boot" in f.out, f.out[-2000:]
        assert self.at_target(r) and r["main"] is False and "app v1 runs" in r.out, r.out[-2000:]
        assert self.at_target(k) and k["main"] is False and not strays(sc.view("new", "old"), k["post"]), k.out[-2000:]
        errs = json.loads(r["post"]["text:ota_error.json"])
        assert any(e["reason"].startswith("rolled back dev: ") and e.get("commit") == c["new"] for e in errs), errs
        self.upto = k["ops"]
        bad = self.target(cur, tried=True)
        assert not bad, bad
        return self.phases

    def describe(self):
        ph = self.phases
        return ("%s: %d operations in the update (%d programs, %d erases), %d in the failing trial boot, "
                "%d in the rollback boot, %d in the next check (skips v2)"
                % (self.sc.name, ph["update"][1], self.probe["progs"], self.probe["erases"], ph["fail"][1],
                   ph["rollback"][1], ph["skip"][1]))

    def target(self, img, tried):
        """Boots with the server back (at v2) until the target; then one more check, then v3.
        tried: v2 was committed before (so it must never be installed again). Problems."""
        sc = self.sc
        c = sc.commits
        bad = []
        for i in range(self.SETTLE):
            f = boot(img)
            bad += check_boot(sc, f, "at the boot with the server back")
            if "post" not in f:
                return bad
            if f.get("main") is True and self._v(f["pre"]) != c["new"] and self._v(f["post"]) == c["new"] and tried:
                bad.append("reinstall: v2 installed again after its trial had started (boot %d with the server "
                           "back)" % (i + 1))
            tried = tried or self._v(f["post"]) == c["new"]
            if self.at_target(f) and f.get("main") is False:
                break
        else:
            st = app_state(sc, f["post"])
            if st == "old" and "ota_journal.json" not in f["post"] and f.get("main") is False:
                # v1 kept, but v2 not recorded as skipped (whatever keeps the check from taking it)
                bad.append("unskipped: v1 kept without v2 in ota_state.json's skip (%s) after %d boots with the "
                           "server back" % (sc.skip(f["post"]), self.SETTLE))
            else:
                return bad + ["stuck: %s, journal %s, skip %s after %d boots with the server back" % (
                    st, "present" if "ota_journal.json" in f["post"] else "absent", sc.skip(f["post"]), self.SETTLE)]
        errs = f["post"].get("text:ota_error.json")
        try:
            errs = json.loads(errs or "[]")
        except ValueError:
            errs = []
        rolled = [str(e.get("reason", "")) for e in errs if isinstance(e, dict) and e.get("commit") == c["new"]
                  and str(e.get("reason", "")).startswith("rolled back")]
        if not [x for x in rolled if x.startswith("rolled back dev: ")]:
            bad.append("unrecorded: v2's rollback recorded only as an interrupted update, the trial's failure "
                       "lost (%s)" % rolled[-1] if rolled else "unrecorded: ota_error.json has no entry for v2's rollback")
        s = strays(sc.view("new", "old"), f["post"])
        if s:
            bad.append("stray: %s (on v1 after the rollback)" % ", ".join(s[:5]))
        # one more check with the server at v2: nothing downloaded, nothing written to the files
        sc.srv.clear_log()
        g = boot(img)
        bad += check_boot(sc, g, "at the check after the rollback")
        got = [q["path"] for q in sc.srv.requests if q["path"].startswith("/raw/")]
        if "post" in g and not (app_state(sc, g["post"]) == "old" and g.get("main") is False and not got):
            bad.append("reinstall: the check after the rollback took v2 again (%s, %d downloads)"
                       % (app_state(sc, g["post"]), len(got)))
        # the server moves to v3, which works: it installs, then its first check confirms it
        v3 = sc.view("old", "v3")
        sc.advance("v3")
        try:
            h = boot(img)
            bad += check_boot(sc, h, "at the update to v3")
            h2 = boot(img)
            bad += check_boot(sc, h2, "at the boot after v3")
        finally:
            sc.advance()
        if "post" in h2:
            if not (h.get("main") is True and app_state(v3, h2["post"]) == "new" and "app v3 runs" in h2.out
                    and "ota_journal.json" not in h2["post"]):
                bad.append("stuck: v3 not installed and confirmed (%s, %s)" % (
                    app_state(v3, h2["post"]), "on trial" if "ota_journal.json" in h2["post"] else "no journal"))
            s = strays(v3, h2["post"])
            if s:
                bad.append("stray: %s (at v3)" % ", ".join(s[:5]))
        return bad

    def point(self, phase, n, mode, rec=None):
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
        # v2 committed before (the later phases, or the image after the cut): never installed again
        tried = phase != "update" or any(self._v(r.get(k) or {}) == sc.commits["new"] for k in ("pre", "post"))
        if "post" in r:
            info["state"] = st = app_state(sc, r["post"])
            if st not in ("old", "new"):
                bad.append(st if st.startswith("mixed") else "mixed: " + st)
        if "mount" not in r:
            bad += self.target(self.img, tried)
        if self.keep:
            shutil.copy(self.img, self.keep / "final.img")
        if bad and info["hidden"]:
            bad = [p + " [littlefs hid %s until its first write]" % ", ".join(info["hidden"]) for p in bad]
        return bad, info


def runner(sc, verbose=False, keep=None):
    return (TrialRunner if isinstance(sc, Trial) else Runner)(sc, verbose, keep)


def kind(problem):
    return problem.split(":")[0].split(" ")[0]


KINDS = ("mixed", "unbootable", "stuck", "stray")


class Tally:
    def __init__(self, kinds=KINDS):
        self.n = 0
        self.kinds = {k: 0 for k in kinds}
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
        s = ", ".join("%d %s" % (n, k) for k, n in self.kinds.items())
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
    r = runner(sc, args.verbose, args.keep)
    t0 = time.time()
    phases = r.prepare()
    out(r.describe())
    results = {"name": sc.name, "phases": {p: v[1] for p, v in phases.items()}, "modes": {}, "recovery": None}
    rec_candidates = []
    kinds = KINDS + r.KINDS
    run_phases = [p for p in args.phases or r.PHASES if p in phases]
    for mode in args.modes:
        t = Tally(kinds)
        for phase in run_phases:
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
                                       for p in run_phases), t.line(), t.states.get("old", 0), t.states.get("new", 0)))
        results["modes"][mode] = t
    # power cut again during the recovery boot: its first RECOVERY_CUTS operations, sampled points
    if args.recovery and rec_candidates:
        # points whose recovery does the most (inside the swap), spread over the update
        busy = [c for c in rec_candidates if c[2] >= RECOVERY_CUTS // 2] or rec_candidates
        step = max(1, len(busy) // args.recovery)
        chosen = busy[::step][:args.recovery]
        t = Tally(kinds)
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
    ap.add_argument("--phases", help="comma-separated phases (default: all of the scenario's): update, confirm "
                    "(the boot after the update); trial: update, fail, rollback, skip")
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
    args.phases = args.phases.split(",") if args.phases else None
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
