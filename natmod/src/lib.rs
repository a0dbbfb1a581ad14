//! `ota_natmod`: the `extern "C"` layer between the MicroPython glue
//! (`natmod/ota_native.c`) and `ota_core`. The only `unsafe` code of the project.
//!
//! Contract with the glue:
//! - Every state lives in memory the glue owns (inside the Python object):
//!   `ota_state_size(kind, wbits)` bytes, 8-byte aligned, **zeroed** before `ota_init`
//!   (every core state is valid when all-zero, so nothing large is built on the stack).
//! - A state block is a header (kind, window length) + the core state; inflate and delta
//!   states are followed by the inflate window (`2**wbits` bytes) in the same block.
//! - One entry point per operation for every kind (`ota_init`, `ota_read`, `ota_state_digest`),
//!   dispatching on the kind `ota_init` recorded; plus `ota_hasher_update`.
//! - `ota_init`, `ota_hasher_update`, `ota_state_digest` return 0 or an error code
//!   ([`Error::code`], > 0); `ota_read` returns a byte count or minus a code.
//! - Python callbacks are the glue's `ota_io_read` / `ota_io_read_at`: a count,
//!   or -1 when the callback raised (the glue keeps the exception, the core
//!   returns [`Error::Source`] and the glue re-raises it).
#![no_std]

use core::ffi::{c_int, c_void};
use core::mem::{align_of, size_of};
use core::slice;

use ota_core::{window_len, BlobHasher, DeltaReader, Error, Format, InflateReader, PatchReader, ReadAt, Source};

extern "C" {
    /// source.readinto over buf[:n]: count, or -1 if it raised.
    fn ota_io_read(io: *mut c_void, buf: *mut u8, n: usize) -> isize;
    /// old.seek(offset) (when needed) + old.readinto over buf[:n]: count, or -1 if it raised.
    fn ota_io_read_at(io: *mut c_void, offset: u64, buf: *mut u8, n: usize) -> isize;
    /// Raises a Python RuntimeError (never returns).
    fn ota_panic() -> !;
}

// The core never panics on input; should it panic anyway, raise instead of hanging.
// Ignoring PanicInfo lets LTO drop all formatting code (TOOLCHAIN.md pitfall 8).
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Safety: the glue raises a MicroPython exception; the longjmp skips only Rust
    // frames without destructors (no_std, no alloc). The object stays marked busy.
    unsafe { ota_panic() }
}

/// Unsigned 32-bit division for the ARM EABI (Cortex-M0 has no divide instruction): quotient
/// in r0, remainder in r1 (a u64 return value). Replaces libgcc's 266-byte unrolled version: the
/// only callers are the two zlib header checks (`% 31`, ours and miniz_oxide's), once per stream.
/// A bit-serial long division (checked against `/` and `%` on random and edge values); `d == 0` gives (u32::MAX, n) instead of a trap (never happens).
#[cfg(all(target_arch = "arm", not(test)))]
#[no_mangle]
pub extern "C" fn __aeabi_uidivmod(n: u32, d: u32) -> u64 {
    let (mut q, mut r) = (0u32, 0u32);
    let mut i = 32;
    while i > 0 {
        i -= 1;
        let carry = r >> 31; // r < d: only a d above 2^31 can push r past 32 bits
        r = (r << 1) | ((n >> i) & 1);
        q <<= 1;
        if carry != 0 || r >= d {
            r = r.wrapping_sub(d);
            q |= 1;
        }
    }
    ((r as u64) << 32) | q as u64
}

/// The Python source object behind the glue's `io` pointer.
struct PySource(*mut c_void);

impl Source for PySource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        // Safety: buf is a live, exclusive slice; the glue writes at most buf.len() bytes into it.
        let r = unsafe { ota_io_read(self.0, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(r).map_err(|_| Error::Source)
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
            match usize::try_from(r) {
                Err(_) => return Err(Error::Source),
                Ok(0) => break,
                Ok(n) => got += n,
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
/// `kind` is written by `ota_init` and selects the type in the other entry points (one entry
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

/// wbits from the glue (a Python int as mp_int_t): 0, an invalid value, when out of u8 range.
fn wbits_u8(wbits: isize) -> u8 {
    u8::try_from(wbits).unwrap_or(0)
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

/// The kind recorded by `ota_init` (0 = hasher for a zeroed block), or None for a null pointer.
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

/// The fixed message of an error code (UTF-8, not NUL-terminated) and its length.
///
/// # Safety
/// `len` must be a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ota_error_message(code: c_int, len: *mut usize) -> *const u8 {
    let msg = Error::from_code(code).map_or("unknown error", Error::message);
    // Safety: the caller passes a valid pointer.
    unsafe { *len = msg.len() };
    msg.as_ptr()
}

// ---- every kind: size, init, read, digest -------------------------------------------

/// Bytes of state for `kind` (inflate and delta: with a window of 2**wbits; header only
/// if wbits is invalid, which `ota_init` then reports).
#[no_mangle]
pub extern "C" fn ota_state_size(kind: c_int, wbits: isize) -> usize {
    let win = window_len(wbits_u8(wbits));
    match kind as usize {
        HASHER => size_of::<Obj<BlobHasher>>(),
        INFLATE => win_offset::<InflateReader>() + win,
        PATCH => size_of::<Obj<PatchReader>>(),
        _ => win_offset::<DeltaReader>() + win,
    }
}

/// Initialise a state of `kind` (format and wbits are `mp_int_t`): BlobHasher(size), InflateReader(format, wbits),
/// PatchReader(new_size = size), DeltaReader(new_size = size, format, wbits).
///
/// # Safety
/// `st`: zeroed block of `ota_state_size(kind, wbits)` bytes, 8-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn ota_init(st: *mut c_void, kind: c_int, size: u64, format: isize, wbits: isize) -> c_int {
    let kind = kind as usize;
    let wbits = wbits_u8(wbits);
    // format and wbits are Python ints (mp_int_t): no truncation into a valid value.
    let format = i32::try_from(format).ok().and_then(Format::from_code);
    // Safety (every arm): the caller's contract, for the type the block was sized for.
    let r = match (kind, format) {
        (HASHER, _) => unsafe { state::<BlobHasher>(st) }.map(|o| {
            o.reader.init(size);
            Ok(())
        }),
        (PATCH, _) => unsafe { state::<PatchReader>(st) }.map(|o| {
            o.reader.init(size);
            Ok(())
        }),
        (INFLATE | DELTA, None) => Some(Err(Error::BadFormat)),
        (INFLATE, Some(f)) => unsafe { state::<InflateReader>(st) }.map(|o| {
            o.win_len = window_len(wbits);
            o.reader.init(f, wbits)
        }),
        (DELTA, Some(f)) => unsafe { state::<DeltaReader>(st) }.map(|o| {
            o.win_len = window_len(wbits);
            o.reader.init(size, f, wbits)
        }),
        _ => None,
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

/// `readinto` of an inflate, patch or delta state: the byte count (0 at the verified end)
/// or minus an error code.
///
/// # Safety
/// `st` initialised by `ota_init`; `io` is the glue object; `out` points to `n` writable bytes
/// not aliased by the state.
#[no_mangle]
pub unsafe extern "C" fn ota_read(st: *mut c_void, io: *mut c_void, out: *mut u8, n: usize) -> isize {
    let out: &mut [u8] = if out.is_null() {
        &mut []
    } else {
        // Safety: the caller's contract.
        unsafe { slice::from_raw_parts_mut(out, n) }
    };
    let (mut src, mut old) = (PySource(io), PyOld(io));
    // Safety (every arm): the caller's contract; `kind` says which type the block holds.
    let r = match unsafe { kind(st) } {
        Some(INFLATE) => unsafe { windowed::<InflateReader>(st) }.map(|(r, w)| r.read_into(&mut src, w, out)),
        Some(PATCH) => unsafe { state::<PatchReader>(st) }.map(|o| o.reader.read_into(&mut src, &mut old, out)),
        Some(DELTA) => unsafe { windowed::<DeltaReader>(st) }.map(|(r, w)| r.read_into(&mut src, &mut old, w, out)),
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
/// `st` initialised by `ota_init`; `out` points to 20 writable bytes.
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

// ---- BlobHasher -----------------------------------------------------------------

/// Hash `n` bytes at `p` (a hasher state); 0 or an error code.
///
/// # Safety
/// `st` initialised by `ota_init`; `p` points to `n` readable bytes (or is null with `n == 0`).
#[no_mangle]
pub unsafe extern "C" fn ota_hasher_update(st: *mut c_void, p: *const u8, n: usize) -> c_int {
    // Safety: the caller's contract (checked to be a hasher).
    let h = match unsafe { kind(st) } {
        Some(HASHER) => unsafe { state::<BlobHasher>(st) },
        _ => None,
    };
    let Some(h) = h else { return BAD.code() };
    // Safety: the caller's contract.
    let data: &[u8] = if p.is_null() { &[] } else { unsafe { slice::from_raw_parts(p, n) } };
    code(h.reader.update(data))
}
