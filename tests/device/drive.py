# Device-side driver for the e2e and power-cut tests; runs under MicroPython and CPython
# with cwd = the device folder.  Usage: drive.py [update|recover|main|canary] [nonative] [again]
#   update: OTA(cfg), connect(), update_if_available()     recover: OTA(cfg) only (boot recovery)
#   main: main.main() (the device's entry point, which also resets per reset_mode)
#   canary: which of the device ids dev0..dev199 the canary_percent gate lets through
# With fake machine.py/network.py in the device folder (tests/test_extras.py), their call
# logs (machine.LOG, network.LOG) are returned as "hw" and "net".
# Env: OTA_KILL_AT=N  hard-kill the process (SIGKILL, no finally blocks) before the
#      N-th filesystem mutation.  Prints one line: OTA_RESULT {json}.
import sys
import os

sys.path.insert(0, "")
MP = sys.implementation.name == "micropython"
if "nonative" in sys.argv and not MP:
    sys.modules["ota_native"] = None
import json
import time
import ota

kill_at = int(os.getenv("OTA_KILL_AT") or 0)
count = [0]


def _hook(op, path):
    count[0] += 1
    if count[0] == kill_at:
        print("OTA_KILLED %d %s %s" % (count[0], op, path))
        if MP:
            os.system("kill -9 $PPID")  # the shell's parent is this interpreter
        else:
            os.kill(os.getpid(), 9)
        time.sleep(5)


ota._before_change = _hook
mode = ([m for m in ("recover", "main", "canary") if m in sys.argv] + ["update"])[0]
res = {"native": ota._native() is not None}
t0 = time.time()
try:
    cfg = ota.load_config("ota_config.json")
    if mode == "main":
        import main

        res["updated"] = main.main()
    else:
        u = ota.OTA(cfg)
        if "again" in sys.argv:  # a second OTA() in the same boot (an application checking again)
            u = ota.OTA(cfg)
        if mode == "update":
            res["transport"] = u.connect()
            res["updated"] = u.update_if_available()
        if mode == "canary":
            res["through"] = []
            for i in range(200):
                u.cfg["device_id"] = "dev%d" % i
                if u._deferred() is None:
                    res["through"].append(i)
        res["requests"] = u.requests
        res["bytes"] = u.bytes
        res["result"] = u.result
except ota.OTAError as e:
    res["error"] = str(e)
res["sec"] = time.time() - t0
res["mutations"] = count[0]
for k, m in (("hw", "machine"), ("net", "network")):
    if hasattr(sys.modules.get(m), "LOG"):
        res[k] = sys.modules[m].LOG
sys.stdout.write("OTA_RESULT ")
json.dump(res, sys.stdout)  # streamed: no big string in a small heap
print()
