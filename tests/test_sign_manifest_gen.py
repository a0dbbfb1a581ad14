"""manifest_gen.py's signing options (--keygen, --sign-key, --sequence, --expires): the files it
writes, their formats (PKCS#8 PEM keys, 64-byte raw signatures, as OpenSSL reads and writes them)
and its refusals."""
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from conftest import PY

TOOL = PY / "manifest_gen.py"
OPENSSL = shutil.which("openssl")


def run(args, cwd):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def app(tmp_path):
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.py").write_text("X = 1\n")
    return tmp_path


def test_keygen(app):
    r = run(["--keygen", "release.key"], app)
    assert r.returncode == 0, r.stderr
    pub = r.stdout.strip()
    assert len(pub) == 64 and bytes.fromhex(pub)
    key = app / "release.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    text = key.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----\n") and text.endswith("-----END PRIVATE KEY-----\n")
    import manifest_gen
    import ota_native

    assert ota_native.ed25519_public_key(manifest_gen.load_key(key)).hex() == pub
    # never overwritten
    r = run(["--keygen", "release.key"], app)
    assert r.returncode == 2 and "never overwritten" in r.stderr
    assert key.read_text() == text
    # another key each time
    assert run(["--keygen", "other.key", "-q"], app).stdout.strip() != pub


def test_sign_key_writes_the_signature_of_the_exact_bytes(app):
    import manifest_gen
    import ota_native

    pub = run(["--keygen", "k", "-q"], app).stdout.strip()
    t0 = int(time.time())
    r = run(["--version", "v1.2.0", "--sign-key", "k", "main.py", "lib"], app)
    assert r.returncode == 0, r.stderr
    assert "manifest.json.sig: signed by %s, sequence" % pub in r.stdout
    data = (app / "manifest.json").read_bytes()
    sig = (app / "manifest.json.sig").read_bytes()
    assert len(sig) == 64
    assert sig == manifest_gen.sign(manifest_gen.load_key(app / "k"), data)  # deterministic
    m = json.loads(data)
    assert t0 <= m["sequence"] <= time.time() + 1 and "expires" not in m  # default: the Unix time
    assert [e["path"] for e in m["files"]] == ["lib/util.py", "main.py"] and all(e["sha256"] for e in m["files"])
    v = ota_native.Verifier(bytes.fromhex(pub), sig)
    v.update(data)
    assert v.verify() is True
    # --sequence and --expires (absolute, relative)
    assert run(["--version", "v2", "--sign-key", "k", "--sequence", 42, "--expires", 1900000000, "main.py"], app).returncode == 0
    m = json.loads((app / "manifest.json").read_bytes())
    assert (m["sequence"], m["expires"]) == (42, 1900000000)
    assert list(m)[:4] == ["format", "version", "sequence", "expires"]
    assert run(["--version", "v2", "--sign-key", "k", "--expires", "+2d", "main.py"], app).returncode == 0
    m = json.loads((app / "manifest.json").read_bytes())
    assert abs(m["expires"] - (time.time() + 2 * 86400)) < 5
    # unsigned again: no sequence, and no stale signature beside the new manifest
    assert run(["--version", "v3", "main.py"], app).returncode == 0
    assert "sequence" not in json.loads((app / "manifest.json").read_bytes())
    assert not (app / "manifest.json.sig").exists()
    # an unsigned manifest may still carry a sequence
    assert run(["--version", "v3", "--sequence", 7, "main.py"], app).returncode == 0
    assert json.loads((app / "manifest.json").read_bytes())["sequence"] == 7


@pytest.mark.parametrize("args, why", [
    (["--version", "v1", "--sign-key", "missing.key", "main.py"], "No such file"),
    (["--version", "v1", "--sign-key", "main.py", "main.py"], "is not a PEM private key"),
    (["--version", "v1", "--sign-key", "k", "--out", "-", "main.py"], "--sign-key writes OUT.sig: give --out FILE"),
    (["--version", "v1", "--sign-key", "k", "--expires", "soon", "main.py"], "--expires 'soon'"),
    (["--version", "v1", "--sequence", "-1", "main.py"], "sequence must be a whole number"),
    (["--sign-key", "k", "main.py"], "--version and at least one path are required"),
])
def test_refusals(app, args, why):
    run(["--keygen", "k", "-q"], app)
    r = run(args, app)
    assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (app / "manifest.json.sig").exists()


def test_a_pem_that_is_not_ed25519(app):
    (app / "rsa.key").write_text("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")
    r = run(["--version", "v1", "--sign-key", "rsa.key", "main.py"], app)
    assert r.returncode == 2 and "is not an Ed25519 private key" in r.stderr


@pytest.mark.skipif(OPENSSL is None, reason="openssl missing (make toolchain installs it)")
def test_openssl_agrees(app):
    """OpenSSL reads the key and checks the signature; a key OpenSSL made signs here."""
    def ssl(*args):
        return subprocess.run([OPENSSL, *map(str, args)], cwd=app, capture_output=True, check=True)

    pub = run(["--keygen", "k", "-q"], app).stdout.strip()
    ssl("pkey", "-in", "k", "-pubout", "-out", "pub.pem")
    der = ssl("pkey", "-in", "k", "-pubout", "-outform", "DER").stdout
    assert der[-32:].hex() == pub
    assert run(["--version", "v1", "--sign-key", "k", "main.py"], app).returncode == 0
    r = ssl("pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "manifest.json",
            "-sigfile", "manifest.json.sig")
    assert b"Signature Verified Successfully" in r.stdout
    ssl("genpkey", "-algorithm", "ed25519", "-out", "ossl.key")
    assert run(["--version", "v1", "--sign-key", "ossl.key", "main.py"], app).returncode == 0
    ssl("pkey", "-in", "ossl.key", "-pubout", "-out", "ossl.pem")
    ssl("pkeyutl", "-verify", "-pubin", "-inkey", "ossl.pem", "-rawin", "-in", "manifest.json",
        "-sigfile", "manifest.json.sig")
    os.remove(app / "manifest.json.sig")
