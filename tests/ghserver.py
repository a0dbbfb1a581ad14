"""A GitHub-compatible HTTP/1.1 test server on loopback, serving a real git repository.

Standard library only. It answers the REST API calls an updater makes, raw
file downloads and release assets, with GitHub's JSON shapes, redirects and
headers, and lets a test inject faults (cut, flip, stall, status codes),
rate limiting, truncated trees and private-repository authentication.

    from ghserver import GitHubServer
    with GitHubServer(repo_dir, owner="octo", repo="app", token=None) as srv:
        srv.add_release("v1.0.0", assets={"manifest.json": data})
        srv.url        # "http://127.0.0.1:PORT" (== srv.api_base)
        srv.raw_base   # srv.url + "/raw"
        srv.add_fault("lib/util.py", "cut", after=100)
        ... ; srv.requests  # [{method, path, status, bytes, headers, ...}]

Endpoints (``{o}/{r}`` = owner/repo, ``{ref}`` = branch, tag or commit SHA):

    GET /repos/{o}/{r}                               repository (default_branch, private)
    GET /repos/{o}/{r}/releases                      list, newest first (drafts only with the token)
    GET /repos/{o}/{r}/releases/latest               newest non-draft non-prerelease; 404 if none
    GET /repos/{o}/{r}/releases/tags/{tag}           published release by tag; 404 if none
    GET /repos/{o}/{r}/releases/assets/{id}          asset JSON, or 302 to the bytes with
                                                     "Accept: application/octet-stream"
    GET /{o}/{r}/releases/latest                     web page: 302 to /{o}/{r}/releases/tag/{tag}, or to
                                                     /{o}/{r}/releases when there is none (public only)
    GET /{o}/{r}/releases/download/{tag}/{name}      browser_download_url: 302 to /_objects/...
                                                     (404 for a private repo: no API token there)
    GET /_objects/{id}/{name}?sig=...                the asset bytes (signed URL, no auth needed)
    GET /repos/{o}/{r}/git/ref/heads/{branch}        {"ref", "object": {"sha", "type": "commit"}}
    GET /repos/{o}/{r}/git/ref/tags/{tag}            type "tag" (annotated) or "commit"
    GET /repos/{o}/{r}/git/tags/{sha}                annotated tag object
    GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1] sha: tree, commit or ref name
    GET /repos/{o}/{r}/commits/{ref}                 {"sha", "commit": {"tree": {"sha"}, ...}}
    GET /repos/{o}/{r}/branches/{branch}             {"name", "commit": {"sha"}}
    GET /raw/{o}/{r}/{ref}/{path}                    blob bytes: Range, gzip, ETag, chunked
    GET /{o}/{r}/raw/{ref}/{path}                    302 to /raw/... (like github.com)

Run as a script: ``python tests/ghserver.py --repo DIR --owner O --name R [--port P] [--token T]``.
"""

import argparse
import email.utils
import gzip as _gzip
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit, parse_qs

__all__ = ["GitHubServer", "GitStore"]

_DOC = "https://docs.github.com/rest"
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_MESSAGES = {
    400: "Bad Request", 401: "Requires authentication", 403: "Forbidden", 404: "Not Found",
    409: "Conflict", 416: "Requested Range Not Satisfiable", 422: "Validation Failed",
    429: "Too Many Requests", 500: "Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_RATE_LIMIT_MESSAGE = ("API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                       "Authenticated requests get a higher rate limit. Check out the documentation "
                       "for more details.)")


class GitStore:
    """Read-only access to a git repository through the ``git`` command.

    Objects are immutable, so everything keyed by a full SHA is cached;
    refs are resolved on every call (tests may commit while serving)."""

    def __init__(self, repo_dir):
        self.repo_dir = os.path.abspath(repo_dir)
        self._lock = threading.Lock()
        self._types = {}     # sha -> "commit" | "tree" | "blob" | "tag"
        self._blobs = {}     # sha -> bytes
        self._trees = {}     # (tree sha, recursive) -> [entries]
        self._commits = {}   # sha -> {"tree", "parents", "message", ...}
        self._tags = {}      # sha -> tag object dict
        if self._git("rev-parse", "--git-dir", check=False) is None:
            raise ValueError("not a git repository: %s" % self.repo_dir)

    def _git(self, *args, check=True, binary=False):
        env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", LC_ALL="C", GIT_TERMINAL_PROMPT="0")
        r = subprocess.run(["git", *args], cwd=self.repo_dir, capture_output=True, env=env)
        if r.returncode != 0:
            if check:
                raise RuntimeError("git %s: %s" % (args[0], r.stderr.decode(errors="replace").strip()))
            return None
        return r.stdout if binary else r.stdout.decode("utf-8", "surrogateescape")

    # -- refs ---------------------------------------------------------------
    def ref_sha(self, fullref):
        """SHA a full ref ("refs/heads/main", "refs/tags/v1") points to (tag object for
        annotated tags), or None."""
        if not fullref.startswith(("refs/heads/", "refs/tags/")) or ".." in fullref:
            return None
        out = self._git("rev-parse", "--verify", "-q", fullref, check=False)
        return out.strip() if out else None

    def peel(self, sha, want="commit"):
        """Follow tag objects from ``sha`` down to an object of type ``want``."""
        seen = 0
        while sha and seen < 10:
            t = self.obj_type(sha)
            if t == want:
                return sha
            if t == "tag":
                sha = self.tag(sha)["object"]
            elif t == "commit" and want == "tree":
                sha = self.commit(sha)["tree"]
            else:
                return None
            seen += 1
        return None

    def resolve(self, ref):
        """Commit SHA for a branch name, tag name or (abbreviated) commit SHA, or None."""
        if not ref or ref.startswith("-") or ".." in ref:
            return None
        for full in ("refs/heads/" + ref, "refs/tags/" + ref):
            sha = self.ref_sha(full)
            if sha:
                return self.peel(sha, "commit")
        if _HEX.match(ref):
            out = self._git("rev-parse", "--verify", "-q", ref + "^{object}", check=False)
            if out:
                return self.peel(out.strip(), "commit")
        return None

    def default_branch(self):
        out = self._git("symbolic-ref", "-q", "--short", "HEAD", check=False)
        return out.strip() if out else "main"

    # -- objects ------------------------------------------------------------
    def obj_type(self, sha):
        if sha not in self._types:
            if not _HEX.match(sha or ""):
                return None
            out = self._git("cat-file", "-t", sha, check=False)
            if out is None:
                return None
            full = self._git("rev-parse", "--verify", "-q", sha, check=False)
            if full is None or full.strip() != sha:
                return None          # abbreviated: callers use full SHAs
            with self._lock:
                self._types[sha] = out.strip()
        return self._types[sha]

    def blob(self, sha):
        if sha not in self._blobs:
            data = self._git("cat-file", "blob", sha, binary=True)
            with self._lock:
                self._blobs[sha] = data
        return self._blobs[sha]

    def commit(self, sha):
        if sha not in self._commits:
            text = self._git("cat-file", "commit", sha)
            head, _, message = text.partition("\n\n")
            info = {"tree": None, "parents": [], "message": message, "author": "", "committer": ""}
            for line in head.splitlines():
                key, _, val = line.partition(" ")
                if key == "tree":
                    info["tree"] = val
                elif key == "parent":
                    info["parents"].append(val)
                elif key in ("author", "committer"):
                    info[key] = val
            with self._lock:
                self._commits[sha] = info
        return self._commits[sha]

    def tag(self, sha):
        if sha not in self._tags:
            text = self._git("cat-file", "tag", sha)
            head, _, message = text.partition("\n\n")
            info = {"message": message}
            for line in head.splitlines():
                key, _, val = line.partition(" ")
                info.setdefault(key, val)
            with self._lock:
                self._tags[sha] = info
        return self._tags[sha]

    def tree(self, tree_sha, recursive=True):
        """[{"path","mode","type","sha","size"(blobs)}] in git's order."""
        key = (tree_sha, recursive)
        if key not in self._trees:
            args = ["ls-tree", "-z", "-l", "--full-tree"]
            if recursive:
                args += ["-r", "-t"]
            out = self._git(*args, tree_sha)
            entries = []
            for rec in out.split("\0"):
                if not rec:
                    continue
                meta, _, path = rec.partition("\t")
                mode, typ, sha, size = meta.split()
                e = {"path": path, "mode": mode, "type": typ, "sha": sha}
                if typ == "blob":
                    e["size"] = int(size)
                entries.append(e)
            with self._lock:
                self._trees[key] = entries
        return self._trees[key]

    def file_at(self, commit_sha, path):
        """(blob sha, size) of ``path`` in the commit's tree, or None."""
        tree = self.commit(commit_sha)["tree"]
        for e in self.tree(tree, True):
            if e["path"] == path and e["type"] == "blob":
                return e["sha"], e["size"]
        return None


class _Fault:
    def __init__(self, path_contains, action, times=1, **kw):
        if action not in ("cut", "flip", "stall", "status"):
            raise ValueError("unknown fault action: %r" % action)
        if action == "status" and "status" not in kw:
            raise ValueError("a status fault needs status=")
        if action == "flip" and "at" not in kw:
            raise ValueError("a flip fault needs at=")
        if action == "stall" and "seconds" not in kw:
            raise ValueError("a stall fault needs seconds=")
        self.path_contains = path_contains
        self.action = action
        self.times = times      # None = forever
        self.kw = kw
        self.hits = 0

    def active(self):
        return self.times is None or self.hits < self.times

    def __repr__(self):
        return "Fault(%r, %r, times=%r, hits=%d, %r)" % (self.path_contains, self.action,
                                                         self.times, self.hits, self.kw)


class _Response:
    """What a route returns: status, headers, body; body faults are applied on send."""

    def __init__(self, status, body=b"", headers=None, content_type="application/json; charset=utf-8"):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if content_type and body is not None:
            self.headers.setdefault("Content-Type", content_type)


def _json_response(status, obj, headers=None):
    return _Response(status, json.dumps(obj, separators=(",", ":")).encode(), headers)


def _error(status, message=None, headers=None):
    return _json_response(status, {"message": message or _MESSAGES.get(status, "Error"),
                                   "documentation_url": _DOC}, headers)


def _redirect(location):
    return _Response(302, b"", {"Location": location}, content_type=None)


class GitHubServer:
    """GitHub-compatible server for one repository ``owner/repo`` backed by ``repo_dir``.

    Attributes a test may set at any time: ``token`` (None = public),
    ``gzip`` (True: honour Accept-Encoding: gzip on raw files and assets),
    ``chunked`` (True: Transfer-Encoding: chunked instead of Content-Length),
    ``chunk_size``, ``truncate_trees``, ``rate_limit_reset`` (epoch seconds or None),
    ``quiet`` (False: print one line per request; the token is never printed).
    """

    def __init__(self, repo_dir, owner="octo", repo="app", token=None, host="127.0.0.1", port=0, tls=None):
        self.git = GitStore(repo_dir)
        self.tls = tls               # (certfile, keyfile): serve HTTPS instead of HTTP
        self.owner = owner
        self.repo = repo
        self.token = token
        self.host = host
        self.port = port
        self.gzip = True
        self.chunked = False
        self.chunk_size = 4096
        self.truncate_trees = False
        self.rate_limit_reset = None
        self.rate_limit = 60
        self.quiet = True
        self.requests = []
        self._releases = []          # in the order added
        self._assets = {}            # asset id -> (release, name, bytes)
        self._next_id = 1
        self._faults = []
        self._lock = threading.Lock()
        self._secret = os.urandom(16)
        self._httpd = None
        self._thread = None
        self._conns = set()
        self.connections = 0  # connections accepted (each request's log entry has its "conn" number)
        self.drop_idle = False  # close each connection after one response, without saying so
        self._used = 0

    # -- lifecycle ----------------------------------------------------------
    def start(self):
        if self._httpd is not None:
            return self
        server = self

        class Handler(_Handler):
            srv = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        if self.tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ghserver", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:          # wake handler threads parked on keep-alive reads
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join(5)
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    @property
    def api_base(self):
        return self.url

    @property
    def raw_base(self):
        return self.url + "/raw"

    # -- releases -----------------------------------------------------------
    def add_release(self, tag, assets=None, prerelease=False, draft=False, name=None, body=""):
        """Publish a release for an existing tag; ``assets``: {name: bytes}. Returns its JSON."""
        tag_sha = self.git.ref_sha("refs/tags/" + tag)
        if tag_sha is None:
            raise ValueError("tag %r does not exist in %s" % (tag, self.git.repo_dir))
        commit = self.git.peel(tag_sha, "commit")
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            rel = {"id": rid, "tag": tag, "name": name or tag, "commit": commit, "draft": bool(draft),
                   "prerelease": bool(prerelease), "body": body, "assets": [],
                   "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            for aname, data in (assets or {}).items():
                if isinstance(data, str):
                    data = data.encode()
                aid = self._next_id
                self._next_id += 1
                rel["assets"].append((aid, aname))
                self._assets[aid] = (rel, aname, bytes(data))
            self._releases.append(rel)
        return self._release_json(rel)

    def remove_release(self, tag):
        with self._lock:
            for rel in [r for r in self._releases if r["tag"] == tag]:
                self._releases.remove(rel)
                for aid, _ in rel["assets"]:
                    self._assets.pop(aid, None)

    def set_asset(self, tag, name, data):
        """Add or replace one asset of the release ``tag``."""
        with self._lock:
            rel = next(r for r in reversed(self._releases) if r["tag"] == tag)
            for aid, aname in rel["assets"]:
                if aname == name:
                    self._assets[aid] = (rel, name, bytes(data))
                    return
            aid = self._next_id
            self._next_id += 1
            rel["assets"].append((aid, name))
            self._assets[aid] = (rel, name, bytes(data))

    def _release_json(self, rel):
        o, r = self.owner, self.repo
        api = "%s/repos/%s/%s" % (self.url, o, r)
        assets = []
        for aid, aname in rel["assets"]:
            data = self._assets[aid][2]
            assets.append({
                "url": "%s/releases/assets/%d" % (api, aid), "id": aid, "name": aname, "label": "",
                "content_type": "application/octet-stream", "state": "uploaded", "size": len(data),
                "download_count": 0,
                "browser_download_url": "%s/%s/%s/releases/download/%s/%s" % (
                    self.url, o, r, quote(rel["tag"]), quote(aname)),
            })
        return {
            "url": "%s/releases/%d" % (api, rel["id"]), "id": rel["id"],
            "html_url": "%s/%s/%s/releases/tag/%s" % (self.url, o, r, quote(rel["tag"])),
            "assets_url": "%s/releases/%d/assets" % (api, rel["id"]),
            "tag_name": rel["tag"], "name": rel["name"], "target_commitish": rel["commit"],
            "draft": rel["draft"], "prerelease": rel["prerelease"], "body": rel["body"],
            "created_at": rel["published_at"], "published_at": None if rel["draft"] else rel["published_at"],
            "tarball_url": "%s/tarball/%s" % (api, quote(rel["tag"])),
            "zipball_url": "%s/zipball/%s" % (api, quote(rel["tag"])),
            "assets": assets,
        }

    # -- faults and log -----------------------------------------------------
    def add_fault(self, path_contains, action, times=1, **kw):
        """Inject a fault into the next ``times`` responses (None = all) whose request
        path contains ``path_contains``.

        - "cut": close the connection after ``after`` body bytes (default 0);
        - "flip": XOR byte ``at`` of the body with ``mask`` (default 0xFF);
        - "stall": sleep ``seconds`` after the headers, or after ``after`` body bytes,
          or before anything is sent with ``before_headers=True``;
        - "status": answer ``status`` with optional ``headers`` and ``message``.
        A status fault replaces the response (and counts for any request); body faults
        count only for responses with a body, and several may apply to one response."""
        f = _Fault(path_contains, action, times, **kw)
        with self._lock:
            self._faults.append(f)
        return f

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def clear_log(self):
        with self._lock:
            self.requests.clear()

    def _take_faults(self, path, has_body):
        """The faults that apply to this response, consuming their counts."""
        with self._lock:
            matching = [f for f in self._faults if f.active() and f.path_contains in path]
            status = [f for f in matching if f.action == "status"]
            if status:
                status[0].hits += 1
                return [status[0]]
            if not has_body:
                return []
            for f in matching:
                f.hits += 1
            return matching

    def _log(self, entry):
        with self._lock:
            self.requests.append(entry)
        if not self.quiet:
            print("%s %s -> %s" % (entry["method"], entry["path"], entry["status"]), file=sys.stderr)

    # -- routing ------------------------------------------------------------
    def _auth(self, headers):
        """None if allowed, else the 401 response."""
        value = headers.get("Authorization")
        if value is None:
            return None if self.token is None else _error(401, "Requires authentication")
        scheme, _, cred = value.strip().partition(" ")
        ok = scheme.lower() in ("token", "bearer") and cred.strip() != ""
        if self.token is not None:
            ok = ok and hmac.compare_digest(cred.strip().encode(), self.token.encode())
        return None if ok else _error(401, "Bad credentials")

    def _rate_headers(self, authed):
        limit = 5000 if authed else self.rate_limit
        reset = self.rate_limit_reset or int(time.time()) + 3600
        remaining = 0 if self.rate_limit_reset else max(limit - self._used, 0)
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(reset)), "X-RateLimit-Used": str(limit - remaining),
                "X-RateLimit-Resource": "core"}

    def _sign(self, aid):
        return hmac.new(self._secret, b"asset:%d" % aid, hashlib.sha256).hexdigest()[:32]

    def route(self, method, target, headers):
        """Map a request to a _Response (auth, rate limit and routes; no faults)."""
        split = urlsplit(target)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        query = parse_qs(split.query)
        o, r = self.owner, self.repo
        if parts and parts[0] == "_objects":
            return self._objects(parts, query, headers)
        deny = self._auth(headers)
        if parts[:1] == ["repos"]:
            authed = deny is None and headers.get("Authorization") is not None
            if deny is not None:
                deny.headers.update(self._rate_headers(False))
                return deny
            if self.rate_limit_reset is not None:
                h = self._rate_headers(authed)
                return _error(403, _RATE_LIMIT_MESSAGE, h)
            with self._lock:
                self._used += 1
            resp = self._api(parts[1:], query, headers)
            if resp.status == 200:  # GitHub's conditional requests: a weak ETag, a 304 for If-None-Match
                etag = 'W/"%s"' % hashlib.sha1(resp.body).hexdigest()
                resp.headers["ETag"] = etag
                if headers.get("If-None-Match", "").strip() in (etag, etag[2:]):
                    resp = _Response(304, b"", {"ETag": etag}, content_type=None)
                    if authed:  # documented: free with an Authorization header (counted without)
                        with self._lock:
                            self._used -= 1
            resp.headers.update(self._rate_headers(authed))
            return resp
        if deny is not None:
            return deny
        if parts[:3] == ["raw", o, r] and len(parts) >= 5:
            return self._raw(parts[3:], headers, method)
        if parts[:3] == [o, r, "raw"] and len(parts) >= 5:
            return _redirect("%s/%s/%s/%s" % (self.raw_base, quote(o), quote(r),
                                              "/".join(quote(p) for p in parts[3:])))
        if parts[:3] == [o, r, "releases"] and len(parts) == 4 and parts[3] == "latest" and self.token is None:
            # github.com's web page of the latest release: a redirect to its tag's page (no API
            # request), or to the list of releases when there is none
            rel = self._find_release(latest=True)
            return _redirect("%s/%s/%s/releases%s" % (self.url, quote(o), quote(r),
                                                     "/tag/" + quote(rel["tag"]) if rel else ""))
        if parts[:4] == [o, r, "releases", "download"] and len(parts) == 6 and self.token is None:
            # github.com's browser_download_url takes no API token: a private repository's assets
            # come through the API (releases/assets/{id} with Accept: application/octet-stream)
            rel = self._find_release(tag=parts[4], include_drafts=False)
            if rel:
                for aid, aname in rel["assets"]:
                    if aname == parts[5]:
                        return self._asset_redirect(aid)
        return _error(404)

    def _find_release(self, tag=None, latest=False, include_drafts=False):
        with self._lock:
            rels = list(self._releases)
        for rel in reversed(rels):
            if rel["draft"] and not include_drafts:
                continue
            if latest and (rel["prerelease"] or rel["draft"]):
                continue
            if tag is not None and rel["tag"] != tag:
                continue
            return rel
        return None

    def _asset_redirect(self, aid):
        name = self._assets[aid][1]
        return _redirect("%s/_objects/%d/%s?sig=%s" % (self.url, aid, quote(name), self._sign(aid)))

    def _objects(self, parts, query, headers):
        try:
            aid = int(parts[1])
            rel, name, data = self._assets[aid]
        except (IndexError, ValueError, KeyError):
            return _error(404)
        if not hmac.compare_digest(query.get("sig", [""])[0], self._sign(aid)):
            return _Response(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired"
                                  b"</Message></Error>", content_type="application/xml")
        return self._content(data, headers, "application/octet-stream",
                             etag=hashlib.sha1(data).hexdigest())

    def _api(self, p, query, headers):
        o, r = self.owner, self.repo
        if p[:2] != [o, r]:
            return _error(404)
        p = p[2:]
        api = "%s/repos/%s/%s" % (self.url, o, r)
        g = self.git
        if not p:
            return _json_response(200, {"id": 1, "name": r, "full_name": "%s/%s" % (o, r),
                                        "private": self.token is not None, "owner": {"login": o},
                                        "default_branch": g.default_branch(), "url": api})
        if p[0] == "releases":
            if len(p) == 1:
                authed = headers.get("Authorization") is not None and self.token is not None
                with self._lock:
                    rels = list(self._releases)
                return _json_response(200, [self._release_json(x) for x in reversed(rels)
                                            if authed or not x["draft"]])
            if p[1:] == ["latest"]:
                rel = self._find_release(latest=True)
                return _json_response(200, self._release_json(rel)) if rel else _error(404)
            if p[1] == "tags" and len(p) >= 3:
                rel = self._find_release(tag="/".join(p[2:]))
                return _json_response(200, self._release_json(rel)) if rel else _error(404)
            if p[1] == "assets" and len(p) == 3 and p[2].isdigit() and int(p[2]) in self._assets:
                aid = int(p[2])
                if "application/octet-stream" in headers.get("Accept", ""):
                    return self._asset_redirect(aid)
                rel = self._assets[aid][0]
                return _json_response(200, next(a for a in self._release_json(rel)["assets"]
                                                if a["id"] == aid))
            if p[1].isdigit() and len(p) == 2:
                rel = next((x for x in self._releases if x["id"] == int(p[1])), None)
                return _json_response(200, self._release_json(rel)) if rel else _error(404)
            return _error(404)
        if p[:2] == ["git", "ref"] and len(p) >= 4 and p[2] in ("heads", "tags"):
            full = "refs/%s/%s" % (p[2], "/".join(p[3:]))
            sha = g.ref_sha(full)
            if not sha:
                return _error(404)
            typ = g.obj_type(sha)
            return _json_response(200, {"ref": full, "node_id": "REF_" + sha[:12],
                                        "url": "%s/git/%s" % (api, full),
                                        "object": {"sha": sha, "type": typ,
                                                   "url": "%s/git/%ss/%s" % (api, typ, sha)}})
        if p[:2] == ["git", "tags"] and len(p) == 3:
            sha = p[2]
            if g.obj_type(sha) != "tag":
                return _error(404)
            t = g.tag(sha)
            return _json_response(200, {"sha": sha, "url": "%s/git/tags/%s" % (api, sha),
                                        "tag": t.get("tag"), "message": t.get("message", ""),
                                        "tagger": {"name": t.get("tagger", "").split(" <")[0]},
                                        "object": {"sha": t["object"], "type": t["type"],
                                                   "url": "%s/git/%ss/%s" % (api, t["type"], t["object"])}})
        if p[:2] == ["git", "trees"] and len(p) >= 3:
            ref = "/".join(p[2:])
            sha = ref if g.obj_type(ref) else g.resolve(ref)
            tree = g.peel(sha, "tree") if sha else None
            if not tree:
                return _error(404)
            recursive = query.get("recursive", ["0"])[0] not in ("", "0", "false")
            entries = [dict(e, url="%s/git/%ss/%s" % (api, e["type"], e["sha"]))
                       for e in g.tree(tree, recursive)]
            truncated = False
            if self.truncate_trees:
                entries, truncated = entries[:max(1, len(entries) // 2)], True
            return _json_response(200, {"sha": tree, "url": "%s/git/trees/%s" % (api, tree),
                                        "tree": entries, "truncated": truncated})
        if p[0] == "commits" and len(p) >= 2:
            ref = "/".join(p[1:])
            sha = g.resolve(ref)
            if not sha:
                return _error(422, "No commit found for SHA: %s" % ref)
            c = g.commit(sha)
            return _json_response(200, {"sha": sha, "url": "%s/commits/%s" % (api, sha),
                                        "commit": {"message": c["message"].strip(),
                                                   "tree": {"sha": c["tree"],
                                                            "url": "%s/git/trees/%s" % (api, c["tree"])}},
                                        "parents": [{"sha": x} for x in c["parents"]]})
        if p[0] == "branches" and len(p) >= 2:
            name = "/".join(p[1:])
            sha = g.ref_sha("refs/heads/" + name)
            if not sha:
                return _error(404, "Branch not found")
            return _json_response(200, {"name": name, "commit": {"sha": sha, "url": "%s/commits/%s" % (api, sha)},
                                        "protected": False})
        return _error(404)

    def _raw(self, p, headers, method):
        """p = [ref parts..., path parts...]; the ref may itself contain slashes."""
        g = self.git
        for i in range(1, len(p)):
            commit = g.resolve("/".join(p[:i]))
            if commit:
                found = g.file_at(commit, "/".join(p[i:]))
                if found is None:
                    continue
                sha, _ = found
                return self._content(g.blob(sha), headers, "text/plain; charset=utf-8", etag=sha)
        return _Response(404, b"404: Not Found", content_type="text/plain; charset=utf-8")

    def _content(self, data, headers, ctype, etag):
        """Bytes with ETag, Range (206/416) and gzip negotiation."""
        common = {"ETag": '"%s"' % etag, "Accept-Ranges": "bytes", "Cache-Control": "max-age=300",
                  "Vary": "Authorization,Accept-Encoding"}
        inm = headers.get("If-None-Match")
        if inm and inm.strip() in ('"%s"' % etag, etag, "W/\"%s\"" % etag):
            return _Response(304, b"", common, content_type=None)
        rng = headers.get("Range")
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            size = len(data)
            if not m or (m.group(1) == "" and m.group(2) == ""):
                start, end = None, None
            elif m.group(1) == "":                      # suffix: last N bytes
                n = int(m.group(2))
                start, end = max(size - n, 0), size - 1
                if n == 0:
                    start = None
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start is None or start >= size or (end is not None and end < start):
                return _Response(416, b"", dict(common, **{"Content-Range": "bytes */%d" % size}),
                                 content_type=None)
            common["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
            return _Response(206, data[start:end + 1], common, ctype)
        if self.gzip and _accepts_gzip(headers.get("Accept-Encoding", "")):
            body = _gzip.compress(data, compresslevel=9, mtime=0)
            common["Content-Encoding"] = "gzip"
            return _Response(200, body, common, ctype)
        return _Response(200, data, common, ctype)


def _accepts_gzip(value):
    for item in value.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = re.search(r"q\s*=\s*([0-9.]+)", params)
            return not q or float(q.group(1)) > 0
    return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 30          # idle keep-alive connections end after this
    disable_nagle_algorithm = True  # answers go out at once (GitHub's servers do not wait for ACKs)
    srv = None            # set per server by GitHubServer.start

    def setup(self):
        super().setup()
        with self.srv._lock:
            self.srv._conns.add(self.connection)
            self.srv.connections += 1
            self.conn_no = self.srv.connections

    def finish(self):
        try:
            super().finish()
        finally:
            with self.srv._lock:
                self.srv._conns.discard(self.connection)

    def log_message(self, fmt, *args):   # silence http.server's stderr log (it would show paths only)
        pass

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _write_body(self, body, pos, end, chunked, entry):
        step = self.srv.chunk_size if chunked else 65536
        while pos < end:
            piece = body[pos:min(pos + step, end)]
            entry["bytes"] = pos + len(piece)     # counted before the client can see it
            if chunked:
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.wfile.write(piece)
            self.wfile.flush()
            pos += len(piece)
        return pos

    def _other(self):
        srv = self.srv
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        resp = _error(405 if self.path.startswith("/repos/") else 404, "Method Not Allowed")
        self._send(resp, [], head=False)

    do_POST = do_PUT = do_PATCH = do_DELETE = _other

    def _serve(self, head):
        srv = self.srv
        try:
            resp = srv.route(self.command, self.path, self.headers)
        except Exception as e:   # a server bug must show up as a 500, not a hang
            resp = _error(500, "test server error: %s: %s" % (type(e).__name__, e))
        faults = srv._take_faults(self.path, bool(resp.body) and not head)
        status = [f for f in faults if f.action == "status"]
        if status:
            f = status[0]
            resp = _error(f.kw["status"], f.kw.get("message"), f.kw.get("headers"))
            faults = []
        self._send(resp, faults, head)

    def _send(self, resp, faults, head):
        srv = self.srv
        body = resp.body or b""
        entry = {"method": self.command, "path": self.path, "status": resp.status, "bytes": 0,
                 "headers": _redacted(self.headers), "time": time.time(),
                 "faults": [f.action for f in faults], "conn": self.conn_no}
        auth = self.headers.get("Authorization")
        if auth is None:
            entry["auth"] = None
        elif srv.token is None:
            entry["auth"] = "sent"
        else:
            entry["auth"] = "valid" if srv._auth(self.headers) is None else "invalid"
        for f in faults:
            if f.action == "flip" and 0 <= f.kw["at"] < len(body):
                b = bytearray(body)
                b[f.kw["at"]] ^= f.kw.get("mask", 0xFF)
                body = bytes(b)
        chunked = srv.chunked and body and not head and resp.status not in (204, 304)
        cut = min((f.kw.get("after", 0) for f in faults if f.action == "cut"), default=None)
        stalls = [f for f in faults if f.action == "stall"]
        srv._log(entry)       # logged before anything is sent, so a client never sees a response
        try:                  # that is not in srv.requests yet; "bytes" grows as the body goes out
            for f in stalls:
                if f.kw.get("before_headers"):
                    time.sleep(f.kw["seconds"])
            self.send_response_only(resp.status, _MESSAGES.get(resp.status) if resp.status >= 400 else None)
            self.send_header("Server", "GitHub.com")
            self.send_header("Date", email.utils.formatdate(usegmt=True))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            if cut is not None:
                self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            if head:
                return
            for f in stalls:
                if "after" not in f.kw and not f.kw.get("before_headers"):
                    time.sleep(f.kw["seconds"])
            limit = len(body) if cut is None else min(cut, len(body))
            pos = 0
            for at, secs in sorted((f.kw["after"], f.kw["seconds"]) for f in stalls if "after" in f.kw):
                if cut is not None and at > limit:
                    continue
                at = min(at, limit)
                pos = self._write_body(body, pos, at, chunked, entry)
                time.sleep(secs)
            self._write_body(body, pos, limit, chunked, entry)
            if cut is not None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            if srv.drop_idle:  # the connection ends after each response, unannounced (an idle timeout)
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


def _redacted(headers):
    out = {}
    for k, v in headers.items():
        if k.lower() == "authorization":
            scheme = v.strip().split(" ", 1)[0]
            v = scheme + " <redacted>"
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="GitHub-compatible test server for a local git repository")
    ap.add_argument("--repo", required=True, help="path of the git repository to serve")
    ap.add_argument("--owner", default="octo")
    ap.add_argument("--name", default="app", help="repository name")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="make the repository private (token never printed)")
    ap.add_argument("--release", action="append", default=[], metavar="TAG[:ASSETFILE...]",
                    help="publish a release for TAG with asset files (comma separated), e.g. v1.0.0:manifest.json")
    ap.add_argument("--verbose", action="store_true", help="print one line per request")
    args = ap.parse_args(argv)
    srv = GitHubServer(args.repo, owner=args.owner, repo=args.name, token=args.token, port=args.port)
    for spec in args.release:
        tag, _, files = spec.partition(":")
        assets = {}
        for f in filter(None, files.split(",")):
            with open(f, "rb") as fh:
                assets[os.path.basename(f)] = fh.read()
        srv.add_release(tag, assets)
    srv.quiet = not args.verbose
    srv.start()
    print(srv.url, flush=True)
    print("repository %s/%s (%s), api_base=%s raw_base=%s" % (
        args.owner, args.name, "private" if args.token else "public", srv.api_base, srv.raw_base),
        file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
