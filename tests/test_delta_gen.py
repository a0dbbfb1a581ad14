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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

import ota_native  # noqa: E402  (required: built by `make pyshim`)
import delta_apply  # noqa: E402
import delta_gen  # noqa: E402
from gitrepo import blob_sha, commit, make_repo, tag  # noqa: E402


def _text(seed, lines=300):
    rnd = random.Random(seed)
    words = ["sock", "recv", "send", "topic", "payload", "self", "return", "if", "None",
             "buf", "len", "timeout", "retry", "mqtt", "client", "raise", "ValueError"]
    out = []
    for i in range(lines):
        out.append("    def f%d(self, %s):  # %s\n        return %s(%d)\n" % (
            i, rnd.choice(words), " ".join(rnd.choice(words) for _ in range(6)),
            rnd.choice(words), rnd.randrange(1000)))
    return "".join(out).encode()


def _edit(data, seed, n=5):
    """A few small line edits, like a real release."""
    rnd = random.Random(seed)
    lines = data.split(b"\n")
    for _ in range(n):
        i = rnd.randrange(len(lines))
        lines[i] = lines[i] + b"  # changed %d" % rnd.randrange(10**6)
    lines.insert(rnd.randrange(len(lines)), b"    NEW_CONST = %d" % seed)
    return b"\n".join(lines)


UTIL1 = _text(1)
UTIL2 = _edit(UTIL1, 2)
UTIL3 = _edit(UTIL2, 3)
APP1 = _text(10, 120)
APP2 = _edit(APP1, 11)
PRIV1 = _text(20, 100)
DOC1 = _text(30, 100)
BLOB1 = random.Random(40).randbytes(3000)
BLOB2 = random.Random(41).randbytes(3000)
BLOB3 = random.Random(42).randbytes(3000)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = make_repo(tmp_path_factory.mktemp("app") / "repo")
    commit(r, {"lib/util.py": UTIL1, "app.py": APP1, "lib/tiny.py": b"A = 1\n",
               "lib/private/keys.py": PRIV1, "docs/notes.py": DOC1,
               "data/blob.bin": BLOB1}, "v1")
    tag(r, "v1.0.0")
    commit(r, {"lib/util.py": UTIL2, "app.py": APP2, "lib/tiny.py": b"B = 22\n",
               "lib/private/keys.py": _edit(PRIV1, 21), "docs/notes.py": _edit(DOC1, 31),
               "data/blob.bin": BLOB2}, "v2")
    tag(r, "v1.1.0")
    commit(r, {"lib/util.py": UTIL3, "lib/new.py": b"NEW = 1\n", "data/blob.bin": BLOB3,
               "lib/private/keys.py": _edit(_edit(PRIV1, 21), 22),
               # a committed delta folder from an earlier release is never diffed
               ".deltas/index.json": b'{"format":1,"codec":"bsdiff+deflate","deltas":[]}\n'},
           "v3")
    tag(r, "v1.2.0")
    return r


RULES = dict(allow=["lib/", "app.py", "data"], ignore=["lib/private"])


def _run(repo, out, **kw):
    args = dict(RULES)
    args.update(kw)
    return delta_gen.generate(str(repo), ["v1.0.0", "v1.1.0"], "v1.2.0", str(out), **args)


def _read_dir(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


def test_index_content(repo, tmp_path):
    out = tmp_path / "deltas"
    _run(repo, out)
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


def test_patches_reproduce_targets_with_ota_native(repo, tmp_path):
    out = tmp_path / "deltas"
    _run(repo, out)
    for base_files, expect in (
        ({"lib/util.py": UTIL1, "app.py": APP1}, {"lib/util.py": UTIL3, "app.py": APP2}),
        ({"lib/util.py": UTIL2, "app.py": APP2}, {"lib/util.py": UTIL3}),
        ({"lib/util.py": UTIL3 + b"local edit"}, {}),  # unknown base: no delta
    ):
        assert delta_apply.apply_index(str(out), base_files) == expect


def test_deterministic_output(repo, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(repo, a)
    _run(repo, b)
    assert _read_dir(a) == _read_dir(b)
    first = _read_dir(a)
    (a / ("0" * 40 + "-" + "1" * 40 + ".bsd")).write_bytes(b"stale")
    (a / "README").write_bytes(b"kept: not a patch file name")
    _run(repo, a)
    again = _read_dir(a)
    assert again.pop("README") == b"kept: not a patch file name"
    assert again == first


def test_kept_only_when_meaningfully_smaller(repo, tmp_path):
    stats = {}
    entries, files = _run(repo, tmp_path / "d", stats=stats)
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
    assert _run(repo, tmp_path / "e", min_saving=0.99)[0] == []
    loose = _run(repo, tmp_path / "f", min_saving=0.0)[0]
    assert len(loose) >= len(entries)


def test_allow_ignore_rules():
    ok = delta_gen.path_allowed
    assert ok("lib/a.py", ["lib"], []) and ok("lib/a.py", ["lib/"], [])
    assert not ok("library.py", ["lib"], [])           # a prefix is a directory, not a string prefix
    assert ok("main.py", [], []) and ok("main.py", ["main.py"], [])
    assert not ok("lib/x/y.py", ["lib"], ["lib/x"])      # ignore wins
    assert not ok("lib/a.py", [], ["lib/a.py"])
    assert ok("lib/xy.py", ["lib"], ["lib/x"])


@pytest.mark.parametrize("wbits", [9, 12])
def test_window_option(repo, tmp_path, wbits):
    out = tmp_path / "w"
    entries, files = _run(repo, out, wbits=wbits)
    assert entries and all(e["wbits"] == wbits for e in entries)
    for name, data in files.items():
        d = zlib.decompressobj(-wbits)   # the stream fits the announced window
        d.decompress(data)
        assert d.eof
    assert delta_apply.apply_index(str(out), {"lib/util.py": UTIL1})["lib/util.py"] == UTIL3


def test_corrupt_or_foreign_patch_is_rejected(repo, tmp_path):
    out = tmp_path / "c"
    entries, files = _run(repo, out)
    e = next(x for x in entries if x["base"] == blob_sha(UTIL1))
    patch = files[e["file"]]
    bad = bytearray(patch)
    bad[len(bad) // 2] ^= 0x55
    with pytest.raises(delta_apply.DeltaError):
        delta_apply.apply_entry(e, bytes(bad), UTIL1)
    # the pipeline itself (without the index's patch SHA1) refuses it too
    try:
        new, digest = delta_apply.apply_patch(bytes(bad), UTIL1, e["target_size"], 10)
    except ValueError:
        pass
    else:
        assert digest != e["target"]
    # right patch, wrong base (the file the device has differs)
    with pytest.raises(delta_apply.DeltaError):
        delta_apply.apply_entry(e, patch, UTIL2)
    try:
        new, digest = delta_apply.apply_patch(patch, UTIL2, e["target_size"], 10)
    except ValueError:
        pass
    else:
        assert digest != e["target"]


def test_cli_in_repo_with_config(repo, tmp_path):
    cfg = tmp_path / "ota_config.json"
    cfg.write_text(json.dumps({"owner": "o", "repo": "r", "allow": ["lib"], "ignore": ["lib/private/"]}))
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, str(ROOT / "python" / "delta_gen.py"),
                        "--old", "v1.0.0", "--old", "v1.1.0", "--new", "v1.2.0",
                        "--output", str(out), "--config", str(cfg)],
                       cwd=repo, capture_output=True, text=True)
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
