"""Build real, deterministic git repositories for tests and the demo.

Everything goes through the ``git`` command line, with fixed author,
committer and dates, so the same calls give the same commit SHAs on every
machine::

    from gitrepo import make_repo, commit, tag, blob_sha
    repo = make_repo(tmp / "app")
    c1 = commit(repo, {"app.py": b"print(1)\\n", "lib/util.py": b"X = 1\\n"}, "v1")
    tag(repo, "v1.0.0")                       # annotated by default
    c2 = commit(repo, {"lib/util.py": None}, "drop util")   # None deletes
    assert blob_sha(b"X = 1\\n") == "..."      # Git blob SHA1 of the content
"""

import hashlib
import os
import subprocess
from pathlib import Path

__all__ = ["make_repo", "commit", "tag", "blob_sha", "git", "rev_parse", "branch"]

_NAME = "OTA Test"
_EMAIL = "ota-test@example.invalid"
# Commits are dated one minute apart from this instant (2024-01-01T00:00:00Z).
_EPOCH = 1704067200


def blob_sha(data: bytes) -> str:
    """Git blob SHA1 of ``data``: sha1(b"blob <len>\\0" + data), hex."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def _env(repo: Path, when: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    if when is None:
        when = _EPOCH + 60 * _count_commits(repo)
    date = "%d +0000" % when
    env.update(
        GIT_AUTHOR_NAME=_NAME, GIT_AUTHOR_EMAIL=_EMAIL, GIT_AUTHOR_DATE=date,
        GIT_COMMITTER_NAME=_NAME, GIT_COMMITTER_EMAIL=_EMAIL, GIT_COMMITTER_DATE=date,
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0", LC_ALL="C",
    )
    return env


def _count_commits(repo: Path) -> int:
    r = subprocess.run(["git", "rev-list", "--count", "--all"], cwd=repo,
                       capture_output=True, text=True,
                       env={"GIT_CONFIG_GLOBAL": os.devnull, "PATH": os.environ.get("PATH", "")})
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else 0


def git(repo, *args, input: bytes | None = None, when: int | None = None) -> str:
    """Run ``git -C repo args...`` deterministically; returns stdout (text, stripped)."""
    repo = Path(repo)
    r = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "core.autocrlf=false",
                        "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
                       cwd=repo, input=input, capture_output=True, env=_env(repo, when))
    if r.returncode != 0:
        raise RuntimeError("git %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace").strip()


def make_repo(dir) -> Path:
    """Create an empty repository at ``dir`` (made if missing) on branch main."""
    repo = Path(dir)
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main", ".", when=_EPOCH)
    return repo


def commit(repo, files: dict, message: str, allow_empty: bool = False) -> str:
    """Write ``files`` ({path: bytes, or None to delete}) and commit them all.

    Paths use "/" and are relative to the repository. Returns the commit SHA."""
    repo = Path(repo)
    for path, data in files.items():
        target = repo / path
        if data is None:
            if target.exists():
                git(repo, "rm", "-q", "--", path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        git(repo, "add", "--", path)
    args = ["commit", "-q", "-m", message]
    if allow_empty:
        args.append("--allow-empty")
    git(repo, *args)
    return rev_parse(repo, "HEAD")


def tag(repo, name: str, annotated: bool = True, ref: str = "HEAD", message: str | None = None) -> str:
    """Tag ``ref`` (annotated by default). Returns the tag object SHA for an
    annotated tag, else the commit SHA."""
    if annotated:
        git(repo, "tag", "-a", name, "-m", message or ("Release " + name), ref)
    else:
        git(repo, "tag", name, ref)
    return rev_parse(repo, "refs/tags/" + name)


def branch(repo, name: str, ref: str = "HEAD", switch: bool = False) -> str:
    """Create branch ``name`` at ``ref`` (optionally switch to it); returns its commit SHA."""
    git(repo, "branch", "-f", name, ref) if not switch else git(repo, "checkout", "-q", "-B", name, ref)
    return rev_parse(repo, "refs/heads/" + name)


def rev_parse(repo, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", "-q", ref)
