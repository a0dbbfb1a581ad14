# ota_sign.py: signed manifests (Ed25519), no downgrade, no stale manifest. A feature module
# (see ota._FEATURES): imported only when the configuration has manifest_pubkeys,
# require_signature or allow_downgrade; copy it to the board then, with ota_ed25519.mpy (the
# verifier, a native module of its own: it is imported for the check only and dropped before
# the downloads, so its code never shares the heap with them). manifests/README.md has the format.
#
# A release publishes manifest.json and manifest.json.sig (the detached Ed25519 signature over
# the exact bytes of manifest.json: 64 raw bytes, R then S), made by manifest_gen.py --sign-key.
# The device fetches the signature first (Ed25519 hashes the signature's R before the message),
# streams manifest.json through one verifier per configured key while it parses it, and trusts
# the manifest only when one key verifies it; then it refuses a lower "sequence" than the
# installed one (a replayed older release) and an "expires" time already past, and requires a
# sha256 for every file.
import sys
import time
from binascii import unhexlify
from ota import Kind, NotFound, OTAError, _quote

# key, type, default (README "Signed manifests")
KEYS = (
    "manifest_pubkeys", Kind.STR_LIST, [],  # Ed25519 public keys, 64 hex digits each; any one verifies
    "require_signature", Kind.BOOL, None,  # default: true when manifest_pubkeys is set
    "allow_downgrade", Kind.BOOL, False,  # take a signed manifest with a lower sequence
)

_SIG = "manifest.json.sig"
_SIG_LEN = 64
_CLOCK_SET_AFTER = 1600000000  # an earlier time() means the device clock is unset


def check(cfg, path):
    keys = cfg["manifest_pubkeys"]
    for k in keys:
        ok = len(k) == 64
        for c in k:
            ok = ok and c in "0123456789abcdefABCDEF"
        if not ok:
            raise OTAError("%s: manifest_pubkeys: %r is not an Ed25519 public key (64 hex digits)" % (path, k))
    if cfg["require_signature"] is None:
        cfg["require_signature"] = bool(keys)
    if cfg["require_signature"]:
        if not keys:
            raise OTAError("%s: require_signature needs the keys in manifest_pubkeys" % path)
        if cfg["channel"] == "developer":
            raise OTAError("%s: require_signature: the developer channel (the tip of a branch) has no signed "
                           "manifest; use the stable channel with signed releases, or set require_signature "
                           "to false" % path)


def attach(u):
    # require_signature false: nothing is checked (keys may be deployed before the first signed release)
    if u.cfg["require_signature"]:
        u.manifest_check = Check(u)


def _native():
    # The verifier's module: ota_ed25519.mpy on the device (held by the Check only: out of
    # sys.modules at once, so that it is freed with the Check, or at drop()); the PyO3 ota_native
    # on CPython
    try:
        import ota_ed25519

        del sys.modules["ota_ed25519"]
        return ota_ed25519
    except ImportError:
        pass
    try:
        import ota_native

        if hasattr(ota_native, "Verifier"):
            return ota_native
    except ImportError:
        pass
    raise OTAError("signed manifests need ota_ed25519.mpy on the device")


class _Tee:
    # A response's bytes, passed on unchanged and fed to each verifier on the way
    def __init__(self, r, verifiers):
        self.r = r
        self.verifiers = verifiers

    def readinto(self, buf):
        k = self.r.readinto(buf)
        if k:
            for v in self.verifiers:
                if type(v) is not str:
                    v.update(buf, k)
        return k


class Check:
    # ota.OTA.manifest_check: start(t) fetches the signature, reader(response) feeds the
    # manifest's bytes to the verifiers, verify(t, manifest, files) decides
    def __init__(self, u):
        self.u = u
        self.m = None  # the verifier's module, from start() to verify()
        self.sig = None
        self.verifiers = None

    def start(self, t):
        # the detached signature of t's manifest (before the manifest: see the top); the verifier's
        # module is imported first (its code and, on the RP2040, its stack are a block each)
        self.m = _native()
        u = self.u
        url = t["manifest"]
        if "/releases/assets/" in url:  # with a token the assets come through the API: find it by name
            found = []

            def entry(a):
                if a.get("name") == _SIG:
                    found.append(a["url"])

            u.api("releases/tags/" + _quote(t["ref"]), entry)
            url = found[0] if found else None
        else:
            url = url[:url.rfind("/") + 1] + _SIG
        self.sig = None
        if url:
            try:
                self.sig = u.retry(lambda: self._read(url))
            except NotFound:
                pass
        if self.sig is None:
            raise OTAError("%s has no %s: signatures are required (require_signature)" % (t["ref"], _SIG))
        if len(self.sig) != _SIG_LEN:
            raise OTAError("%s of %s is not %d bytes" % (_SIG, t["ref"], _SIG_LEN))

    def _read(self, url):
        r = self.u.get(url)
        try:
            sig = bytearray(_SIG_LEN + 1)  # one byte more: a longer file is refused
            mv = memoryview(sig)
            n = 0
            while n <= _SIG_LEN:
                k = r.readinto(mv[n:])
                if not k:
                    break
                n += k
            return bytes(sig[:n])
        finally:
            r.close()

    def reader(self, r):
        # r's bytes through one new verifier per key (a key refused by the verifier is its reason)
        m = self.m
        vs = []
        for k in self.u.cfg["manifest_pubkeys"]:
            try:
                vs.append(m.Verifier(unhexlify(k), self.sig))
            except ValueError as e:
                vs.append(str(e))
        self.verifiers = vs
        return _Tee(r, vs)

    def verify(self, t, m, files):
        vs, self.verifiers = self.verifiers, None
        why = "no verifier"
        ok = False
        for v in vs or ():
            if type(v) is str:
                why = v
                continue
            try:
                ok = v.verify()
                break
            except ValueError as e:
                why = str(e)
        vs = v = None
        self.drop()
        ref = t["ref"]
        if not ok:
            raise OTAError("manifest.json of %s is not signed by a key of manifest_pubkeys: %s" % (ref, why))
        seq = m.get("sequence")
        if type(seq) is not int or seq < 0:
            raise OTAError("signed manifest.json of %s has no sequence number" % ref)
        old = self.u.installed().get("sequence")
        if type(old) is int and seq < old and not self.u.cfg["allow_downgrade"]:
            raise OTAError("manifest.json of %s has sequence %d, lower than the installed %d: an older release "
                           "(allow_downgrade to take it)" % (ref, seq, old))
        exp = m.get("expires")
        if exp is not None:
            now = time.time()
            if type(exp) is not int:
                raise OTAError("manifest.json of %s: expires is not a time" % ref)
            if now > _CLOCK_SET_AFTER and now > exp:
                raise OTAError("manifest.json of %s expired at %d (now %d)" % (ref, exp, now))
        for p in files:
            if not files[p][2]:
                raise OTAError("manifest.json of %s: %s has no sha256 (signed manifests need one)" % (ref, p))
        t["sequence"] = seq

    def drop(self):
        # the verifier's module out of memory before the downloads
        self.verifiers = self.m = None
        import gc

        gc.collect()
