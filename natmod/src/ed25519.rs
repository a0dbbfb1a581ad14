//! The `extern "C"` layer of `ota_ed25519.mpy`, the Ed25519 verifier module: between its
//! MicroPython glue (`natmod/ota_ed25519.c`) and `ota_core::sign`.
//!
//! Contract with the glue (as `ota_native`'s, see `native.rs`):
//! - The verifier's state lives in the Python object: the glue allocates a block of
//!   `ota_ed_state_size()` bytes (8-byte aligned) and `ota_ed_new` writes a [`Verifier`] into
//!   it. No call here calls back into MicroPython, so the glue may run `ota_ed_new` and
//!   `ota_ed_verify` (the two calls with a deep stack, the curve arithmetic) on a stack of
//!   their own taken from the heap (the RP2040's main stack is 8 KiB, shared with the
//!   interpreter).
//! - Every function returns 0 or an error code ([`Error::code`]; `ota_ed_bind` a slot or minus
//!   a code); the glue raises it as [`Error::exception`] with [`Error::message`]
//!   (`ota_ed_error_message`): no check or message of its own.
//! - Arguments are bound by the core's table ([`api::Binder`]; `bound` is [`api::Bits`]) and
//!   `n` comes as an [`api::Int`], as in `ota_native`.

use core::ffi::{c_int, c_void};
use core::mem::{align_of, size_of};
use core::slice;

use ota_core::api::{self, Arg, Binder, Bits, Call, Int};
use ota_core::sign::Verifier;
use ota_core::Error;

/// `ota_ed_bind`'s `arg` after the last argument (the glue's `OTA_BIND_END`).
pub const BIND_END: isize = isize::MIN;

/// The block's verifier, or None for a null or misaligned pointer.
///
/// Safety: `st` is null or points to a block written by `ota_ed_new` that nothing else
/// references for the returned lifetime.
unsafe fn verifier<'a>(st: *mut c_void) -> Option<&'a mut Verifier> {
    if st.is_null() || (st as usize) % align_of::<Verifier>() != 0 {
        return None;
    }
    // Safety: non-null and aligned (checked); initialised and exclusive: the caller's contract.
    Some(unsafe { &mut *(st as *mut Verifier) })
}

/// A buffer from the glue as a slice (an empty one for a null pointer).
///
/// Safety: `p` points to `len` readable bytes, or is null.
unsafe fn bytes<'a>(p: *const u8, len: usize) -> &'a [u8] {
    if p.is_null() {
        return &[];
    }
    // Safety: the caller's contract.
    unsafe { slice::from_raw_parts(p, len) }
}

fn code(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.code(),
    }
}

/// The fixed message of an error code (UTF-8, not NUL-terminated) and its length.
///
/// # Safety
/// `len` must be a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ota_ed_error_message(code: c_int, len: *mut usize) -> *const u8 {
    let msg = Error::from_code(code).unwrap_or(Error::Internal).message();
    // Safety: the caller passes a valid pointer.
    unsafe { *len = msg.len() };
    msg.as_ptr()
}

/// Binds one argument of `call` (an [`api::Call`] code: Verifier, Update or Verify) with the
/// core's [`Binder`], as `ota_native`'s `ota_bind`: `arg >= 0` is positional argument number
/// `arg`, `arg < 0` the keyword [`api::NAMES`]`[-1 - arg]`, [`BIND_END`] the end. Returns the
/// slot (0 for the end) or minus an error code.
///
/// # Safety
/// `bound` must be a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ota_ed_bind(call: c_int, arg: isize, bound: *mut Bits) -> isize {
    let Some(call) = Call::from_code(call) else { return -(Error::BadArgument.code() as isize) };
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

/// Bytes of the block `ota_ed_new` needs (8-byte aligned).
#[no_mangle]
pub extern "C" fn ota_ed_state_size() -> usize {
    size_of::<Verifier>()
}

/// `Verifier(public_key, signature)` into the block `st` (`ota_ed_state_size()` bytes,
/// 8-byte aligned): 0, or an error code (the block is then left as it was).
///
/// # Safety
/// `st` as said; `key`/`sig` point to `key_len`/`sig_len` readable bytes (or are null).
#[no_mangle]
pub unsafe extern "C" fn ota_ed_new(st: *mut c_void, key: *const u8, key_len: usize, sig: *const u8, sig_len: usize) -> c_int {
    if st.is_null() || (st as usize) % align_of::<Verifier>() != 0 {
        return Error::BadArgument.code();
    }
    // Safety: the caller's contract.
    let (key, sig) = unsafe { (bytes(key, key_len), bytes(sig, sig_len)) };
    match Verifier::new(key, sig) {
        Ok(v) => {
            // Safety: a writable, aligned block of size_of::<Verifier>() bytes (checked non-null
            // and aligned); written without reading or dropping what was there.
            unsafe { core::ptr::write(st as *mut Verifier, v) };
            0
        }
        Err(e) => e.code(),
    }
}

/// `update(buf, n)`: the first `n` ([`api::count`]) of the `len` bytes at `buf` into the
/// verifier. 0 or an error code.
///
/// # Safety
/// `st` written by `ota_ed_new`; `buf` points to `len` readable bytes (or is null with 0).
#[no_mangle]
pub unsafe extern "C" fn ota_ed_update(st: *mut c_void, buf: *const u8, len: usize, n: Int) -> c_int {
    let n = match api::count(n, len) {
        Ok(n) => n,
        Err(e) => return e.code(),
    };
    // Safety: the caller's contract (n <= len).
    let data = unsafe { bytes(buf, n) };
    // Safety: the caller's contract.
    match unsafe { verifier(st) } {
        Some(v) => code(v.update(data)),
        None => Error::BadArgument.code(),
    }
}

/// `verify()`: 0 when the signature is valid for the bytes fed, else an error code.
///
/// # Safety
/// `st` written by `ota_ed_new`.
#[no_mangle]
pub unsafe extern "C" fn ota_ed_verify(st: *mut c_void) -> c_int {
    // Safety: the caller's contract.
    match unsafe { verifier(st) } {
        Some(v) => code(v.verify()),
        None => Error::BadArgument.code(),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use ota_core::sign::{public_key, sign};
    use std::string::String;
    use std::vec::Vec;

    fn glue() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ota_ed25519.c")).unwrap()
    }

    /// The value of `#define NAME <value>` in the glue: a number or INTPTR_MIN/INTPTR_MAX [+ k],
    /// in parentheses or not.
    fn define(c: &str, name: &str) -> isize {
        let line = c
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("#define {name} missing"));
        let e: String = line.split_whitespace().skip(2).take_while(|w| !w.starts_with("//")).collect();
        let e = e.trim_start_matches('(').trim_end_matches(')');
        let (base, add) = match e.split_once('+') {
            Some((b, k)) => (b, k.parse::<isize>().unwrap()),
            None => (e, 0),
        };
        add + match base {
            "INTPTR_MIN" => isize::MIN,
            "INTPTR_MAX" => isize::MAX,
            n => n.parse().unwrap_or_else(|_| panic!("cannot evaluate {line:?}")),
        }
    }

    #[test]
    fn glue_constants_are_the_cores() {
        let c = glue();
        // Every `#define ERR_X n // ota_core::Error::Name` names the core's code.
        let mut n = 0;
        for line in c.lines().filter(|l| l.starts_with("#define ERR_")) {
            let (def, comment) = line.split_once("// ota_core::Error::").expect("ERR_ define without its core name");
            let name: String = comment.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let e = Error::from_code(def.split_whitespace().nth(2).unwrap().parse().unwrap()).unwrap();
            assert_eq!(std::format!("{e:?}"), name, "{line}");
            n += 1;
        }
        assert!(n >= 3);
        // TypeError exactly from ERR_ARG_COUNT to ERR_NOT_BUFFER (the glue's rule).
        let (first, last) = (define(&c, "ERR_ARG_COUNT") as i32, define(&c, "ERR_NOT_BUFFER") as i32);
        for code in 1.. {
            let Some(e) = Error::from_code(code) else { break };
            let want = if (first..=last).contains(&code) { ota_core::Exception::TypeError } else { ota_core::Exception::ValueError };
            assert_eq!(e.exception(), want, "{e:?}");
        }
        assert_eq!(define(&c, "OTA_ABSENT"), api::ABSENT);
        assert_eq!(define(&c, "OTA_NOT_INT"), api::NOT_INT);
        assert_eq!(define(&c, "OTA_BIG"), api::BIG);
        assert_eq!(define(&c, "OTA_BIND_END"), BIND_END);
        assert_eq!(define(&c, "CALL_UPDATE"), Call::Update as isize);
        assert_eq!(define(&c, "CALL_VERIFIER"), Call::Verifier as isize);
        assert_eq!(define(&c, "CALL_VERIFY"), Call::Verify as isize);
        // The keywords the glue knows, by their index in ota_core::api::NAMES.
        assert_eq!(api::NAMES[define(&c, "KW_PUBLIC_KEY") as usize], "public_key");
        assert_eq!(api::NAMES[define(&c, "KW_SIGNATURE") as usize], "signature");
        assert_eq!(define(&c, "KW_UNKNOWN") as usize, api::NAMES.len());
        assert!(c.contains("MP_QSTR_public_key") && c.contains("MP_QSTR_signature"));
    }

    #[test]
    fn verifier_through_the_ffi() {
        let seed = [5u8; 32];
        let pk = public_key(&seed).unwrap();
        let msg = b"a manifest";
        let sig = sign(&seed, msg).unwrap();
        let mut block: Vec<u64> = std::vec![0; ota_ed_state_size().div_ceil(8)];
        let st = block.as_mut_ptr() as *mut c_void;
        unsafe {
            assert_eq!(ota_ed_new(st, pk.as_ptr(), 31, sig.as_ptr(), 64), Error::KeyLength.code());
            assert_eq!(ota_ed_new(st, pk.as_ptr(), 32, sig.as_ptr(), 63), Error::SigLength.code());
            assert_eq!(ota_ed_new(st, core::ptr::null(), 0, sig.as_ptr(), 64), Error::KeyLength.code());
            assert_eq!(ota_ed_new(core::ptr::null_mut(), pk.as_ptr(), 32, sig.as_ptr(), 64), Error::BadArgument.code());
            assert_eq!(ota_ed_new(st, pk.as_ptr(), 32, sig.as_ptr(), 64), 0);
            assert_eq!(ota_ed_update(st, msg.as_ptr(), msg.len(), 2), 0); // n = 2
            assert_eq!(ota_ed_update(st, msg[2..].as_ptr(), msg.len() - 2, api::ABSENT), 0);
            assert_eq!(ota_ed_update(st, core::ptr::null(), 0, -1), 0);
            assert_eq!(ota_ed_update(st, msg.as_ptr(), msg.len(), api::NOT_INT), Error::NotInt.code());
            assert_eq!(ota_ed_verify(st), 0);
            assert_eq!(ota_ed_verify(st), 0);
            assert_eq!(ota_ed_update(st, msg.as_ptr(), 1, -1), Error::BadArgument.code());
            assert_eq!(ota_ed_new(st, pk.as_ptr(), 32, sig.as_ptr(), 64), 0);
            assert_eq!(ota_ed_update(st, msg.as_ptr(), msg.len(), 5), 0);
            assert_eq!(ota_ed_verify(st), Error::SigMismatch.code());
            assert_eq!(ota_ed_update(st, msg.as_ptr(), 1, -1), Error::SigMismatch.code());
            assert_eq!(ota_ed_verify(core::ptr::null_mut()), Error::BadArgument.code());
        }
        let mut bound: Bits = 0;
        let bind = |arg: isize, bound: &mut Bits| unsafe { ota_ed_bind(Call::Verifier as c_int, arg, bound) };
        assert_eq!(bind(0, &mut bound), api::PUBLIC_KEY as isize);
        assert_eq!(bind(-1 - 8, &mut bound), -(Error::BadKeyword.code() as isize));
        assert_eq!(bind(BIND_END, &mut bound), -(Error::ArgCount.code() as isize));
        assert_eq!(bind(-1 - 9, &mut bound), api::SIGNATURE as isize);
        assert_eq!(bind(BIND_END, &mut bound), 0);
        let mut len = 0;
        let p = unsafe { ota_ed_error_message(Error::SigMismatch.code(), &mut len) };
        assert_eq!(unsafe { slice::from_raw_parts(p, len) }, b"signature mismatch");
    }
}
