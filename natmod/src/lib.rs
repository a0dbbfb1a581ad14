//! `ota_natmod`: the `extern "C"` layers between MicroPython's C glue and `ota_core`, one per
//! native module. The only `unsafe` code of the project.
//!
//! - `native` (default): `ota_native.mpy` (`natmod/ota_native.c`): hasher, inflate, bspatch,
//!   delta readers.
//! - `ed25519` (feature `ed25519-module`): `ota_ed25519.mpy` (`natmod/ota_ed25519.c`): the
//!   Ed25519 verifier, a second module that the updater imports only to check a signed
//!   manifest (natmod/Makefile builds each module from this crate with its feature set).
//!
//! Shared here: the panic handler and the ARM EABI helpers.
#![no_std]

#[cfg(not(feature = "ed25519-module"))]
mod native;
#[cfg(not(feature = "ed25519-module"))]
pub use native::*;

#[cfg(feature = "ed25519-module")]
mod ed25519;
#[cfg(feature = "ed25519-module")]
pub use ed25519::*;

extern "C" {
    /// Raises the core's `Error::Internal` (never returns): each module's glue has one.
    #[cfg_attr(test, allow(dead_code))]
    fn ota_panic() -> !;
}

// The core never panics on input; should it panic anyway, raise instead of hanging.
// Ignoring PanicInfo lets LTO drop all formatting code (docs/toolchain.md pitfall 8).
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
/// (ota_ed25519 divides nothing: not there.)
#[cfg(all(target_arch = "arm", not(test), not(feature = "ed25519-module")))]
#[no_mangle]
pub extern "C" fn __aeabi_uidivmod(n: u32, d: u32) -> u64 {
    uidivmod(n, d)
}

/// The body of `__aeabi_uidivmod`, on every target so that the host tests check it (against
/// `/` and `%` on edge and random values): a bit-serial long division, `(r << 32) | q`.
/// `d == 0` gives (u32::MAX, n) instead of a trap (never happens).
#[inline(always)]
pub fn uidivmod(n: u32, d: u32) -> u64 {
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

// 64-bit multiply for the ARM EABI, used by the verifier's field arithmetic: LLVM builds each
// u64 x u64 -> u128 product of ed25519-compact's 51-bit limbs from four 32 x 32 -> 64 products, each
// a call of this function (Cortex-M0+ has MULS, 32 x 32 -> 32, but no UMULL). libgcc's version
// takes ~55 cycles with its call; this one ~30 (one 32 x 32 -> 64 product from four 16-bit MULS
// plus the two cross terms' low words). Only in ota_ed25519.mpy: ota_native keeps libgcc's.
// (r1:r0) * (r3:r2) -> r1:r0, modulo 2**64. Checked against the host's arithmetic on the
// emulated Cortex-M0+ (tests/test_sign_native.py) and by every signature test.
#[cfg(all(target_arch = "arm", feature = "ed25519-module"))]
core::arch::global_asm!(
    ".section .text.__aeabi_lmul,\"ax\",%progbits",
    ".global __aeabi_lmul",
    ".type __aeabi_lmul,%function",
    ".thumb_func",
    "__aeabi_lmul:",
    "    push {{r4, r5, lr}}",
    "    muls r1, r2",        // a_hi * b_lo (low word)
    "    muls r3, r0",        // b_hi * a_lo (low word)
    "    adds r5, r1, r3",    // the cross terms: added to the high word at the end
    "    uxth r1, r0",        // a0 = a & 0xffff
    "    lsrs r0, r0, #16",   // a1
    "    uxth r3, r2",        // b0
    "    lsrs r2, r2, #16",   // b1
    "    movs r4, r1",
    "    muls r4, r3",        // p00 = a0 * b0
    "    muls r1, r2",        // p01 = a0 * b1
    "    muls r3, r0",        // p10 = a1 * b0
    "    muls r0, r2",        // p11 = a1 * b1
    "    adds r1, r1, r3",    // mid = p01 + p10, carry -> bit 48 of the product
    "    bcc 1f",
    "    movs r2, #1",
    "    lsls r2, r2, #16",
    "    adds r0, r0, r2",
    "1:",
    "    lsls r2, r1, #16",
    "    lsrs r1, r1, #16",
    "    adds r4, r4, r2",    // low word = p00 + (mid << 16)
    "    adcs r0, r1",        // high word = p11 + (mid >> 16) + carry
    "    adds r1, r0, r5",    // + the cross terms
    "    movs r0, r4",
    "    pop {{r4, r5, pc}}",
    ".size __aeabi_lmul, . - __aeabi_lmul",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidivmod_matches_div_and_rem() {
        let check = |n: u32, d: u32| {
            let r = uidivmod(n, d);
            assert_eq!((r as u32, (r >> 32) as u32), (n / d, n % d), "{n} / {d}");
        };
        let edges = [0, 1, 2, 3, 30, 31, 32, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, 0xffff_fffe, u32::MAX];
        for &n in &edges {
            for &d in &edges[1..] {
                check(n, d);
            }
        }
        // zlib's header check: (CMF * 256 + FLG) % 31 over every 16-bit value.
        for v in 0..=0xffffu32 {
            check(v, 31);
        }
        // xorshift32: random dividends against random divisors of every bit length.
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..200_000 {
            let n = next();
            let d = next() >> (next() % 32);
            if d != 0 {
                check(n, d);
            }
        }
        assert_eq!(uidivmod(7, 0), (7u64 << 32) | u32::MAX as u64); // documented, never called
    }
}
