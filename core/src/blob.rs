//! Streaming Git-blob SHA1: `sha1(b"blob <size>\0" + content)`.
//!
//! You must declare the content size up front; [`BlobHasher::update`] fails
//! with [`Error::BlobTooLong`] as soon as more bytes arrive, and
//! [`BlobHasher::digest`] fails with [`Error::BlobTooShort`] until exactly
//! `size` bytes were fed. Errors latch.
//!
//! ```
//! use ota_core::BlobHasher;
//! let mut h = BlobHasher::new(6);
//! h.update(b"hel").unwrap();
//! h.update(b"lo\n").unwrap();
//! // `git hash-object` of "hello\n"
//! assert_eq!(ota_core::hex(&h.digest().unwrap()).as_str(), "ce013625030ba8dba906f756967f9e9ca394464a");
//! ```

use crate::Error;

/// Streaming Git-blob hasher with a declared size. All-zero bytes are a
/// valid value (call [`BlobHasher::init`] before use).
#[derive(Clone)]
pub struct BlobHasher {
    sha: sha1_smol::Sha1,
    size: u64,
    fed: u64,
    err: u8,
}

/// Writes the Git blob header for `size` into `buf`, returns its length (at most 26).
///
/// No division or multiplication: on Cortex-M0 a u64 `/ 10` pulls ~500 bytes of
/// libgcc into the module (a u64 `* 10` another 90). Digits come out of a
/// bit-serial long division by 10 (once per blob, at most 20 x 64 steps).
fn blob_header(size: u64, buf: &mut [u8; 26]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = size;
    loop {
        // (v, r) = (v / 10, v % 10), shifting v's bits into the remainder.
        let mut r = 0u8;
        for _ in 0..64 {
            r = (r << 1) | (v >> 63) as u8; // r < 20
            v <<= 1;
            if r >= 10 {
                r -= 10;
                v |= 1;
            }
        }
        if let Some(d) = digits.get_mut(n) {
            *d = b'0' + r;
        }
        n += 1;
        if v == 0 || n >= digits.len() {
            break;
        }
    }
    buf[..5].copy_from_slice(b"blob ");
    let mut len = 5;
    for &d in digits[..n].iter().rev() {
        buf[len] = d;
        len += 1;
    }
    buf[len] = 0;
    len + 1
}

impl BlobHasher {
    /// A hasher for a blob of exactly `size` bytes.
    pub fn new(size: u64) -> Self {
        let mut h = BlobHasher { sha: sha1_smol::Sha1::new(), size: 0, fed: 0, err: 0 };
        h.init(size);
        h
    }

    /// Re-initialise in place for a blob of `size` bytes.
    pub fn init(&mut self, size: u64) {
        self.sha.reset();
        let mut header = [0u8; 26];
        let n = blob_header(size, &mut header);
        self.sha.update(&header[..n]);
        self.size = size;
        self.fed = 0;
        self.err = 0;
    }

    /// Declared size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes hashed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Hash `data`. [`Error::BlobTooLong`] (latched, nothing hashed) if it
    /// would take the total past the declared size.
    pub fn update(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(e) = Error::from_code(self.err as i32) {
            return Err(e);
        }
        let total = self.fed.checked_add(data.len() as u64);
        match total {
            Some(t) if t <= self.size => {
                self.sha.update(data);
                self.fed = t;
                Ok(())
            }
            _ => {
                self.err = Error::BlobTooLong.code() as u8;
                Err(Error::BlobTooLong)
            }
        }
    }

    /// The 20-byte Git object id. [`Error::BlobTooShort`] unless exactly
    /// `size` bytes were hashed. Does not consume the state.
    pub fn digest(&self) -> Result<[u8; 20], Error> {
        if let Some(e) = Error::from_code(self.err as i32) {
            return Err(e);
        }
        if self.fed != self.size {
            return Err(Error::BlobTooShort);
        }
        Ok(self.sha.digest().bytes())
    }
}

/// One-shot Git blob id of `data` (what `git hash-object` prints).
///
/// ```
/// assert_eq!(ota_core::hex(&ota_core::blob_sha1(b"")).as_str(),
///            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
/// ```
pub fn blob_sha1(data: &[u8]) -> [u8; 20] {
    let mut h = BlobHasher::new(data.len() as u64);
    // Cannot fail: exactly `size` bytes.
    let _ = h.update(data);
    h.digest().unwrap_or([0; 20])
}

/// Lower-case hex of a 20-byte digest, without allocation.
///
/// ```
/// assert_eq!(ota_core::hex(&[0xab; 20]).as_str(), "abababababababababababababababababababab");
/// ```
pub fn hex(digest: &[u8; 20]) -> Hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    Hex(out)
}

/// 40 lower-case hex digits (see [`hex`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hex(pub [u8; 40]);

impl Hex {
    /// The digits as a `&str`.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed with `git hash-object --stdin` (git 2.47.3) when the tests were written.
    const EMPTY: &str = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
    const HELLO: &str = "ce013625030ba8dba906f756967f9e9ca394464a";

    #[test]
    fn git_vectors() {
        assert_eq!(hex(&blob_sha1(b"")).as_str(), EMPTY);
        assert_eq!(hex(&blob_sha1(b"hello\n")).as_str(), HELLO);
        for (data, want) in crate::testdata::GIT_VECTORS {
            let data = data();
            assert_eq!(hex(&blob_sha1(&data)).as_str(), *want, "len {}", data.len());
            // Every chunking gives the same digest.
            for chunk in [1usize, 7, 64, 1000] {
                let mut h = BlobHasher::new(data.len() as u64);
                for c in data.chunks(chunk) {
                    h.update(c).unwrap();
                }
                assert_eq!(hex(&h.digest().unwrap()).as_str(), *want);
            }
        }
    }

    #[test]
    fn size_is_enforced_and_errors_latch() {
        let mut h = BlobHasher::new(3);
        h.update(b"ab").unwrap();
        assert_eq!(h.digest(), Err(Error::BlobTooShort));
        assert_eq!(h.update(b"cd"), Err(Error::BlobTooLong));
        assert_eq!(h.update(b""), Err(Error::BlobTooLong));
        assert_eq!(h.digest(), Err(Error::BlobTooLong));
        h.init(0);
        assert_eq!(hex(&h.digest().unwrap()).as_str(), EMPTY);
        assert_eq!(h.update(b"x"), Err(Error::BlobTooLong));
    }

    #[test]
    fn header_of_extreme_sizes() {
        let mut b = [0u8; 26];
        let n = blob_header(u64::MAX, &mut b);
        assert_eq!(&b[..n], b"blob 18446744073709551615\0");
        let n = blob_header(0, &mut b);
        assert_eq!(&b[..n], b"blob 0\0");
        for v in [1u64, 9, 10, 11, 99, 100, 65535, 1 << 32, 10_000_000_000_000_000_000, 9_999_999_999_999_999_999] {
            let n = blob_header(v, &mut b);
            assert_eq!(&b[..n], std::format!("blob {v}\0").as_bytes());
        }
        let mut h = BlobHasher::new(u64::MAX);
        h.update(&[0; 100]).unwrap();
        assert_eq!(h.digest(), Err(Error::BlobTooShort));
    }
}
