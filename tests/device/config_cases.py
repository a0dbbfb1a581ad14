# Config cases run identically by CPython and MicroPython (tests/test_config.py compares
# both outputs). cwd = a temporary folder; prints one JSON line per case.
import sys

sys.path.insert(0, "")
import json
import ota

BASE = '{"owner": "octo", "repo": "app"%s}'
CASES = [
    ("ok_minimal", "json", BASE % ""),
    ("missing_owner", "json", '{"repo": "app"}'),
    ("missing_repo", "json", '{"owner": "octo"}'),
    ("placeholder_owner", "json", '{"owner": "YOUR_GITHUB_USERNAME", "repo": "app"}'),
    ("placeholder_ssid", "json", BASE % ', "ssid": "YOUR_WIFI_SSID"'),
    ("placeholder_repo", "json", '{"owner": "octo", "repo": "YOUR_REPOSITORY"}'),
    ("bool_as_string", "json", BASE % ', "force": "true"'),
    ("bool_as_int", "json", BASE % ', "debug": 1'),
    ("int_as_string", "json", BASE % ', "chunk": "1024"'),
    ("int_as_bool", "json", BASE % ', "retries": true'),
    ("negative", "json", BASE % ', "backoff_sec": -1'),
    ("float_ok", "json", BASE % ', "backoff_sec": 0.5'),
    ("chunk_small", "json", BASE % ', "chunk": 16'),
    ("bad_channel", "json", BASE % ', "channel": "beta"'),
    ("bad_reset_mode", "json", BASE % ', "reset_mode": "reboot"'),
    ("unknown_key", "json", BASE % ', "chanel": "stable"'),
    ("allow_not_list", "json", BASE % ', "allow": [1, 2]'),
    ("allow_string", "json", BASE % ', "allow": "lib/"'),
    ("bad_api_base", "json", BASE % ', "api_base": "ftp://x"'),
    ("bad_window", "json", BASE % ', "windows": ["22:00-6:00"]'),
    ("windows_ok", "json", BASE % ', "windows": ["22:00-06:00", "12:00-13:30"]'),
    ("not_json", "json", '{"owner": '),
    ("not_mapping", "json", '[1, 2]'),
    ("yaml_flat", "yaml", """# device config
owner: octo
repo: "app"
ssid: 'my net'   # quoted, with a comment
channel: developer
branch: main
tag:
token: null
allow: [lib/, "main.py"]
ignore:
  - lib/tests
  - "docs/"
chunk: 2048
backoff_sec: 0.5
force: false
debug: true
"""),
    ("yml_bad_bool", "yml", "owner: octo\nrepo: app\nforce: yes\n"),
    ("toml_flat", "toml", """# device config
owner = "octo"
repo = 'app'
channel = "developer"   # comment
allow = ["lib/",
         "main.py"]
ignore = []
chunk = 2048
backoff_sec = 0.5
force = false
debug = true
"""),
    ("toml_unquoted", "toml", "owner = octo\nrepo = \"app\"\n"),
    ("toml_table", "toml", "owner = \"octo\"\nrepo = \"app\"\n[extra]\n"),
    ("bad_ext", "ini", "owner=octo"),
]
KEYS = ("owner", "repo", "ssid", "channel", "branch", "tag", "token", "allow", "ignore", "chunk",
        "backoff_sec", "force", "debug", "max_backoff_sec", "stage_dir", "reset_mode", "self_update",
        "enable_delta_updates", "api_base", "windows", "_unknown")
for name, ext, text in CASES:
    path = "cfg_%s.%s" % (name, ext)
    with open(path, "w") as f:
        f.write(text)
    try:
        cfg = ota.load_config(path)
        out = {"ok": dict([(k, cfg[k]) for k in KEYS if k in cfg])}  # windows: only with ota_schedule
    except ota.OTAError as e:
        out = {"error": str(e)}
    print(json.dumps({"case": name, "out": out}))
