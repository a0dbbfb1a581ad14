"""load_config/check_config: every error names its key; flat YAML and TOML load the same
values as JSON. The cases (tests/device/config_cases.py) run under CPython and inside the
MicroPython unix interpreter, and both must print the same results."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ota
from conftest import MICROPYTHON, PY, TESTS

CASES = TESTS / "device" / "config_cases.py"


def run_cases(exe, tmp_path):
    d = tmp_path / exe.name
    d.mkdir()
    for n in ("ota.py", "ota_flatconfig.py", "ota_schedule.py"):
        (d / n).write_bytes((PY / n).read_bytes())
    p = subprocess.run([str(exe), str(CASES)], cwd=d, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MICROPYPATH=""))
    assert p.returncode == 0, p.stderr
    return {r["case"]: r["out"] for r in map(json.loads, p.stdout.splitlines())}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    return {"cpython": run_cases(Path(sys.executable), tmp), "micropython": run_cases(MICROPYTHON, tmp)}


def _norm(res):
    # the JSON parser's own detail differs between interpreters; everything else must not
    return {k: {"error": v["error"].split("not valid JSON")[0]} if "not valid JSON" in v.get("error", "") else v
            for k, v in res.items()}


def test_both_interpreters_agree(results):
    assert _norm(results["cpython"]) == _norm(results["micropython"])
    assert len(results["cpython"]) >= 25


ERRORS = {
    "missing_owner": "required key 'owner' is missing",
    "missing_repo": "required key 'repo' is missing",
    "placeholder_owner": "'owner' still has the placeholder value YOUR_GITHUB_USERNAME",
    "placeholder_ssid": "'ssid' still has the placeholder value YOUR_WIFI_SSID",
    "placeholder_repo": "'repo' still has the placeholder value YOUR_REPOSITORY",
    "bool_as_string": "'force' must be true or false (a JSON boolean)",
    "bool_as_int": "'debug' must be true or false (a JSON boolean)",
    "int_as_string": "'chunk' must be a whole number",
    "int_as_bool": "'retries' must be a whole number",
    "negative": "'backoff_sec' must be a number >= 0",
    "chunk_small": "'chunk' must be >= 256",
    "bad_channel": "'channel' must be one of stable|developer, got 'beta'",
    "bad_reset_mode": "'reset_mode' must be one of hard|soft|none",
    "allow_not_list": "'allow' must be a list of strings",
    "bad_api_base": "'api_base' must start with http:// or https://",
    "not_json": "not valid JSON",
    "not_mapping": "expected a mapping",
    "yml_bad_bool": "'force' must be true or false",
    "toml_unquoted": "strings must be quoted",
    "toml_table": "expected a flat key = value",
    "bad_ext": "use a .json, .yaml, .yml or .toml file",
    "bad_window": "'windows' entries must be \"HH:MM-HH:MM\" (24 h), got '22:00-6:00'",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors(results, case):
    out = results["micropython"][case]
    assert "error" in out, out
    assert ERRORS[case] in out["error"], out["error"]
    assert out["error"].startswith("cfg_%s." % case)  # names the file too


def test_unknown_key_is_reported_not_fatal(results):
    for interp in ("cpython", "micropython"):
        assert results[interp]["unknown_key"]["ok"]["_unknown"] == ["chanel"]
        assert results[interp]["ok_minimal"]["ok"]["_unknown"] == []


def test_defaults(results):
    ok = results["micropython"]["ok_minimal"]["ok"]
    assert ok == {"owner": "octo", "repo": "app", "ssid": None, "channel": "stable", "branch": "main",
                  "tag": None, "token": None, "allow": [], "ignore": [], "chunk": 1024, "backoff_sec": 2,
                  "force": False, "debug": False, "max_backoff_sec": 60, "stage_dir": ".ota_stage",
                  "reset_mode": "hard", "self_update": False, "enable_delta_updates": False,
                  "api_base": "https://api.github.com", "_unknown": []}
    assert results["micropython"]["windows_ok"]["ok"]["windows"] == ["22:00-06:00", "12:00-13:30"]
    assert results["micropython"]["float_ok"]["ok"]["backoff_sec"] == 0.5
    assert results["micropython"]["allow_string"]["ok"]["allow"] == ["lib/"]


def test_yaml_and_toml_flat_forms(results):
    y = results["micropython"]["yaml_flat"]["ok"]
    assert y["ssid"] == "my net" and y["channel"] == "developer" and y["tag"] is None and y["token"] is None
    assert y["allow"] == ["lib/", "main.py"] and y["ignore"] == ["lib/tests", "docs/"]
    assert y["chunk"] == 2048 and y["backoff_sec"] == 0.5 and y["force"] is False and y["debug"] is True
    t = results["micropython"]["toml_flat"]["ok"]
    assert t["allow"] == ["lib/", "main.py"] and t["ignore"] == [] and t["repo"] == "app"
    assert t["chunk"] == 2048 and t["debug"] is True


def test_flat_parsers_match_pyyaml_and_tomllib(results):
    import tomllib
    try:
        import yaml
    except ImportError:
        yaml = None
    src = CASES.read_text()
    for case, ext, load in (("toml_flat", "toml", tomllib.loads), ("yaml_flat", "yaml", yaml and yaml.safe_load)):
        if load is None:  # no PyYAML here
            continue
        ref = load(src.split('("%s", "%s", """' % (case, ext))[1].split('"""')[0])
        got = results["cpython"][case]["ok"]
        for k, v in ref.items():
            assert got[k] == v, (case, k)


def test_template_has_placeholders_and_every_key():
    cfg = json.loads((PY / "ota_config.json").read_text())
    with pytest.raises(ota.OTAError, match="'owner' still has the placeholder value YOUR_GITHUB_USERNAME"):
        ota.check_config(cfg)
    cfg.update(owner="octo", repo="app", ssid="net", password="pw")
    out = ota.check_config(cfg)
    assert out["channel"] == "stable" and out["_unknown"] == []
    assert set(cfg) == set(out) - {"_path", "_unknown", "_features"}  # the template lists every basic key
    assert out["_features"] == []  # a basic update: no feature module needed


def test_wanted_protects_device_state(tmp_path, monkeypatch):
    """wanted(): the device's own files and dirs, nested stage/backup dirs included, and
    allow/ignore as exact files or directory prefixes (ignore wins)."""
    monkeypatch.chdir(tmp_path)  # OTA() runs boot recovery in the current folder
    u = ota.OTA({"owner": "o", "repo": "r", "stage_dir": "tmp/stage", "backup_dir": "/bak/",
                 "allow": ["lib/", "app.py", "tmp"], "ignore": ["lib/tests"]})
    no = ["tmp/stage/x.py", "tmp/stage", "bak/0", "version.json", "ota_error.json", "ota_journal.json",
          "ota_config.yaml", ".deltas/index.json", "ota.py", "main.py", "ota_native.mpy", "lib/tests/t.py",
          "lib/tests", "libx/a.py", "app.pyc", "other.py", "version.json.tmp"]
    yes = ["lib/a.py", "lib/sub/b.py", "app.py", "tmp/stage2/x.py", "tmp/other.py", "lib/testsx.py"]
    assert [p for p in no if u.wanted(p)] == []
    assert [p for p in yes if not u.wanted(p)] == []
