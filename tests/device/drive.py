# Device-side driver for the e2e and power-cut tests; runs under MicroPython and CPython
# with cwd = the device folder.  Usage: drive.py [update|recover] [nonative]
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


ota._hook = _hook
mode = "recover" if "recover" in sys.argv else "update"
res = {"native": ota._nat is not None}
t0 = time.time()
try:
    cfg = ota.load_config("ota_config.json")
    u = ota.OTA(cfg)
    if mode == "update":
        res["updated"] = u.update_if_available()
    res["requests"] = u.requests
    res["bytes"] = u.bytes
    res["result"] = u.result
except ota.OTAError as e:
    res["error"] = str(e)
res["sec"] = time.time() - t0
res["mutations"] = count[0]
sys.stdout.write("OTA_RESULT ")
json.dump(res, sys.stdout)  # streamed: no big string in a small heap
print()
