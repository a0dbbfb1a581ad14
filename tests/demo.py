"""`make demo`: a device installs release v1.0.0 of an application, then updates to v1.1.0.

What it does, all on this machine (no network, nothing outside a temporary folder):
  1. builds a sample application repository with git, two tagged releases
     (v1.1.0: app.py changed, lib/old.py removed, lib/new.py added), and the
     manifest.json of each release with python/manifest_gen.py;
  2. serves it with the GitHub-compatible test server (tests/ghserver.py);
  3. makes a device folder holding what a user copies to a board:
     ota.py, ota_native.mpy (build/x64), main.py and ota_config.json;
  4. runs the real MicroPython unix interpreter in that folder,
     `import main; main.main()`, once per step: install v1.0.0, update to
     v1.1.0 once it is released, and check again (already up to date);
  5. prints the device's files, version.json and the HTTP requests and bytes
     of every step, and exits non-zero if the device does not end with exactly
     the files of v1.1.0.

Options: --keep (keep the temporary folder), --heap 128k (MicroPython heap),
--debug (device debug log), --no-native (run without ota_native.mpy).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "python"))
from ghserver import GitHubServer  # noqa: E402
from gitrepo import blob_sha, commit, make_repo, tag  # noqa: E402

MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
NATMOD = ROOT / "build" / "x64" / "ota_native.mpy"
DEVICE_FILES = ("ota.py", "main.py", "ota_delta.py")  # from python/ (ota_delta: enable_delta_updates)
UPDATER = {"ota.py", "main.py", "ota_delta.py", "ota.mpy", "main.mpy", "ota_delta.mpy", "ota_native.mpy",
           "ota_config.json"}

# The sample application. Its entry module is app.py: main.py belongs to the updater.
APP_V1 = {
    "app.py": b'''"""Sample application updated over the air."""
from lib import util

VERSION = "1.0.0"


def run():
    print("app", VERSION, util.greet("world"))
''',
    "lib/__init__.py": b"",
    "lib/util.py": b'''def greet(name):
    return "hello, " + name


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x
''',
    "lib/old.py": b'''# Removed in v1.1.0: the device must delete it.
LEGACY = True
''',
    "data/readings.csv": b"t,temp\n" + b"".join(b"%d,%d.%d\n" % (i, 20 + i % 5, i % 10) for i in range(200)),
}
APP_V2 = dict(APP_V1)
APP_V2["app.py"] = APP_V1["app.py"].replace(b'VERSION = "1.0.0"', b'VERSION = "1.1.0"').replace(
    b"from lib import util", b"from lib import util, new").replace(
    b'util.greet("world"))', b'util.greet("world"), new.feature())')
del APP_V2["lib/old.py"]
APP_V2["lib/new.py"] = b'''def feature():
    return "new feature"
'''
DELETES_V2 = ["lib/old.py"]
# v1.2.0: small edits to existing files, shipped as deltas (.deltas/ made by delta_gen.py).
APP_V3 = dict(APP_V2)
APP_V3["app.py"] = APP_V2["app.py"].replace(b'VERSION = "1.1.0"', b'VERSION = "1.2.0"')
APP_V3["lib/util.py"] = APP_V2["lib/util.py"] + b'''

def mean(xs):
    return sum(xs) / len(xs) if xs else 0
'''
APP_V3["data/readings.csv"] = APP_V2["data/readings.csv"].replace(b"17,22.7", b"17,22.9") + b"".join(
    b"%d,%d.%d\n" % (i, 20 + i % 5, i % 10) for i in range(200, 230))


def example_manifest():
    """The manifest of the demo's v1.1.0 (manifests/example-manifest.json is this)."""
    import manifest_gen
    return manifest_gen.build_manifest("v1.1.0", APP_V2, DELETES_V2)


def device_sources(src, only=None):
    """The updater files to copy from ``src``: DEVICE_FILES, .mpy preferred over .py."""
    out = []
    for f in DEVICE_FILES if only is None else (only,):
        stem = f[:-3]
        for cand in (src / (stem + ".mpy"), src / f):
            if cand.is_file():
                out.append(cand)
                break
    return out


def say(msg=""):
    print(msg, flush=True)


def step(title):
    say()
    say("=" * 72)
    say(title)
    say("=" * 72)


def run_tool(repo, tool, *args):
    """Run the host tool python/<tool>.py in the application repository, as a release author
    would, and show the command and its output."""
    say("$ python %s.py %s" % (tool, " ".join(args)))
    r = subprocess.run([sys.executable, str(ROOT / "python" / (tool + ".py")), *args], cwd=repo,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (tool, r.stderr))
    for line in r.stdout.strip().splitlines():
        say("  " + line)


def run_manifest_gen(repo, version, out, deletes=()):
    """manifest_gen.py for a release: its manifest.json (bytes)."""
    args = ["--version", version, "--out", os.path.relpath(out, repo)]
    for d in deletes:
        args += ["--delete", d]
    run_tool(repo, "manifest_gen", *args, "app.py", "lib", "data")
    return out.read_bytes()


def device_listing(dev):
    """{relative path: bytes} of every file on the device (stage/backup dirs included)."""
    files = {}
    for p in sorted(dev.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            files[p.relative_to(dev).as_posix()] = p.read_bytes()
    return files


def show_files(files, before=None):
    for path, data in files.items():
        mark = ""
        if before is not None:
            if path not in before:
                mark = "  (added)"
            elif before[path] != data:
                mark = "  (changed)"
        role = "  [updater]" if path in UPDATER else ""
        say("  %-24s %7d bytes  blob %s%s%s" % (path, len(data), blob_sha(data)[:10], role, mark))
    if before is not None:
        for path in before:
            if path not in files:
                say("  %-24s %7s          (deleted)" % (path, "-"))


def run_device(dev, heap, timeout=120):
    """`import main; main.main()` in the MicroPython unix port with cwd = the device folder."""
    cmd = [str(MICROPYTHON)]
    if heap:
        cmd += ["-X", "heapsize=" + heap]
    cmd += ["-c", "import main; main.main()"]
    env = dict(os.environ)
    env.pop("MICROPYPATH", None)       # default path: "" (the device folder) and .frozen
    say("$ cd device && micropython%s -c 'import main; main.main()'" % (" -X heapsize=" + heap if heap else ""))
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=dev, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t
    for line in (r.stdout + r.stderr).rstrip().splitlines():
        say("  | " + line)
    say("  (exit status %d, %.2f s)" % (r.returncode, elapsed))
    if "OTA failed" in r.stdout or "Traceback" in r.stdout + r.stderr:
        r.returncode = r.returncode or 1      # main.main() reports a failure and returns normally
    return r


def run_app(dev, expected, failures):
    """Run the installed application once, as the user's code would: `import app; app.run()`."""
    env = dict(os.environ)
    env.pop("MICROPYPATH", None)
    r = subprocess.run([str(MICROPYTHON), "-c", "import app; app.run()"], cwd=dev, env=env,
                       capture_output=True, text=True, timeout=60)
    say("$ cd device && micropython -c 'import app; app.run()'")
    for line in (r.stdout + r.stderr).rstrip().splitlines():
        say("  | " + line)
    expect(r.returncode == 0 and r.stdout.strip() == expected, "the application prints %r" % expected,
           failures)


def show_requests(srv, since):
    reqs = srv.requests[since:]
    total = 0
    for q in reqs:
        total += q["bytes"]
        say("  %-4s %-70s %3d %7d B" % (q["method"], q["path"][:70], q["status"], q["bytes"]))
    say("  -> %d HTTP requests, %d body bytes" % (len(reqs), total))
    return len(reqs), total


def expect(cond, what, failures):
    say("  [%s] %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--heap", default=None, help="MicroPython heap size, e.g. 128k or 48k")
    ap.add_argument("--debug", action="store_true", help="turn on the device's debug log")
    ap.add_argument("--no-native", action="store_true", help="do not copy ota_native.mpy")
    ap.add_argument("--device-src", default=str(ROOT / "python"),
                    help="folder with ota.py/main.py or their precompiled ota.mpy/main.mpy "
                         "(e.g. the output of `make device`); default python/")
    args = ap.parse_args(argv)

    src = Path(args.device_src)
    missing = [str(src / f) for f in DEVICE_FILES if not device_sources(src, f)]
    if not MICROPYTHON.exists():
        missing.append(str(MICROPYTHON) + " (run `make venv`)")
    if missing:
        say("demo: missing " + ", ".join(missing))
        return 2
    native = NATMOD.is_file() and not args.no_native
    if not native and not args.no_native:
        say("demo: %s not built (`make natmod ARCH=x64`); the device uses its hashlib fallback" % NATMOD)

    tmp = Path(tempfile.mkdtemp(prefix="ota-demo-"))
    failures = []
    patches = []
    try:
        # 1. the application repository and its releases -----------------------
        step("1. The application repository (git) and its releases")
        repo = make_repo(tmp / "app")
        commit(repo, APP_V1, "Release 1.0.0")
        tag(repo, "v1.0.0")
        m1 = run_manifest_gen(repo, "v1.0.0", tmp / "manifest-v1.0.0.json")
        commit(repo, {p: APP_V2.get(p) for p in set(APP_V1) | set(APP_V2)}, "Release 1.1.0")
        tag(repo, "v1.1.0")
        m2 = run_manifest_gen(repo, "v1.1.0", tmp / "manifest-v1.1.0.json", DELETES_V2)
        say("v1.0.0 -> v1.1.0: app.py changed, lib/old.py removed, lib/new.py added")

        srv = GitHubServer(repo, owner="octo", repo="demo-app")
        srv.start()
        try:
            srv.add_release("v1.0.0", {"manifest.json": m1})
            say("GitHub-compatible server for octo/demo-app at %s; published release v1.0.0" % srv.url)

            # 2. the device folder ----------------------------------------------
            step("2. The device: what `mpremote cp ota.py ota_delta.py ota_native.mpy main.py ota_config.json :` copies")
            dev = tmp / "device"
            dev.mkdir()
            for f in device_sources(src):
                shutil.copy(f, dev / f.name)
            if native:
                shutil.copy(NATMOD, dev / "ota_native.mpy")
            config = {
                "owner": "octo", "repo": "demo-app", "ssid": "demo-wifi", "password": "demo-password",
                "channel": "stable", "branch": "main",
                "api_base": srv.api_base, "raw_base": srv.raw_base,
                "reset_mode": "none", "debug": bool(args.debug), "retries": 3, "backoff_sec": 1,
            }
            (dev / "ota_config.json").write_text(json.dumps(config, indent=2) + "\n")
            say("ota_config.json:")
            for line in json.dumps(config, indent=2).splitlines():
                say("  " + line)
            say("device files:")
            show_files(device_listing(dev))

            results = []
            # 3. install v1.0.0 ---------------------------------------------------
            step("3. First boot: install the latest release (v1.0.0)")
            after, mark = update_step(dev, srv, args.heap, device_listing(dev), "v1.0.0", APP_V1,
                                      "app 1.0.0 hello, world", results, failures, "install v1.0.0")

            # 4. release v1.1.0 and update -------------------------------------
            step("4. v1.1.0 is released: the device updates (only what changed is downloaded)")
            srv.add_release("v1.1.0", {"manifest.json": m2})
            after, mark = update_step(dev, srv, args.heap, after, "v1.1.0", APP_V2,
                                      "app 1.1.0 hello, world new feature", results, failures)
            downloaded = sorted({q["path"].split("/", 5)[5] for q in srv.requests[mark:]
                                 if q["path"].startswith("/raw/") and q["path"].count("/") >= 5})
            expect(downloaded == ["app.py", "lib/new.py"],
                   "only the changed files were downloaded: %s" % ", ".join(downloaded), failures)

            # 5. up to date --------------------------------------------------------
            step("5. Next boot: already up to date")
            mark = len(srv.requests)
            r = run_device(dev, args.heap)
            expect(r.returncode == 0, "device run succeeded", failures)
            say("HTTP requests:")
            results.append(("up-to-date check",) + show_requests(srv, mark))
            now = device_listing(dev)
            on_trial = {p for p in after if p == "ota_journal.json" or p.startswith(".ota_backup/")}
            expect({p: d for p, d in now.items() if p not in ("ota_error.json",)} ==
                   {p: d for p, d in after.items() if p not in on_trial and p != "ota_error.json"},
                   "no file changed but the trial's: v1.1.0 confirmed by this check, its backups freed (%d files)"
                   % len(on_trial), failures)
            expect(not any(q["path"].startswith("/raw/") for q in srv.requests[mark:]),
                   "no application file downloaded", failures)

            # 6. v1.2.0 with deltas -----------------------------------------------
            step("6. v1.2.0 ships deltas; the device (now on a metered link) updates by patch")
            release_with_deltas(repo)
            m3 = run_manifest_gen(repo, "v1.2.0", tmp / "manifest-v1.2.0.json")
            srv.add_release("v1.2.0", {"manifest.json": m3})
            config["enable_delta_updates"] = True
            (dev / "ota_config.json").write_text(json.dumps(config, indent=2) + "\n")
            say('ota_config.json: "enable_delta_updates": true')
            after, mark = update_step(dev, srv, args.heap, after, "v1.2.0", APP_V3,
                                      "app 1.2.0 hello, world new feature", results, failures)
            paths = [q["path"] for q in srv.requests[mark:]]
            patches = [p for p in paths if "/.deltas/" in p]  # named from the two blob SHAs
            full = [p for p in paths if p.startswith("/raw/") and "/.deltas/" not in p]
            heap = args.heap and int(args.heap.rstrip("kK")) * (1024 if args.heap[-1] in "kK" else 1)
            if native and heap and heap < 64 * 1024:  # a delta needs ~15 KB free: none at this heap
                expect(not patches and len(full) == 3 and not [p for p in paths if "/.deltas/" in p],
                       "with -X heapsize=%s no delta fits (~15 KB each): the 3 changed files came in "
                       "full, without asking for a patch" % args.heap, failures)
            elif native:
                expect(len(patches) == 3 and not full,
                       "the 3 changed files came as patches (%d B of patches for %d B of files)" % (
                           sum(q["bytes"] for q in srv.requests[mark:] if "/.deltas/" in q["path"]),
                           sum(len(APP_V3[p]) for p in ("app.py", "lib/util.py", "data/readings.csv"))),
                       failures)
        finally:
            srv.stop()

        step("Summary")
        say("  %-18s %9s %12s" % ("step", "requests", "body bytes"))
        for name, n, b in results:
            say("  %-18s %9d %12d" % (name, n, b))
        say("  v1.1.0 changed files: app.py (%d B), lib/new.py (%d B); full release: %d B" % (
            len(APP_V2["app.py"]), len(APP_V2["lib/new.py"]), sum(map(len, APP_V2.values()))))
        say("  ota_native.mpy: %s" % ("used (%d B)" % NATMOD.stat().st_size if native else "not used"))
        if failures:
            say("\nDEMO FAILED: " + "; ".join(failures))
            return 1
        say("\nDemo passed: the device went from nothing to v1.0.0, v1.1.0 and (%s) v1.2.0."
            % ("by delta" if patches else "in full"))
        return 0
    finally:
        if args.keep:
            say("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def update_step(dev, srv, heap, before, ref, app, greeting, results, failures, label=None):
    """One boot that should install `ref`: run the device, show requests and files, check them.
    Returns (files after, index of the step's first request)."""
    mark = len(srv.requests)
    r = run_device(dev, heap)
    expect(r.returncode == 0, "device run succeeded", failures)
    say("HTTP requests:")
    results.append((label or "update to " + ref,) + show_requests(srv, mark))
    after = device_listing(dev)
    say("device files:")
    show_files(after, before)
    check_version(dev, ref, failures)
    check_app(after, app, failures)
    run_app(dev, greeting, failures)
    return after, mark


def release_with_deltas(repo):
    """Commit v1.2.0's files, make .deltas/ against both earlier releases with delta_gen.py,
    commit it into the same release and tag it, as a release manager would."""
    commit(repo, APP_V3, "Release 1.2.0")
    run_tool(repo, "delta_gen", "--old", "v1.0.0", "--old", "v1.1.0", "--new", "HEAD", "--output", ".deltas/")
    subprocess.run(["git", "add", ".deltas"], cwd=repo, check=True)
    commit(repo, {}, "Deltas for 1.2.0")
    tag(repo, "v1.2.0")


def check_version(dev, ref, failures):
    path = dev / "version.json"
    if not path.is_file():
        expect(False, "version.json exists", failures)
        return
    v = json.loads(path.read_text())
    say("version.json: " + json.dumps(v)[:300])
    expect(v.get("ref") == ref, "version.json ref is %s" % ref, failures)


def check_app(files, app, failures):
    app_files = {p: d for p, d in files.items() if p in app or p.startswith(("lib/", "data/")) or p == "app.py"}
    expect(app_files == app, "device holds exactly the %d application files of the release" % len(app),
           failures)


if __name__ == "__main__":
    sys.exit(main())
