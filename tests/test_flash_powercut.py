"""Power cuts on real littlefs (a sample of tests/flash/campaign.py; `make powercut-flash` runs
every point): the device's filesystem is a simulated NOR flash (tests/flash/flashsim.py, 212 x
4 KiB blocks, mounted like the rp2 port's), the power is cut at a program or erase operation of
an update (a: not done, b: half done, c: half plus random bits) by SIGKILL of the interpreter,
and the kept image must boot: littlefs mounts, the updater's files are intact, the recovery
boot (server unreachable) leaves exactly the old or the new application files with an agreeing
version.json, and the boot with the server back reaches the target with no stray file.

Each scenario runs SAMPLE points per mode (staggered between modes) and a few cuts during the
recovery boot of one point.
"""
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "flash"))
import campaign  # noqa: E402

SAMPLE = 3        # points per mode in the update's boot (and one in the next boot, which confirms)
RECOVERY_OPS = 4  # cuts at the first operations of one point's recovery boot


class OtaPowerCutFailure(AssertionError):
    """The device failed a check after a cut (not a fault of the harness)."""


# No xfail: with the swap whose renames stay in one directory (f0e0286) every point passes.
# Before it (112b5ad), cuts between the two littlefs commits of a cross-directory rename left a
# pending move that hid .ota_stage/version.json from recovery (mixed), and a cut in _finish
# left .ota_stage/ (stray): `python tests/flash/campaign.py --rev 112b5ad --all` shows them.
SCENARIOS = list(campaign.SCENARIOS)


def staggered(total, mode_index, n=SAMPLE):
    # n points spread over the update, shifted per mode so the modes cover different operations
    return sorted({max(1, min(total, round(total * (i + (mode_index + 1) / 4) / n))) for i in range(n)})


FLASH_SCRIPT = """
import sys, os
sys.path.insert(0, %r)
import flashsim
f = flashsim.Flash(%r, int(os.getenv("FLASH_CUT") or 0), os.getenv("FLASH_MODE") or "a", 1)
f.ioctl(6, 3)                                # op 1: erase block 3
f.writeblocks(3, bytes(range(256)) * 4, 0)   # op 2: program 1 KiB
f.writeblocks(3, b"\\x0f" * 1024, 0)         # op 3: program again: bits only clear (AND)
f.ioctl(6, 4)                                # op 4: erase block 4
print("DONE", f.ops, f.progs, f.erases)
"""


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("mode", campaign.MODES)
def test_flash_semantics_and_cut_modes(tmp_path, natmod_x64, cut, mode):
    """The simulator itself: erase = 0xFF, program = AND, the image file is the flash after
    every operation, and a cut in each mode leaves exactly what it should, then kills."""
    if cut == 0 and mode != "a":
        pytest.skip("no cut: one mode is enough")
    BS, N = campaign.BS, campaign.NBLOCKS
    img = tmp_path / "flash.img"
    old = bytearray(b"\xff" * (BS * N))
    old[3 * BS:5 * BS] = b"\x5a" * (2 * BS)  # blocks 3 and 4 hold old data
    img.write_bytes(old)
    (tmp_path / "t.py").write_text(FLASH_SCRIPT % (str(campaign.HERE), str(img)))
    env = dict(campaign.os.environ, MICROPYPATH="", FLASH_CUT=str(cut), FLASH_MODE=mode)
    p = campaign.subprocess.run([str(campaign.MICROPYTHON), "t.py"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
    got = img.read_bytes()
    b3, b4 = got[3 * BS:4 * BS], got[4 * BS:5 * BS]
    data = bytes(range(256)) * 4
    anded = bytes(x & 0x0F for x in data)
    assert got[:3 * BS] == old[:3 * BS] and got[5 * BS:] == old[5 * BS:]  # nothing else touched
    if cut == 0:
        assert "DONE 4 2 2" in p.stdout, p.stdout + p.stderr
        assert b3 == anded + b"\xff" * (BS - 1024) and b4 == b"\xff" * BS
        return
    assert p.returncode != 0 and "DONE" not in p.stdout and "FLASH_CUT %d " % cut in p.stdout, p.stdout
    half = {1: BS // 2, 2: 512, 3: 512, 4: BS // 2}[cut]
    if cut in (1, 4):  # an erase
        b = b3 if cut == 1 else b4
        if mode == "a":
            assert b == b"\x5a" * BS
        else:
            assert b[:half] == b"\xff" * half
            rest = b[half:]
            if mode == "b":
                assert rest == b"\x5a" * (BS - half)
            else:  # bits only set, some of them
                assert all(x & 0x5A == 0x5A for x in rest) and rest != b"\x5a" * len(rest) and rest != b"\xff" * len(rest)
        if cut == 4:
            assert b3 == anded + b"\xff" * (BS - 1024)
        return
    before, want = (b"\xff" * 1024, data) if cut == 2 else (data, anded)
    assert b3[1024:] == b"\xff" * (BS - 1024)
    if mode == "a":
        assert b3[:1024] == before
    else:
        assert b3[:half] == want[:half]
        rest, wr, br = b3[half:1024], want[half:], before[half:]
        if mode == "b":
            assert rest == br
        else:  # bits only cleared, and only those the program clears; some of them
            assert all(x & w == w and x | b == b for x, w, b in zip(rest, wr, br))
            assert rest != br and rest != wr


@pytest.mark.parametrize("key", SCENARIOS)
def test_power_cut_sample(key, natmod_x64):
    code = campaign.device_code()
    with tempfile.TemporaryDirectory(prefix="flashcut") as work:
        sc = campaign.SCENARIOS[key](work, code).start()
        try:
            r = campaign.Runner(sc)
            phases = r.prepare()  # harness/setup problems are plain assertion errors
            total, confirm = phases["update"][1], phases["confirm"][1]
            assert total > 20, phases
            bad, rec = [], None
            for j, mode in enumerate(campaign.MODES):
                pts = [("update", n) for n in staggered(total, j)]
                if confirm:
                    pts.append(("confirm", staggered(confirm, j, 1)[0]))
                for phase, n in pts:
                    probs, info = r.point(phase, n, mode)
                    assert not any(p.startswith("cut not reached") for p in probs), (phase, n, probs)
                    bad += ["%s op %d mode %s: %s" % (phase, n, mode, p) for p in probs]
                    if rec is None and (info.get("recovery_ops") or 0) >= RECOVERY_OPS:
                        rec = (phase, n)
            for k in range(1, RECOVERY_OPS + 1 if rec else 1):
                m2 = campaign.MODES[k % 3]
                probs, info = r.point(rec[0], rec[1], "a", (k, m2))
                bad += ["%s op %d mode a, then recovery op %d mode %s: %s" % (rec + (k, m2, p)) for p in probs or ()]
            print("%s: %d+%d operations, %d+1 points x 3 modes, recovery cuts after %s: %d failing"
                  % (sc.name, total, confirm, SAMPLE, rec, len(bad)))
        finally:
            sc.stop()
    if bad:
        raise OtaPowerCutFailure("%d failures:\n%s" % (len(bad), "\n".join(bad[:20])))
