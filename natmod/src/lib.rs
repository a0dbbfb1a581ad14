//! `ota_natmod`: the `extern "C"` layer between the MicroPython glue
//! (`natmod/ota_native.c`) and `ota_core`. The only `unsafe` code of the project.
//!
//! Contract with the glue:
//! - Every state lives in memory the glue owns (inside the Python object):
//!   `ota_*_size()` bytes, 8-byte aligned, **zeroed** before `ota_*_init` (every
//!   core state is valid when all-zero, so nothing large is built on the stack).
//! - Inflate and delta states are a small header + the core reader, followed by
//!   the inflate window (`2**wbits` bytes) in the same block.
//! - `ota_*_init`, `ota_hasher_update`, `*_digest` return 0 or an error code
//!   ([`Error::code`], > 0); `ota_*_read` return a byte count or minus a code.
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

/// Header + reader; the window follows at `win_offset::<T>()`.
#[repr(C)]
struct Windowed<T> {
    win_len: usize,
    reader: T,
}

const fn win_offset<T>() -> usize {
    (size_of::<Windowed<T>>() + 7) & !7
}

fn wbits_u8(wbits: c_int) -> u8 {
    u8::try_from(wbits).unwrap_or(0)
}

fn code(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

fn count(r: Result<usize, Error>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => -(e.code() as isize),
    }
}

/// `&mut T` over glue memory, or None if the pointer is null or misaligned.
///
/// Safety: `st` must point to at least `size_of::<T>()` bytes holding a valid `T`
/// (all-zero or initialised) that nothing else references for the returned lifetime.
unsafe fn state<'a, T>(st: *mut c_void) -> Option<&'a mut T> {
    if st.is_null() || (st as usize) % align_of::<T>() != 0 {
        return None;
    }
    // Safety: non-null and aligned (checked); validity and exclusivity are the caller's contract.
    Some(unsafe { &mut *(st as *mut T) })
}

/// The reader and its window (the bytes after the header).
///
/// Safety: as [`state`], and the block holds `win_offset::<T>() + win_len` bytes.
unsafe fn windowed<'a, T>(st: *mut c_void) -> Option<(&'a mut T, &'a mut [u8])> {
    // Safety: forwarded contract.
    let w = unsafe { state::<Windowed<T>>(st) }?;
    // Safety: the window lies after the header, inside the same block, disjoint from `w`.
    let window = unsafe { slice::from_raw_parts_mut((st as *mut u8).add(win_offset::<T>()), w.win_len) };
    Some((&mut w.reader, window))
}

/// Output slice for a read (empty when null).
///
/// Safety: `out` points to `n` writable bytes not aliased by any state.
unsafe fn out_slice<'a>(out: *mut u8, n: usize) -> &'a mut [u8] {
    if out.is_null() {
        &mut []
    } else {
        // Safety: the caller's contract.
        unsafe { slice::from_raw_parts_mut(out, n) }
    }
}

const BAD: c_int = Error::BadArgument.code();

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

// ---- BlobHasher -----------------------------------------------------------------

/// Bytes of state for a BlobHasher.
#[no_mangle]
pub extern "C" fn ota_hasher_size() -> usize {
    size_of::<BlobHasher>()
}

/// # Safety
/// `st`: zeroed or initialised hasher state of `ota_hasher_size()` bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_hasher_init(st: *mut c_void, size: u64) -> c_int {
    // Safety: the caller's contract.
    match unsafe { state::<BlobHasher>(st) } {
        Some(h) => {
            h.init(size);
            0
        }
        None => BAD,
    }
}

/// # Safety
/// `st` as for init; `p` points to `n` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_hasher_update(st: *mut c_void, p: *const u8, n: usize) -> c_int {
    // Safety: the caller's contract.
    let Some(h) = (unsafe { state::<BlobHasher>(st) }) else { return BAD };
    let data: &[u8] = if p.is_null() { &[] } else { unsafe { slice::from_raw_parts(p, n) } };
    code(h.update(data))
}

/// # Safety
/// `st` as for init; `out` points to 20 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_hasher_digest(st: *mut c_void, out: *mut u8) -> c_int {
    // Safety: the caller's contract.
    let Some(h) = (unsafe { state::<BlobHasher>(st) }) else { return BAD };
    digest_out(h.digest(), out)
}

fn digest_out(d: Result<[u8; 20], Error>, out: *mut u8) -> c_int {
    match d {
        Ok(d) => {
            // Safety: the caller passes 20 writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(d.as_ptr(), out, 20) };
            0
        }
        Err(e) => e.code(),
    }
}

// ---- InflateReader ---------------------------------------------------------------

/// Bytes of state for an InflateReader with window 2**wbits (header only if wbits is invalid).
#[no_mangle]
pub extern "C" fn ota_inflate_size(wbits: c_int) -> usize {
    win_offset::<InflateReader>() + window_len(wbits_u8(wbits))
}

/// # Safety
/// `st`: zeroed block of `ota_inflate_size(wbits)` bytes, 8-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn ota_inflate_init(st: *mut c_void, format: c_int, wbits: c_int) -> c_int {
    // Safety: the caller's contract.
    let Some(w) = (unsafe { state::<Windowed<InflateReader>>(st) }) else { return BAD };
    let Some(format) = Format::from_code(format) else { return Error::BadFormat.code() };
    w.win_len = window_len(wbits_u8(wbits));
    code(w.reader.init(format, wbits_u8(wbits)))
}

/// # Safety
/// `st` initialised by `ota_inflate_init`; `io` is the glue object; `out` points to `n` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_inflate_read(st: *mut c_void, io: *mut c_void, out: *mut u8, n: usize) -> isize {
    // Safety: the caller's contract.
    let Some((r, window)) = (unsafe { windowed::<InflateReader>(st) }) else { return -(BAD as isize) };
    count(r.read_into(&mut PySource(io), window, unsafe { out_slice(out, n) }))
}

// ---- PatchReader ------------------------------------------------------------------

/// Bytes of state for a PatchReader.
#[no_mangle]
pub extern "C" fn ota_patch_size() -> usize {
    size_of::<PatchReader>()
}

/// # Safety
/// `st`: zeroed block of `ota_patch_size()` bytes, 8-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn ota_patch_init(st: *mut c_void, new_size: u64) -> c_int {
    // Safety: the caller's contract.
    let Some(r) = (unsafe { state::<PatchReader>(st) }) else { return BAD };
    r.init(new_size);
    0
}

/// # Safety
/// As `ota_inflate_read`.
#[no_mangle]
pub unsafe extern "C" fn ota_patch_read(st: *mut c_void, io: *mut c_void, out: *mut u8, n: usize) -> isize {
    // Safety: the caller's contract.
    let Some(r) = (unsafe { state::<PatchReader>(st) }) else { return -(BAD as isize) };
    count(r.read_into(&mut PySource(io), &mut PyOld(io), unsafe { out_slice(out, n) }))
}

// ---- DeltaReader ------------------------------------------------------------------

/// Bytes of state for a DeltaReader with window 2**wbits.
#[no_mangle]
pub extern "C" fn ota_delta_size(wbits: c_int) -> usize {
    win_offset::<DeltaReader>() + window_len(wbits_u8(wbits))
}

/// # Safety
/// `st`: zeroed block of `ota_delta_size(wbits)` bytes, 8-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn ota_delta_init(st: *mut c_void, new_size: u64, format: c_int, wbits: c_int) -> c_int {
    // Safety: the caller's contract.
    let Some(w) = (unsafe { state::<Windowed<DeltaReader>>(st) }) else { return BAD };
    let Some(format) = Format::from_code(format) else { return Error::BadFormat.code() };
    w.win_len = window_len(wbits_u8(wbits));
    code(w.reader.init(new_size, format, wbits_u8(wbits)))
}

/// # Safety
/// As `ota_inflate_read`.
#[no_mangle]
pub unsafe extern "C" fn ota_delta_read(st: *mut c_void, io: *mut c_void, out: *mut u8, n: usize) -> isize {
    // Safety: the caller's contract.
    let Some((r, window)) = (unsafe { windowed::<DeltaReader>(st) }) else { return -(BAD as isize) };
    count(r.read_into(&mut PySource(io), &mut PyOld(io), window, unsafe { out_slice(out, n) }))
}

/// # Safety
/// `st` initialised by `ota_delta_init`; `out` points to 20 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ota_delta_digest(st: *mut c_void, out: *mut u8) -> c_int {
    // Safety: the caller's contract.
    let Some((r, _)) = (unsafe { windowed::<DeltaReader>(st) }) else { return BAD };
    digest_out(r.digest(), out)
}
