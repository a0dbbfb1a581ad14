#!/usr/bin/env python3
"""Smoke test to run before deploying: can the configured repository be updated from?

Usage:
    python integration_test.py                      # reads ota_config.json
    python integration_test.py --config ota_config.yaml [--channel stable|developer|both]

For each channel (stable: the latest release, or the pinned `tag`; developer:
the tip of `branch`) it resolves the update target exactly as the device
would, with ota.py's own code (`load_config`, `OTA(cfg).resolve_target()`,
`fetch_tree(commit)`), and prints the ref, the commit, the number of files
the device would consider and whether the release has a manifest.json.
Nothing is downloaded beyond that and nothing is written: the updater object
is created inside an empty temporary folder, so its boot-time recovery and
error log cannot touch the current folder. Exit status 0 when every channel
resolves, 1 otherwise (with the HTTP status and GitHub's message), 2 when the
configuration itself is invalid.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def check_channel(ota, cfg_path, channel, out=print):
    """Resolve one channel as the device would; returns (ok, summary dict)."""
    cfg = ota.load_config(cfg_path)
    cfg["channel"] = channel
    if channel == "stable":
        label = "stable (tag %s)" % cfg["tag"] if cfg.get("tag") else "stable (latest release)"
    else:
        label = "developer (branch %s)" % cfg["branch"]
    t0 = time.monotonic()
    try:
        up = ota.OTA(cfg)
        target = up.resolve_target()          # {"ref", "commit", "version", "manifest": URL or None}
        manifest = None
        if target.get("manifest"):
            # the device's own reader and checks of manifest.json (ota.OTA.read_manifest); a
            # release without one (found by its download URL) is installed from its Git tree
            try:
                manifest, deletes, hooks = up.read_manifest(target)
                files = manifest
            except ota.NotFound:  # no manifest.json in the release
                pass
        if manifest is None:
            files = up.fetch_tree(target["commit"])   # {path: [blob sha, size, sha256]}
        wanted = [p for p in files if up.wanted(p)]
        size = sum(files[p][1] for p in wanted)
    except ota.OTAError as e:
        out("FAIL  %-32s %s" % (label, e))
        return False, {"channel": channel, "error": str(e)}
    except OSError as e:
        out("FAIL  %-32s network error: %s" % (label, e))
        return False, {"channel": channel, "error": "network: %s" % e}
    dt = time.monotonic() - t0
    out("ok    %-32s ref %s, commit %s, version %s" % (label, target["ref"], target["commit"][:12],
                                                       target.get("version")))
    if manifest is not None:
        extra = "manifest.json: yes (%d files, %d deletes%s)" % (len(manifest), len(deletes), "".join(
            ", %s %s" % (name, h) for name, h in zip(("post_update", "rollback"), hooks) if h))
    else:
        extra = "manifest.json: no (the device uses the git tree: %d files)" % len(files)
    out("      %-32s the device would install %d files, %d bytes" % ("", len(wanted), size))
    out("      %-32s %s; %d HTTP requests, %.2f s" % ("", extra, up.requests, dt))
    return True, {"channel": channel, "ref": target["ref"], "commit": target["commit"],
                  "files": len(wanted), "listed": len(files), "bytes": size,
                  "manifest": manifest is not None}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Resolve the update target of each channel without applying it.")
    ap.add_argument("--config", default="ota_config.json", help="config file (.json, .yaml/.yml, .toml)")
    ap.add_argument("--channel", choices=("stable", "developer", "both"), default="both")
    args = ap.parse_args(argv)
    try:
        import ota
    except ImportError as e:
        print("integration_test: cannot import ota.py (%s); run it from the folder holding ota.py" % e,
              file=sys.stderr)
        return 2
    cfg_path = os.path.abspath(args.config)
    try:
        cfg = ota.load_config(cfg_path)
    except ota.OTAError as e:
        print("integration_test: config %s: %s" % (args.config, e), file=sys.stderr)
        return 2
    print("repository %s/%s via %s" % (cfg.get("owner"), cfg.get("repo"),
                                       cfg.get("api_base") or "https://api.github.com"))
    channels = ("stable", "developer") if args.channel == "both" else (args.channel,)
    ok_all = True
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ota-check-") as scratch:
        os.chdir(scratch)            # OTA() runs boot recovery: keep it away from real files
        try:
            for ch in channels:
                ok, _ = check_channel(ota, cfg_path, ch)
                ok_all = ok_all and ok
        finally:
            os.chdir(cwd)
    print("all channels resolve" if ok_all else "some channels FAILED")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
