"""A fleet of devices behind one IP polling GitHub hourly: API requests per hour, errors, and
how long until the whole fleet runs a new release (issue 12, item 5). `make bench-fleet`.

Run: .venv/bin/python bench/bench_fleet.py [--devices N] [--hours H] [--jobs J] [--no-mpy] [--json FILE]

Every device runs the real python/ota.py. In CPython (bench/fleet/sim.py): the whole fleet, each
device with its own folder, through the updater's own seams (OTA.net: an in-memory socket to the
server model; OTA._tls_context; ota.time on a virtual clock); one device at a time, in order of
virtual time. In MicroPython (bench/fleet/mpy_sample.py): a sample of devices in
.venv/bin/micropython against the same model served for real on 127.0.0.1, whose request
sequences must equal the CPython devices' (the run fails otherwise).

The server model (bench/fleet/model.py) enforces GitHub's documented rules: per-IP 60 and
per-token 5,000 API requests an hour, 304 free only with a token, secondary limits (100
concurrent, 900 per minute) answered 403 + Retry-After: 60; github.com's web redirect, release
downloads and raw.githubusercontent.com counted apart, never against the API budget.

Scenarios: {stable with manifest, stable without manifest, developer} x {no token, one token
shared by the fleet} x {spread: boot times uniform over the hour, herd: the fleet powered on
within one minute (ota.py has no per-device offset: each device polls at its boot time plus
whole hours)}. The devices hold the old release, installed and confirmed by the real updater;
the new one lands at 1:30 (a v1.1.0 release with annotated tags, or the branch moves).
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from fleet import scenario  # noqa: E402

RELEASE_H = 1.5


def fmt_t(s):
    if s is None:
        return "-"
    return "%d:%02d" % (s // 3600, s % 3600 // 60)


def row(r):
    p = r["params"]
    h = r["hours"]
    rel = int(RELEASE_H)
    n = p["n"]
    steady = h[0]
    after = h[rel:]
    peak = max(after, key=lambda x: x["api"])
    refused = sum(x["api_refused_primary"] + x["api_refused_secondary"] for x in h)
    failed = sum(x["failed_runs"] for x in h)
    runs = sum(x["runs"] for x in h)
    if r["t100"] is not None:
        fleet = fmt_t(r["t100"])
    else:
        rate = r["rate_after"]
        left = n - r["updated"]
        fleet = ">%s (%.1f%%; ~%s h at %.0f/h)" % (
            fmt_t((p["hours"] - RELEASE_H) * 3600), 100.0 * r["updated"] / n,
            ("%.0f" % (left / rate)) if rate else "never", rate)
    boot = p["boot"]
    if (p.get("rules") or {}).get("web_limit"):
        boot += ", web+dl+raw <= %d/h" % p["rules"]["web_limit"]
    return [scenario.MODE_NAMES[p["mode"]], "yes" if p["token"] else "no", boot,
            "%d" % steady["api"], "%d" % peak["api"], "%d" % refused,
            "%d" % max(x["web"] for x in h), "%d" % max(x["download"] for x in h), "%d" % max(x["raw"] for x in h),
            "%d/%d" % (failed, runs), fmt_t(r["t50"]), fmt_t(r["t99"]), fleet, "%d" % r["rollbacks"]]


HEAD = ["mode", "token", "boot", "API/h before", "API/h peak", "API refused", "web/h", "dl/h", "raw/h",
        "failed checks", "50% new", "99% new", "100% new (after release)", "rollbacks"]


def table(rows):
    w = [max(len(str(x[i])) for x in rows + [HEAD]) for i in range(len(HEAD))]
    out = [" | ".join(HEAD[i].ljust(w[i]) for i in range(len(HEAD))), "-+-".join("-" * x for x in w)]
    for x in rows:
        out.append(" | ".join(str(x[i]).ljust(w[i]) for i in range(len(HEAD))))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--hours", type=float, default=6, help="simulated hours (the release lands at 1:30)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-mpy", action="store_true", help="skip the MicroPython sample")
    ap.add_argument("--only", default="", help="comma-separated modes (manifest,tree,developer)")
    ap.add_argument("--boots", default="spread,herd")
    ap.add_argument("--all", action="store_true",
                    help="also stable without manifest, with a token, herd (by default left out: the same API requests "
                         "per check and per update as stable with manifest and a token, so the same dynamics)")
    ap.add_argument("--web-limit", type=int, default=5000,
                    help="the extra scenario: github.com + downloads + raw limited to N an hour per IP (0: none)")
    ap.add_argument("--loop", default="offset", choices=("offset", "fixed"),
                    help="the devices' loop: sleep ota_schedule.next_check_in() (a stable per-device offset, as the"
                         " README shows) or a fixed hour after each check")
    ap.add_argument("--json", default=str(ROOT / "build" / "bench-fleet.json"))
    a = ap.parse_args()
    t0 = time.time()
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    modes = [m for m in scenario.MODES if not a.only or m in a.only.split(",")]
    runs = [{"mode": m, "token": tok, "boot": b, "n": a.devices, "release_h": RELEASE_H, "hours": int(a.hours),
             "tmp": tmp, "loop": a.loop} for m in modes for tok in (False, True) for b in a.boots.split(",")
            if a.all or (m, tok, b) != ("tree", True, "herd")]
    if a.web_limit and "manifest" in modes:  # undocumented limits: what if github.com/raw had one
        runs.append(dict(runs[0], token=False, boot="spread", rules={"web_limit": a.web_limit}))
    print("fleet: %d devices behind one IP, %d scenarios, %d simulated hours each, %d jobs ..."
          % (a.devices, len(runs), int(a.hours), a.jobs), flush=True)
    mpy = None
    with ProcessPoolExecutor(a.jobs) as ex:  # the longest first (herd with a token: devices waiting in retries)
        order = sorted(range(len(runs)), key=lambda i: -(runs[i]["boot"] == "herd" and runs[i]["token"]))
        futures = {i: ex.submit(scenario.run, runs[i]) for i in order}  # (the workers fork now, before any thread)
        if not a.no_mpy:  # meanwhile (it mostly waits for its subprocesses)
            from fleet import mpy_sample

            print("MicroPython sample: the real ota.py in .venv/bin/micropython against the model on 127.0.0.1,"
                  " compared with CPython devices ...", flush=True)
            mpy = mpy_sample.compare(modes)
            print(mpy_sample.report(mpy), flush=True)
        results = [futures[i].result() for i in range(len(runs))]
    print()
    print("Fleet of %d devices behind one IP, hourly checks, new release at %s; %d simulated hours"
          % (a.devices, fmt_t(RELEASE_H * 3600), int(a.hours)))
    print(table([row(r) for r in results]))
    print()
    print("API/h: REST API requests counted against the budget (per-IP 60 or per-token 5,000) in the first hour"
          " (before the release) and the busiest hour after it; refused: answered 403/429 by the primary or"
          " secondary limit (not counted); web/dl/raw: the busiest hour of github.com's /releases/latest,"
          " release downloads (github.com + objects.githubusercontent.com) and raw.githubusercontent.com;"
          " failed checks: device runs that ended in OTAError / all runs; N% new: time after the release until"
          " N% of the fleet had installed it; rollbacks: devices that installed it and rolled it back"
          " (trial not confirmed).")
    print()
    for r in results:  # issue 12's criterion
        p = r["params"]
        if p["mode"] == "manifest" and not p["token"] and not p.get("rules"):
            api = sum(x["api"] + x["api_refused_primary"] + x["api_refused_secondary"] for x in r["hours"])
            failed = sum(x["failed_runs"] for x in r["hours"])
            ok = api == 0 and failed == 0 and r["t100"] is not None and r["t100"] <= 2 * 3600
            print("Done when (issue 12): stable with manifest, no token, %s boots: %d API requests, %d failed checks, "
                  "whole fleet on the new release %s after it: %s" % (p["boot"], api, failed, fmt_t(r["t100"]),
                                                                     "MET" if ok else "NOT MET"))
    print()
    print("Per hour (hour 1 holds the release at 1:30): REST API requests counted / refused, and failed checks")
    hours = len(results[0]["hours"])
    head = ["mode", "token", "boot"] + ["%d:00-%d:00" % (h, h + 1) for h in range(hours)]
    rows = []
    for r in results:
        rows.append(row(r)[:3] + ["%d / %d, %d" % (x["api"], x["api_refused_primary"] + x["api_refused_secondary"],
                                                  x["failed_runs"]) for x in r["hours"]])
    w = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    print(" | ".join(head[i].ljust(w[i]) for i in range(len(head))))
    print("-+-".join("-" * x for x in w))
    for x in rows:
        print(" | ".join(str(x[i]).ljust(w[i]) for i in range(len(head))))
    print()
    for r in results:
        p = r["params"]
        print("%s, token %s, %s: errors %s; secondary limits %s; web/dl/raw refused %d; peak per minute %s;"
              " threads %d; %.0f s" % (
            scenario.MODE_NAMES[p["mode"]], "yes" if p["token"] else "no", row(r)[2],
            json.dumps(r["errors"]) if r["errors"] else "none", json.dumps(r["secondary"]) if r["secondary"] else "none",
            sum(x["web_refused"] for x in r["hours"]),
            json.dumps(r["peak_minute"]), r["threads"],
            r["wall_sec"]))
        for c in r["crashes"]:
            print("  SIMULATION ERROR (device %s):\n%s" % c)
    crashed = any(r["crashes"] for r in results)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"fleet": results, "micropython": mpy}, indent=1, default=str))
        print("\nper-hour details: %s" % a.json)
    print("total %.0f s" % (time.time() - t0))
    if crashed or (mpy and not mpy["same"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
