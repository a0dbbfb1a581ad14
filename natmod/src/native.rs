//! The `extern "C"` layer of `ota_native.mpy`: between the MicroPython glue
//! (`natmod/ota_native.c`) and `ota_core`.
//!
//! Contract with the glue:
//! - Every state lives in memory the glue owns (inside the Python object): `ota_new`
//!   checks the arguments, asks the glue for a zeroed, 8-byte aligned block of the size they
//!   need (`ota_alloc`) and initialises it in place (every core state is valid when all-zero,
//!   so nothing large is built on the stack).
//! - A state block is a header (kind, window length) + the core state; inflate and delta
//!   states are followed by the inflate window (`2**wbits` bytes) in the same block.
//! - One entry point per operation for every kind (`ota_new`, `ota_read` (which is `update`
//!   for a hasher), `ota_state_digest`), dispatching on the kind `ota_new` recorded.
//! - `ota_new` and `ota_state_digest` return 0 or an error code ([`Error::code`], > 0);
//!   `ota_read` and `ota_bind` return a count or slot, or minus a code. The glue raises a code
//!   as [`Error::exception`] with [`Error::message`] (`ota_error_message`): no message or check
//!   of its own.
//! - Arguments: the glue binds each one to a slot with `ota_bind` (the core's
//!   [`ota_core::api`] table) and passes ints as [`api::Int`] (`mp_int_t`: the value, or
//!   `ABSENT` / `NOT_INT` / `BIG`); the core checks them.
//! - Python callbacks are the glue's `ota_io_read` / `ota_io_read_at`: what `readinto`
//!   returned as an [`api::Int`] (None = `ABSENT`), or [`RAISED`] when the callback raised
//!   (the glue keeps the exception, the core returns [`Error::Source`] and the glue
//!   re-raises it).

use core::ffi::{c_int, c_void};
use core::mem::{align_of, size_of};
use core::slice;

use ota_core::api::{self, Arg, Binder, Call, Int};
use ota_core::{window_len, BlobHasher, DeltaReader, Error, InflateReader, PatchReader, ReadAt, Source};

extern "C" {
    /// source.readinto over buf[:n]: its result as an [`api::Int`], or [`RAISED`].
    fn ota_io_read(io: *mut c_void, buf: *mut u8, n: usize) -> isize;
    /// old.seek(offset) (when needed) + old.readinto over buf[:n]: as [`ota_io_read`].
    fn ota_io_read_at(io: *mut c_void, offset: u64, buf: *mut u8, n: usize) -> isize;
    /// A new object of the glue with a zeroed, 8-byte aligned state block of `bytes` bytes: the
    /// block (the glue keeps the object in `*ctx`); raises MemoryError instead of returning null.
    fn ota_alloc(ctx: *mut c_void, bytes: usize) -> *mut c_void;
}

/// What `ota_io_read` / `ota_io_read_at` return when the callback raised (the glue's `OTA_RAISED`;
/// no [`api::Int`] has this value).
pub const RAISED: isize = isize::MIN + 2;

/// `ota_bind`'s `arg` after the last argument (the glue's `OTA_BIND_END`).
pub const BIND_END: isize = isize::MIN;

/// The Python source object behind the glue's `io` pointer.
struct PySource(*mut c_void);

/// A callback's result: [`RAISED`] is [`Error::Source`], else [`api::read_count`].
fn io_count(r: isize, n: usize) -> Result<usize, Error> {
    match r {
        RAISED => Err(Error::Source),
        r => api::read_count(r, n),
    }
}

impl Source for PySource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        // Safety: buf is a live, exclusive slice; the glue writes at most buf.len() bytes into it.
        let r = unsafe { ota_io_read(self.0, buf.as_mut_ptr(), buf.len()) };
        io_count(r, buf.len())
    }
}

/// The Python old-file object (seek + readinto) behind the glue's `io` pointer.
struct PyOld(*mut c_void);

impl ReadAt for PyOld {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        // readinto may return short counts: read until full or end of file.
        let mut got = 0;
        while got < buf.len() {
            let rest = &mut buf[got..];
            // Safety: rest is a live, exclusive slice; the glue writes at most rest.len() bytes.
            let r = unsafe { ota_io_read_at(self.0, offset + got as u64, rest.as_mut_ptr(), rest.len()) };
            match io_count(r, rest.len())? {
                0 => break,
                n => got += n,
            }
        }
        Ok(got)
    }
}

/// Kinds of state (the glue's `KIND_*`, in this order).
const HASHER: usize = 0;
const INFLATE: usize = 1;
const PATCH: usize = 2;
const DELTA: usize = 3;

/// Every state block: header + core state; inflate and delta windows follow at `win_offset::<T>()`.
/// `kind` is written by `ota_new` and selects the type in the other entry points (one entry
/// point per operation for all kinds: less code than one per kind, on both sides of the FFI).
#[repr(C)]
struct Obj<T> {
    kind: usize,
    win_len: usize,
    reader: T,
}

const fn win_offset<T>() -> usize {
    (size_of::<Obj<T>>() + 7) & !7
}

fn code(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// `&mut Obj<T>` over glue memory, or None if the pointer is null or misaligned.
///
/// Safety: `st` must point to at least `size_of::<Obj<T>>()` bytes holding a valid `Obj<T>`
/// (all-zero or initialised) that nothing else references for the returned lifetime.
unsafe fn state<'a, T>(st: *mut c_void) -> Option<&'a mut Obj<T>> {
    if st.is_null() || (st as usize) % align_of::<Obj<T>>() != 0 {
        return None;
    }
    // Safety: non-null and aligned (checked); validity and exclusivity are the caller's contract.
    Some(unsafe { &mut *(st as *mut Obj<T>) })
}

/// The kind recorded by `ota_new` (0 = hasher for a zeroed block), or None for a null pointer.
///
/// Safety: `st` is null or points to a zeroed or initialised state block (8-byte aligned).
unsafe fn kind(st: *mut c_void) -> Option<usize> {
    // Safety: every block starts with the `kind` word (Obj is repr(C)); checked non-null and aligned.
    unsafe { state::<()>(st) }.map(|o| o.kind)
}

/// The reader and its window (the bytes after the header).
///
/// Safety: as [`state`], and the block holds `win_offset::<T>() + win_len` bytes.
unsafe fn windowed<'a, T>(st: *mut c_void) -> Option<(&'a mut T, &'a mut [u8])> {
    // Safety: forwarded contract.
    let w = unsafe { state::<T>(st) }?;
    // Safety: the window lies after the header, inside the same block, disjoint from `w`.
    let window = unsafe { slice::from_raw_parts_mut((st as *mut u8).add(win_offset::<T>()), w.win_len) };
    Some((&mut w.reader, window))
}

const BAD: Error = Error::BadArgument;

// ---- errors -------------------------------------------------------------------

/// The fixed message of an error code (UTF-8, not NUL-terminated) and its length. The glue
/// raises it as [`Error::exception`] by the code's place (`ERR_ARG_COUNT`, checked by the tests).
///
/// # Safety
/// `len` must be a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ota_error_message(code: c_int, len: *mut usize) -> *const u8 {
    let msg = Error::from_code(code).unwrap_or(Error::Internal).message();
    // Safety: the caller passes a valid pointer.
    unsafe { *len = msg.len() };
    msg.as_ptr()
}

// ---- arguments ---------------------------------------------------------------------

/// Binds one argument of the call `call` (an [`api::Call`] code; the kinds are its first four)
/// with the core's [`Binder`]: `arg >= 0` is positional argument number `arg`, `arg < 0` the
/// keyword [`api::NAMES`]`[-1 - arg]` (past the table: an unknown name), and [`BIND_END`] checks
/// that the required arguments were all given. `*bound` carries [`Binder::bound`] from one
/// argument to the next (0 before the first). Returns the argument's slot (0 for the end) or
/// minus an error code.
///
/// # Safety
/// `bound` must be a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ota_bind(call: c_int, arg: isize, bound: *mut u8) -> isize {
    let Some(call) = Call::from_code(call) else { return -(BAD.code() as isize) };
    // Safety: the caller's contract.
    let bound = unsafe { &mut *bound };
    let mut b = Binder { call, bound: *bound };
    let r = b.bind(match arg {
        BIND_END => Arg::End,
        a if a >= 0 => Arg::Positional(a as usize),
        a => Arg::Keyword(!a as usize),
    });
    *bound = b.bound;
    match r {
        Ok(slot) => slot as isize,
        Err(e) => -(e.code() as isize),
    }
}

/// The checked constructor arguments of `kind` ([`api::new_args`]).
fn new_args(kind: c_int, size: Int, format: Int, wbits: Int) -> Result<api::NewArgs, Error> {
    match Call::from_code(kind) {
        Some(call) if (kind as usize) <= DELTA => api::new_args(call, size, format, wbits),
        _ => Err(BAD),
    }
}

// ---- every kind: new, read, digest -------------------------------------------------

/// Checks the constructor arguments of `kind` (ints as [`api::Int`]: [`api::new_args`]), has
/// the glue allocate a zeroed state block of the size they need (`ota_alloc(ctx, bytes)`; inflate
/// and delta: with a window of 2**wbits) and initialises it in place: BlobHasher(size),
/// InflateReader(format, wbits), PatchReader(new_size = size), DeltaReader(new_size = size,
/// format, wbits). Returns 0 or an error code (nothing allocated for a bad argument).
///
/// # Safety
/// `ota_alloc` returns a zeroed, 8-byte aligned block of the size asked for (or raises).
#[no_mangle]
pub unsafe extern "C" fn ota_new(ctx: *mut c_void, kind: c_int, size: Int, format: Int, wbits: Int) -> c_int {
    let a = match new_args(kind, size, format, wbits) {
        Ok(a) => a,
        Err(e) => return e.code(),
    };
    let kind = kind as usize;
    let win = window_len(a.wbits);
    let bytes = match kind {
        HASHER => size_of::<Obj<BlobHasher>>(),
        INFLATE => win_offset::<InflateReader>() + win,
        PATCH => size_of::<Obj<PatchReader>>(),
        _ => win_offset::<DeltaReader>() + win,
    };
    // Safety: the glue's contract (a zeroed block of `bytes`, or it raised).
    let st = unsafe { ota_alloc(ctx, bytes) };
    // Safety (every arm): a zeroed block sized for the type (all-zero is a valid state).
    let r = match kind {
        HASHER => unsafe { state::<BlobHasher>(st) }.map(|o| {
            o.reader.init(a.size);
            Ok(())
        }),
        PATCH => unsafe { state::<PatchReader>(st) }.map(|o| {
            o.reader.init(a.size);
            Ok(())
        }),
        INFLATE => unsafe { state::<InflateReader>(st) }.map(|o| {
            o.win_len = win;
            o.reader.init(a.format, a.wbits)
        }),
        _ => unsafe { state::<DeltaReader>(st) }.map(|o| {
            o.win_len = win;
            o.reader.init(a.size, a.format, a.wbits)
        }),
    };
    let r = r.unwrap_or(Err(BAD));
    if r.is_ok() {
        // Safety: the block is non-null and aligned (an arm above succeeded).
        if let Some(o) = unsafe { state::<()>(st) } {
            o.kind = kind;
        }
    }
    code(r)
}

/// `readinto` of an inflate, patch or delta state into the first `n` ([`api::count`]) of the
/// `len` bytes at `buf`: the byte count (0 at the verified end) or minus an error code.
/// For a hasher state it is `update`: it hashes those bytes and returns 0 or minus a code
/// (one entry point for both: less code).
///
/// # Safety
/// `st` initialised by `ota_new`; `io` is the glue object; `buf` points to `len` bytes not
/// aliased by the state, writable unless `st` is a hasher (or is null with `len == 0`).
#[no_mangle]
pub unsafe extern "C" fn ota_read(st: *mut c_void, io: *mut c_void, buf: *mut u8, len: usize, n: Int) -> isize {
    let n = match api::count(n, len) {
        Ok(n) => n,
        Err(e) => return -(e.code() as isize),
    };
    let buf = if buf.is_null() { core::ptr::NonNull::dangling().as_ptr() } else { buf };
    // Safety (the slices): the caller's contract, n <= len.
    let out = || unsafe { slice::from_raw_parts_mut(buf, n) };
    let (mut src, mut old) = (PySource(io), PyOld(io));
    // Safety (every arm): the caller's contract; `kind` says which type the block holds.
    let r = match unsafe { kind(st) } {
        Some(HASHER) => unsafe { state::<BlobHasher>(st) }.map(|o| o.reader.update(unsafe { slice::from_raw_parts(buf, n) }).map(|()| 0)),
        Some(INFLATE) => unsafe { windowed::<InflateReader>(st) }.map(|(r, w)| r.read_into(&mut src, w, out())),
        Some(PATCH) => unsafe { state::<PatchReader>(st) }.map(|o| o.reader.read_into(&mut src, &mut old, out())),
        Some(DELTA) => unsafe { windowed::<DeltaReader>(st) }.map(|(r, w)| r.read_into(&mut src, &mut old, w, out())),
        _ => None,
    };
    match r.unwrap_or(Err(BAD)) {
        Ok(n) => n as isize,
        Err(e) => -(e.code() as isize),
    }
}

/// Digest of a hasher or a finished delta state into 20 bytes at `out`; 0 or an error code.
///
/// # Safety
/// `st` initialised by `ota_new`; `out` points to 20 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_state_digest(st: *mut c_void, out: *mut u8) -> c_int {
    // Safety (every arm): the caller's contract; `kind` says which type the block holds.
    let d = match unsafe { kind(st) } {
        Some(HASHER) => unsafe { state::<BlobHasher>(st) }.map(|o| o.reader.digest()),
        Some(DELTA) => unsafe { windowed::<DeltaReader>(st) }.map(|(r, _)| r.digest()),
        _ => None,
    };
    match d.unwrap_or(Err(BAD)) {
        Ok(d) => {
            // Safety: the caller passes 20 writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(d.as_ptr(), out, 20) };
            0
        }
        Err(e) => e.code(),
    }
}
#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    // The glue's callbacks, for the host test binary: a fake io object of input bytes.
    struct FakeIo {
        data: Vec<u8>,
        pos: usize,
        result: Option<isize>, // a fixed result instead of reading (RAISED, a bad count...)
    }

    #[no_mangle]
    extern "C" fn ota_io_read(io: *mut c_void, buf: *mut u8, n: usize) -> isize {
        // Safety: the tests pass a FakeIo and a buffer of n bytes.
        let io = unsafe { &mut *(io as *mut FakeIo) };
        if let Some(r) = io.result {
            return r;
        }
        let k = n.min(io.data.len() - io.pos);
        unsafe { core::ptr::copy_nonoverlapping(io.data[io.pos..].as_ptr(), buf, k) };
        io.pos += k;
        k as isize
    }

    /// The glue's allocator for the tests: `ctx` is a `Vec<u64>` that becomes the block.
    #[no_mangle]
    extern "C" fn ota_alloc(ctx: *mut c_void, bytes: usize) -> *mut c_void {
        // Safety: the tests pass a Vec<u64>.
        let v = unsafe { &mut *(ctx as *mut Vec<u64>) };
        *v = std::vec![0u64; bytes.div_ceil(8)];
        v.as_mut_ptr() as *mut c_void
    }

    #[no_mangle]
    extern "C" fn ota_io_read_at(_io: *mut c_void, _offset: u64, _buf: *mut u8, _n: usize) -> isize {
        RAISED
    }


    /// natmod/ota_native.c, for the checks that its constants and tables are the core's.
    fn glue() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ota_native.c")).unwrap()
    }

    /// The value of `#define NAME <value>` in the glue.
    fn define(c: &str, name: &str) -> String {
        let line = c
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("#define {name} missing"));
        let rest = line.split_whitespace().skip(2).take_while(|w| !w.starts_with("//"));
        rest.collect::<Vec<_>>().join(" ")
    }

    /// C constant expressions the glue uses: a number or INTPTR_MIN/INTPTR_MAX [+ k], in parentheses.
    fn eval(e: &str) -> isize {
        let e = e.trim().trim_start_matches('(').trim_end_matches(')');
        let (base, add) = match e.split_once('+') {
            Some((b, k)) => (b.trim(), k.trim().parse::<isize>().unwrap()),
            None => (e.trim(), 0),
        };
        let v = match base {
            "INTPTR_MIN" => isize::MIN,
            "INTPTR_MAX" => isize::MAX,
            n => n.parse().unwrap_or_else(|_| panic!("cannot evaluate {e:?}")),
        };
        v + add
    }

    #[test]
    fn glue_error_codes_are_the_cores() {
        let c = glue();
        // Every `#define ERR_X n // ota_core::Error::Name` names the core's code.
        let mut n = 0;
        for line in c.lines().filter(|l| l.starts_with("#define ERR_")) {
            let (def, comment) = line.split_once("// ota_core::Error::").expect("ERR_ define without its core name");
            let name: String = comment.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let code = eval(def.split_whitespace().nth(2).unwrap()) as i32;
            let e = Error::from_code(code).unwrap_or_else(|| panic!("{line}: no such code"));
            assert_eq!(std::format!("{e:?}"), name, "{line}");
            n += 1;
        }
        assert!(n >= 4, "{n} ERR_ defines");
        // The glue picks the exception by the code's place around ERR_ARG_COUNT.
        let first_type_error = eval(&define(&c, "ERR_ARG_COUNT")) as i32;
        for code in 1.. {
            let Some(e) = Error::from_code(code) else { break };
            let want = match code {
                c if c < first_type_error => ota_core::Exception::ValueError,
                _ => ota_core::Exception::TypeError,
            };
            assert_eq!(e.exception(), want, "{e:?}");
        }
    }

    #[test]
    fn glue_sentinels_and_names_are_the_cores() {
        let c = glue();
        assert_eq!(eval(&define(&c, "OTA_ABSENT")), api::ABSENT);
        assert_eq!(eval(&define(&c, "OTA_NOT_INT")), api::NOT_INT);
        assert_eq!(eval(&define(&c, "OTA_BIG")), api::BIG);
        assert_eq!(eval(&define(&c, "OTA_RAISED")), RAISED);
        assert_eq!(eval(&define(&c, "OTA_BIND_END")), BIND_END);
        assert!(![api::ABSENT, api::NOT_INT, api::BIG].contains(&RAISED));
        // The keyword names, in ota_core::api::NAMES order (the glue keeps the constructors' ones).
        let start = c.find("ota_arg_names[] = {").expect("ota_arg_names table") + "ota_arg_names[] = {".len();
        let table = &c[start..start + c[start..].find('}').unwrap()];
        let names: Vec<&str> = table.split(',').map(|q| q.trim().trim_start_matches("MP_QSTR_")).filter(|q| !q.is_empty()).collect();
        assert_eq!(names[..], api::NAMES[..names.len()]);
        assert_eq!(names.len(), 6);
        // The kinds are the core's first four calls.
        let kinds = c.lines().find(|l| l.starts_with("enum { KIND_HASHER")).unwrap();
        assert!(kinds.contains("KIND_HASHER, KIND_INFLATE, KIND_PATCH, KIND_DELTA, CALL_UPDATE, CALL_READINTO, CALL_DIGEST"), "{kinds}");
        let calls = [Call::BlobHasher, Call::InflateReader, Call::PatchReader, Call::DeltaReader, Call::Update, Call::Readinto, Call::Digest];
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(*call as usize, i);
        }
        assert_eq!((HASHER, INFLATE, PATCH, DELTA), (0, 1, 2, 3));
    }

    #[test]
    fn bind_through_the_ffi() {
        let mut bound = 0u8;
        let bind = |arg: isize, bound: &mut u8| unsafe { ota_bind(Call::DeltaReader as c_int, arg, bound) };
        let code = |e: Error| -(e.code() as isize);
        assert_eq!(bind(0, &mut bound), api::SOURCE as isize);
        assert_eq!(bind(1, &mut bound), api::OLD as isize);
        assert_eq!(bind(BIND_END, &mut bound), code(Error::ArgCount));
        assert_eq!(bind(-1 - 5, &mut bound), api::WBITS as isize); // wbits=
        assert_eq!(bind(-1 - 5, &mut bound), code(Error::BadKeyword)); // twice
        assert_eq!(bind(-1 - 6, &mut bound), code(Error::BadKeyword)); // unknown to the glue
        assert_eq!(bind(-1 - 1, &mut bound), code(Error::BadKeyword)); // old, given by position
        assert_eq!(bind(-1 - 3, &mut bound), api::SIZE as isize); // new_size=
        assert_eq!(bind(BIND_END, &mut bound), 0);
        let mut b = 0;
        assert_eq!(unsafe { ota_bind(99, 0, &mut b) }, code(Error::BadArgument));
        assert_eq!(unsafe { ota_bind(Call::Readinto as c_int, 2, &mut b) }, code(Error::ArgCount));
        assert_eq!(unsafe { ota_bind(Call::Readinto as c_int, -1, &mut b) }, code(Error::NoKeywords));
    }

    #[test]
    fn states_through_the_ffi() {
        use api::{ABSENT, NOT_INT};
        let code = |e: Error| -(e.code() as isize);
        let mut block: Vec<u64> = Vec::new();
        let ctx = &mut block as *mut Vec<u64> as *mut c_void;
        let new = |kind: usize, size: Int, format: Int, wbits: Int| unsafe { ota_new(ctx, kind as c_int, size, format, wbits) };
        assert_eq!(new(INFLATE, ABSENT, ABSENT, 7), Error::BadWindow.code());
        assert_eq!(new(DELTA, -1, ABSENT, ABSENT), Error::BadSize.code());
        assert_eq!(new(HASHER, NOT_INT, ABSENT, ABSENT), Error::NotInt.code());
        assert_eq!(new(9, 0, ABSENT, ABSENT), Error::BadArgument.code());
        assert!(block.is_empty(), "nothing allocated for bad arguments");
        // BlobHasher(3).update(b"abcd", 3): ota_read is update for a hasher.
        assert_eq!(new(HASHER, 3, ABSENT, ABSENT), 0);
        let st = block.as_mut_ptr() as *mut c_void;
        let mut data = *b"abcd";
        assert_eq!(unsafe { ota_read(st, core::ptr::null_mut(), data.as_mut_ptr(), 4, 3) }, 0);
        let mut d = [0u8; 20];
        assert_eq!(unsafe { ota_state_digest(st, d.as_mut_ptr()) }, 0);
        assert_eq!(d, ota_core::blob_sha1(b"abc"));
        assert_eq!(unsafe { ota_read(st, core::ptr::null_mut(), data.as_mut_ptr(), 4, ABSENT) }, code(Error::BlobTooLong));
        // InflateReader(source, RAW, 8) over a stored block "hi"; then callback results.
        assert_eq!(new(INFLATE, ABSENT, 1, 8), 0);
        assert_eq!(block.len() * 8, (win_offset::<InflateReader>() + 256).div_ceil(8) * 8);
        let st = block.as_mut_ptr() as *mut c_void;
        let mut io = FakeIo { data: std::vec![1, 2, 0, 0xfd, 0xff, b'h', b'i'], pos: 0, result: None };
        let iop = &mut io as *mut FakeIo as *mut c_void;
        let mut out = [0u8; 8];
        assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr(), 8, 1) }, 1); // n = 1
        assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr(), 8, NOT_INT) }, code(Error::NotInt));
        assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr().add(1), 7, ABSENT) }, 1);
        assert_eq!(&out[..2], b"hi");
        assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr(), 8, -1) }, 0);
        assert_eq!(unsafe { ota_state_digest(st, d.as_mut_ptr()) }, Error::BadArgument.code()); // no digest
        let results = [
            (RAISED, Error::Source),
            (-1, Error::BadCount),
            (ota_core::IN_BUF as isize + 1, Error::BadCount),
            (api::BIG, Error::BadCount),
            (NOT_INT, Error::BadCount),
            (ABSENT, Error::InflateTruncated), // None: the end of the input
        ];
        for (r, e) in results {
            assert_eq!(new(INFLATE, ABSENT, 1, 8), 0);
            let st = block.as_mut_ptr() as *mut c_void;
            io.result = Some(r);
            assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr(), 8, ABSENT) }, code(e), "{r}");
            io.result = None;
            assert_eq!(unsafe { ota_read(st, iop, out.as_mut_ptr(), 8, ABSENT) }, code(e), "latched");
        }
    }
}
