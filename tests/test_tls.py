"""HTTPS is verified by default: the device's trust store (build/ota_ca.der, GitHub's roots,
deployed next to ota.py) or ca_file. Against the loopback TLS server (tests/ghserver.py), in
both interpreters: a man in the middle with a certificate from another CA gets no request, so no
token, and nothing is installed; an expired certificate fails while the clock is right; with
"tls_verify": false the token is never sent, and main() says so."""
import shutil
import time

import pytest

from conftest import PY, V1, Device, ca_and_server_cert, dev_branch
from ghserver import GitHubServer

TOKEN = "ghp_s3cretT0ken"


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_man_in_the_middle_gets_no_token(kind, tmp_path, repo):
    _, cert, key = ca_and_server_cert(tmp_path, "mitm")  # a CA the trust store does not hold
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        dev = Device(tmp_path / "device", kind, srv)
        assert (dev.path / "ota_ca.der").exists()  # the default trust store, as deployed
        dev.config(channel="developer", branch=dev_branch(repo, dev, "mitm", repo[1][1]), token=TOKEN)
        r = dev.update()
        assert "TLS to 127.0.0.1" in r.get("error", "") and not r.get("updated"), r
        assert srv.requests == []  # the handshake failed: no request, no Authorization header
        assert dev.version() is None and dev.files() == {}
        assert TOKEN not in (dev.path / "ota_error.json").read_text()


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_expired_certificate_fails(kind, tmp_path, repo):
    ca, cert, key = ca_and_server_cert(tmp_path, "old", days=0)  # not valid after now
    time.sleep(1.5)
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        dev = Device(tmp_path / "device", kind, srv)
        shutil.copy(ca, dev.path / "ca.pem")
        dev.config(channel="developer", branch=dev_branch(repo, dev, "old", repo[1][1]), ca_file="ca.pem")
        r = dev.update()
        assert "TLS to 127.0.0.1" in r.get("error", "") and "expire" in r["error"].lower(), r
        assert dev.version() is None


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_unverified_tls_sends_no_token_and_main_warns(kind, tmp_path, repo):
    _, cert, key = ca_and_server_cert(tmp_path, "any")
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        dev = Device(tmp_path / "device", kind, srv)
        shutil.copy(PY / "main.py", dev.path / "main.py")
        dev.config(channel="developer", branch=dev_branch(repo, dev, "any", repo[1][1]), token=TOKEN,
                   tls_verify=False)
        r = dev.run("main")
        assert r.get("updated") is True, r
        assert dev.out.count("tls_verify is false") == 1, dev.out
        assert srv.requests and all(q["auth"] is None for q in srv.requests)
        files = dev.files()
        files.pop("main.py")
        assert files == V1


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_first_install_makes_one_tls_handshake_per_host(kind, tmp_path, repo):
    """Keep-alive over verified TLS: a first install of 14 files (16 requests) makes one TLS
    connection to the one host the loopback server is (it made 16 before keep-alive)."""
    ca, cert, key = ca_and_server_cert(tmp_path, "keep")
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        dev = Device(tmp_path / "device", kind, srv)
        shutil.copy(ca, dev.path / "ca.pem")
        dev.config(channel="developer", branch=dev_branch(repo, dev, "keep", repo[1][1]), ca_file="ca.pem")
        assert dev.update().get("updated") is True
        assert len(srv.requests) == 16 and srv.connections == 1, (len(srv.requests), srv.connections)
        files = dev.files()
        files.pop("ca.pem")
        assert files == V1
