"""Signed manifests, end to end (issue 11 parts 2 and 3), on CPython and MicroPython devices.

Releases are signed the way a release manager does it: `python/manifest_gen.py --keygen` makes the
keys, `--sign-key` writes manifest.json and manifest.json.sig, both published as release assets on
the GitHub-compatible server. The device holds python/ota_sign.py and, under MicroPython, the
verifier module build/x64/ota_ed25519.mpy (CPython: the PyO3 ota_native has the same Verifier).
A refused release installs nothing and says why in ota_error.json.
"""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import PY, ROOT, V1, V2, Device, basic_code

MANIFEST_GEN = PY / "manifest_gen.py"
ED25519_X64 = ROOT / "build" / "x64" / "ota_ed25519.mpy"
SIGN_FILES = {"ota_sign.py", "ota_sign.mpy", "ota_ed25519.mpy", "main.mpy"}  # the updater's, not the app's


def gen(*args, cwd=None):
    p = subprocess.run([sys.executable, str(MANIFEST_GEN), *map(str, args)], cwd=cwd, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """{name: (key file, public key hex)} for "a", "b" (the device's keys) and "other" (unknown)."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("a", "b", "other"):
        pub = gen("--keygen", d / name, "-q").strip()
        assert len(pub) == 64 and int(pub, 16) >= 0
        out[name] = (d / name, pub)
    return out


def release(tmp_path, files, version, key=None, *extra):
    """manifest_gen.py over a folder of ``files`` (signed with ``key`` when given):
    {"manifest.json": bytes, "manifest.json.sig": bytes}."""
    d = tmp_path / ("rel-%s-%d" % (version, len(list(tmp_path.iterdir()))))
    for p, data in files.items():
        (d / p).parent.mkdir(parents=True, exist_ok=True)
        (d / p).write_bytes(data)
    args = ["--version", version, "--root", d, "--out", d / "manifest.json", "-q", *extra]
    if key:
        args += ["--sign-key", key[0]]
    gen(*args, *sorted(files), cwd=d)
    assets = {"manifest.json": (d / "manifest.json").read_bytes()}
    if key:
        assets["manifest.json.sig"] = (d / "manifest.json.sig").read_bytes()
        assert len(assets["manifest.json.sig"]) == 64
    return assets


def app_files(dev):
    return {p: d for p, d in dev.files().items() if p not in SIGN_FILES}


def signed_device(tmp_path, kind, srv, keys, names=("a",), name="device", code=None, **cfg):
    """A Device with ota_sign (and the verifier module) and ``names``' public keys configured."""
    d = Device(tmp_path / name, kind, srv, code=code)
    if code is None:
        shutil.copy(PY / "ota_sign.py", d.path)
    if kind == "micropython":
        assert ED25519_X64.exists(), "build/x64/ota_ed25519.mpy missing: make natmod ARCH=x64"
        shutil.copy(ED25519_X64, d.path)
    return d.config(manifest_pubkeys=[keys[n][1] for n in names], **cfg)


def refused(d, why):
    """The update failed with ``why`` in its error and in ota_error.json, and nothing was installed."""
    r = d.update()
    assert why in r.get("error", ""), r
    assert why in d.errors()[-1]["reason"], d.errors()
    return r


def test_signed_release_installs(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"], "--sequence", 10))
    d = signed_device(tmp_path, kind, srv, keys)
    r = d.update()
    assert r["updated"] is True, r
    assert app_files(d) == V1
    v = d.version()
    assert v["sequence"] == 10 and v["version"] == "1.0.0" and v["ref"] == "v1.0.0"
    # the signature came from the release's assets, by name, before the manifest
    paths = [q["path"] for q in srv.requests]
    sig = [i for i, p in enumerate(paths) if p.endswith("/manifest.json.sig")]
    man = [i for i, p in enumerate(paths) if p.endswith("/manifest.json")]
    assert sig and man and sig[0] < man[0], paths
    # up to date: one request, nothing else
    srv.clear_log()
    assert d.update()["updated"] is False
    assert len(srv.requests) == 1


def test_changed_byte_installs_nothing(kind, tmp_path, srv, repo, keys):
    a = release(tmp_path, V1, "1.0.0", keys["a"])
    m = a["manifest.json"]
    i = m.index(b'"1.0.0"') + 5
    a["manifest.json"] = m[:i] + b"1" + m[i + 1:]  # "1.0.1": valid JSON, one byte changed
    srv.add_release("v1.0.0", assets=a)
    d = signed_device(tmp_path, kind, srv, keys)
    refused(d, "manifest.json of v1.0.0 is not signed by a key of manifest_pubkeys: signature mismatch")
    assert app_files(d) == {} and d.version() is None


def test_signature_of_another_release(kind, tmp_path, srv, repo, keys):
    old = release(tmp_path, V1, "1.0.0", keys["a"], "--sequence", 1)
    new = release(tmp_path, V2, "1.1.0", keys["a"], "--sequence", 2)
    srv.add_release("v1.1.0", assets={"manifest.json": new["manifest.json"], "manifest.json.sig": old["manifest.json.sig"]})
    d = signed_device(tmp_path, kind, srv, keys)
    refused(d, "signature mismatch")
    assert app_files(d) == {}


def test_unknown_key(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["other"]))
    d = signed_device(tmp_path, kind, srv, keys, ("a", "b"))
    refused(d, "is not signed by a key of manifest_pubkeys: signature mismatch")
    assert app_files(d) == {}


def test_no_signature_asset(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0"))  # unsigned
    d = signed_device(tmp_path, kind, srv, keys)
    refused(d, "v1.0.0 has no manifest.json.sig: signatures are required")
    assert app_files(d) == {}


def test_no_manifest_at_all(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0")  # the release's Git tree: nothing signed
    d = signed_device(tmp_path, kind, srv, keys)
    r = d.update()
    assert "signatures are required" in r["error"], r
    assert app_files(d) == {}


def test_replayed_older_release(kind, tmp_path, srv, repo, keys):
    old = release(tmp_path, V1, "1.0.0", keys["a"], "--sequence", 100)
    srv.add_release("v1.1.0", assets=release(tmp_path, V2, "1.1.0", keys["a"], "--sequence", 200))
    d = signed_device(tmp_path, kind, srv, keys)
    assert d.update()["updated"] is True
    assert app_files(d) == V2 and d.version()["sequence"] == 200
    # the attacker serves the older, validly signed release as the latest one
    srv.remove_release("v1.1.0")
    srv.add_release("v1.0.0", assets=old)
    refused(d, "manifest.json of v1.0.0 has sequence 100, lower than the installed 200")
    assert app_files(d) == V2 and d.version()["sequence"] == 200
    # unless the device allows it
    d.config(**dict(d.cfg, allow_downgrade=True))
    assert d.update()["updated"] is True
    assert app_files(d) == V1 and d.version()["sequence"] == 100


def test_key_rotation(kind, tmp_path, srv, repo, keys):
    d = signed_device(tmp_path, kind, srv, keys, ("a", "b"))
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"], "--sequence", 1))
    assert d.update()["updated"] is True and app_files(d) == V1
    srv.add_release("v1.1.0", assets=release(tmp_path, V2, "1.1.0", keys["b"], "--sequence", 2))
    assert d.update()["updated"] is True and app_files(d) == V2
    assert d.version()["sequence"] == 2


def test_expired_manifest(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"], "--expires", 1700000000))
    d = signed_device(tmp_path, kind, srv, keys)
    refused(d, "manifest.json of v1.0.0 expired at 1700000000")
    srv.remove_release("v1.0.0")
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"], "--expires", "+1d"))
    assert d.update()["updated"] is True


def test_every_file_needs_a_sha256(kind, tmp_path, srv, repo, keys):
    import manifest_gen

    m = manifest_gen.build_manifest("1.0.0", V1, sequence=5)
    del m["files"][0]["sha256"]
    data = manifest_gen.dumps(m).encode()
    sig = manifest_gen.sign(manifest_gen.load_key(keys["a"][0]), data)
    srv.add_release("v1.0.0", assets={"manifest.json": data, "manifest.json.sig": sig})
    d = signed_device(tmp_path, kind, srv, keys)
    refused(d, "%s has no sha256 (signed manifests need one)" % m["files"][0]["path"])


def test_private_repo_token(kind, tmp_path, srv, repo, keys):
    """With a token the assets come through the API: the signature is found by name."""
    srv.token = "ghp_s3cret"
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"], "--sequence", 3))
    d = signed_device(tmp_path, kind, srv, keys, token="ghp_s3cret")
    r = d.update()
    assert r["updated"] is True, r
    assert app_files(d) == V1 and d.version()["sequence"] == 3
    assert [x for x in srv.requests if "/releases/assets/" in x["path"]]


@pytest.mark.parametrize("cfg, why", [
    ({"manifest_pubkeys": ["abcd"]}, "manifest_pubkeys: 'abcd' is not an Ed25519 public key (64 hex digits)"),
    ({"manifest_pubkeys": ["g" * 64]}, "is not an Ed25519 public key"),
    ({"require_signature": True}, "require_signature needs the keys in manifest_pubkeys"),
    ({"manifest_pubkeys": ["ab" * 32], "channel": "developer"},
     "require_signature: the developer channel (the tip of a branch) has no signed manifest"),
])
def test_config_refused(kind, tmp_path, srv, cfg, why):
    d = Device(tmp_path / "device", kind, srv)
    shutil.copy(PY / "ota_sign.py", d.path)
    d.config(**cfg)
    r = d.run()
    assert why in r.get("error", ""), r


def test_require_signature_false_checks_nothing(kind, tmp_path, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0"))
    d = signed_device(tmp_path, kind, srv, keys, require_signature=False, channel="stable")
    assert d.update()["updated"] is True and app_files(d) == V1


# Runs one update and reports which native modules stayed loaded.
MODULES_AFTER = """
import sys, json, ota
sys.path.insert(0, "")
u = ota.OTA(ota.load_config())
u.connect()
ok = u.update_if_available()
print("MODS " + json.dumps({"updated": ok, "loaded": sorted(m for m in ("ota_ed25519", "ota_sign") if m in sys.modules)}))
"""


def test_verifier_module_dropped_and_unsigned_loads_none(tmp_path, micropython, srv, repo, keys):
    srv.add_release("v1.0.0", assets=release(tmp_path, V1, "1.0.0", keys["a"]))
    d = signed_device(tmp_path, "micropython", srv, keys)
    p = micropython.run("-c", MODULES_AFTER, cwd=d.path, path=[d.path])
    line = [x for x in p.stdout.splitlines() if x.startswith("MODS ")]
    assert line, p.stdout + p.stderr
    assert json.loads(line[0][5:]) == {"updated": True, "loaded": ["ota_sign"]}  # ota_ed25519 dropped
    # an unsigned configuration imports neither
    u = Device(tmp_path / "plain", "micropython", srv).config()
    shutil.copy(PY / "ota_sign.py", u.path)
    shutil.copy(ED25519_X64, u.path)
    p = micropython.run("-c", MODULES_AFTER, cwd=u.path, path=[u.path])
    line = [x for x in p.stdout.splitlines() if x.startswith("MODS ")]
    assert json.loads(line[0][5:]) == {"updated": True, "loaded": []}, p.stdout + p.stderr


def smallest_heap(d, lo, hi, boot):
    """The smallest -X heapsize (KiB, to 1) at which boot(d, heap) succeeds, by bisection."""
    assert boot(d, "%dk" % hi), d.out[-2000:]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if boot(d, "%dk" % mid):
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_heap_precompiled(tmp_path, srv, repo, keys, signed, record_property):
    """The first install with the precompiled files (make device) in the smallest heap, with and
    without signatures: at most 64 KiB on x64 for the signed update (issue 11)."""
    assets = release(tmp_path, V1, "1.0.0", keys["a"] if signed else None, "--sequence", 7)
    srv.add_release("v1.0.0", assets=assets)
    code = basic_code(tmp_path / "code", True, ("ota", "main") + (("ota_sign",) if signed else ()))
    base = signed_device(tmp_path, "micropython", srv, keys, name="base", code=code) if signed else \
        Device(tmp_path / "base", "micropython", srv, code=code).config()

    n = [0]

    def boot(d, heap):
        n[0] += 1
        c = d.clone(tmp_path / ("try%d" % n[0]))
        ok = c.boot(heap)
        d.out = c.out
        if ok:
            assert app_files(c) == V1
        shutil.rmtree(c.path)
        return ok

    kb = smallest_heap(base, 16, 160, boot)
    record_property("heap_kib", kb)
    print("\nsmallest heap, precompiled, %s: %d KiB" % ("signed" if signed else "unsigned", kb))
    assert kb <= 64
