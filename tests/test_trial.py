"""Trial boots: a new release stays on trial, with the previous one in backup_dir, until it is
confirmed; a release that fails its trial comes back out by itself. Each device run is a boot:
tests/device/drive.py's `main` mode runs main.main() (the update check, then the application
named by app_main), with reset_mode "none" so that the run goes on where a board would reset.
Both interpreters."""
import json
import shutil

import pytest

from conftest import PY, Device, dev_branch
from gitrepo import branch, commit, make_repo

GOOD = b"def main():\n    open('ran.txt', 'a').write('%s\\n')\n"
BAD = b"raise RuntimeError('broken release')\n"
# an application that confirms its own release once it is healthy ("confirm": "app")
CONFIRMS = b"import ota\n\ndef main():\n    ota.confirm()\n    open('ran.txt', 'a').write('%s\\n')\n"
LIB = b"X = %d\n"


@pytest.fixture(scope="module")
def trepo(tmp_path_factory):
    r = make_repo(tmp_path_factory.mktemp("trial") / "app")
    c = {"r1": commit(r, {"app.py": GOOD % b"r1", "lib.py": LIB % 1}, "r1")}
    branch(r, "base", c["r1"], switch=True)
    c["bad"] = commit(r, {"app.py": BAD, "lib.py": LIB % 2}, "a release that raises at import")
    branch(r, "base", c["r1"], switch=True)
    c["quiet"] = commit(r, {"app.py": GOOD % b"quiet", "lib.py": LIB % 3}, "runs, never confirms")
    c["r3"] = commit(r, {"app.py": CONFIRMS % b"r3", "lib.py": LIB % 4}, "confirms itself")
    return r, c


@pytest.fixture
def tsrv(trepo):
    from ghserver import GitHubServer

    with GitHubServer(trepo[0]) as s:
        yield s


def boot(d):
    """One boot: main.main(); the OTA_RESULT of drive.py."""
    r = d.run("main")
    assert "crash" not in r, r
    return r


def journal(d):
    p = d.path / "ota_journal.json"
    return json.loads(p.read_text()) if p.exists() else None


def at(d, name, trepo):
    v = d.version()
    return v is not None and v["commit"] == trepo[1][name] and (d.path / "lib.py").read_bytes() == {
        "r1": LIB % 1, "bad": LIB % 2, "quiet": LIB % 3, "r3": LIB % 4}[name]


def device(tmp_path, kind, tsrv, trepo, name, **cfg):
    d = Device(tmp_path / name, kind, tsrv)
    shutil.copy(PY / "main.py", d.path / "main.py")
    b = dev_branch(trepo, d, name, trepo[1]["r1"])
    d.config(channel="developer", branch=b, app_main="app", **cfg)
    return d, b


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_release_that_raises_at_import_is_rolled_back(tmp_path, kind, tsrv, trepo):
    d, b = device(tmp_path, kind, tsrv, trepo, "bad")
    boot(d)  # installs r1: on trial (the run goes on as if after the reset, and r1 runs)
    assert at(d, "r1", trepo) and journal(d)["state"] == "trial"
    boot(d)  # the next boot: its check reaches the server and the app imports: r1 is confirmed
    assert journal(d) is None and not (d.path / ".ota_backup").exists()
    assert (d.path / "ran.txt").read_text() == "r1\nr1\n"

    branch(trepo[0], b, trepo[1]["bad"])
    boot(d)  # installs the bad release, whose app raises at import: its trial fails
    assert at(d, "bad", trepo)
    j = journal(d)
    assert j["state"] == "trial" and "broken release" in j["failed"], j
    assert "failed on its trial boot" in d.out
    boot(d)  # the next boot puts r1 back, by itself, and records why
    assert at(d, "r1", trepo) and journal(d) is None and not (d.path / ".ota_backup").exists()
    assert "rolled back" in d.errors()[-1]["reason"] and "broken release" in d.errors()[-1]["reason"]
    assert (d.path / "ran.txt").read_text().endswith("r1\n")  # and r1 runs again, in that boot

    tsrv.clear_log()
    boot(d)  # it keeps checking, and does not take the rolled-back commit again
    assert at(d, "r1", trepo) and len(tsrv.requests) == 1
    branch(trepo[0], b, trepo[1]["r3"])  # a newer release is taken
    boot(d)
    assert at(d, "r3", trepo)


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_release_never_confirmed_rolls_back_after_trial_boots(tmp_path, kind, tsrv, trepo):
    d, b = device(tmp_path, kind, tsrv, trepo, "quiet", confirm="app", trial_boots=2)
    boot(d)
    (d.path / "ota_journal.json").unlink()  # r1 as the confirmed base (its app cannot confirm)
    branch(trepo[0], b, trepo[1]["quiet"])
    boot(d)  # installs "quiet": it runs, but never calls ota.confirm()
    assert at(d, "quiet", trepo) and journal(d)["boots"] == 0
    for n in (1, 2):  # trial_boots boots without a confirmation
        boot(d)
        assert at(d, "quiet", trepo) and journal(d)["boots"] == n
    boot(d)  # one more: rolled back
    assert at(d, "r1", trepo) and journal(d) is None
    assert "not confirmed after 2 boots" in d.errors()[-1]["reason"]


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
def test_app_confirms_its_release(tmp_path, kind, tsrv, trepo):
    d, b = device(tmp_path, kind, tsrv, trepo, "selfconf", confirm="app")
    boot(d)
    (d.path / "ota_journal.json").unlink()
    branch(trepo[0], b, trepo[1]["r3"])
    boot(d)  # installs r3, which runs and confirms itself
    assert at(d, "r3", trepo) and journal(d) is None
    boot(d)  # its backups are freed at the next boot (no journal: backups mean nothing)
    assert not (d.path / ".ota_backup").exists() and at(d, "r3", trepo)


def test_trial_boots_zero_frees_backups_at_commit(tmp_path, tsrv, trepo):
    d = Device(tmp_path / "zero", "micropython", tsrv)
    d.config(channel="developer", branch=dev_branch(trepo, d, "zero", trepo[1]["r1"]), trial_boots=0)
    assert d.update()["updated"] is True
    assert journal(d) is None and not (d.path / ".ota_backup").exists()
