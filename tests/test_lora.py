"""LoRa as the metadata and trigger channel (python/ota_lora.py), under CPython and inside the
MicroPython unix interpreter, with a simulated SX1276 radio: the fake machine.SPI of
tests/device/fake_machine.py answers the radio's registers and delivers the downlinks of
FAKE_LORA once the driver has put the chip into continuous receive in LoRa mode. LoRa never
carries the update: a downlink says which version is out, then WiFi or cellular fetches it."""
from conftest import V1, V2, check_installed
from sim.field import FieldDevice
from sim.modem import ModemSim


def loradev(tmp_path, kind, srv, repo, name, **cfg):
    """A device of the stable channel at v1.0.0 (installed over WiFi), releases up to v2.0.0."""
    for t in ("v1.0.0", "v1.1.0", "v2.0.0"):
        srv.add_release(t)
    d = FieldDevice(tmp_path / name, kind, srv)
    d.config(channel="stable", tag="v1.0.0", ssid="net", password="pw")
    assert d.update()["updated"] is True
    check_installed(d, V1, repo[1][1])
    c = dict(ssid="net", password="pw", connect_timeout_sec=0.3, lora_enabled=True, debug=True, lora_freq=868100000)
    c.update(cfg)
    d.config(channel="stable", **c)
    srv.clear_log()
    return d


def test_downlink_triggers_the_announced_version(tmp_path, kind, srv, repo):
    """WiFi fails; LoRa hears "OTA v1.1.0": WiFi comes up on the next attempt and the device
    installs v1.1.0 (not the latest release, v2.0.0)."""
    d = loradev(tmp_path, kind, srv, repo, "trigger")
    r = d.update(env={"FAKE_WIFI": "fail:1", "FAKE_LORA": "OTA v1.1.0"})
    assert r["updated"] is True and "error" not in r, d.out[-3000:]
    assert "OTA: LoRa: v1.1.0 announced: bringing up WiFi or cellular" in d.out
    check_installed(d, V2, repo[1][2])
    assert d.version()["ref"] == "v1.1.0"
    assert r["net"]["connects"] == 2  # WiFi, LoRa, WiFi again
    assert not [x for x in srv.requests if "latest" in x["path"]]  # the announced version, pinned
    hw = r["hw"]
    assert hw["lora"] == ["OTA v1.1.0"] and hw["spi_bus"] == [0, 18, 19, 16], hw
    w = hw["spi"]
    frf = 868100000 * 2 ** 19 // 32000000  # 0xD9 0x06 0x66
    assert [[6, frf >> 16], [7, frf >> 8 & 255], [8, frf & 255]] == [x for x in w if x[0] in (6, 7, 8)], w
    assert [1, 0x80] in w and [1, 0x85] in w and w[-1] == [1, 0x80]  # LoRa mode, receive, then sleep
    assert [v for v, _ in hw["io"]["20"]] == [1, 0, 1]  # the radio was reset
    assert len(hw["io"]["17"]) > 10  # chip select around each register access


def test_downlink_naming_the_installed_version(tmp_path, kind, srv, repo):
    """The announcement is the installed version: the check ends without any HTTP request."""
    d = loradev(tmp_path, kind, srv, repo, "installed")
    r = d.update(env={"FAKE_WIFI": "down", "FAKE_LORA": "OTA v1.0.0"})
    assert r["result"]["deferred"] == "lora" and r["updated"] is False and "error" not in r, r
    assert "OTA: LoRa: v1.0.0 is installed: nothing to fetch" in d.out
    assert srv.requests == [] and r["requests"] == 0
    assert r["net"]["connects"] == 1  # WiFi was not tried again


def test_no_usable_downlink(tmp_path, kind, srv, repo):
    """Silence, a packet with a CRC error, another payload: no network, as without LoRa."""
    d = loradev(tmp_path, kind, srv, repo, "silence")
    for env, log in (({}, "LoRa: no announcement"), ({"FAKE_LORA": "OTA v2.0.0", "FAKE_LORA_CRC": "bad"},
                     "LoRa: a packet with a CRC error"), ({"FAKE_LORA": "hello"}, "LoRa: downlink b'hello'")):
        r = d.update(env=dict(env, FAKE_WIFI="down"))
        assert r["error"] == "no network: wifi, lora failed" and log in d.out, (r, d.out[-2000:])
        assert r["hw"]["lora"] == ([env["FAKE_LORA"]] if env else [])
    assert srv.requests == []


def test_announced_but_no_link(tmp_path, kind, srv, repo):
    d = loradev(tmp_path, kind, srv, repo, "nolink")
    r = d.update(env={"FAKE_WIFI": "down", "FAKE_LORA": "OTA v2.0.0"})
    assert r["error"] == "no network: wifi, lora failed", r
    assert "OTA: LoRa: v2.0.0 announced, but neither WiFi nor cellular came up" in d.out
    assert r["net"]["connects"] == 4 and srv.requests == []  # WiFi, then 3 more rounds


def test_downlink_brings_up_cellular(tmp_path, kind, srv, repo):
    """WiFi down, and the modem not registered at its first power-on: LoRa's announcement brings
    the modem up again, and the update comes over cellular."""
    d = loradev(tmp_path, kind, srv, repo, "cell", cellular_enabled=True, cellular_cost_per_mb=1)
    with ModemSim(register="second") as modem:
        r = d.update(env={"FAKE_WIFI": "down", "FAKE_LORA": "OTA v2.0.0", "FAKE_MODEM": modem.address})
    assert r["updated"] is True, d.out[-3000:]
    assert d.version()["ref"] == "v2.0.0"
    assert modem.stats["sessions"] == 2 and modem.stats["requests"] == r["requests"] == len(srv.requests), modem.stats
    assert "OTA: cellular: not registered" in d.out and "estimated cost" in d.out
