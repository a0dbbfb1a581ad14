# main.py: run one over-the-air update at boot, then reset per reset_mode.
#   mpremote cp ota.py ota_native.mpy main.py ota_config.json :
#   import main; main.main()
import ota


def main(path="ota_config.json"):
    """Load the config, update once, print a short result; True if files changed."""
    try:
        cfg = ota.load_config(path)
        if cfg["_unknown"]:
            print("OTA: ignoring unknown config keys:", ", ".join(cfg["_unknown"]))
        u = ota.OTA(cfg)  # finishes or rolls back an interrupted update first
        u.connect()
        updated = u.update_if_available()
    except ota.OTAError as e:
        print("OTA failed:", e)
        return False
    r = u.result
    # the target in memory after an update (reading version.json back needs room the update's
    # leftovers may not leave), else the installed record
    v = updated and r.get("target") or u.installed()
    if updated:
        m = [x[0] for x in r.get("methods", {}).values()]
        print("OTA: updated to %s (%s): %d files downloaded (%d delta, %d gzip), %d deleted, "
              "%d requests, %d bytes (%d saved)"
              % (v.get("version"), v.get("commit", "")[:7], len(r.get("download", ())), m.count("delta"),
                 m.count("gzip"), len(r.get("delete", ())), u.requests, u.bytes, r.get("saved", 0)))
        u.reset()  # machine.reset() / soft reset / nothing, per reset_mode (nothing on unix)
    elif r.get("deferred"):
        print("OTA: deferred (%s)" % r["deferred"])
    else:
        print("OTA: up to date at %s (%s), %d request(s)" % (v.get("version"), v.get("commit", "")[:7], u.requests))
    return updated
