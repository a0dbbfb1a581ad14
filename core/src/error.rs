//! The one error table shared by every binding.
//!
//! Each [`Error`] has a stable small positive [`code`](Error::code) (what the
//! natmod's C layer passes around), a fixed [`message`](Error::message) and the
//! Python [`exception`](Error::exception) both bindings raise with it: data errors
//! and bad values are `ValueError`, argument errors (count, keywords, types) are
//! `TypeError` (the checks are in [`crate::api`]). No binding writes a message of
//! its own. [`Error::Source`] is special: it means a caller callback failed;
//! bindings re-raise the callback's own exception instead of the message.
//!
//! ```
//! use ota_core::Error;
//! let e = Error::Checksum;
//! assert_eq!(Error::from_code(e.code()), Some(e));
//! assert_eq!(Error::from_code(0), None);
//! assert!(!e.message().is_empty());
//! assert_eq!(e.exception(), ota_core::error::Exception::ValueError);
//! assert_eq!(Error::ArgCount.exception(), ota_core::error::Exception::TypeError);
//! ```

/// Every failure of the core. Errors latch: after one is returned, every later
/// call on the same state returns it again.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Error {
    /// More bytes were hashed than the declared blob size.
    BlobTooLong = 1,
    /// Digest asked for before exactly the declared number of bytes was hashed.
    BlobTooShort = 2,
    /// Unknown stream format code (not RAW=1, ZLIB=2, GZIP=3).
    BadFormat = 3,
    /// wbits outside 8..=15, or a window buffer that is not 2**wbits bytes.
    BadWindow = 4,
    /// The stream declares a larger window than the one given (zlib CINFO > wbits).
    WindowTooSmall = 5,
    /// Invalid deflate data (for raw/gzip streams this includes a match
    /// distance beyond a window smaller than 32 KiB, which miniz_oxide does not
    /// report separately).
    InflateCorrupt = 6,
    /// Input ended before the end of the compressed stream.
    InflateTruncated = 7,
    /// adler32 / crc32 / length trailer does not match the data.
    Checksum = 8,
    /// Bad zlib or gzip header.
    GzipHeader = 9,
    /// Patch input ended inside a control block or its data.
    PatchTruncated = 10,
    /// A control value is out of range or overflows.
    PatchControl = 11,
    /// A mix block or seek points outside the old file.
    PatchOldRange = 12,
    /// The patch produces more bytes than the declared new size.
    PatchTooLong = 13,
    /// The patch ended before producing the declared new size.
    PatchTooShort = 14,
    /// Reading the old file failed or returned fewer bytes than asked.
    OldRead = 15,
    /// The caller's source / old-file callback failed (bindings re-raise its exception).
    Source = 16,
    /// A digest was asked for before the end of the stream.
    Incomplete = 17,
    /// A call was made that the current state does not allow (e.g. a zero-length output buffer).
    BadArgument = 18,
    /// A declared size (`size`, `new_size`) outside 0..2**30.
    BadSize = 19,
    /// A `deflate` level outside 0..=10 (host only).
    BadLevel = 20,
    /// A source's or old file's `readinto` returned something else than None or an int in 0..=len(buf).
    BadCount = 21,
    /// Cannot happen: a panic (natmod), a failed write to memory (PyO3's make_patch) or an
    /// unknown error code.
    Internal = 22,
    // TypeError from here on (code >= ArgCount).
    /// Too many positional arguments, or a required one missing.
    ArgCount = 23,
    /// A keyword that is not a parameter of the call, or names one already given.
    BadKeyword = 24,
    /// A keyword passed to a method (methods take positional arguments only). The text is
    /// MicroPython's own for a builtin method, which raises it before the natmod runs.
    NoKeywords = 25,
    /// An int argument that is not an int (bool included).
    NotInt = 26,
    /// `update`'s buf has no buffer protocol (a str has one on MicroPython only: refused too),
    /// or `readinto`'s buf is not a writable one; also a `Verifier`'s key or signature.
    NotBuffer = 27,
    // Ed25519 (feature `ed25519`, [`crate::sign`]): ValueError again. Only builds with the
    // feature have these codes, so the base natmod's tables and messages stay as they were.
    /// A public key or private key (seed) that is not 32 bytes.
    #[cfg(feature = "ed25519")]
    KeyLength = 28,
    /// A signature that is not 64 bytes.
    #[cfg(feature = "ed25519")]
    SigLength = 29,
    /// A public key that is not the canonical encoding of a curve point.
    #[cfg(feature = "ed25519")]
    BadKey = 30,
    /// A public key of small order (it would accept forged signatures).
    #[cfg(feature = "ed25519")]
    WeakKey = 31,
    /// A signature whose S is not below the group order L (malleable).
    #[cfg(feature = "ed25519")]
    SigNonCanonical = 32,
    /// A signature whose R is not a canonical curve point of large order.
    #[cfg(feature = "ed25519")]
    SigBadR = 33,
    /// The signature does not match the message and key.
    #[cfg(feature = "ed25519")]
    SigMismatch = 34,
}

/// The messages of the Ed25519 codes, after the others (empty without the feature).
#[cfg(feature = "ed25519")]
macro_rules! ed25519_messages {
    () => {
        concat!(
            "key not 32 bytes\0",                   // KeyLength
            "signature not 64 bytes\0",             // SigLength
            "public key not a curve point\0",       // BadKey
            "public key of small order\0",          // WeakKey
            "signature not canonical (S >= L)\0",   // SigNonCanonical
            "signature R not a valid point\0",      // SigBadR
            "signature mismatch\0",                 // SigMismatch
        )
    };
}
#[cfg(not(feature = "ed25519"))]
macro_rules! ed25519_messages {
    () => {
        ""
    };
}

/// A message that only the PyO3 module raises ([`Error::BadLevel`]: `deflate` is host only;
/// [`Error::NoKeywords`]: on MicroPython the same text comes from the runtime itself): left out
/// of the armv6m build, whose natmod must fit in 20 KB.
#[cfg(not(target_arch = "arm"))]
macro_rules! host {
    ($s:literal) => {
        $s
    };
}
#[cfg(target_arch = "arm")]
macro_rules! host {
    ($s:literal) => {
        ""
    };
}

/// The Python exception type of an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// Data errors and bad argument values.
    ValueError,
    /// Argument count, keyword and type errors.
    TypeError,
}

/// Every variant, in code order (index + 1 == code).
#[cfg(not(feature = "ed25519"))]
const ALL: [Error; 27] = ALL_BASE;
#[cfg(feature = "ed25519")]
const ALL: [Error; 34] = {
    let mut all = [Error::Internal; 34];
    let mut i = 0;
    while i < ALL_BASE.len() {
        all[i] = ALL_BASE[i];
        i += 1;
    }
    let ed = [
        Error::KeyLength,
        Error::SigLength,
        Error::BadKey,
        Error::WeakKey,
        Error::SigNonCanonical,
        Error::SigBadR,
        Error::SigMismatch,
    ];
    while i < all.len() {
        all[i] = ed[i - ALL_BASE.len()];
        i += 1;
    }
    all
};

/// The variants of every build.
const ALL_BASE: [Error; 27] = [
    Error::BlobTooLong,
    Error::BlobTooShort,
    Error::BadFormat,
    Error::BadWindow,
    Error::WindowTooSmall,
    Error::InflateCorrupt,
    Error::InflateTruncated,
    Error::Checksum,
    Error::GzipHeader,
    Error::PatchTruncated,
    Error::PatchControl,
    Error::PatchOldRange,
    Error::PatchTooLong,
    Error::PatchTooShort,
    Error::OldRead,
    Error::Source,
    Error::Incomplete,
    Error::BadArgument,
    Error::BadSize,
    Error::BadLevel,
    Error::BadCount,
    Error::Internal,
    Error::ArgCount,
    Error::BadKeyword,
    Error::NoKeywords,
    Error::NotInt,
    Error::NotBuffer,
];

impl Error {
    /// Stable code, 1..=27 (1..=34 with the `ed25519` feature). Never 0 (0 means "no error" at the C boundary).
    pub const fn code(self) -> i32 {
        self as i32 // the discriminants are the codes
    }

    /// Latch `self` into an error byte (the first error wins; 0 = none) and return the
    /// latched error. One out-of-line copy shared by every state's `fail`.
    #[inline(never)]
    pub(crate) fn latch(self, err: &mut u8) -> Error {
        if *err == 0 {
            *err = self as u8;
        }
        Error::from_code(*err as i32).unwrap_or(self)
    }

    /// The error for a code from [`Error::code`]; `None` for 0 or unknown codes.
    pub const fn from_code(code: i32) -> Option<Error> {
        if code < 1 || code > ALL.len() as i32 {
            return None;
        }
        Some(ALL[(code - 1) as usize])
    }

    /// The exception both bindings raise: `TypeError` from [`Error::ArgCount`]'s code to
    /// [`Error::NotBuffer`]'s, `ValueError` for the others (the natmod's C glue relies on this
    /// order: the base module has no code past NotBuffer).
    pub const fn exception(self) -> Exception {
        if (self as u8) < Error::ArgCount as u8 || (self as u8) > Error::NotBuffer as u8 {
            Exception::ValueError
        } else {
            Exception::TypeError
        }
    }

    /// Fixed message (the exception's text in both bindings). The texts only the host-only PyO3
    /// module raises are empty in the armv6m natmod (see `host!`).
    pub fn message(self) -> &'static str {
        // One string, messages in code order separated by NUL: a scan over it is
        // ~250 bytes smaller on Cortex-M0 than a `match` of (pointer, length) pairs.
        const MESSAGES: &str = concat!(
            "blob: more than size bytes\0",  // BlobTooLong
            "blob: fewer than size bytes\0", // BlobTooShort
            "format not RAW/ZLIB/GZIP\0",    // BadFormat
            "wbits not 8..15\0",             // BadWindow
            "stream needs larger window\0",  // WindowTooSmall
            "corrupt deflate data\0",        // InflateCorrupt
            "truncated stream\0",            // InflateTruncated
            "checksum mismatch\0",           // Checksum
            "bad zlib/gzip header\0",        // GzipHeader
            "truncated patch\0",             // PatchTruncated
            "bad patch control value\0",     // PatchControl
            "patch reads outside old\0",     // PatchOldRange
            "patch output too long\0",       // PatchTooLong
            "patch output too short\0",      // PatchTooShort
            "old file read short\0",         // OldRead
            "source read failed\0",          // Source
            "digest before end\0",           // Incomplete
            "bad argument\0",                // BadArgument
            "size not 0..2**30-1\0",         // BadSize
            host!("level not 0..10"), "\0", // BadLevel
            "bad readinto count\0",          // BadCount
            "internal error\0",              // Internal
            "wrong number of arguments\0",   // ArgCount
            "bad keyword argument\0",        // BadKeyword
            host!("function doesn't take keyword arguments"), "\0", // NoKeywords
            "int expected\0",                // NotInt
            "bad buffer\0",                  // NotBuffer
            ed25519_messages!(),             // KeyLength.. (feature ed25519)
        );
        let bytes = MESSAGES.as_bytes();
        let mut skip = self.code() - 1; // NULs before the message
        let mut start = 0;
        let mut end = 0;
        while end < bytes.len() {
            if bytes[end] == 0 {
                if skip == 0 {
                    break;
                }
                skip -= 1;
                start = end + 1;
            }
            end += 1;
        }
        MESSAGES.get(start..end).unwrap_or("")
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(e.code(), i as i32 + 1);
            assert_eq!(Error::from_code(e.code()), Some(*e));
            assert!(!e.message().is_empty() && !e.message().contains('\0'));
        }
        assert_eq!(Error::BlobTooLong.message(), "blob: more than size bytes");
        assert_eq!(Error::BadArgument.message(), "bad argument");
        assert_eq!(Error::WindowTooSmall.message(), "stream needs larger window");
        assert_eq!(Error::NotBuffer.message(), "bad buffer");
        // MicroPython's runtime text for a keyword given to a builtin method, verbatim.
        assert_eq!(Error::NoKeywords.message(), "function doesn't take keyword arguments");
        for e in ALL {
            let want = match e.code() {
                c if c < 23 || c > 27 => Exception::ValueError,
                _ => Exception::TypeError,
            };
            assert_eq!(e.exception(), want, "{e:?}");
        }
        // Every message distinct.
        for a in ALL {
            for b in ALL {
                assert_eq!(a == b, a.message() == b.message());
            }
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(-1), None);
        assert_eq!(Error::from_code(ALL.len() as i32 + 1), None);
        assert_eq!(Error::from_code(i32::MIN), None);
    }
}
