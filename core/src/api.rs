//! The Python API's arguments, one definition for both bindings: parameter names and
//! order, which may be keywords, defaults, and every check of a value.
//!
//! A binding does no checking of its own. It binds each argument to a slot with a
//! [`Binder`] (positional arguments first, then keywords in call order), passes each int
//! argument as an [`Int`] to [`new_args`] / [`count`] / [`read_count`], and raises the
//! [`Error`] they return as [`Error::exception`] with [`Error::message`]. So the natmod
//! (`natmod/`) and the PyO3 module (`pyshim/`) accept the same calls, give the same
//! defaults and fail with the same exception and text.
//!
//! ```
//! use ota_core::api::{new_args, Binder, Call, ABSENT, FORMAT, SIZE, SOURCE};
//! use ota_core::{Error, Format};
//! // InflateReader(src, format=RAW)
//! let mut b = Binder::new(Call::InflateReader, 1).unwrap();
//! assert_eq!(b.positional(0), Ok(SOURCE));
//! assert_eq!(b.keyword("format"), Ok(FORMAT));
//! assert_eq!(b.keyword("wbit"), Err(Error::BadKeyword));
//! assert_eq!(b.finish(), Ok(()));
//! let a = new_args(Call::InflateReader, ABSENT, 1, ABSENT).unwrap();
//! assert_eq!((a.format, a.wbits), (Format::Raw, 15)); // the wbits default
//! // PatchReader(src, old): new_size missing
//! let mut b = Binder::new(Call::PatchReader, 0).unwrap();
//! b.positional(0).unwrap();
//! b.positional(1).unwrap();
//! assert_eq!(b.finish(), Err(Error::ArgCount));
//! assert_eq!(new_args(Call::BlobHasher, -1, ABSENT, ABSENT).unwrap_err(), Error::BadSize);
//! # let _ = SIZE;
//! ```

use crate::inflate::Format;
use crate::Error;

/// A call of the API whose arguments a binding binds (the natmod's `kind` for 0..=3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Call {
    /// `BlobHasher(size)`
    BlobHasher = 0,
    /// `InflateReader(source, format=ZLIB, wbits=15)`
    InflateReader = 1,
    /// `PatchReader(source, old, new_size)`
    PatchReader = 2,
    /// `DeltaReader(source, old, new_size, format=RAW, wbits=12)`
    DeltaReader = 3,
    /// `BlobHasher.update(buf, n=-1, /)`
    Update = 4,
    /// `readinto(buf, n=-1, /)` of the three readers
    Readinto = 5,
    /// `digest()` and `hexdigest()`
    Digest = 6,
    /// `Verifier(public_key, signature)` (feature `ed25519`; its `update` is [`Call::Update`])
    #[cfg(feature = "ed25519")]
    Verifier = 7,
    /// `Verifier.verify()` (feature `ed25519`)
    #[cfg(feature = "ed25519")]
    Verify = 8,
}

#[cfg(not(feature = "ed25519"))]
const CALLS: [Call; 7] =
    [Call::BlobHasher, Call::InflateReader, Call::PatchReader, Call::DeltaReader, Call::Update, Call::Readinto, Call::Digest];
#[cfg(feature = "ed25519")]
const CALLS: [Call; 9] = [
    Call::BlobHasher,
    Call::InflateReader,
    Call::PatchReader,
    Call::DeltaReader,
    Call::Update,
    Call::Readinto,
    Call::Digest,
    Call::Verifier,
    Call::Verify,
];

// Argument slots: where a binding keeps a bound argument. Constructors:
/// Slot of `source` (constructors).
pub const SOURCE: usize = 0;
/// Slot of `old` (constructors).
pub const OLD: usize = 1;
/// Slot of `size` (BlobHasher) and `new_size` (PatchReader, DeltaReader).
pub const SIZE: usize = 2;
/// Slot of `format` (constructors).
pub const FORMAT: usize = 3;
/// Slot of `wbits` (constructors).
pub const WBITS: usize = 4;
// Methods:
/// Slot of `buf` (update, readinto).
pub const BUF: usize = 0;
/// Slot of `n` (update, readinto).
pub const N: usize = 1;
// Verifier (feature `ed25519`):
/// Slot of `public_key` (Verifier).
pub const PUBLIC_KEY: usize = 0;
/// Slot of `signature` (Verifier).
pub const SIGNATURE: usize = 1;
/// Slots of any call: 0..SLOTS.
pub const SLOTS: usize = 5;

/// Parameter names, in every call's positional order; a keyword is looked up here by its
/// position (the natmod's C glue keeps the constructors' names, as qstrs, in this order:
/// natmod's cargo test checks it). With the `ed25519` feature, two more: `public_key`, `signature`.
#[cfg(not(feature = "ed25519"))]
pub const NAMES: [&str; 8] = ["source", "old", "size", "new_size", "format", "wbits", "buf", "n"];
/// Parameter names (see the build without the `ed25519` feature): the base names, then the
/// Verifier's.
#[cfg(feature = "ed25519")]
pub const NAMES: [&str; 10] = ["source", "old", "size", "new_size", "format", "wbits", "buf", "n", "public_key", "signature"];
/// A set of [`NAMES`], one bit per name: a byte, or 16 bits with the `ed25519` feature's names
/// (so the base natmod's tables are what they were).
#[cfg(not(feature = "ed25519"))]
pub type Bits = u8;
/// A set of [`NAMES`], one bit per name.
#[cfg(feature = "ed25519")]
pub type Bits = u16;
/// The slot of each name of [`NAMES`].
#[cfg(not(feature = "ed25519"))]
const SLOT_OF: [u8; 8] = [SOURCE as u8, OLD as u8, SIZE as u8, SIZE as u8, FORMAT as u8, WBITS as u8, BUF as u8, N as u8];
#[cfg(feature = "ed25519")]
const SLOT_OF: [u8; 10] =
    [SOURCE as u8, OLD as u8, SIZE as u8, SIZE as u8, FORMAT as u8, WBITS as u8, BUF as u8, N as u8, PUBLIC_KEY as u8, SIGNATURE as u8];
/// Each call's parameters: bit i for [`NAMES`]`[i]`; positional order is the bits' order.
/// (Bits, not lists: a table of pointers would need relocations that the natmod's
/// armv6m linker cannot do in read-only data.)
#[cfg(not(feature = "ed25519"))]
const PARAMS: [Bits; 7] = [0b100, 0b11_0001, 0b1011, 0b11_1011, 0b1100_0000, 0b1100_0000, 0];
#[cfg(feature = "ed25519")]
const PARAMS: [Bits; 9] = [0b100, 0b11_0001, 0b1011, 0b11_1011, 0b1100_0000, 0b1100_0000, 0, 0b11_0000_0000, 0];
/// Each call's required parameters (its first ones), as bits of [`NAMES`].
#[cfg(not(feature = "ed25519"))]
const REQUIRED: [Bits; 7] = [0b100, 0b1, 0b1011, 0b1011, 0b100_0000, 0b100_0000, 0];
#[cfg(feature = "ed25519")]
const REQUIRED: [Bits; 9] = [0b100, 0b1, 0b1011, 0b1011, 0b100_0000, 0b100_0000, 0, 0b11_0000_0000, 0];

// ---- defaults -------------------------------------------------------------------

/// `InflateReader` format default.
pub const INFLATE_FORMAT: Format = Format::Zlib;
/// `InflateReader` wbits default.
pub const INFLATE_WBITS: u8 = 15;
/// `DeltaReader` format default (the `.deltas/` patches are raw deflate).
pub const DELTA_FORMAT: Format = Format::Raw;
/// `DeltaReader` wbits default.
pub const DELTA_WBITS: u8 = 12;
/// `deflate` (host only) level default.
pub const DEFLATE_LEVEL: u8 = 9;
/// `deflate` wbits default.
pub const DEFLATE_WBITS: u8 = 15;
/// `deflate` format default.
pub const DEFLATE_FORMAT: Format = Format::Zlib;
/// `deflate` levels: 0..=DEFLATE_MAX_LEVEL.
pub const DEFLATE_MAX_LEVEL: u8 = 10;
/// Declared sizes are below this (MicroPython's small ints stop at 2**30 on 32-bit boards).
pub const SIZE_LIMIT: u64 = 1 << 30;

impl Call {
    /// The call for a code (its discriminant); `None` for others.
    pub const fn from_code(code: i32) -> Option<Call> {
        if code < 0 || code >= CALLS.len() as i32 {
            return None;
        }
        Some(CALLS[code as usize])
    }
    /// Its parameters' names in positional order.
    pub fn params(self) -> impl Iterator<Item = &'static str> {
        let m = PARAMS[self as usize];
        (0..NAMES.len()).filter(move |i| m & (1 << i) != 0).map(|i| NAMES[i])
    }
    /// Methods take positional arguments only (as MicroPython's builtin methods do); the
    /// constructors (the first four calls, and `Verifier`) take keywords.
    pub const fn positional_only(self) -> bool {
        self as u8 >= Call::Update as u8 && !self.is_constructor()
    }
    #[cfg(not(feature = "ed25519"))]
    const fn is_constructor(self) -> bool {
        false
    }
    #[cfg(feature = "ed25519")]
    const fn is_constructor(self) -> bool {
        matches!(self, Call::Verifier)
    }
}

/// One argument to bind: see [`Binder::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Positional argument number i.
    Positional(usize),
    /// The keyword [`NAMES`]`[i]` (an index past the table: an unknown name).
    Keyword(usize),
    /// After the last argument.
    End,
}

/// Binds one call's arguments to slots: positional arguments first, then keywords in call
/// order, then [`Arg::End`]. A plain record: the natmod keeps `bound` in C from one argument
/// to the next.
#[derive(Clone, Copy, Debug)]
pub struct Binder {
    /// The call.
    pub call: Call,
    /// The parameters bound so far, as bits of [`NAMES`].
    pub bound: Bits,
}

impl Binder {
    /// A binder for `call` given `n_kw` keywords: [`Error::NoKeywords`] if it takes none
    /// (checked before the count, as MicroPython's runtime does for builtin methods).
    pub fn new(call: Call, n_kw: usize) -> Result<Binder, Error> {
        if n_kw > 0 && call.positional_only() {
            return Err(Error::NoKeywords);
        }
        Ok(Binder { call, bound: 0 })
    }

    /// Binds one argument and returns its slot (0 for [`Arg::End`]). Errors:
    /// [`Error::ArgCount`] for a positional argument past the parameters, or at the end when a
    /// required one is missing; [`Error::BadKeyword`] for a keyword that names no parameter of
    /// the call or one already bound; [`Error::NoKeywords`] for any keyword to a method.
    pub fn bind(&mut self, arg: Arg) -> Result<usize, Error> {
        let c = self.call as usize;
        let params = PARAMS[c];
        let name = match arg {
            Arg::End if self.bound & REQUIRED[c] == REQUIRED[c] => return Ok(0),
            Arg::End => return Err(Error::ArgCount),
            Arg::Keyword(_) if self.call.positional_only() => return Err(Error::NoKeywords),
            Arg::Keyword(k) if k < NAMES.len() && (params & !self.bound) & (1 << k) != 0 => k,
            Arg::Keyword(_) => return Err(Error::BadKeyword),
            Arg::Positional(mut i) => {
                // The i-th set bit (positionals come first: never bound yet).
                let mut k = 0;
                loop {
                    if k == NAMES.len() {
                        return Err(Error::ArgCount);
                    }
                    if params & (1 << k) != 0 {
                        if i == 0 {
                            break k;
                        }
                        i -= 1;
                    }
                    k += 1;
                }
            }
        };
        self.bound |= 1 << name;
        Ok(SLOT_OF[name] as usize)
    }
    /// The slot of positional argument number `i`.
    pub fn positional(&mut self, i: usize) -> Result<usize, Error> {
        self.bind(Arg::Positional(i))
    }
    /// The slot of the keyword `name`.
    pub fn keyword(&mut self, name: &str) -> Result<usize, Error> {
        let i = NAMES.iter().position(|&n| n == name).unwrap_or(NAMES.len());
        self.bind(Arg::Keyword(i))
    }
    /// [`Error::ArgCount`] unless every required parameter was bound.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.bind(Arg::End).map(drop)
    }
}

// ---- int arguments ------------------------------------------------------------------

/// An int argument as a binding passes it: the int's value when it fits (any value whose
/// magnitude reaches 2**30 may be given as [`BIG`] instead: every check treats them alike),
/// or one of [`ABSENT`], [`NOT_INT`], [`BIG`]. Exact ints only: `bool` is [`NOT_INT`].
/// In the natmod this is the C glue's `mp_int_t`.
pub type Int = isize;
/// Not given (and `None` as a `readinto` result).
pub const ABSENT: Int = isize::MIN;
/// Not an int.
pub const NOT_INT: Int = isize::MIN + 1;
/// An int beyond a machine word (either sign).
pub const BIG: Int = isize::MAX;

/// The [`Int`] of an int value that a binding has (e.g. CPython's, as i64; `None` when it does
/// not fit an i64).
pub const fn int(v: Option<i64>) -> Int {
    match v {
        Some(v) if v >= -(1 << 30) && v < (1 << 30) => v as Int,
        _ => BIG,
    }
}

fn given(v: Int) -> Result<Option<Int>, Error> {
    match v {
        ABSENT => Ok(None),
        NOT_INT => Err(Error::NotInt),
        v => Ok(Some(v)),
    }
}

fn format(v: Int, default: Format) -> Result<Format, Error> {
    match given(v)? {
        None => Ok(default),
        Some(v) => i32::try_from(v).ok().and_then(Format::from_code).ok_or(Error::BadFormat),
    }
}

fn wbits(v: Int, default: u8) -> Result<u8, Error> {
    match given(v)? {
        None => Ok(default),
        Some(v @ 8..=15) => Ok(v as u8),
        Some(_) => Err(Error::BadWindow),
    }
}

/// The checked arguments of a constructor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewArgs {
    /// `size` / `new_size` (0 for InflateReader).
    pub size: u64,
    /// `format` (the default for BlobHasher and PatchReader).
    pub format: Format,
    /// `wbits` (the default for BlobHasher and PatchReader).
    pub wbits: u8,
}

/// The int arguments of a constructor, checked in positional order (`size`, `format`,
/// `wbits`), defaults filled in. The [`Binder`] has checked that the required ones are given
/// (an [`ABSENT`] size is 0: InflateReader's).
pub fn new_args(call: Call, size: Int, format_: Int, wbits_: Int) -> Result<NewArgs, Error> {
    let (f, w) = match call {
        Call::DeltaReader => (DELTA_FORMAT, DELTA_WBITS),
        _ => (INFLATE_FORMAT, INFLATE_WBITS),
    };
    let size = match given(size)? {
        None => 0,
        Some(v) if v >= 0 && (v as u64) < SIZE_LIMIT => v as u64,
        Some(_) => return Err(Error::BadSize),
    };
    Ok(NewArgs { size, format: format(format_, f)?, wbits: wbits(wbits_, w)? })
}

/// The `n` argument of `update` / `readinto` over a buffer of `len` bytes: slice semantics
/// (absent or negative: all of it; larger: clamped).
pub fn count(n: Int, len: usize) -> Result<usize, Error> {
    match n {
        NOT_INT => Err(Error::NotInt),
        n if n >= 0 => Ok(len.min(n as usize)),
        _ => Ok(len), // negative, or ABSENT
    }
}

/// What a source's or old file's `readinto` returned for a buffer of `n` bytes (`None` as
/// [`ABSENT`]): the count; [`Error::BadCount`] for anything but `None` or an int in 0..=n.
pub fn read_count(r: Int, n: usize) -> Result<usize, Error> {
    match r {
        ABSENT => Ok(0),
        r if r >= 0 && r as usize <= n => Ok(r as usize),
        _ => Err(Error::BadCount),
    }
}

/// The arguments of the host-only `deflate(data, level, wbits, format)`, checked in that order.
pub fn deflate_args(level: Int, wbits_: Int, format_: Int) -> Result<(u8, u8, Format), Error> {
    let level = match given(level)? {
        None => DEFLATE_LEVEL,
        Some(v) if v >= 0 && v <= DEFLATE_MAX_LEVEL as Int => v as u8,
        Some(_) => return Err(Error::BadLevel),
    };
    Ok((level, wbits(wbits_, DEFLATE_WBITS)?, format(format_, DEFLATE_FORMAT)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits of these names.
    fn bits(names: &[&str]) -> Bits {
        names.iter().map(|n| 1 << NAMES.iter().position(|m| m == n).unwrap()).sum()
    }

    fn bind(call: Call, pos: usize, kw: &[&str]) -> Result<Bits, Error> {
        let mut b = Binder::new(call, kw.len())?;
        for i in 0..pos {
            b.positional(i)?;
        }
        for k in kw {
            b.keyword(k)?;
        }
        b.finish()?;
        Ok(b.bound)
    }

    #[test]
    fn binding() {
        use Call::*;
        assert_eq!(bind(BlobHasher, 1, &[]), Ok(bits(&["size"])));
        assert_eq!(bind(BlobHasher, 0, &["size"]), Ok(bits(&["size"])));
        assert_eq!(bind(BlobHasher, 0, &["new_size"]), Err(Error::BadKeyword));
        assert_eq!(bind(BlobHasher, 0, &[]), Err(Error::ArgCount));
        assert_eq!(bind(BlobHasher, 2, &[]), Err(Error::ArgCount));
        assert_eq!(bind(BlobHasher, 1, &["size"]), Err(Error::BadKeyword)); // twice
        assert_eq!(bind(InflateReader, 1, &["wbits"]), Ok(bits(&["source", "wbits"])));
        assert_eq!(bind(InflateReader, 0, &["format", "source"]), Ok(bits(&["source", "format"])));
        assert_eq!(bind(InflateReader, 0, &["format"]), Err(Error::ArgCount));
        assert_eq!(bind(InflateReader, 1, &["old"]), Err(Error::BadKeyword));
        assert_eq!(bind(InflateReader, 1, &["n"]), Err(Error::BadKeyword));
        assert_eq!(bind(InflateReader, 2, &["format"]), Err(Error::BadKeyword));
        assert_eq!(bind(InflateReader, 4, &[]), Err(Error::ArgCount));
        assert_eq!(bind(InflateReader, 3, &[]), Ok(bits(&["source", "format", "wbits"])));
        assert_eq!(bind(PatchReader, 2, &["new_size"]), Ok(bits(&["source", "old", "new_size"])));
        assert_eq!(bind(PatchReader, 2, &["size"]), Err(Error::BadKeyword));
        assert_eq!(bind(PatchReader, 2, &["format"]), Err(Error::BadKeyword));
        assert_eq!(bind(DeltaReader, 5, &[]), Ok(bits(&["source", "old", "new_size", "format", "wbits"])));
        assert_eq!(bind(DeltaReader, 6, &[]), Err(Error::ArgCount));
        assert_eq!(bind(DeltaReader, 1, &["wbits", "new_size", "old"]), Ok(bits(&["source", "old", "new_size", "wbits"])));
        // Keywords are checked before counts for methods, as MicroPython does.
        assert_eq!(bind(Update, 9, &["n"]), Err(Error::NoKeywords));
        assert_eq!(bind(Update, 1, &[]), Ok(bits(&["buf"])));
        assert_eq!(bind(Readinto, 2, &[]), Ok(bits(&["buf", "n"])));
        assert_eq!(bind(Readinto, 0, &[]), Err(Error::ArgCount));
        assert_eq!(bind(Readinto, 3, &[]), Err(Error::ArgCount));
        assert_eq!(bind(Digest, 0, &[]), Ok(0));
        assert_eq!(bind(Digest, 1, &[]), Err(Error::ArgCount));
        // Slots, and the natmod's keyword form: an index in NAMES, past it = unknown.
        let mut b = Binder::new(DeltaReader, 1).unwrap();
        assert_eq!(b.bind(Arg::Positional(0)), Ok(SOURCE));
        assert_eq!(b.bind(Arg::Keyword(NAMES.len())), Err(Error::BadKeyword));
        assert_eq!(b.bind(Arg::Keyword(usize::MAX)), Err(Error::BadKeyword));
        assert_eq!(b.bind(Arg::Keyword(5)), Ok(WBITS));
        assert_eq!(b.bind(Arg::Keyword(4)), Ok(FORMAT));
        assert_eq!(b.bind(Arg::Keyword(3)), Ok(SIZE));
        assert_eq!(b.bind(Arg::End), Err(Error::ArgCount)); // old
        assert_eq!(b.bind(Arg::Keyword(1)), Ok(OLD));
        assert_eq!(b.bind(Arg::End), Ok(0));
        let mut b = Binder::new(BlobHasher, 0).unwrap();
        assert_eq!(b.bind(Arg::Positional(0)), Ok(SIZE));
        let mut b = Binder::new(Readinto, 0).unwrap();
        assert_eq!((b.positional(0), b.positional(1)), (Ok(BUF), Ok(N)));
        assert_eq!(b.bind(Arg::Keyword(7)), Err(Error::NoKeywords));
        assert_eq!(Binder::new(Readinto, 1).unwrap_err(), Error::NoKeywords);
        for (i, c) in CALLS.iter().enumerate() {
            assert_eq!(Call::from_code(i as i32), Some(*c));
            assert_eq!(*c as usize, i);
            assert_eq!(REQUIRED[i] & !PARAMS[i], 0);
            // required parameters come first
            let order = (0..NAMES.len()).filter(|k| PARAMS[i] & (1 << k) != 0);
            let req: std::vec::Vec<bool> = order.map(|k| REQUIRED[i] & (1 << k) != 0).collect();
            assert!(req.windows(2).all(|w| w[0] || !w[1]), "{c:?}");
        }
        assert_eq!(Call::from_code(-1), None);
        assert_eq!(Call::from_code(CALLS.len() as i32), None);
        assert_eq!((NAMES.len(), SLOT_OF.len(), PARAMS.len(), REQUIRED.len()), (NAMES.len(), NAMES.len(), CALLS.len(), CALLS.len()));
        assert!(NAMES.len() <= Bits::BITS as usize);
        assert_eq!(DeltaReader.params().collect::<std::vec::Vec<_>>(), ["source", "old", "new_size", "format", "wbits"]);
    }

    #[cfg(feature = "ed25519")]
    #[test]
    fn verifier_binding() {
        use Call::*;
        assert_eq!(bind(Verifier, 2, &[]), Ok(bits(&["public_key", "signature"])));
        assert_eq!(bind(Verifier, 0, &["signature", "public_key"]), Ok(bits(&["public_key", "signature"])));
        assert_eq!(bind(Verifier, 1, &[]), Err(Error::ArgCount));
        assert_eq!(bind(Verifier, 3, &[]), Err(Error::ArgCount));
        assert_eq!(bind(Verifier, 1, &["public_key"]), Err(Error::BadKeyword));
        assert_eq!(bind(Verifier, 1, &["key"]), Err(Error::BadKeyword));
        assert_eq!(bind(Verifier, 1, &["source"]), Err(Error::BadKeyword));
        assert_eq!(bind(Verify, 0, &[]), Ok(0));
        assert_eq!(bind(Verify, 1, &[]), Err(Error::ArgCount));
        assert_eq!(bind(Verify, 0, &["n"]), Err(Error::NoKeywords));
        let mut b = Binder::new(Verifier, 1).unwrap();
        assert_eq!(b.bind(Arg::Keyword(9)), Ok(SIGNATURE));
        assert_eq!(b.bind(Arg::Keyword(8)), Ok(PUBLIC_KEY));
        assert_eq!(b.bind(Arg::Keyword(10)), Err(Error::BadKeyword));
        assert_eq!(Verifier.params().collect::<std::vec::Vec<_>>(), ["public_key", "signature"]);
        assert!(!Verifier.positional_only() && Verify.positional_only() && Update.positional_only());
    }

    #[test]
    fn ints() {
        use Call::*;
        let ok = |size, format, wbits| Ok(NewArgs { size, format, wbits });
        assert_eq!(new_args(InflateReader, ABSENT, ABSENT, ABSENT), ok(0, Format::Zlib, 15));
        assert_eq!(new_args(DeltaReader, 5, ABSENT, ABSENT), ok(5, Format::Raw, 12));
        assert_eq!(new_args(DeltaReader, 5, 3, 8), ok(5, Format::Gzip, 8));
        assert_eq!(new_args(BlobHasher, (1 << 30) - 1, ABSENT, ABSENT).map(|a| a.size), Ok((1 << 30) - 1));
        assert_eq!(new_args(BlobHasher, 1 << 30, ABSENT, ABSENT), Err(Error::BadSize));
        assert_eq!(new_args(BlobHasher, BIG, ABSENT, ABSENT), Err(Error::BadSize));
        assert_eq!(new_args(PatchReader, -1, ABSENT, ABSENT), Err(Error::BadSize));
        assert_eq!(new_args(PatchReader, NOT_INT, ABSENT, ABSENT), Err(Error::NotInt));
        assert_eq!(new_args(PatchReader, ABSENT, ABSENT, ABSENT).map(|a| a.size), Ok(0)); // the binder's job
        for f in [0, 4, -1, BIG, 1 << 32] {
            assert_eq!(new_args(InflateReader, ABSENT, f, ABSENT), Err(Error::BadFormat));
        }
        for w in [7, 16, -1, BIG, 8 + (1 << 32)] {
            assert_eq!(new_args(InflateReader, ABSENT, ABSENT, w), Err(Error::BadWindow));
        }
        // positional order: size, then format, then wbits
        assert_eq!(new_args(DeltaReader, -1, 0, 0), Err(Error::BadSize));
        assert_eq!(new_args(DeltaReader, 1, 0, NOT_INT), Err(Error::BadFormat));
        assert_eq!(new_args(DeltaReader, 1, NOT_INT, 0), Err(Error::NotInt));
        assert_eq!(count(ABSENT, 10), Ok(10));
        assert_eq!(count(-1, 10), Ok(10));
        assert_eq!(count(3, 10), Ok(3));
        assert_eq!(count(BIG, 10), Ok(10));
        assert_eq!(count(NOT_INT, 10), Err(Error::NotInt));
        assert_eq!(read_count(ABSENT, 10), Ok(0));
        assert_eq!(read_count(10, 10), Ok(10));
        for r in [11, -1, NOT_INT, BIG] {
            assert_eq!(read_count(r, 10), Err(Error::BadCount));
        }
        assert_eq!(deflate_args(ABSENT, ABSENT, ABSENT), Ok((9, 15, Format::Zlib)));
        assert_eq!(deflate_args(11, ABSENT, ABSENT), Err(Error::BadLevel));
        assert_eq!(deflate_args(0, 8, 1), Ok((0, 8, Format::Raw)));
        assert_eq!(int(Some(5)), 5);
        assert_eq!(int(Some(-(1 << 30))), -(1 << 30));
        assert_eq!(int(Some(-(1 << 30) - 1)), BIG);
        assert_eq!(int(Some(1 << 30)), BIG);
        assert_eq!(int(Some(i64::MIN)), BIG);
        assert_eq!(int(None), BIG);
    }
}
