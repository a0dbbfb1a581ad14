"""GitHub's documented request rules on a clock, around tests/ghserver.py's content.

The content (releases, tags, trees, raw files, release assets, the web redirect of
/releases/latest) is tests/ghserver.py's, unchanged; this module decides, before a request
reaches it, what GitHub's rules say about it, and counts everything:

- REST API (api.github.com/repos/...): primary limit per client, a fixed window of an hour
  from the client's first counted request (X-RateLimit-Reset): 60 per originating IP without a
  token, 5,000 per token. Over it: 403, X-RateLimit-Remaining: 0, X-RateLimit-Reset. Requests
  refused by a limit are not counted against the budget.
- Conditional requests: an API answer carries an ETag; a request whose If-None-Match matches is
  answered 304, free only with an Authorization header (without one it counts, as users report).
- Secondary limits (per client): more than `concurrent` requests in flight (a request holds its
  connection `request_sec` of virtual time) or more than `per_minute` points in the last 60 s
  (a GET is one point) are refused with `secondary_status` (403 or 429) and, when
  `retry_after` is set, Retry-After: that many seconds (GitHub: "If the retry-after response
  header is present ... Otherwise, wait for at least one minute"). X-RateLimit-Remaining keeps
  its true value (not 0): only Retry-After, or nothing, says it is a limit.
- github.com (the web redirect of /releases/latest, /releases/download/...), the asset bytes
  (objects.githubusercontent.com) and raw.githubusercontent.com are counted separately and never
  against the API budget; their limits are undocumented: `web_limit` (per IP per hour over those
  three, None = no limit) answers 429 without headers when set.

Two servers share the rules:
- FleetServer: in-process, multi-host (api.github.com, github.com, raw.githubusercontent.com,
  objects.githubusercontent.com) on a virtual clock; handle(host, method, path, headers).
  Responses are memoized per request shape while the repository does not change (ghserver's
  refs are git subprocesses), and the memo is dropped at every publish.
- LoopbackServer: ghserver's real HTTP/1.1 server on 127.0.0.1 (one host: the class of a request
  comes from its path), real clock, for the MicroPython devices.
"""
import hashlib
import math
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from ghserver import GitHubServer, _Response, _error  # noqa: E402

API, WEB, DOWNLOAD, RAW = "api", "web", "download", "raw"
CLASSES = (API, WEB, DOWNLOAD, RAW)
HOUR = 3600
FLEET_IP = "203.0.113.7"  # the fleet's one public address (NAT)
_PRIMARY_MESSAGE = ("API rate limit exceeded for %s. (But here's the good news: Authenticated requests "
                    "get a higher rate limit. Check out the documentation for more details.)")
_SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                      "again.")


class Stats:
    """Counters: per hour and class, the outcome of every request; per minute and class, arrivals."""

    def __init__(self):
        self.hourly = {}  # (hour, class, outcome) -> n; outcome: ok, free304, primary, secondary, limited
        self.minutely = {}  # (minute, class) -> n

    def add(self, now, cls, outcome):
        k = (int(now // HOUR), cls, outcome)
        self.hourly[k] = self.hourly.get(k, 0) + 1
        m = (int(now // 60), cls)
        self.minutely[m] = self.minutely.get(m, 0) + 1

    def hour(self, h, cls, *outcomes):
        return sum(self.hourly.get((h, cls, o), 0) for o in outcomes)

    def peak_minute(self, cls, first=None, last=None):
        return max([n for (m, c), n in self.minutely.items() if c == cls
                    and (first is None or m >= first * 60) and (last is None or m < last * 60)] or [0])


class Rules:
    """GitHub's rules (module docstring) on clock(); apply() wraps the content server."""

    def __init__(self, clock, epoch=0, ip=FLEET_IP, ip_limit=60, token_limit=5000, per_minute=900, concurrent=100,
                 request_sec=0.5, secondary_status=403, retry_after=60, web_limit=None):
        self.clock = clock  # seconds; epoch + clock() is Unix time (X-RateLimit-Reset)
        self.epoch = epoch
        self.ip = ip
        self.ip_limit, self.token_limit = ip_limit, token_limit
        self.per_minute, self.concurrent, self.request_sec = per_minute, concurrent, request_sec
        self.secondary_status, self.retry_after = secondary_status, retry_after
        self.web_limit = web_limit
        self.reset()

    def reset(self):
        self.windows = {}  # client -> [reset time, counted]
        self.recent = {}  # client -> deque of the times of accepted API requests (last 60 s)
        self.web = {}  # ip -> [reset time, count] (web_limit)
        self.refuse = 0  # the next `refuse` API requests meet a secondary limit (mpy_sample.py)
        self.fail_web = [503, 0]  # the next n requests to the other hosts are answered this status
        self.stats = Stats()
        self.secondary_why = {}  # which secondary limit refused: "concurrent", "per minute"

    def client(self, headers):
        a = headers.get("Authorization")
        if a:
            return ("token", a.split(" ", 1)[-1].strip()), self.token_limit
        return ("ip", self.ip), self.ip_limit

    def _headers(self, w, limit):
        left = max(limit - w[1], 0)
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(left),
                "X-RateLimit-Reset": str(int(self.epoch + w[0])), "X-RateLimit-Used": str(w[1]),
                "X-RateLimit-Resource": "core"}

    def apply(self, cls, headers, serve):
        """The response to a request of class cls: refused by a rule, or serve()'s (a _Response)."""
        now = self.clock()
        if cls != API:
            if self.fail_web[1]:  # (mpy_sample.py: a transient failure of github.com)
                self.fail_web[1] -= 1
                self.stats.add(now, cls, "limited")
                return _error(self.fail_web[0])
            if self.web_limit is not None:
                w = self.web.get(self.ip)
                if not w or now >= w[0]:
                    w = self.web[self.ip] = [now + HOUR, 0]
                if w[1] >= self.web_limit:
                    self.stats.add(now, cls, "limited")
                    return _Response(429, b"Too Many Requests", content_type="text/plain")
                w[1] += 1
            self.stats.add(now, cls, "ok")
            return serve()
        key, limit = self.client(headers)
        w = self.windows.get(key)
        if not w or now >= w[0]:  # a new window starts with the first request after a reset
            # (it ends at a whole second of Unix time, the one X-RateLimit-Reset gives)
            w = self.windows[key] = [math.ceil(self.epoch + now + HOUR) - self.epoch, 0]
        q = self.recent.get(key)
        if q is None:
            q = self.recent[key] = deque()
        while q and q[0] <= now - 60:
            q.popleft()
        inflight = 0
        for t in reversed(q):
            if t <= now - self.request_sec:
                break
            inflight += 1
        if len(q) >= self.per_minute or inflight >= self.concurrent or self.refuse:
            why = "per minute" if len(q) >= self.per_minute else "concurrent" if inflight >= self.concurrent else "forced"
            self.secondary_why[why] = self.secondary_why.get(why, 0) + 1
            self.refuse = max(self.refuse - 1, 0)
            self.stats.add(now, cls, "secondary")
            h = self._headers(w, limit)
            if self.retry_after is not None:
                h["Retry-After"] = str(self.retry_after)
            return _error(self.secondary_status, _SECONDARY_MESSAGE, h)
        if w[1] >= limit:
            self.stats.add(now, cls, "primary")
            return _error(403, _PRIMARY_MESSAGE % self.ip if key[0] == "ip" else "API rate limit exceeded for user.",
                          self._headers(w, limit))
        q.append(now)
        r = serve()
        etag = None
        if r.status == 200:
            etag = '"%s"' % hashlib.sha1(r.body).hexdigest()
            inm = headers.get("If-None-Match")
            if inm and inm.strip() in (etag, "W/" + etag):
                r = _Response(304, b"", {"ETag": etag}, content_type=None)
        free = r.status == 304 and key[0] == "token"  # documented: free only when authorized
        if not free:
            w[1] += 1
        self.stats.add(now, cls, "free304" if free else "ok")
        out = _Response(r.status, r.body, dict(r.headers, **self._headers(w, limit)), content_type=None)
        if etag and r.status == 200:
            out.headers["ETag"] = etag
        return out


def classify(parts, owner, repo):
    """The class of a request by its path parts on ghserver's one host (API, WEB, DOWNLOAD, RAW)."""
    if parts[:1] == ["repos"]:
        return API
    if parts[:1] == ["_objects"] or parts[:4] == [owner, repo, "releases", "download"]:
        return DOWNLOAD
    if parts[:1] == ["raw"] or parts[:3] == [owner, repo, "raw"]:
        return RAW
    return WEB


class LoopbackServer(GitHubServer):
    """ghserver on 127.0.0.1 with the rules on the real clock (for the MicroPython devices)."""

    def __init__(self, repo_dir, owner="octo", repo="app", **rules):
        super().__init__(repo_dir, owner=owner, repo=repo)
        self.rules = Rules(time.time, **rules)

    def route(self, method, target, headers):
        parts = target.split("?")[0].split("/")[1:]
        return self.rules.apply(classify(parts, self.owner, self.repo), headers,
                                lambda: GitHubServer.route(self, method, target, headers))


# github.com's hosts: the class of a request and the path ghserver serves it under
_HOSTS = {"api.github.com": (API, ""), "github.com": (WEB, ""), "raw.githubusercontent.com": (RAW, "/raw"),
          "objects.githubusercontent.com": (DOWNLOAD, "")}
_URL_FIXES = ((b"https://github.com/repos/", b"https://api.github.com/repos/"),
              (b"https://github.com/_objects/", b"https://objects.githubusercontent.com/_objects/"),
              (b"https://github.com/raw/", b"https://raw.githubusercontent.com/"))


class FleetServer(GitHubServer):
    """The four hosts of github.com in-process, on a virtual clock (module docstring)."""

    url = "https://github.com"  # ghserver builds its absolute URLs from these
    api_base = "https://api.github.com"
    raw_base = "https://raw.githubusercontent.com"

    def __init__(self, repo_dir, clock, epoch, owner="octo", repo="app", **rules):
        super().__init__(repo_dir, owner=owner, repo=repo)
        self.rules = Rules(clock, epoch, **rules)
        self.memo = {}

    def publish(self, fn, *args, **kw):
        """A change of the repository or its releases (fn of ghserver, or any callable): the memo goes."""
        self.memo.clear()
        return fn(*args, **kw)

    def _memo_route(self, method, target, headers):
        k = (target, headers.get("Authorization"), headers.get("Accept"), headers.get("Range"),
             headers.get("Accept-Encoding"), headers.get("If-None-Match"))
        r = self.memo.get(k)
        if r is None:
            r = GitHubServer.route(self, method, target, headers)
            for a, b in _URL_FIXES:
                r.body = r.body.replace(a, b)
                if "Location" in r.headers:
                    r.headers["Location"] = r.headers["Location"].replace(a.decode(), b.decode())
            self.memo[k] = r
        return r

    def handle(self, host, method, path, headers):
        """(status, headers, body) of a request to https://host/path."""
        cls, prefix = _HOSTS.get(host, (None, ""))
        if cls is None:
            return 404, {}, b"unknown host"
        if cls == WEB:
            cls = classify(path.split("?")[0].split("/")[1:], self.owner, self.repo)
        target = prefix + path
        r = self.rules.apply(cls, headers, lambda: self._memo_route(method, target, headers))
        return r.status, r.headers, r.body
