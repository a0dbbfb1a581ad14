"""Power-cut campaign (after MCUboot's simulator): kill the device process before every
filesystem mutation of an update in turn (N = 1..total), reboot (create OTA: recovery runs),
and check that the device holds exactly the old file set or exactly the new one, with a
version.json that agrees. Also cuts power again during recovery itself.

The kill is real: tests/device/drive.py counts mutations through ota._before_change and at step N
sends SIGKILL to its own interpreter (no finally blocks, no flush). Runs in the MicroPython
unix interpreter (with ota_native.mpy when built) and in CPython.
"""
import json

import pytest

from conftest import V1, V3, Device, installed_set, manifest, power_cut_campaign
from gitrepo import branch


def verdict(dev, c):
    # "old" (V1 at c[1]) or "new" (V3 at c[3]), else what is wrong; a hook's hook_ran.txt aside
    return installed_set(dev, {"old": (V1, c[1]), "new": (V3, c[3])}, ignore=("hook_ran.txt",))


@pytest.mark.parametrize("kind", ["micropython", "cpython"])
def test_power_cut_at_every_step(tmp_path, srv, repo, kind):
    c = repo[1]
    name = "cut-" + kind
    branch(repo[0], name, c[1])
    base = Device(tmp_path / "base", kind, srv)
    base.config(channel="developer", branch=name, chunk=256)
    assert base.update()["updated"] is True
    branch(repo[0], name, c[3])
    # reboot, losing power again at the first recovery steps, then a clean boot
    _, total, seen = power_cut_campaign(base, tmp_path, {"old": (V1, c[1]), "new": (V3, c[3])},
                                        recovery_cuts=(1, 2), ignore=("hook_ran.txt",))
    print("power-cut campaign (%s): %d crash points checked, %d recovered to old, %d to new, 0 mixed"
          % (kind, total, seen["old"], seen["new"]))
    assert total > 20 and sum(seen.values()) == total and seen["old"] and seen["new"]


def test_crash_after_hook_before_commit_rolls_back(tmp_path, srv, repo):
    """Power lost after the post_update hook ran but before the commit rename: rolled back at boot."""
    c = repo[1]
    srv.add_release("v1.0.0", assets={"manifest.json": manifest(V1, "1.0.0")})
    d = Device(tmp_path / "dev", "micropython", srv).config(channel="stable")
    assert d.update()["updated"] is True
    srv.add_release("v2.0.0", assets={"manifest.json": manifest(V3, "2.0.0", post_update="hook_ok")})
    # the hook writes hook_ran.txt: the 'open' of that file is not an ota mutation, so kill
    # at the last swap step instead and check the rollback at boot
    total = d.clone(tmp_path / "probe").update()["mutations"]
    commit_step = None
    for n in range(total, 0, -1):
        dd = d.clone(tmp_path / ("k%d" % n))
        dd.run(env={"OTA_KILL_AT": str(n)})
        # the commit: version.json written in place (tmp + rename), or the staged one moved in
        if "rename version.json.tmp" in dd.out or "rename .ota_stage/version.json" in dd.out:
            commit_step = n
        dd.run("recover")
        assert verdict(dd, c) in ("old", "new")
        if commit_step:
            break
    assert commit_step, "the commit rename was never reached"
    errs = json.loads((dd.path / "ota_error.json").read_text())
    assert "rolled back an interrupted update to v2.0.0" in errs[-1]["reason"]
