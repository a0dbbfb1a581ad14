# main.py: at boot, one over-the-air update check, then (with app_main) the application.
#   mpremote cp ota.py ota_native.mpy main.py ota_config.json :
#   import main; main.main()
# After an update the board resets (reset_mode) and the new release is on trial until the next
# check that reaches the server confirms it (or the application calls ota.confirm(), with
# "confirm": "app"). With app_main, ota_app.py runs the application after the check, and an
# exception from it during the trial rolls the release back at the next boot.
import ota


def main(path="ota_config.json"):
    """Load the config, update once, print a short result, run the application (app_main);
    True if files changed."""
    u = None
    updated = False
    try:
        cfg = ota.load_config(path)
        if cfg["_unknown"]:
            print("OTA: ignoring unknown config keys:", ", ".join(cfg["_unknown"]))
        if cfg["token"] and not cfg["tls_verify"]:
            print("OTA: warning: tls_verify is false: HTTPS is not verified, so the token is not sent")
        u = ota.OTA(cfg)  # finishes or rolls back an interrupted update, counts a trial boot
        u.connect()
        updated = u.update_if_available()
        r = u.result
        if updated:
            # the target in memory (reading version.json back needs room the update's leftovers
            # may not leave)
            v = r["target"]
            m = [x[0] for x in r.get("methods", {}).values() if x]
            print("OTA: updated to %s (%s): %d files downloaded (%d delta, %d gzip), %d deleted, "
                  "%d requests, %d bytes (%d saved)"
                  % (v["version"], (v["commit"] or v["ref"])[:7], len(r["download"]), m.count("delta"), m.count("gzip"),
                     len(r["delete"]), u.requests, u.bytes, r.get("saved", 0)))
            u.reset()  # machine.reset() / soft reset / nothing, per reset_mode (nothing on unix)
        elif r["deferred"]:
            print("OTA: deferred (%s)" % r["deferred"])
        else:
            v = u.installed()
            print("OTA: up to date at %s (%s), %d request(s)" % (v.get("version"), (v.get("commit") or "")[:7], u.requests))
    except ota.OTAError as e:
        print("OTA failed:", e)
    if u and "ota_app" in u.cfg["_features"] and not (updated and u.cfg["reset_mode"] != "none"):
        __import__("ota_app").run(u)  # also after a failed check: the installed release still runs
    return updated
