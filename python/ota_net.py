# ota_net.py: the network half of ota.py (imported on first use, so that boot-time
# recovery and config checks never compile it, and MicroPython compiles the two
# halves one at a time). Streaming HTTP/1.1 over socket/ssl, GitHub error handling,
# retries, and verified downloads into the stage dir with Range resume.
# Every function takes `u`, the ota.OTA object (cfg, buf, hw, log, counters).

import json
import time
from ota import OTAError, _MP, _fs, _put, _size

_UA = "ota.py/1.0 (MicroPython)"
_KEEP = (b"content-length", b"transfer-encoding", b"location", b"retry-after",
         b"x-ratelimit-remaining", b"x-ratelimit-reset", b"date")


class Retry(Exception):
    # transient failure: args = (message, seconds to wait or None for the backoff)
    pass


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()


def _ms():
    return time.ticks_ms() if _MP else int(time.time() * 1000)


class _Blob:
    # Git blob SHA1 without ota_native: sha1(b"blob <size>\0" + content)
    def __init__(self, size):
        import hashlib

        self.h = hashlib.sha1(("blob %d\0" % size).encode())

    def update(self, buf, n=-1):
        self.h.update(buf if n < 0 else buf[:n])

    def hexdigest(self):
        return _hex(self.h.digest())


def hasher(size):
    from ota import _nat

    return _nat.BlobHasher(size) if _nat else _Blob(size)


def _sha256():
    import hashlib

    return hashlib.sha256()


def _split(url):
    # -> scheme, host, port, path
    i = url.find("://")
    rest = url[i + 3:]
    j = (rest + "/").find("/")
    host, path = rest[:j], rest[j:] or "/"
    port = 443 if url[:i] == "https" else 80
    if ":" in host:
        host, port = host.split(":")
        port = int(port)
    return url[:i], host, port, path


def _join(url, loc):
    # absolute or relative Location
    if "://" in loc:
        return loc
    s, h, p, path = _split(url)
    base = "%s://%s:%d" % (s, h, p)
    return base + (loc if loc[:1] == "/" else path.split("?")[0].rsplit("/", 1)[0] + "/" + loc)


try:
    import io

    _Stream = io.IOBase if _MP else object  # a native stream, e.g. for deflate.DeflateIO
except ImportError:
    _Stream = object


class Resp(_Stream):
    # one HTTP/1.1 response: status, a few headers, body through readinto (length or chunked)
    def __init__(self, s):
        self.s = s
        self.f = f = s if _MP else s.makefile("rb")
        self.h = h = {}
        self.got = 0
        self.chunked = self.started = self.done = False
        line = f.readline()
        try:
            self.status = int(line.split(None, 2)[1])
        except (IndexError, ValueError):
            raise Retry("bad HTTP status line %r" % line[:32], None)
        while True:
            line = f.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            i = line.find(b":")
            k = line[:i].strip().lower()
            if k in _KEEP:
                h[k.decode()] = line[i + 1:].strip().decode()
        self.left = int(h.get("content-length", -1))  # -1: until the connection closes
        if self.left < 0 and "chunked" in h.get("transfer-encoding", ""):
            self.chunked = True
            self.left = 0

    def readinto(self, buf, n=-1):
        n = len(buf) if n < 0 or n > len(buf) else n
        f = self.f
        if self.chunked and not self.left and not self.done:
            if self.started:
                f.readline()  # the CRLF after a chunk
            self.started = True
            line = f.readline()
            if not line:
                raise Retry("connection closed in a chunked body", None)
            self.left = int(line.split(b";")[0].strip().decode(), 16)
            if not self.left:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
        if self.done or not self.left:
            return 0
        if 0 < self.left < n:
            n = self.left
        k = f.readinto(memoryview(buf)[:n] if n < len(buf) else buf)
        if not k:
            if self.left < 0:
                self.done = True
                return 0
            raise Retry("connection closed after %d body bytes" % self.got, None)
        self.got += k
        if self.left > 0:
            self.left -= k
        return k

    def close(self):
        if self.f is not self.s:
            self.f.close()
        self.s.close()


def _tls(s, host):
    import ssl

    if hasattr(ssl, "create_default_context"):
        return ssl.create_default_context().wrap_socket(s, server_hostname=host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(s, server_hostname=host)


def get(u, url, off=0, accept=None):
    """One attempt: GET url (following redirects); a 200/206 Resp or an exception."""
    import socket

    c = u.cfg
    auth = c["token"]
    for _ in range(6):
        sch, host, port, path = _split(url)
        u.requests += 1
        u.log("GET %s%s" % (url, " from %d" % off if off else ""))
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        try:
            t = (c["connect_timeout_sec"], c["http_timeout_sec"])
            s.settimeout(max(t) if _MP else t[0])  # MicroPython: one timeout, the larger
            s.connect(ai[-1])
            if sch == "https":
                s = _tls(s, host)
            s.settimeout(max(t) if _MP else t[1])
            h = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n" % (
                path, host if port in (80, 443) else "%s:%d" % (host, port), _UA)
            if accept:
                h += "Accept: %s\r\n" % accept
            if auth:
                h += "Authorization: token %s\r\n" % auth
            if off:
                h += "Range: bytes=%d-\r\n" % off
            (getattr(s, "sendall", None) or s.write)((h + "\r\n").encode())
            r = Resp(s)
        except BaseException:
            s.close()
            raise
        st = r.status
        u.log("-> %d" % st)
        if st in (200, 206):
            return r
        r.close()
        if st in (301, 302, 303, 307, 308) and "location" in r.h:
            new = _join(url, r.h["location"])
            if _split(new)[:3] != _split(url)[:3]:
                auth = None  # never send the token to another host
            url = new
            continue
        _fail(u, st, r.h, url)
    raise OTAError("too many redirects for " + url)


def _fail(u, st, h, url):
    # 401/404/403: fail at once with the troubleshooting text; 5xx/429/rate limit: Retry
    c = u.cfg
    if st == 401:
        raise OTAError("GitHub API returned 401 (Unauthorized) for %s: the repository is private or the "
                       "token is invalid; add a valid 'token' to the config" % url)
    if st == 404:
        raise OTAError("GitHub API returned 404 (Not Found) for %s: check 'owner' and 'repo' in the config, "
                       "that the release exists, and the tag name (a private repository also needs a "
                       "'token')" % url)
    if st == 429 or st == 403 and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h):
        if "retry-after" in h:
            wait = int(h["retry-after"])
        else:
            now = int(time.time())
            if now < 1600000000 and "date" in h:  # device clock not set: use the server's
                p = h["date"].split()  # "Sun, 06 Nov 1994 08:49:37 GMT"
                hh, mm, ss = p[4].split(":")
                now = time.mktime((int(p[3]), "JanFebMarAprMayJunJulAugSepOctNovDec".find(p[2]) // 3 + 1,
                                   int(p[1]), int(hh), int(mm), int(ss), 0, 0))
            wait = int(h.get("x-ratelimit-reset", now)) - now
        if wait > c["max_backoff_sec"]:
            raise OTAError("GitHub API rate limit exceeded: resets in %d s (more than max_backoff_sec=%s); "
                           "add a 'token' or try again later" % (wait, c["max_backoff_sec"]))
        raise Retry("rate limited (HTTP %d)" % st, max(wait, 0))
    if st == 403:
        raise OTAError("GitHub API returned 403 (Forbidden) for %s: check the token's permissions" % url)
    if st >= 500:
        raise Retry("HTTP %d from %s" % (st, url), None)
    raise OTAError("HTTP %d from %s" % (st, url))


def retry(u, fn):
    """fn() with retries and exponential backoff, for transient failures only."""
    c = u.cfg
    delay = c["backoff_sec"]
    for n in range(c["retries"], -1, -1):
        try:
            return fn()
        except Retry as e:
            msg, wait = e.args
        except OSError as e:  # connection refused/reset, timeouts
            msg, wait = "connection error: %s" % (e,), None
        if not n:
            raise OTAError("%s (gave up after %d attempts)" % (msg, c["retries"] + 1))
        wait = min(delay if wait is None else wait, c["max_backoff_sec"])
        u.log("%s; retry in %s s" % (msg, wait))
        t = _ms()
        while _ms() - t < wait * 1000:
            u.hw.feed()
            time.sleep(0.05)
        delay = min(delay * 2, c["max_backoff_sec"])


def get_json(u, url):
    def once():
        r = get(u, url, 0, "application/vnd.github+json")
        try:
            if r.left > 0:  # known length: one allocation, read in place
                data = bytearray(r.left)
                mv = memoryview(data)
                n = 0
                while n < len(data):
                    n += r.readinto(mv[n:])
            else:
                data = bytearray()
                while True:
                    k = r.readinto(u.buf)
                    if not k:
                        break
                    data.extend(u.buf[:k])
        finally:
            r.close()
        u.bytes += len(data)
        return data

    try:
        return json.loads(retry(u, once))
    except ValueError:
        raise OTAError("invalid JSON from " + url)


def stream_json(u, url, each):
    """GET a JSON object whose arrays hold objects (a Git tree, a manifest) without holding
    it whole: each(obj) is called per object inside a top-level array, and the rest of the
    document (objects replaced by 0) is returned parsed. each() must be idempotent (retries)."""
    def once():
        r = get(u, url, 0, "application/vnd.github+json")
        rest = bytearray()
        obj = bytearray()
        depth = 0
        q = esc = False
        try:
            while True:
                k = r.readinto(u.buf)
                if not k:
                    break
                u.bytes += k
                for c in u.buf[:k]:
                    if not q and c in b"{[":
                        depth += 1
                    (obj if depth > 2 else rest).append(c)
                    if q:
                        if esc:
                            esc = False
                        elif c == 92:
                            esc = True
                        elif c == 34:
                            q = False
                    elif c == 34:
                        q = True
                    elif c in b"}]":
                        depth -= 1
                        if depth == 2 and obj:
                            each(json.loads(obj))
                            obj = bytearray()
                            rest.append(48)  # "0" keeps the array valid
        finally:
            r.close()
        return rest

    try:
        return json.loads(retry(u, once))
    except ValueError:
        raise OTAError("invalid JSON from " + url)


def hash_file(u, path, size, n=-1, h256=False):
    """Hashers fed with the first n bytes (all when n < 0) of a file; (None, None) if short."""
    h, h2 = hasher(size), h256 and _sha256()
    mv = u.buf
    left = size if n < 0 else n
    try:
        with open(path, "rb") as f:
            while left > 0:
                k = f.readinto(mv[:min(left, len(mv))])
                if not k:
                    break
                h.update(mv, k)
                h2 and h2.update(mv[:k])
                left -= k
    except OSError:
        pass
    return (h, h2) if not left else (None, None)


def local_sha(u, path, size):
    # blob SHA of an installed file (a file already identical is not downloaded)
    h = hash_file(u, path, size)[0]
    return h and h.hexdigest()


def download(u, url, dest, path, sha, size, sha256):
    """Stream url through the blob SHA1 (and sha256) into dest via dest.part; resume with Range.
    A file that does not verify is removed and never reaches dest."""
    if _size(dest) == size:
        return  # verified by an earlier run
    part = dest + ".part"
    mv = u.buf

    def once():
        n = _size(part)
        h = h2 = None
        if 0 < n <= size:
            h, h2 = hash_file(u, part, size, n, sha256)
        if n == size and h:
            return h, h2  # complete from an earlier run
        r = get(u, url, n if h else 0)
        try:
            if not h or r.status != 206:  # whole body: start over
                n = 0
                h, h2 = hasher(size), sha256 and _sha256()
            f = _fs("open", part, "ab" if n else "wb")
            try:
                while True:
                    k = r.readinto(mv)
                    if not k:
                        break
                    if n + k > size:
                        raise OTAError("%s: more bytes than the %d declared" % (path, size))
                    h.update(mv, k)
                    h2 and h2.update(mv[:k])
                    _put(f, mv[:k])
                    n += k
                    u.bytes += k
                    u.hw.feed()
            finally:
                f.close()
        finally:
            r.close()
        if n < size:
            raise Retry("%s: body ended at %d of %d bytes" % (path, n, size), None)
        return h, h2

    h, h2 = retry(u, once)
    got = h.hexdigest()
    if got != sha or sha256 and _hex(h2.digest()) != sha256.lower():
        _fs("remove", part)
        raise OTAError("%s: SHA mismatch (expected %s, got %s%s); nothing installed"
                       % (path, sha, got, ", sha256 differs" if got == sha else ""))
    _fs("rename", part, dest)
    u.log("staged %s (%d bytes)" % (path, size))
