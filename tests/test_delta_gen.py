"""delta_gen.py and the delta index, on real git repositories with three releases.

Needs the host build of ota_native (``make pyshim``); without it this module
fails to import on purpose: the delta path cannot be checked without it."""

import gzip
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


def test_listing_and_files(releases, tmp_path):
    out = tmp_path / "deltas"
    entries, files = _run(releases, out)
    idx = json.loads((out / "index.json").read_bytes())
    assert idx["format"] == 2 and idx["codec"] == "ops+deflate" and idx["name_hex"] == 10
    got = [(e["path"], e["base"], e["target"]) for e in idx["deltas"]]
    # util.py from both old releases; app.py only from v1 (unchanged v2 -> v3); not lib/private
    # (ignored), docs/ (not allowed), lib/new.py (no base); lib/tiny.py and data/blob.bin: a file
    # each, empty (no patch saves bytes there), so a device asking for it takes the full file
    assert got == sorted([
        ("app.py", blob_sha(APP1), blob_sha(APP2)),
        ("lib/util.py", blob_sha(UTIL1), blob_sha(UTIL3)),
        ("lib/util.py", blob_sha(UTIL2), blob_sha(UTIL3)),
    ])
    assert sorted((e["path"], e["base"]) for e in idx["full"]) == sorted([
        ("data/blob.bin", blob_sha(BLOB1)), ("data/blob.bin", blob_sha(BLOB2)),
        ("lib/tiny.py", blob_sha(b"A = 1\n"))])  # (unchanged v2 -> v3)
    for e in idx["deltas"] + idx["full"]:
        # the name a device derives from its installed blob SHA and the target's
        assert e["file"] == "%s-%s" % (e["base"][:10], e["target"][:10]) == delta_gen.patch_name(e["base"], e["target"])
        data = (out / e["file"]).read_bytes()
        assert e.get("size", 0) == len(data) and (len(data) > 0) == (e in idx["deltas"])
    for e in idx["deltas"]:
        data = (out / e["file"]).read_bytes()
        assert data[0] == 0x22 and e["wbits"] == 10  # header: version 2, window 2**10
        assert e["target_size"] == {blob_sha(UTIL3): len(UTIL3), blob_sha(APP2): len(APP2)}[e["target"]]
    assert set(os.listdir(out)) == {e["file"] for e in idx["deltas"] + idx["full"]} | {"index.json"}
    assert files == {n: (out / n).read_bytes() for n in os.listdir(out) if n != "index.json"}
    # one entry per line, so a person or a tool may read entries one at a time
    for line in (out / "index.json").read_bytes().decode().splitlines()[1:-1]:
        if line.startswith("{"):
            assert json.loads(line.rstrip(","))["file"] in files


def test_patches_reproduce_targets_with_ota_native(releases, tmp_path):
    out = tmp_path / "deltas"
    _run(releases, out)
    for base_files, expect in (
        ({"lib/util.py": UTIL1, "app.py": APP1}, {"lib/util.py": UTIL3, "app.py": APP2}),
        ({"lib/util.py": UTIL2, "app.py": APP2}, {"lib/util.py": UTIL3}),
        ({"lib/util.py": UTIL3 + b"local edit"}, {}),  # unknown base: no delta
        ({"lib/tiny.py": b"A = 1\n", "data/blob.bin": BLOB1}, {}),  # empty files: full downloads
    ):
        assert delta_apply.apply_index(str(out), base_files) == expect


def test_deterministic_output(releases, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(releases, a)
    _run(releases, b, jobs=1)  # one thread: the same bytes
    assert _read_dir(a) == _read_dir(b)
    first = _read_dir(a)
    (a / ("0" * 40 + "-" + "1" * 40 + ".bsd")).write_bytes(b"stale, format 1")
    (a / ("0" * 10 + "-" + "1" * 10)).write_bytes(b"stale")
    (a / "README").write_bytes(b"kept: not a patch file name")
    _run(releases, a)
    again = _read_dir(a)
    assert again.pop("README") == b"kept: not a patch file name"
    assert again == first


def test_kept_only_when_it_saves_bytes(releases, tmp_path):
    stats = {}
    entries, files = _run(releases, tmp_path / "d", stats=stats)
    kept = {(e["path"], e["base"], e["target"]) for e in entries if e["size"]}
    assert {k for k, s in stats.items() if s["kept"]} == kept
    for e in entries:
        new = {blob_sha(x): x for x in (UTIL3, APP2, BLOB3, b"B = 22\n")}[e["target"]]
        full = delta_gen.full_cost(new)  # what the device downloads without the patch
        assert (e["size"] > 0) == (stats[(e["path"], e["base"], e["target"])]["patch"] < full)
        assert e["size"] < full and e["size"] < len(new) or e["size"] == 0
    assert not stats[("lib/tiny.py", blob_sha(b"A = 1\n"), blob_sha(b"B = 22\n"))]["kept"]
    assert not any(k[0] == "data/blob.bin" and s["kept"] for k, s in stats.items())
    # the full download is gzip -9 above 300 bytes (what ota.py asks for), else the plain file
    assert delta_gen.full_cost(b"x" * 300) == 300
    assert delta_gen.full_cost(UTIL3) == len(gzip.compress(UTIL3, 9, mtime=0))
    # a demanding threshold drops everything; zero keeps every patch that saves a byte
    assert not [e for e in _run(releases, tmp_path / "e", min_saving=0.99)[0] if e["size"]]
    assert len(_run(releases, tmp_path / "f", min_saving=0.0)[0]) == len(entries)


def test_name_collision_gives_full_downloads(tmp_path):
    """Two (base, target) pairs whose shortened names collide: neither gets a patch (a device
    checks the result by its SHA anyway; this keeps it from fetching the wrong patch)."""
    pairs = [("a.py", UTIL1, UTIL2), ("b.py", APP1, APP2)]
    real = delta_gen.patch_name
    delta_gen.patch_name = lambda b, t: "0" * 10 + "-" + "1" * 10
    try:
        warned = []
        entries, files = delta_gen.plan_deltas(pairs, warn=warned.append)
    finally:
        delta_gen.patch_name = real
    assert files == {"0" * 10 + "-" + "1" * 10: b""} and [e["size"] for e in entries] == [0, 0]
    assert len(warned) == 1 and "share this name" in warned[0]


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
    kept = [e for e in entries if e["size"]]
    assert kept and all(e["wbits"] == wbits for e in entries)
    for e in kept:
        data = files[e["file"]]
        assert data[0] == 0x20 | (wbits - 8) and delta_gen.parse_header(data[0]) == (2, wbits)
        d = zlib.decompressobj(-wbits)   # the stream fits the announced window
        d.decompress(data[1:])
        assert d.eof
    assert delta_apply.apply_index(str(out), {"lib/util.py": UTIL1})["lib/util.py"] == UTIL3


def test_corrupt_or_foreign_patch_is_rejected(releases, tmp_path):
    out = tmp_path / "c"
    entries, files = _run(releases, out)
    e = next(x for x in entries if x["base"] == blob_sha(UTIL1) and x["size"])
    patch = files[e["file"]]
    bad = bytearray(patch)
    bad[len(bad) // 2] ^= 0x55
    # a corrupt patch; the right patch on the wrong base (the file the device has differs)
    for p, old in ((bytes(bad), UTIL1), (patch, UTIL2)):
        with pytest.raises(delta_apply.DeltaError):
            delta_apply.apply_entry(e, p, old)
        # the pipeline itself refuses it too, or gives another digest
        try:
            new, digest = delta_apply.apply_file(p, old, e["target_size"])
        except ValueError:
            pass
        else:
            assert digest != e["target"]
    # an unknown header (version 3, window 2**16), an empty file ("no patch"), operations read
    # as a bsdiff patch (version 1), a patch no smaller than the file
    for p in (b"\x32" + patch[1:], b"\x28" + patch[1:], b"", b"\x12" + patch[1:]):
        with pytest.raises(delta_apply.DeltaError):
            delta_apply.apply_entry(e, p, UTIL1)
    with pytest.raises(delta_apply.DeltaError, match="no smaller"):
        delta_apply.apply_entry(dict(e, target_size=len(patch)), patch, UTIL1)


@pytest.mark.parametrize("change", [{"path": "../escape.py"}, {"path": "lib/a:b.py"}, {"file": "x/y"},
                                    {"base": "2" * 40}])
def test_apply_refuses_what_the_device_refuses(change):
    """delta_apply.py takes a listed pair only as the device would: its path by ota.check_path
    (so nothing is written outside --out), its file named from its two SHAs."""
    e = {"path": "lib/util.py", "base": "0" * 40, "target": "1" * 40, "file": "0" * 10 + "-" + "1" * 10,
         "target_size": 1, "size": 1, "wbits": 10}
    index = {"format": 2, "deltas": [e], "full": []}
    assert delta_apply.parse_index(json.dumps(index)) == [e]
    index["deltas"] = [dict(e, **change)]
    with pytest.raises(delta_apply.DeltaError):
        delta_apply.parse_index(json.dumps(index))
    with pytest.raises(delta_apply.DeltaError):  # format 1 (the index devices downloaded)
        delta_apply.parse_index(json.dumps({"format": 1, "codec": "bsdiff+deflate", "deltas": []}))


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
    assert [e["path"] for e in idx["full"]] == ["lib/tiny.py"]
    assert "2 delta(s), 3 file(s)" in r.stdout
    r = subprocess.run([sys.executable, str(PY / "delta_gen.py"), "--old", "nope", "--new", "v1.2.0",
                        "--output", str(out)], cwd=releases, capture_output=True, text=True)
    assert r.returncode != 0 and "nope" in r.stderr


def _ops_file(ops, wbits=10):
    return delta_gen.header(wbits) + delta_gen.deflate_raw(ops, wbits)


def test_operations_rebuild_the_target():
    """Version 2: copies of the old file and literals, as encode_ops writes them and the
    device's ota_delta.Patch reads them, whatever the copies (none, at the start, backwards)."""
    for old, new in ((UTIL1, UTIL3), (APP1, APP2), (b"zz" + UTIL1, UTIL1), (BLOB1, BLOB2), (UTIL1, b"x"),
                     (UTIL2, UTIL2[5000:6000] + UTIL2[:3000])):
        patch = ota_native.make_patch(old, new)
        for m in delta_gen.MIN_COPIES:
            cps = delta_gen.copies(patch, m)
            assert all(old[o:o + n] == new[s:s + n] and n >= m for s, o, n in cps)
            data = _ops_file(delta_gen.encode_ops(cps, new))
            assert delta_apply.apply_file(data, old, len(new)) == (new, blob_sha(new))
    # copies backwards in the old file (negative offsets), by hand
    ops = delta_gen.encode_ops([(0, 100, 50), (50, 0, 50), (120, 60, 10)], UTIL1[100:150] + UTIL1[:50] + b"x" * 20 +
                               UTIL1[60:70])
    assert delta_apply.apply_file(_ops_file(ops), UTIL1, 130)[0] == UTIL1[100:150] + UTIL1[:50] + b"x" * 20 + UTIL1[60:70]
    # make_delta: the header byte, then the stream; smaller than the bsdiff patch deflated
    data = delta_gen.make_delta(UTIL1, UTIL3, 10)
    assert data[0] == 0x22 and delta_apply.apply_file(data, UTIL1, len(UTIL3))[0] == UTIL3
    assert len(data) < len(delta_gen.deflate_raw(ota_native.make_patch(UTIL1, UTIL3), 10))


@pytest.mark.parametrize("ops,size,why", [
    (b"\x05\x00\x00abc", 5, "truncated literal"),
    (b"\x00\x00\x00", 4, "an operation of no bytes"),
    (b"\x00\x04\x01", 4, "a copy before the old file's start"),
    (b"\x00\x04\xfe\x7f", 4, "a copy past the old file's end"),
    (b"\x03\x00\x00abc\x00", 3, "data after the end"),
    (b"\x03\x00\x00abc", 2, "more bytes than the target"),
    (b"\x03\x00\x00abc", 4, "fewer bytes than the target"),
    (b"\x80\x80\x80\x80\x80\x80\x01", 4, "an endless varint"),
])
def test_operations_refuse_corrupt_streams(ops, size, why):
    with pytest.raises(ValueError):
        delta_apply.apply_file(_ops_file(ops), b"0123456789", size)


def test_version_1_bsdiff_patches_still_apply():
    """A version 1 file (a bsdiff crate patch, raw deflate) goes through ota_native.DeltaReader."""
    data = delta_gen.header(10, 1) + delta_gen.deflate_raw(ota_native.make_patch(UTIL1, UTIL3), 10)
    assert data[0] == 0x12 and delta_apply.apply_file(data, UTIL1, len(UTIL3)) == (UTIL3, blob_sha(UTIL3))
    assert delta_gen.apply_digest(data, UTIL1, len(UTIL3)) == blob_sha(UTIL3)
