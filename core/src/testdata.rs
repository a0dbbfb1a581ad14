//! Test vectors: CPython zlib streams (core/testdata, made by gen.py) and
//! `git hash-object` ids, with the generators that rebuild their plain data.
use std::vec::Vec;

/// Deterministic pseudo-random bytes (xorshift32, same as testdata/gen.py).
pub fn prng_bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Plain data of the window-2**w vectors (see gen.py).
pub fn plain(w: u8) -> Vec<u8> {
    let n = if w == 9 { 200 } else { (1usize << w) - 300 };
    let block: Vec<u8> =
        prng_bytes((w as u32).wrapping_mul(2654435761), n).iter().map(|b| b"acgt"[(b & 3) as usize]).collect();
    block.repeat(3)
}

/// (wbits, raw, zlib, gzip) streams made by CPython's zlib at level 9 with window 2**wbits.
/// (wbits, raw, zlib, gzip).
pub type Vector = (u8, &'static [u8], &'static [u8], &'static [u8]);
pub const STREAMS: [Vector; 7] = [
    (9, include_bytes!("../testdata/w9.raw"), include_bytes!("../testdata/w9.zlib"), include_bytes!("../testdata/w9.gz")),
    (10, include_bytes!("../testdata/w10.raw"), include_bytes!("../testdata/w10.zlib"), include_bytes!("../testdata/w10.gz")),
    (11, include_bytes!("../testdata/w11.raw"), include_bytes!("../testdata/w11.zlib"), include_bytes!("../testdata/w11.gz")),
    (12, include_bytes!("../testdata/w12.raw"), include_bytes!("../testdata/w12.zlib"), include_bytes!("../testdata/w12.gz")),
    (13, include_bytes!("../testdata/w13.raw"), include_bytes!("../testdata/w13.zlib"), include_bytes!("../testdata/w13.gz")),
    (14, include_bytes!("../testdata/w14.raw"), include_bytes!("../testdata/w14.zlib"), include_bytes!("../testdata/w14.gz")),
    (15, include_bytes!("../testdata/w15.raw"), include_bytes!("../testdata/w15.zlib"), include_bytes!("../testdata/w15.gz")),
];

/// gzip member with FEXTRA, FNAME, FCOMMENT and FHCRC, body = plain(10), window 2**15.
pub const GZIP_ALL_FLAGS: &[u8] = include_bytes!("../testdata/allflags.gz");

fn git_a() -> Vec<u8> {
    prng_bytes(12345, 5000)
}
fn git_b() -> Vec<u8> {
    prng_bytes(7, 65536)
}

pub type Gen = fn() -> Vec<u8>;
/// Multi-KB blobs and their `git hash-object --stdin` ids (git 2.47.3; gen.py --git).
pub const GIT_VECTORS: &[(Gen, &str)] =
    &[(git_a, "c2a4456f62939154edc855cfc3851eaad9e71fbb"), (git_b, "9234abe5dc88d5a7ccd73f5e06702eeebed5fb24")];
