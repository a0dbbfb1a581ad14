# Flash simulator for power-cut tests on real littlefs (runs in the MicroPython unix port).
#
# A RAM NOR flash like the Pico W's filesystem region: 212 blocks of 4096 bytes (848 KiB),
# erase sets a block to 0xFF, program can only clear bits (new = old AND data). It speaks the
# extended block protocol (readblocks(n, buf, off), writeblocks(n, buf, off), ioctl 4/5/6) and
# is mounted as the rp2 port does: vfs.VfsLfs2(bdev, progsize=256) at "/".
#
# Every program and erase is one operation. The image lives in a host file, written through
# after every operation (so the file is always exactly the flash). A power cut at operation N
# (FLASH_CUT=N) in mode FLASH_MODE:
#   a  the operation does not happen
#   b  only the first half of its bytes happens
#   c  the first half, plus random bits of the second half (a program clears only some of the
#      bits it would clear; an erase sets only some of the bits it would set)
# then the interpreter dies at once: SIGKILL of the process hosting it (as tests/device/drive.py
# does), no finally block, no close, no unmount. FLASH_SEED seeds mode c.
#
# Usage (the image path absolute; the boot needs room for two images: -X heapsize=4M):
#   micropython flashsim.py mkfs IMAGE SRCDIR   format, then copy SRCDIR's files to "/"
#   micropython -X heapsize=4M flashsim.py boot IMAGE [noexec]
#       a boot: mount read-only, list and read every file ("pre"; and, on a RAM copy after one
#       write, what littlefs had hidden: "hidden"), remount read-write, run boot.py if present,
#       then `import main; main.main()` from the filesystem, then list again ("post");
#       noexec: only the check
# Prints FLASH_PRE {json} (the check after mounting), then FLASH_RESULT {json} (all of it); a
# cut prints FLASH_CUT <op> <prog|erase> <mode> <block> and kills.
import sys
import os
import vfs
import json
import time
import hashlib
import binascii

BS = 4096
NBLOCKS = 212  # 848 KiB, the Pico W's littlefs region
STATE_FILES = ("version.json", "ota_journal.json", "ota_journal.json.tmp", "version.json.tmp")


class Flash:
    def __init__(self, path, cut=0, mode="a", seed=0, data=None):
        if path is None:  # a copy in RAM only (see clone)
            self.d = data
            self.f = None
        else:
            self.d = bytearray(BS * NBLOCKS)
            self.f = open(path, "r+b")  # stays open (a plain fd) after "/" is unmounted
            n = self.f.readinto(self.d)
            if n != len(self.d):
                raise ValueError("image %s: %d bytes, want %d" % (path, n, len(self.d)))
        self.mv = memoryview(self.d)
        self.ops = self.progs = self.erases = 0
        self.cut, self.mode, self.seed = cut, mode, seed
        self.ro = False  # a write while True is recorded (checks must not write)
        self.ro_writes = 0

    # -- block protocol
    def readblocks(self, n, buf, off=0):
        a = n * BS + off
        buf[:] = self.mv[a:a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        if off is None:  # the simple protocol (erase + program whole blocks); littlefs never uses it
            for i in range(len(buf) // BS):
                self.ioctl(6, n + i)
            off = 0
        if self.ro:
            self.ro_writes += 1
            raise OSError(30)
        a = n * BS + off
        k = len(buf)
        self.ops += 1
        self.progs += 1
        if self.ops == self.cut:
            h = k // 2 if self.mode in "bc" else 0
            self._prog(a, buf, h)
            if self.mode == "c":
                r = self._rand(k - h)
                for i in range(h, k):
                    self.d[a + i] &= buf[i] | r[i - h]  # a bit clears only where r is 0
            self._die("prog", n, a, k)
        self._prog(a, buf, k)
        self._persist(a, k)

    def ioctl(self, op, arg):
        if op == 4:
            return NBLOCKS
        if op == 5:
            return BS
        if op == 6:
            if self.ro:
                self.ro_writes += 1
                return -30
            a = arg * BS
            self.ops += 1
            self.erases += 1
            if self.ops == self.cut:
                h = BS // 2 if self.mode in "bc" else 0
                self.d[a:a + h] = b"\xff" * h
                if self.mode == "c":
                    r = self._rand(BS - h)
                    for i in range(h, BS):
                        self.d[a + i] |= r[i - h]  # only some bits reach 1
                self._die("erase", arg, a, BS)
            self.d[a:a + BS] = b"\xff" * BS
            self._persist(a, BS)
            return 0
        return 0  # 1 init, 2 deinit, 3 sync

    def clone(self):
        return Flash(None, data=bytearray(self.d))

    # -- helpers
    def _prog(self, a, buf, k):
        if k <= 0:
            return
        d = self.d
        if self.mv[a:a + k] == b"\xff" * k:  # programming erased flash: AND is a copy
            d[a:a + k] = memoryview(buf)[:k]
            return
        for i in range(k):
            d[a + i] &= buf[i]

    def _rand(self, n):
        import random

        random.seed(self.seed * 1000003 + self.cut)
        return bytes(random.getrandbits(8) for _ in range(n))

    def _persist(self, a, k):
        if self.f is None:
            return
        self.f.seek(a)
        self.f.write(self.mv[a:a + k])

    def _die(self, kind, block, a, k):
        self._persist(a, k)
        self.f.flush()
        print("FLASH_CUT %d %s %s %d" % (self.ops, kind, self.mode, block))
        os.system("kill -9 $PPID")  # the shell's parent is this interpreter's process
        time.sleep(30)


def blob_sha(data):
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return binascii.hexlify(h.digest()).decode()


def walk(p="", out=None):
    # {path: sha | "dir" | "error: ..."}; small state files also as text under "text:<path>"
    if out is None:
        out = {}
    try:
        items = list(os.ilistdir(p or "/"))
    except OSError as e:
        out[(p or "/") + "/"] = "error: listdir %r" % e
        return out
    for it in items:
        q = p + "/" + it[0] if p else it[0]
        if it[1] == 0x4000:
            out[q + "/"] = "dir"
            walk(q, out)
            continue
        try:
            with open(q, "rb") as f:
                data = f.read()
            size = os.stat(q)[6]
            if size != len(data):
                out[q] = "error: stat size %d, read %d" % (size, len(data))
                continue
            out[q] = blob_sha(data)
            if q in STATE_FILES or q.startswith("ota_error") or q.startswith("ota_state"):
                out["text:" + q] = data.decode()
        except Exception as e:  # noqa: BLE001  (anything: the check reports it)
            out[q] = "error: %r" % e
    return out


def _exc(e):
    import io

    s = io.StringIO()
    sys.print_exception(e, s)
    return s.getvalue()


def _out(res, what="FLASH_RESULT "):
    sys.stdout.write(what)
    json.dump(res, sys.stdout)
    print()


def mkfs(img, src):
    files = {}
    for n in os.listdir(src):
        with open(src + "/" + n, "rb") as f:
            files[n] = f.read()
    fl = Flash(img)
    vfs.VfsLfs2.mkfs(fl, progsize=256)
    fs = vfs.VfsLfs2(fl, progsize=256)
    vfs.umount("/")
    vfs.mount(fs, "/")
    for n in sorted(files):
        with open("/" + n, "wb") as f:
            f.write(files[n])
    vfs.umount("/")
    _out({"ops": fl.ops, "files": sorted(files)})


def boot(img, run=True):
    fl = Flash(img, int(os.getenv("FLASH_CUT") or 0), os.getenv("FLASH_MODE") or "a",
               int(os.getenv("FLASH_SEED") or 0))
    res = {}
    vfs.umount("/")  # the host's filesystem is gone: "/" is the flash, as on the board
    fl.ro = True
    try:
        fs = vfs.VfsLfs2(fl, progsize=256)
        vfs.mount(fs, "/", readonly=True)
    except OSError as e:
        res["mount"] = repr(e)  # the rp2 port would format the flash here: a bricked device
        _out(res)
        return
    res["pre"] = walk()
    vfs.umount("/")
    # what littlefs hides until its first write (a pending move): on a RAM copy of the flash,
    # one write (mkdir + rmdir), then list again
    try:
        c = fl.clone()
        vfs.mount(vfs.VfsLfs2(c, progsize=256), "/")
        os.mkdir("/.flashsim_probe")
        os.rmdir("/.flashsim_probe")
        after = walk()
        vfs.umount("/")
        del c
        res["hidden"] = [p for p in after if p not in res["pre"]]
        res["unhidden_gone"] = [p for p in res["pre"] if p not in after]
    except OSError as e:
        res["hidden_probe"] = repr(e)
        try:
            vfs.umount("/")
        except OSError:
            pass
    res["ro_writes"] = fl.ro_writes
    fl.ro = False
    _out(res, "FLASH_PRE ")  # the check after mounting, even if this boot is cut later
    if run:
        # a new object: a read-only mount takes writeblocks away from the one it was given
        vfs.mount(vfs.VfsLfs2(fl, progsize=256), "/")
        os.chdir("/")
        sys.path[:] = ["", ".frozen", "/lib"]  # the rp2 port's
        try:
            os.stat("boot.py")
            has_boot = True
        except OSError:
            has_boot = False
        if has_boot:
            try:
                with open("boot.py") as f:
                    code = f.read()
                exec(code, {"__name__": "__main__"})
            except BaseException as e:  # noqa: BLE001  (the board prints it and goes on)
                res["boot_py"] = _exc(e)
        try:
            import main

            res["main"] = main.main()
        except BaseException as e:  # noqa: BLE001
            res["exc"] = _exc(e)
        fl.ro = True
        res["post"] = walk()
        res["ro_writes"] += fl.ro_writes
    res["ops"], res["progs"], res["erases"] = fl.ops, fl.progs, fl.erases
    _out(res)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "mkfs":
        mkfs(sys.argv[2], sys.argv[3])
    else:
        boot(sys.argv[2], "noexec" not in sys.argv)
