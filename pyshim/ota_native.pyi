"""ota_native: the one Python API of both bindings.

The MicroPython native module (natmod/, ``ota_native.mpy``) and the CPython
extension (pyshim/, PyO3) expose exactly this API over the same Rust core
(core/), which also binds and checks every argument and holds every error
message (core/src/api.rs, core/src/error.rs): both bindings accept the same
calls, fill in the same defaults and fail with the same exception and text
(tests/test_api.py::test_bindings_agree runs the same calls on both).

All objects are streams in the style of MicroPython's ``deflate.DeflateIO``:
they pull from a *source* (any object with ``readinto(buf) -> int``, 0 or
None meaning end of input) and the caller pulls output with ``readinto``.
Nothing is allocated per chunk: output goes into the caller's buffer.
``n`` arguments follow slice semantics: ``n < 0`` means the whole buffer,
``n > len(buf)`` is clamped (any int, however large). A ``buf`` is any
contiguous buffer of any item type, taken as its bytes (as MicroPython does),
but not a str (MicroPython gives str a buffer, CPython does not); ``readinto``
needs a writable one (bytearray, memoryview of one, array); it returns 0 only
at the verified end of the stream (or when asked for 0 bytes); bytes after the
end of a compressed stream are ignored. Errors latch: after a ValueError from
the data every later call raises again (argument errors are raised before
anything runs).
The CPython extension needs Python >= 3.11 (abi3; buffer protocol in the
limited API).

Errors:
- ``TypeError``: a wrong number of arguments ("wrong number of arguments"), a
  keyword that is not a parameter or names one already given ("bad keyword
  argument"), any keyword to a method ("function doesn't take keyword
  arguments": methods are positional-only, as MicroPython's builtins), an int
  argument that is not an int (bool, float, str, None...: "int expected"), a
  ``buf`` that is not a buffer (a str included), or not a writable one for
  ``readinto`` ("bad buffer").
- ``ValueError`` with the core's fixed message: corrupt, truncated or hostile
  data, sizes outside 0 .. 2**30 - 1, formats other than RAW/ZLIB/GZIP, wbits
  outside 8..15, a ``readinto`` of a source/old file returning anything but
  None or an int in 0..len(buf) ("bad readinto count"), a call on an object
  busy in a callback of its own ("bad argument").
- ``AttributeError`` from the constructor when `source` has no ``readinto`` or
  `old` no ``seek``/``readinto`` (bound there, in that order, after the
  arguments are checked).
- Exceptions raised by a source/old-file method propagate unchanged.
"""

# Stream formats (same values as MicroPython's ``deflate`` module).
RAW: int   # = 1, raw deflate
ZLIB: int  # = 2, zlib header + adler32 trailer
GZIP: int  # = 3, gzip header + crc32/length trailer

# Declared sizes (`size`, `new_size`) are ints in 0 .. 2**30 - 1 on every binding (the natmod
# takes only small ints, which stop at 2**30 on 32-bit boards); other ints are ValueError.
# Constructor arguments may be given by keyword; methods take positional arguments only.

class BlobHasher:
    """Streaming Git-blob SHA1: sha1(b"blob <size>\\0" + content)."""
    def __init__(self, size: int) -> None: ...
    def update(self, buf, n: int = -1, /) -> None:
        """Hash buf[:n] (all of buf when n < 0). ValueError past `size`."""
    def digest(self, /) -> bytes:
        """20 bytes. ValueError unless exactly `size` bytes were fed."""
    def hexdigest(self, /) -> str: ...

class InflateReader:
    """Streaming inflate of `source` with a window of 2**wbits (8..15) bytes.

    ValueError if the stream needs a larger window than given, or is corrupt
    or truncated; checksums (adler32 / crc32 + length) are verified."""
    def __init__(self, source, format: int = ZLIB, wbits: int = 15) -> None: ...
    def readinto(self, buf, n: int = -1, /) -> int:
        """Fill buf[:n] with output; returns the count, 0 at end of stream."""

class PatchReader:
    """Streaming bspatch (format of the `bsdiff` crate) of an uncompressed patch.

    `old` is the installed file: an object with seek(offset) and readinto(buf)
    (read in pieces of up to 256 bytes: readinto(buf), after seek(offset)
    unless the previous read ended there). `new_size` is the declared size of the new file; it is
    enforced. ValueError if a control value points outside the old file,
    overflows, or the output would pass/miss `new_size`."""
    def __init__(self, source, old, new_size: int) -> None: ...
    def readinto(self, buf, n: int = -1, /) -> int: ...

class DeltaReader:
    """One-pass delta pipeline: compressed patch -> inflate -> bspatch ->
    Git-blob SHA1 of the output -> caller's buffer."""
    def __init__(self, source, old, new_size: int, format: int = RAW, wbits: int = 12) -> None: ...
    def readinto(self, buf, n: int = -1, /) -> int: ...
    def digest(self, /) -> bytes:
        """Git-blob SHA1 of the new file; ValueError before it is complete."""
    def hexdigest(self, /) -> str: ...

class Verifier:
    """Streaming Ed25519 verification (RFC 8032, strict): on MicroPython in the second native
    module ``ota_ed25519`` (``ota_ed25519.mpy``), here in ``ota_native``; the same API and errors.

    ValueError from the constructor: "key not 32 bytes", "signature not 64 bytes",
    "signature not canonical (S >= L)", "public key not a curve point", "public key of small
    order", "signature R not a valid point" (checked in that order); TypeError "bad buffer" for a
    key or signature that is not a buffer (a str included)."""
    def __init__(self, public_key, signature) -> None: ...
    def update(self, buf, n: int = -1, /) -> None:
        """Feed buf[:n] (all of buf when n < 0), the next bytes of the message. After verify():
        its error again, or ValueError "bad argument" when it succeeded."""
    def verify(self, /) -> bool:
        """True when the signature is valid for the bytes fed; else ValueError "signature
        mismatch". The result latches."""

# Host only (pyshim, not in the natmod): tools that make deltas, and sign.
def ed25519_public_key(private_key: bytes) -> bytes:
    """The 32-byte public key of a private key (its 32-byte seed, RFC 8032)."""
def ed25519_sign(private_key: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature (R, S) of message (deterministic, RFC 8032)."""
def make_patch(old: bytes, new: bytes) -> bytes:
    """bsdiff patch (the `bsdiff` crate's format), uncompressed."""
def deflate(data: bytes, level: int = 9, wbits: int = 15, format: int = ZLIB) -> bytes:
    """Compress with miniz_oxide, window 2**wbits (8..15), level 0..10.

    miniz_oxide has no window option: for wbits < 15 the compressor does a
    full flush (emptying its dictionary) every 2**wbits input bytes, so no
    match distance reaches past the window; the zlib header's CINFO is
    wbits - 8, so InflateReader(..., ZLIB, wbits) accepts it."""
