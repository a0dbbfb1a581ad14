"""TLS handshakes per update, and what one costs against the rest of an update (issue 12, item 2).

Run: .venv/bin/python bench/bench_handshake.py [--runs N]        (`make bench-handshake`)

The MicroPython unix port (.venv/bin/micropython) against the loopback TLS server of the tests
(tests/ghserver.py with a certificate from a test CA the device verifies through ca_file), a
first install of the tests' V1 (14 files, 16 requests, developer channel):
  - one verified TLS handshake alone (TCP connect + wrap_socket, the device's _tls_context()),
    median of N;
  - the whole first install with keep-alive (ota.py as it is), and with a new connection per
    request (ota.py before keep-alive: OTA.keep patched to close every connection), median of N,
    with the handshakes the server counted.
The loopback makes the network free: what remains is the updater's own CPU work (hashing,
writing, parsing) and the TLS work. A Pico W's handshake is reported at 0.7-7 s (issue 12);
multiply the handshake counts by that figure for a board.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import MICROPYTHON, V1, Device, ca_and_server_cert  # noqa: E402
from ghserver import GitHubServer  # noqa: E402
from gitrepo import branch, commit, make_repo  # noqa: E402

HANDSHAKE = r"""
import socket, time, ota
u = ota.OTA(ota.load_config())
a = socket.getaddrinfo("127.0.0.1", %d, 0, socket.SOCK_STREAM)[0]
ms = []
for _ in range(%d):
    t = time.ticks_us()
    s = socket.socket(a[0], socket.SOCK_STREAM)
    s.connect(a[-1])
    s = u._tls_context().wrap_socket(s, server_hostname="127.0.0.1")
    ms.append(time.ticks_diff(time.ticks_us(), t) / 1000)
    s.close()
ms.sort()
print("HS", ms[len(ms) // 2])
"""

UPDATE = r"""
import sys, time, ota
if "close" in sys.argv:  # before keep-alive: every connection closed after its response
    ota.OTA.keep = lambda self, c: c and ota._close(c)
t = time.ticks_us()
u = ota.OTA(ota.load_config())
u.connect()
ok = u.update_if_available()
print("UP", time.ticks_diff(time.ticks_us(), t) / 1000, ok, u.requests)
"""


def mp(cwd, code, *args):
    p = subprocess.run([str(MICROPYTHON), "-c", code] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, MICROPYPATH=""))
    if p.returncode:
        sys.exit(p.stdout + p.stderr)
    return p.stdout.split()


def main():
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    work = Path(tempfile.mkdtemp(prefix="bench-handshake-"))
    try:
        repo = make_repo(work / "app")
        c = commit(repo, V1, "v1")
        ca, cert, key = ca_and_server_cert(work, "bench")
        with GitHubServer(repo, tls=(str(cert), str(key))) as srv:
            port = int(srv.api_base.rsplit(":", 1)[1])
            n = [0]

            def device():
                n[0] += 1
                d = Device(work / ("d%d" % n[0]), "micropython", srv)
                shutil.copy(ca, d.path / "ca.pem")
                name = "b%d" % n[0]
                branch(repo, name, c)
                d.config(channel="developer", branch=name, ca_file="ca.pem")
                return d

            hs = float(mp(device().path, HANDSHAKE % (port, runs * 4))[1])
            rows = []
            for mode in ("keep-alive", "close"):
                times, conns = [], []
                for _ in range(runs):
                    d = device()
                    before = srv.connections
                    out = mp(d.path, UPDATE, mode)
                    assert out[2] == "True", out
                    times.append(float(out[1]))
                    conns.append(srv.connections - before)
                rows.append((mode, statistics.median(times), max(conns), int(out[3])))
        print("MicroPython unix port, loopback TLS (verified), first install of 14 files, median of %d" % runs)
        print("one TLS handshake (connect + wrap_socket): %.1f ms" % hs)
        print("%-28s %10s %12s %9s %22s" % ("", "update ms", "handshakes", "requests", "handshakes x one (ms)"))
        for mode, ms, hsn, req in rows:
            label = "keep-alive (now)" if mode == "keep-alive" else "a connection per request"
            print("%-28s %10.1f %12d %9d %22.1f" % (label, ms, hsn, req, hsn * hs))
        (ka, ka_ms, ka_hs, _), (cl, cl_ms, cl_hs, _) = rows
        print("keep-alive / per request: %.2fx the time; %d -> %d handshakes; the rest of the update "
              "(update minus its handshakes): %.1f ms" % (ka_ms / cl_ms, cl_hs, ka_hs, ka_ms - ka_hs * hs))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
