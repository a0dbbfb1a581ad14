"""delta_gen.py and the delta index, on real git repositories with three releases.

Needs the host build of ota_native (``make pyshim``); without it this module
fails to import on purpose: the delta path cannot be checked without it."""

import json
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import ota_native  # required: built by `make pyshim`
import delta_apply
import delta_gen
import ota  # the device's selection, which delta_gen must follow
from conftest import PY, edit_lines, sample_text
from gitrepo import blob_sha, commit, make_repo, tag


UTIL1 = sample_text(1, 300)
UTIL2 = edit_lines(UTIL1, 2)
UTIL3 = edit_lines(UTIL2, 3)
APP1 = sample_text(10, 120)
APP2 = edit_lines(APP1, 11)
PRIV1 = sample_text(20, 100)
DOC1 = sample_text(30, 100)
BLOB1 = random.Random(40).randbytes(3000)
BLOB2 = random.Random(41).randbytes(3000)
BLOB3 = random.Random(42).randbytes(3000)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """This module's repository: three releases v1.0.0, v1.1.0, v1.2.0."""
    r = make_repo(tmp_path_factory.mktemp("app") / "repo")
    commit(r, {"lib/util.py": UTIL1, "app.py": APP1, "lib/tiny.py": b"A = 1\n",
               "lib/private/keys.py": PRIV1, "docs/notes.py": DOC1,
               "data/blob.bin": BLOB1}, "v1")
    tag(r, "v1.0.0")
    commit(r, {"lib/util.py": UTIL2, "app.py": APP2, "lib/tiny.py": b"B = 22\n",
               "lib/private/keys.py": edit_lines(PRIV1, 21), "docs/notes.py": edit_lines(DOC1, 31),
               "data/blob.bin": BLOB2}, "v2")
    tag(r, "v1.1.0")
    commit(r, {"lib/util.py": UTIL3, "lib/new.py": b"NEW = 1\n", "data/blob.bin": BLOB3,
               "lib/private/keys.py": edit_lines(edit_lines(PRIV1, 21), 22),
               # a committed delta folder from an earlier release is never diffed
               ".deltas/index.json": b'{"format":1,"codec":"bsdiff+deflate","deltas":[]}\n'},
           "v3")
    tag(r, "v1.2.0")
    return r


RULES = dict(allow=["lib/", "app.py", "data"], ignore=["lib/private"])


def _run(releases, out, **kw):
    args = dict(RULES)
    args.update(kw)
    return delta_gen.generate(str(releases), ["v1.0.0", "v1.1.0"], "v1.2.0", str(out), **args)


def _read_dir(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


def test_index_content(releases, tmp_path):
    out = tmp_path / "deltas"
    _run(releases, out)
    idx = json.loads((out / "index.json").read_bytes())
    assert idx["format"] == 1 and idx["codec"] == "bsdiff+deflate"
    got = [(e["path"], e["base"], e["target"]) for e in idx["deltas"]]
    # util.py from both old releases; app.py only from v1 (unchanged v2 -> v3);
    # not lib/private (ignored), docs/ (not allowed), lib/new.py (no base),
    # lib/tiny.py and data/blob.bin (a patch would not be smaller).
    assert got == sorted([
        ("app.py", blob_sha(APP1), blob_sha(APP2)),
        ("lib/util.py", blob_sha(UTIL1), blob_sha(UTIL3)),
        ("lib/util.py", blob_sha(UTIL2), blob_sha(UTIL3)),
    ])
    files = set()
    for e in idx["deltas"]:
        assert e["file"] == "%s-%s.bsd" % (e["base"], e["target"])
        data = (out / e["file"]).read_bytes()
        assert e["size"] == len(data) and e["sha1"] == blob_sha(data)
        assert e["wbits"] == 10
        assert e["target_size"] == {blob_sha(UTIL3): len(UTIL3), blob_sha(APP2): len(APP2)}[e["target"]]
        files.add(e["file"])
    assert set(os.listdir(out)) == files | {"index.json"}
    # one entry per line, so a device may parse entries one at a time
    lines = (out / "index.json").read_bytes().decode().splitlines()
    assert len(lines) == 2 + len(idx["deltas"])
    for line in lines[1:-1]:
        assert json.loads(line.rstrip(","))["file"] in files


def test_patches_reproduce_targets_with_ota_native(releases, tmp_path):
    out = tmp_path / "deltas"
    _run(releases, out)
    for base_files, expect in (
        ({"lib/util.py": UTIL1, "app.py": APP1}, {"lib/util.py": UTIL3, "app.py": APP2}),
        ({"lib/util.py": UTIL2, "app.py": APP2}, {"lib/util.py": UTIL3}),
        ({"lib/util.py": UTIL3 + b"local edit"}, {}),  # unknown base: no delta
    ):
        assert delta_apply.apply_index(str(out), base_files) == expect


def test_deterministic_output(releases, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(releases, a)
    _run(releases, b)
    assert _read_dir(a) == _read_dir(b)
    first = _read_dir(a)
    (a / ("0" * 40 + "-" + "1" * 40 + ".bsd")).write_bytes(b"stale")
    (a / "README").write_bytes(b"kept: not a patch file name")
    _run(releases, a)
    again = _read_dir(a)
    assert again.pop("README") == b"kept: not a patch file name"
    assert again == first


def test_kept_only_when_meaningfully_smaller(releases, tmp_path):
    stats = {}
    entries, files = _run(releases, tmp_path / "d", stats=stats)
    kept = {(e["path"], e["base"], e["target"]) for e in entries}
    assert {k for k, s in stats.items() if s["kept"]} == kept
    for k, s in stats.items():
        assert s["kept"] == (s["patch"] <= 0.8 * s["full_deflated"])
    assert not stats[("lib/tiny.py", blob_sha(b"A = 1\n"), blob_sha(b"B = 22\n"))]["kept"]
    assert not any(k[0] == "data/blob.bin" and s["kept"] for k, s in stats.items())
    for e in entries:
        full = len(delta_gen.deflate_raw(UTIL3 if e["path"] == "lib/util.py" else APP2, 10))
        assert e["size"] <= 0.8 * full
    # a demanding threshold drops everything; zero keeps patches of random data too
    assert _run(releases, tmp_path / "e", min_saving=0.99)[0] == []
    loose = _run(releases, tmp_path / "f", min_saving=0.0)[0]
    assert len(loose) >= len(entries)


def test_selection_is_the_devices():
    """--allow/--ignore select exactly what the device selects: ota.wanted on a device
    configuration (delta_gen.selection), not a copy of its rules."""
    def ok(path, allow, ignore):
        return ota.wanted(delta_gen.selection(allow, ignore), path)

    assert ok("lib/a.py", ["lib"], []) and ok("lib/a.py", ["lib/"], [])
    assert not ok("library.py", ["lib"], [])           # a prefix is a directory, not a string prefix
    assert ok("app.py", [], []) and ok("app.py", ["app.py"], [])
    assert not ok("lib/x/y.py", ["lib"], ["lib/x"])      # ignore wins
    assert not ok("lib/a.py", [], ["lib/a.py"])
    assert ok("lib/xy.py", ["lib"], ["lib/x"])
    # the device's own files, .deltas/ and (without self_update) the updater: never, whatever allow says
    cfg = delta_gen.selection(["ota.py", "main.py", ".deltas", "version.json", "ota_config.json"], [])
    never = ["ota.py", "main.py", ".deltas/index.json", "version.json", "ota_config.json", "ota_config.toml",
             ".ota_stage/0", ".ota_backup/lib/a.py", "ota_native.mpy"]
    assert [p for p in never if ota.wanted(cfg, p)] == []
    with pytest.raises(SystemExit, match="'allow' must be a list of strings"):
        delta_gen.selection(config=None, allow=[3])


def test_updater_files_and_unsafe_paths(tmp_path):
    """The updater's own files get deltas only for a self_update device; a changed path the
    device refuses (here lib/a:b.py: a device taking it fails the update) gets none, with a warning."""
    r = make_repo(tmp_path / "r")
    v1 = {"ota.py": UTIL1, "main.py": APP1, "lib/a:b.py": PRIV1, "app.py": DOC1}
    commit(r, v1, "v1")
    tag(r, "v1")
    commit(r, {p: edit_lines(d, 50 + i) for i, (p, d) in enumerate(sorted(v1.items()))}, "v2")
    warned = []
    entries, _ = delta_gen.generate(str(r), ["v1"], "HEAD", str(tmp_path / "a"), warn=warned.append)
    assert [e["path"] for e in entries] == ["app.py"]
    assert len(warned) == 1 and warned[0].startswith("skipping 'lib/a:b.py': the device refuses this path"), warned
    cfg = tmp_path / "ota_config.toml"
    cfg.write_text('owner = "o"\nrepo = "r"\nself_update = true\nignore = ["lib"]\n')
    p = subprocess.run([sys.executable, str(PY / "delta_gen.py"), "--old", "v1", "--new", "HEAD",
                        "--output", str(tmp_path / "b"), "--config", str(cfg)], cwd=r, capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    idx = json.loads((tmp_path / "b" / "index.json").read_bytes())
    assert [e["path"] for e in idx["deltas"]] == ["app.py", "main.py", "ota.py"]


@pytest.mark.parametrize("wbits", [9, 12])
def test_window_option(releases, tmp_path, wbits):
    out = tmp_path / "w"
    entries, files = _run(releases, out, wbits=wbits)
    assert entries and all(e["wbits"] == wbits for e in entries)
    for name, data in files.items():
        d = zlib.decompressobj(-wbits)   # the stream fits the announced window
        d.decompress(data)
        assert d.eof
    assert delta_apply.apply_index(str(out), {"lib/util.py": UTIL1})["lib/util.py"] == UTIL3


def test_corrupt_or_foreign_patch_is_rejected(releases, tmp_path):
    out = tmp_path / "c"
    entries, files = _run(releases, out)
    e = next(x for x in entries if x["base"] == blob_sha(UTIL1))
    patch = files[e["file"]]
    bad = bytearray(patch)
    bad[len(bad) // 2] ^= 0x55
    # a corrupt patch; the right patch on the wrong base (the file the device has differs)
    for p, old in ((bytes(bad), UTIL1), (patch, UTIL2)):
        with pytest.raises(delta_apply.DeltaError):
            delta_apply.apply_entry(e, p, old)
        # the pipeline itself (without the index's patch SHA1) refuses it too
        try:
            new, digest = delta_apply.apply_patch(p, old, e["target_size"], 10)
        except ValueError:
            pass
        else:
            assert digest != e["target"]


@pytest.mark.parametrize("change", [{"path": "../escape.py"}, {"path": "lib/a:b.py"}, {"wbits": 8},
                                    {"file": "x/y.bsd"}])
def test_apply_refuses_what_the_device_refuses(change):
    """delta_apply.py takes an index entry only as the device would: its path by ota.check_path
    (so nothing is written outside --out), a window of 9..15 bits, a plain file name."""
    e = {"path": "lib/util.py", "base": "0" * 40, "target": "1" * 40, "file": "%s-%s.bsd" % ("0" * 40, "1" * 40),
         "target_size": 1, "size": 1, "sha1": "2" * 40, "wbits": 10}
    index = {"format": 1, "codec": "bsdiff+deflate", "deltas": [e]}
    assert delta_apply.parse_index(json.dumps(index)) == [e]
    index["deltas"] = [dict(e, **change)]
    with pytest.raises(delta_apply.DeltaError):
        delta_apply.parse_index(json.dumps(index))


def test_cli_in_repo_with_config(releases, tmp_path):
    cfg = tmp_path / "ota_config.json"
    cfg.write_text(json.dumps({"owner": "o", "repo": "r", "allow": ["lib"], "ignore": ["lib/private/"]}))
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, str(PY / "delta_gen.py"),
                        "--old", "v1.0.0", "--old", "v1.1.0", "--new", "v1.2.0",
                        "--output", str(out), "--config", str(cfg)],
                       cwd=releases, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    idx = json.loads((out / "index.json").read_bytes())
    assert sorted(e["path"] for e in idx["deltas"]) == ["lib/util.py", "lib/util.py"]
    assert "2 delta(s)" in r.stdout


@pytest.mark.parametrize("threshold", [8, 24, 64])
def test_merged_patch_is_equivalent_and_smaller(threshold):
    patch = ota_native.make_patch(UTIL1, UTIL3)
    merged = delta_gen.merge_short_matches(patch, UTIL1, threshold)
    assert len(delta_gen.parse_patch(merged)) <= len(delta_gen.parse_patch(patch))
    new, digest = delta_apply.apply_patch(delta_gen.deflate_raw(merged, 10), UTIL1, len(UTIL3), 10)
    assert new == UTIL3 and digest == blob_sha(UTIL3)
    # make_delta keeps the smallest variant, never worse than the crate's patch
    assert len(delta_gen.make_delta(UTIL1, UTIL3, 10)) <= len(delta_gen.deflate_raw(patch, 10))
