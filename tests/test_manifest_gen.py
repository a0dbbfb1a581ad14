"""Tests of python/manifest_gen.py (the host tool that writes a release's manifest.json)."""

import hashlib
import json
import subprocess
import sys

import pytest

import manifest_gen
import ota  # the device's rules, which the tool must follow
from conftest import PY, ROOT
from gitrepo import blob_sha, commit, make_repo

TOOL = PY / "manifest_gen.py"


def run(args, cwd):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


@pytest.fixture
def app(tmp_path):
    files = {"boot.py": b"# boot\n", "main.py": b"import app\n", "lib/util.py": b"X = 1\n",
             "lib/sub/deep.py": b"", "data/blob.bin": bytes(range(256)) * 3}
    for p, d in files.items():
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(d)
    return tmp_path, files


def test_documented_usage(app):
    d, files = app
    r = run(["--version", "v1.0.0", "boot.py", "main.py", "lib/util.py"], d)
    assert r.returncode == 0, r.stderr
    assert "wrote manifest.json: v1.0.0, 3 files" in r.stdout
    m = json.loads((d / "manifest.json").read_text())
    assert m["version"] == "v1.0.0" and m["deletes"] == [] and "post_update" not in m
    assert [e["path"] for e in m["files"]] == ["boot.py", "lib/util.py", "main.py"]
    for e in m["files"]:
        data = files[e["path"]]
        assert e["size"] == len(data)
        assert e["sha1"] == blob_sha(data)
        assert e["sha256"] == hashlib.sha256(data).hexdigest()


def test_sha1_is_git_blob_sha(tmp_path):
    repo = make_repo(tmp_path / "r")
    data = b"line\r\n\x00binary\xff" * 100
    commit(repo, {"f.bin": data}, "c")
    out = subprocess.run(["git", "rev-parse", "HEAD:f.bin"], cwd=repo, capture_output=True, text=True)
    assert manifest_gen.blob_sha1(data) == out.stdout.strip()
    assert manifest_gen.blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_directories_root_deletes_hook(app):
    d, files = app
    (d / "lib" / "__pycache__").mkdir()
    (d / "lib" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"x")
    (d / "ota_config.json").write_text("{}")          # a config template in the folder: skipped
    r = run(["--version", "v2", "--root", d, "--out", d / "out" / "m.json", "--delete", "lib/old.py",
             "--delete", "gone.txt", "--post-update", "lib/util.py", d], d.parent)
    assert r.returncode == 2 and "No such file" in r.stderr and "Traceback" not in r.stderr   # no out/ yet
    (d / "out").mkdir()
    r = run(["--version", "v2", "--root", d, "--out", d / "out" / "m.json", "--delete", "lib/old.py",
             "--delete", "gone.txt", "--post-update", "lib/util.py", d], d.parent)
    assert r.returncode == 0, r.stderr
    assert "skipping ota_config.json" in r.stderr
    m = json.loads((d / "out" / "m.json").read_text())
    assert [e["path"] for e in m["files"]] == sorted(files)          # no .pyc, no config, no output
    assert m["deletes"] == ["gone.txt", "lib/old.py"]
    assert m["post_update"] == "lib/util.py"
    r = run(["--version", "v2", "--post-update", "app.migrate", "--out", "-", "lib"], d)
    assert r.returncode == 0 and json.loads(r.stdout)["post_update"] == "app.migrate"
    assert [e["path"] for e in json.loads(r.stdout)["files"]] == ["lib/sub/deep.py", "lib/util.py"]


def test_deterministic(app):
    d, _ = app
    a = run(["--version", "v1", "--out", "-", "."], d).stdout
    b = run(["--version", "v1", "--out", "-", "lib", "data", "boot.py", "main.py"], d).stdout
    assert a == b and a.endswith("\n")


@pytest.mark.parametrize("bad", ["../x.py", "/etc/passwd", "a//b.py", "a/../b.py", "./a.py", "a/",
                                 "", "C:/x.py", "a\\b.py", "lib/a:b.py", "a\0b.py"])
def test_refuses_what_the_device_refuses(bad):
    """The device's own rule (ota.check_path), as a file, a delete and a post_update hook."""
    with pytest.raises(ota.OTAError):
        ota.check_path(bad)
    cases = [({bad: b""}, [], None), ({"ok.py": b""}, [bad], None)]
    if bad:  # an empty post_update is no hook
        cases.append(({"ok.py": b""}, [], bad))
    for files, deletes, post in cases:
        with pytest.raises(manifest_gen.ManifestError, match="refused by the device"):
            manifest_gen.build_manifest("v1", files, deletes, post)


def test_same_selection_as_the_device():
    """A path is in a manifest exactly when a device (self_update: it may take the updater
    too) would take it: ota.wanted, not a copy of its rules."""
    cfg = ota.check_config({"owner": "o", "repo": "r", "self_update": True})
    paths = ["app.py", "lib/util.py", "ota.py", "main.py", "version.json", "ota_error.json",
             "ota_journal.json", "ota_state.json", "ota_config.json", "ota_config.toml", "version.json.tmp",
             ".ota_stage/x.py", ".ota_backup", ".deltas/index.json", ".deltasx/a.py", "lib/version.json"]
    for p in paths:
        try:
            manifest_gen.build_manifest("v1", {p: b"x"})
            taken = True
        except manifest_gen.ManifestError as e:
            assert "own state" in str(e)
            taken = False
        assert taken == ota.wanted(cfg, p), p


def test_cli_refuses_a_path_the_device_refuses(app):
    d, _ = app
    (d / "lib" / "a:b.py").write_bytes(b"X = 1\n")
    for args in (["lib/a:b.py"], ["lib"], ["."]):
        r = run(["--version", "v1", *args], d)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "'lib/a:b.py' is refused by the device" in r.stderr and "':'" in r.stderr, r.stderr
        assert not (d / "manifest.json").exists()


@pytest.mark.parametrize("files,deletes,post", [
    ({"../evil.py": b""}, [], None),
    ({"ok.py": b""}, ["../../boot.py"], None),
    ({"ok.py": b""}, ["/abs"], None),
    ({"ok.py": b""}, [], "../hook.py"),
    ({"ok.py": b""}, ["ok.py"], None),                 # both a file and a delete
    ({"version.json": b"{}"}, [], None),               # the device's own state
    ({"ok.py": b""}, ["ota_config.json"], None),
    ({".ota_stage/x.py": b""}, [], None),
])
def test_build_manifest_rejects(files, deletes, post):
    with pytest.raises(manifest_gen.ManifestError):
        manifest_gen.build_manifest("v1", files, deletes, post)


def test_cli_errors(app, tmp_path):
    d, _ = app
    assert run(["--version", "v1", "missing.py"], d).returncode == 2
    r = run(["--version", "v1", "ota_config.json"], d)
    assert r.returncode == 2                           # no such file
    (d / "version.json").write_text("{}")
    r = run(["--version", "v1", "version.json"], d)
    assert r.returncode == 2 and "own state" in r.stderr
    r = run(["--version", "v1", tmp_path.parent], d)   # outside the root
    assert r.returncode == 2 and "outside the root" in r.stderr
    r = run(["--version", "v1", "--delete", "../x", "boot.py"], d)
    assert r.returncode == 2 and "delete '../x' is refused by the device" in r.stderr and "'..'" in r.stderr
    assert not (d / "manifest.json").exists()
    assert run(["boot.py"], d).returncode == 2         # --version is required


def test_example_manifest_is_current():
    """manifests/example-manifest.json is real generator output and verifies against its files."""
    ex = json.loads((ROOT / "manifests" / "example-manifest.json").read_text())
    assert ex["version"] and ex["files"]
    assert [e["path"] for e in ex["files"]] == sorted(e["path"] for e in ex["files"])
    for e in ex["files"]:
        ota.check_path(e["path"])
        assert set(e) == {"path", "size", "sha1", "sha256"}
        assert len(e["sha1"]) == 40 and len(e["sha256"]) == 64
    assert ex["deletes"] == ["lib/old.py"]
    # it is the manifest of the demo's v1.1.0 (tests/demo.py), byte for byte
    import demo
    text = (ROOT / "manifests" / "example-manifest.json").read_text()
    assert text == manifest_gen.dumps(demo.example_manifest())
    assert {e["path"]: e["sha1"] for e in ex["files"]} == {p: blob_sha(d) for p, d in demo.APP_V2.items()}
