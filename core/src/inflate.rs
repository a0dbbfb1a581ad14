//! Streaming inflate of raw deflate, zlib and gzip streams into a caller-owned window.
//!
//! Contract:
//! - You own every buffer. `window` is a circular dictionary of exactly
//!   `2**wbits` bytes ([`window_len`]); pass the same, unmodified buffer on every
//!   call. Output is decoded into the window, then copied into `out`.
//! - Feed input in chunks of any size (down to 1 byte). A [`Progress`] tells
//!   how much input was consumed and output written; [`Status::NeedInput`] means
//!   all input was consumed, [`Status::NeedOutput`] that `out` is full.
//! - Call [`Inflater::finish_input`] when there is no more input: a stream that
//!   ends early then fails with [`Error::InflateTruncated`] instead of asking for input.
//! - zlib: the header is checked (CINFO > wbits gives [`Error::WindowTooSmall`])
//!   and the adler32 trailer verified. gzip: header (FEXTRA/FNAME/FCOMMENT/FHCRC)
//!   parsed, crc32 and ISIZE verified. raw: no header or trailer.
//! - A match distance beyond the window is [`Error::InflateCorrupt`] (miniz_oxide
//!   reports it like any other invalid data). A distance reaching before the first
//!   output byte reads zeros (the window is zeroed at the start), as miniz_oxide's
//!   wrapping mode does not check it: a Git-blob SHA1 over the result catches it.
//! - Bytes after the end of the stream (after the trailer) are not consumed:
//!   [`Status::Done`] is returned with `consumed` short of the input. A second
//!   gzip member is not decoded.
//! - Errors latch.
//!
//! ```
//! use ota_core::inflate::{Format, Inflater, Status};
//! // CPython: zlib.compressobj(9, zlib.DEFLATED, 9) over b"hello hello hello\n"
//! let z = [0x18, 0xd3, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x90, 0x5c, 0x00,
//!          0x40, 0xb5, 0x06, 0x87];
//! let mut inf = Inflater::new();
//! inf.init(Format::Zlib, 9).unwrap();
//! let mut window = [0u8; 512];
//! let mut out = [0u8; 64];
//! inf.finish_input();
//! let p = inf.inflate(&z, &mut window, &mut out).unwrap();
//! assert_eq!(p.status, Status::Done);
//! assert_eq!(&out[..p.written], b"hello hello hello\n");
//! ```

use crate::Error;
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Stream format (same codes as MicroPython's `deflate` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Format {
    /// Raw deflate (RFC 1951).
    Raw = 1,
    /// zlib (RFC 1950): 2-byte header, adler32 trailer.
    Zlib = 2,
    /// gzip (RFC 1952): header, crc32 + ISIZE trailer.
    Gzip = 3,
}

impl Format {
    /// The format for a code 1..=3, else `None`.
    pub const fn from_code(code: i32) -> Option<Format> {
        match code {
            1 => Some(Format::Raw),
            2 => Some(Format::Zlib),
            3 => Some(Format::Gzip),
            _ => None,
        }
    }
}

/// What a push call needs next (not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// All input was consumed; call again with more (or after `finish_input`).
    NeedInput,
    /// `out` is full; call again with more room.
    NeedOutput,
    /// End of stream reached and verified.
    Done,
}

/// Result of one push call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Output bytes written to the front of `out`.
    pub written: usize,
    /// What is needed next.
    pub status: Status,
}

/// Smallest and largest window exponents.
pub const MIN_WBITS: u8 = 8;
/// Largest window exponent (32 KiB, deflate's maximum distance).
pub const MAX_WBITS: u8 = 15;

/// Bytes of window for `wbits` (8..=15), or 0 if `wbits` is out of range.
///
/// ```
/// assert_eq!(ota_core::window_len(12), 4096);
/// assert_eq!(ota_core::window_len(16), 0);
/// ```
pub const fn window_len(wbits: u8) -> usize {
    if wbits < MIN_WBITS || wbits > MAX_WBITS {
        0
    } else {
        1usize << wbits
    }
}

// Phases (u8 so that an all-zero Inflater is a valid, uninitialised one).
const PH_HEADER: u8 = 0;
const PH_BODY: u8 = 1;
const PH_TRAILER: u8 = 2;
const PH_DONE: u8 = 3;

// gzip header steps.
const GZ_FIXED: u8 = 0; // 10 fixed bytes
const GZ_XLEN: u8 = 1; // 2 bytes
const GZ_EXTRA: u8 = 2; // xlen bytes
const GZ_NAME: u8 = 3; // up to NUL
const GZ_COMMENT: u8 = 4; // up to NUL
const GZ_HCRC: u8 = 5; // 2 bytes
const GZ_END: u8 = 6;

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// Streaming inflater state (~10.6 KB, most of it miniz_oxide's tables).
///
/// All-zero bytes are a valid value of this type (an inflater that is not
/// initialised yet and answers [`Error::BadFormat`]), so a binding may zero
/// caller memory and call [`Inflater::init`] in place instead of building the
/// value on a small stack.
pub struct Inflater {
    decomp: DecompressorOxide,
    format: u8,
    wbits: u8,
    phase: u8,
    ended: bool,
    fresh: bool,
    err: u8,
    // header / trailer parsing
    step: u8,
    gz_flags: u8,
    count: u32,
    hdr: [u8; 10],
    // window bookkeeping
    win_pos: usize,
    pend_start: usize,
    pend_len: usize,
    // checks
    adler: u32,
    crc: u32,
    total: u32,
    hcrc: u32,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// An uninitialised inflater (host use; builds ~10.5 KB by value).
    pub fn new() -> Self {
        Inflater {
            decomp: DecompressorOxide::new(),
            format: 0,
            wbits: 0,
            phase: PH_HEADER,
            ended: false,
            fresh: false,
            err: 0,
            step: 0,
            gz_flags: 0,
            count: 0,
            hdr: [0; 10],
            win_pos: 0,
            pend_start: 0,
            pend_len: 0,
            adler: 1,
            crc: 0,
            total: 0,
            hcrc: 0,
        }
    }

    /// Re-initialise in place for a new stream. [`Error::BadWindow`] unless
    /// 8 <= wbits <= 15 (the inflater is then left failed).
    pub fn init(&mut self, format: Format, wbits: u8) -> Result<(), Error> {
        self.decomp.init();
        self.format = format as u8;
        self.wbits = wbits;
        self.phase = if format == Format::Raw { PH_BODY } else { PH_HEADER };
        self.ended = false;
        self.fresh = true;
        self.err = 0;
        self.step = 0;
        self.gz_flags = 0;
        self.count = 0;
        self.hdr = [0; 10];
        self.win_pos = 0;
        self.pend_start = 0;
        self.pend_len = 0;
        self.adler = 1;
        self.crc = 0;
        self.total = 0;
        self.hcrc = 0;
        if window_len(wbits) == 0 {
            return Err(self.fail(Error::BadWindow));
        }
        Ok(())
    }

    /// Declare that no input follows what has been (or is being) passed.
    pub fn finish_input(&mut self) {
        self.ended = true;
    }

    /// True once the stream's end has been reached and verified.
    pub fn is_done(&self) -> bool {
        self.err == 0 && self.phase == PH_DONE
    }

    /// The latched error, if any.
    pub fn error(&self) -> Option<Error> {
        Error::from_code(self.err as i32)
    }

    fn fail(&mut self, e: Error) -> Error {
        e.latch(&mut self.err)
    }

    fn check(&self, window: &[u8]) -> Result<(), Error> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if self.format == 0 {
            return Err(Error::BadFormat);
        }
        if window.len() != window_len(self.wbits) {
            return Err(Error::BadWindow);
        }
        Ok(())
    }

    /// Push call: decode `input` and write output into `out`.
    /// See the module docs for the contract.
    pub fn inflate(&mut self, input: &[u8], window: &mut [u8], out: &mut [u8]) -> Result<Progress, Error> {
        let mut consumed = 0usize;
        let mut written = 0usize;
        loop {
            let pend = self.pending(window);
            if !pend.is_empty() {
                let room = out.len().saturating_sub(written);
                if room == 0 {
                    return Ok(Progress { consumed, written, status: Status::NeedOutput });
                }
                let n = pend.len().min(room);
                if let (Some(dst), Some(src)) = (out.get_mut(written..written + n), pend.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.consume(window, n);
                written += n;
                continue;
            }
            let (c, st) = self.fill(input.get(consumed..).unwrap_or(&[]), window)?;
            consumed += c;
            match st {
                Status::NeedOutput => continue, // pending output to copy
                st => return Ok(Progress { consumed, written, status: st }),
            }
        }
    }

    /// Decoded bytes waiting in the window (empty unless [`Inflater::fill`] produced some).
    pub fn pending<'w>(&self, window: &'w [u8]) -> &'w [u8] {
        window.get(self.pend_start..self.pend_start.saturating_add(self.pend_len)).unwrap_or(&[])
    }

    /// Mark the first `n` pending bytes as delivered (checksums are updated here).
    pub fn consume(&mut self, window: &[u8], n: usize) {
        let n = n.min(self.pend_len);
        if let Some(data) = window.get(self.pend_start..self.pend_start + n) {
            match self.format {
                2 => self.adler = adler32(self.adler, data),
                3 => self.crc = crc32(self.crc, data),
                _ => {}
            }
            self.total = self.total.wrapping_add(n as u32);
        }
        self.pend_start += n;
        self.pend_len -= n;
    }

    /// Lower-level push call used by the pipeline: consume input until some
    /// output is pending in the window (returns [`Status::NeedOutput`]; read it
    /// with [`Inflater::pending`], release it with [`Inflater::consume`]), all
    /// input is consumed ([`Status::NeedInput`]) or the stream is done.
    /// Returns the input consumed.
    pub fn fill(&mut self, input: &[u8], window: &mut [u8]) -> Result<(usize, Status), Error> {
        self.check(window)?;
        if self.pend_len > 0 {
            return Ok((0, Status::NeedOutput));
        }
        let mut consumed = 0usize;
        // Each iteration consumes input, produces output, or changes phase; the
        // bound only guards against a library misbehaving.
        let mut guard = 0u32;
        loop {
            guard += 1;
            if guard > 64 {
                return Err(self.fail(Error::InflateCorrupt));
            }
            let rest = input.get(consumed..).unwrap_or(&[]);
            match self.phase {
                PH_HEADER => {
                    let c = self.header(rest)?;
                    consumed += c;
                    if self.phase == PH_HEADER {
                        return self.need_input(consumed);
                    }
                }
                PH_BODY => {
                    if self.fresh {
                        window.fill(0);
                        self.fresh = false;
                    }
                    if self.win_pos >= window.len() {
                        self.win_pos = 0;
                    }
                    let mut flags = 0;
                    if !self.ended {
                        flags |= inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
                    }
                    let (st, inn, outn) = decompress(&mut self.decomp, rest, window, self.win_pos, flags);
                    consumed += inn;
                    self.pend_start = self.win_pos;
                    self.pend_len = outn;
                    self.win_pos += outn;
                    match st {
                        TINFLStatus::Done => {
                            self.phase = if self.format == Format::Raw as u8 { PH_DONE } else { PH_TRAILER };
                            self.step = 0;
                            self.count = 0;
                        }
                        TINFLStatus::NeedsMoreInput => {
                            if outn == 0 {
                                return self.need_input(consumed);
                            }
                        }
                        TINFLStatus::HasMoreOutput => {}
                        TINFLStatus::FailedCannotMakeProgress => return Err(self.fail(Error::InflateTruncated)),
                        TINFLStatus::Adler32Mismatch => return Err(self.fail(Error::Checksum)),
                        _ => return Err(self.fail(Error::InflateCorrupt)),
                    }
                    if outn > 0 {
                        return Ok((consumed, Status::NeedOutput));
                    }
                }
                PH_TRAILER => {
                    let c = self.trailer(rest)?;
                    consumed += c;
                    if self.phase == PH_TRAILER {
                        return self.need_input(consumed);
                    }
                }
                _ => return Ok((consumed, Status::Done)),
            }
        }
    }

    fn need_input(&mut self, consumed: usize) -> Result<(usize, Status), Error> {
        if self.ended {
            Err(self.fail(Error::InflateTruncated))
        } else {
            Ok((consumed, Status::NeedInput))
        }
    }

    /// Parse zlib / gzip header bytes; returns bytes consumed.
    fn header(&mut self, input: &[u8]) -> Result<usize, Error> {
        let mut used = 0;
        for &b in input {
            if self.phase != PH_HEADER {
                break;
            }
            used += 1;
            if self.format == Format::Zlib as u8 {
                if let Some(h) = self.hdr.get_mut(self.count as usize) {
                    *h = b;
                }
                self.count += 1;
                if self.count == 2 {
                    let (cmf, flg) = (self.hdr[0] as u32, self.hdr[1] as u32);
                    if (cmf * 256 + flg) % 31 != 0 || cmf & 15 != 8 || flg & 0x20 != 0 || (cmf >> 4) > 7 {
                        return Err(self.fail(Error::GzipHeader));
                    }
                    if (cmf >> 4) + 8 > self.wbits as u32 {
                        return Err(self.fail(Error::WindowTooSmall));
                    }
                    self.phase = PH_BODY;
                }
                continue;
            }
            // gzip
            if self.step != GZ_HCRC {
                self.hcrc = crc32(self.hcrc, core::slice::from_ref(&b));
            }
            match self.step {
                GZ_FIXED => {
                    if let Some(h) = self.hdr.get_mut(self.count as usize) {
                        *h = b;
                    }
                    self.count += 1;
                    if self.count == 10 {
                        if self.hdr[0] != 0x1f || self.hdr[1] != 0x8b || self.hdr[2] != 8 || self.hdr[3] & 0xe0 != 0 {
                            return Err(self.fail(Error::GzipHeader));
                        }
                        self.gz_flags = self.hdr[3];
                        self.count = 0;
                        self.next_gz_step(GZ_FIXED);
                    }
                }
                GZ_XLEN => {
                    self.count |= (b as u32) << (8 * (self.hdr[4] as u32 & 1));
                    // hdr[4] counts the two XLEN bytes (MTIME was already checked).
                    self.hdr[4] = self.hdr[4].wrapping_add(1);
                    if self.hdr[4] & 1 == 0 {
                        if self.count == 0 {
                            self.next_gz_step(GZ_EXTRA);
                        } else {
                            self.step = GZ_EXTRA;
                        }
                    }
                }
                GZ_EXTRA => {
                    self.count -= 1;
                    if self.count == 0 {
                        self.next_gz_step(GZ_EXTRA);
                    }
                }
                GZ_NAME | GZ_COMMENT if b == 0 => {
                    let s = self.step;
                    self.next_gz_step(s);
                }
                GZ_HCRC => {
                    self.count += 1;
                    let want = (self.hcrc & 0xffff) as u16;
                    let got_byte = (want >> (8 * (self.count - 1))) as u8;
                    if b != got_byte {
                        return Err(self.fail(Error::GzipHeader));
                    }
                    if self.count == 2 {
                        self.next_gz_step(GZ_HCRC);
                    }
                }
                _ => {}
            }
        }
        Ok(used)
    }

    /// Move to the gzip header step after `done`, skipping absent fields.
    fn next_gz_step(&mut self, done: u8) {
        let f = self.gz_flags;
        let mut s = done + 1;
        loop {
            let present = match s {
                GZ_XLEN => f & FEXTRA != 0,
                GZ_EXTRA => false, // entered from XLEN only
                GZ_NAME => f & FNAME != 0,
                GZ_COMMENT => f & FCOMMENT != 0,
                GZ_HCRC => f & FHCRC != 0,
                _ => true,
            };
            if present {
                break;
            }
            s += 1;
        }
        self.step = s;
        self.count = 0;
        if s == GZ_XLEN {
            self.hdr[4] = 0;
        }
        if s >= GZ_END {
            self.phase = PH_BODY;
        }
    }

    /// Parse trailer bytes; returns bytes consumed.
    fn trailer(&mut self, input: &[u8]) -> Result<usize, Error> {
        let need = if self.format == Format::Zlib as u8 { 4 } else { 8 };
        let mut used = 0;
        for &b in input {
            if self.count >= need {
                break;
            }
            if let Some(h) = self.hdr.get_mut(self.count as usize) {
                *h = b;
            }
            self.count += 1;
            used += 1;
        }
        if self.count == need {
            let h = self.hdr;
            let ok = if need == 4 {
                u32::from_be_bytes([h[0], h[1], h[2], h[3]]) == self.adler
            } else {
                u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == self.crc
                    && u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == self.total
            };
            if !ok {
                return Err(self.fail(Error::Checksum));
            }
            self.phase = PH_DONE;
        }
        Ok(used)
    }
}

/// Adler-32 (RFC 1950) update through the `simd-adler32` crate (SSE2 on x86_64, the
/// baseline: no std and no run-time detection needed). Feature `simd-adler`; on other
/// targets the feature has no effect (the portable code below is used).
#[cfg(all(feature = "simd-adler", target_arch = "x86_64"))]
pub fn adler32(adler: u32, data: &[u8]) -> u32 {
    let mut h = simd_adler32::Adler32::from_checksum(adler);
    h.write(data);
    h.finish()
}

/// `x mod 65521` without a division (Cortex-M0 has none; libgcc's is a slow
/// bit loop): 2^16 = 15 (mod 65521), folded twice, then one subtraction.
#[cfg(not(all(feature = "simd-adler", target_arch = "x86_64")))]
#[inline(always)]
fn mod_adler(x: u32) -> u32 {
    let x = (x & 0xffff) + 15 * (x >> 16); // < 2^20
    let x = (x & 0xffff) + 15 * (x >> 16); // <= 65535 + 15 * 15
    if x >= 65521 {
        x - 65521
    } else {
        x
    }
}

/// Adler-32 (RFC 1950) update. 16 bytes per inner step, the modulo deferred
/// to every NMAX bytes (the most for which `b` cannot overflow u32).
#[cfg(not(all(feature = "simd-adler", target_arch = "x86_64")))]
pub fn adler32(adler: u32, data: &[u8]) -> u32 {
    const NMAX: usize = 5552; // a multiple of 16
    let (mut a, mut b) = (adler & 0xffff, adler >> 16);
    for chunk in data.chunks(NMAX) {
        let mut blocks = chunk.chunks_exact(16);
        for c in &mut blocks {
            if let Ok(c) = <&[u8; 16]>::try_from(c) {
                #[cfg(target_arch = "arm")]
                {
                    // Cortex-M0: ldrb + 2 adds per byte, written out (opt-level z/s would not unroll).
                    macro_rules! step {
                        ($($i:literal)*) => {$( a += c[$i] as u32; b += a; )*};
                    }
                    step!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
                }
                #[cfg(not(target_arch = "arm"))]
                {
                    // Hosts: b += 16 a + sum (16 - i) x_i, a += sum x_i, with no serial
                    // dependency between the bytes (LLVM vectorises it at opt-level 3).
                    const W: [u32; 16] = [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1];
                    let (mut s, mut w) = (0u32, 0u32);
                    for (&x, &k) in c.iter().zip(W.iter()) {
                        s += x as u32;
                        w += k * x as u32;
                    }
                    b += 16 * a + w;
                    a += s;
                }
            }
        }
        for &x in blocks.remainder() {
            a += x as u32;
            b += a;
        }
        a = mod_adler(a);
        b = mod_adler(b);
    }
    (b << 16) | a
}

/// CRC-32 (IEEE, as gzip) update; `crc` is the running value (0 to start).
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    // Nibble table: 64 bytes of rodata instead of 1 KiB (gzip is not the hot path).
    const T: [u32; 16] = {
        let mut t = [0u32; 16];
        let mut i = 0;
        while i < 16 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 4 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !crc;
    for &x in data {
        c ^= x as u32;
        c = T[(c & 15) as usize] ^ (c >> 4);
        c = T[(c & 15) as usize] ^ (c >> 4);
    }
    !c
}

/// One-shot inflate of a whole stream into `out` (host/tests). Returns the
/// output length; [`Error::BadArgument`] if `out` is too small.
pub fn inflate_all(format: Format, wbits: u8, input: &[u8], window: &mut [u8], out: &mut [u8]) -> Result<usize, Error> {
    let mut inf = Inflater::new();
    inf.init(format, wbits)?;
    inf.finish_input();
    let p = inf.inflate(input, window, out)?;
    match p.status {
        Status::Done => Ok(p.written),
        _ => Err(Error::BadArgument),
    }
}
