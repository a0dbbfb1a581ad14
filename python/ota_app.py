# ota_app.py: main.py runs the application after the update check (config key app_main). A
# feature module (see ota._FEATURES): imported only when app_main is set; copy it to the board then.
# While a new release is on trial, an exception from the application marks the trial failed and
# resets the board: the next boot puts the previous release back.
import ota

# key, type, default (README "Configuration")
KEYS = (
    "app_main", ota.Kind.STR, "app",  # the module main.py runs after the check (its main(), if any)
)


def attach(u):
    pass


def run(u):
    # Import the module app_main names and call its main(), if it has one. A release on trial is
    # confirmed once the check reached the server and the module imported (with "confirm":
    # "check"); if the module raises while its release is still on trial, the trial fails and
    # the board resets.
    name = u.cfg["app_main"]
    try:
        m = __import__(name)
        if u.result.get("checked") and u.cfg["confirm"] == "check" and ota.confirm(None, True):
            ota._remove_backups(u.cfg["backup_dir"])  # the previous release's backups
            print("OTA: release confirmed")
        if hasattr(m, "main"):
            m.main()
    except Exception as e:
        if not ota.confirm("%s raised %s: %s" % (name, type(e).__name__, e)):
            raise  # not on trial: the application's own error, as without the updater
        print("OTA: %s failed on its trial boot (%s); the previous release comes back at the next boot"
              % (name, e))
        u.reset()
