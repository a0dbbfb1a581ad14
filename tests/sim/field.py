"""A device folder with the fake board modules (tests/device/fake_machine.py, fake_network.py,
fake_ntptime.py as machine.py, network.py, ntptime.py: a `machine` with Pin is what makes ota.OTA
drive hardware), the optional modules of the field features (python/ota_cellular.py, ota_lora.py,
ota_time.py), run through tests/device/field_drive.py (drive.py with a board's wall clock,
FAKE_EPOCH). The fakes record every call: drive.py returns machine.LOG as "hw" and network.LOG
as "net"."""
import shutil

import conftest
from conftest import PY, TESTS, Device

FAKES = TESTS / "device"
FIELD_DRIVER = FAKES / "field_drive.py"
FIELD_MODULES = ("ota_cellular.py", "ota_lora.py", "ota_time.py")
# files of a field device that are not application files
NOT_APP = {"machine.py", "network.py", "ntptime.py", "main.py", "ota_cellular.py", "ota_lora.py", "ota_time.py",
           "ota_app.py", "health.py", "healthy.txt", "cell.txt"}


def add_fakes(path, ntp=True):
    """The fake machine.py and network.py (and ntptime.py) in the device folder ``path``."""
    for n in ("machine", "network") + (("ntptime",) if ntp else ()):
        shutil.copy(FAKES / ("fake_%s.py" % n), path / (n + ".py"))


class FieldDevice(Device):
    """A Device with the fakes and the field modules, run through field_drive.py."""

    def __init__(self, path, kind, srv, ntp=True, **kw):
        super().__init__(path, kind, srv, **kw)
        for n in FIELD_MODULES:
            shutil.copy(PY / n, self.path / n)
        add_fakes(self.path, ntp)

    def run(self, *args, **kw):
        old, conftest.DRIVER = conftest.DRIVER, FIELD_DRIVER  # Device.run reads it at each call
        try:
            return super().run(*args, **kw)
        finally:
            conftest.DRIVER = old

    def files(self):
        return {p: d for p, d in super().files().items() if p not in NOT_APP}

    def module(self, name, text):
        (self.path / (name + ".py")).write_text(text)

    def state(self):
        import json

        p = self.path / "ota_state.json"
        return json.loads(p.read_text()) if p.exists() else {}
