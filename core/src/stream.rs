//! Pull adapters shared by both bindings: each holds its push state, a fixed
//! input buffer of [`IN_BUF`] bytes and positions, and pulls input from a
//! [`Source`] only when that buffer is empty (asking for the whole buffer).
//!
//! `read_into` returns the number of bytes written to `out`; 0 only at the
//! verified end of the stream (or when `out` is empty). It returns early with a
//! partial count rather than read the source again once it has output.
//! Bytes after the end of the stream may have been read into the buffer and
//! are ignored. Errors latch; a [`Source`] / [`ReadAt`] failure is
//! [`Error::Source`] (bindings keep and re-raise the callback's exception).
//!
//! ```
//! use ota_core::stream::{InflateReader, Source};
//! use ota_core::{Error, Format};
//! struct Bytes<'a>(&'a [u8]);
//! impl Source for Bytes<'_> {
//!     fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
//!         let n = self.0.len().min(buf.len());
//!         buf[..n].copy_from_slice(&self.0[..n]);
//!         self.0 = &self.0[n..];
//!         Ok(n)
//!     }
//! }
//! // Raw deflate stored block with "hi".
//! let mut src = Bytes(&[1, 2, 0, 0xfd, 0xff, b'h', b'i']);
//! let mut r = InflateReader::new();
//! r.init(Format::Raw, 8).unwrap();
//! let (mut window, mut out) = ([0u8; 256], [0u8; 16]);
//! assert_eq!(r.read_into(&mut src, &mut window, &mut out), Ok(2));
//! assert_eq!(r.read_into(&mut src, &mut window, &mut out), Ok(0));
//! assert_eq!(&out[..2], b"hi");
//! ```

use crate::bspatch::{Patcher, ReadAt};
use crate::inflate::{Format, Inflater, Progress, Status};
use crate::pipeline::DeltaPipeline;
use crate::Error;

pub use crate::inflate::window_len;

/// Input buffer of each reader: 1 KiB on 32-bit ARM (device RAM: fewer source
/// calls than 512 B for 512 B more per reader), 4 KiB on hosts (the x64 unix
/// port and CPython, where RAM is plentiful and fewer source calls pay).
#[cfg(target_arch = "arm")]
pub const IN_BUF: usize = 1024;
/// Input buffer of each reader (see the ARM value above).
#[cfg(not(target_arch = "arm"))]
pub const IN_BUF: usize = 4096;

/// Where compressed / patch bytes come from.
pub trait Source {
    /// Read up to `buf.len()` bytes into `buf`; 0 means end of input.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error>;
}

/// Input buffer + latch shared by the readers. All-zero is valid.
struct InBuf {
    buf: [u8; IN_BUF],
    pos: usize,
    len: usize,
    eof: bool,
    err: u8,
}

impl InBuf {
    const fn new() -> Self {
        InBuf { buf: [0; IN_BUF], pos: 0, len: 0, eof: false, err: 0 }
    }
    fn reset(&mut self) {
        self.pos = 0;
        self.len = 0;
        self.eof = false;
        self.err = 0;
    }
    fn data(&self) -> &[u8] {
        self.buf.get(self.pos..self.len).unwrap_or(&[])
    }
    fn latched(&self) -> Result<(), Error> {
        match Error::from_code(self.err as i32) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    fn fail(&mut self, e: Error) -> Error {
        e.latch(&mut self.err)
    }
    /// Refill from `src` (buffer must be empty). Returns false at end of input.
    fn refill(&mut self, src: &mut impl Source) -> Result<bool, Error> {
        self.pos = 0;
        self.len = 0;
        if self.eof {
            return Ok(false);
        }
        let n = src.read(&mut self.buf).map_err(|e| self.fail(e))?;
        if n > IN_BUF {
            return Err(self.fail(Error::BadArgument));
        }
        self.len = n;
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// The common pull loop: `step(input, out, ended) -> Progress`, where `ended`
    /// says the source has reported its end (the state must then be told so).
    /// `step` is a `dyn` closure: one copy of this loop serves all three readers
    /// (~300 bytes less armv6m code than one per reader; one indirect call per step).
    fn pull(
        &mut self,
        src: &mut impl Source,
        out: &mut [u8],
        step: &mut dyn FnMut(&[u8], &mut [u8], bool) -> Result<Progress, Error>,
    ) -> Result<usize, Error> {
        self.latched()?;
        let mut total = 0usize;
        // Each iteration consumes input, writes output, reads the source or ends.
        loop {
            let dst = out.get_mut(total..).unwrap_or(&mut []);
            if dst.is_empty() && total > 0 {
                return Ok(total);
            }
            let p = match step(self.data(), dst, self.eof) {
                Ok(p) => p,
                Err(e) => return Err(self.fail(e)),
            };
            self.pos += p.consumed;
            total += p.written;
            match p.status {
                Status::Done | Status::NeedOutput => return Ok(total),
                Status::NeedInput => {
                    if total > 0 {
                        return Ok(total);
                    }
                    if self.eof {
                        // The state was told the end (step saw `ended`) and still wants input.
                        return Err(self.fail(Error::InflateTruncated));
                    }
                    self.refill(src)?;
                }
            }
        }
    }
}

/// Pull inflate: [`Inflater`] + input buffer (~11 KB).
pub struct InflateReader {
    inf: Inflater,
    input: InBuf,
}

impl Default for InflateReader {
    fn default() -> Self {
        Self::new()
    }
}

impl InflateReader {
    /// Uninitialised reader (host use).
    pub fn new() -> Self {
        InflateReader { inf: Inflater::new(), input: InBuf::new() }
    }
    /// Re-initialise in place.
    pub fn init(&mut self, format: Format, wbits: u8) -> Result<(), Error> {
        self.input.reset();
        self.inf.init(format, wbits).map_err(|e| self.input.fail(e))
    }
    /// Fill `out` with inflated bytes; 0 at the verified end of the stream.
    pub fn read_into(&mut self, src: &mut impl Source, window: &mut [u8], out: &mut [u8]) -> Result<usize, Error> {
        let inf = &mut self.inf;
        self.input.pull(src, out, &mut |input, dst, ended| {
            if ended {
                inf.finish_input();
            }
            inf.inflate(input, window, dst)
        })
    }
}

/// Pull bspatch: [`Patcher`] + input buffer (~850 B).
pub struct PatchReader {
    patcher: Patcher,
    input: InBuf,
}

impl PatchReader {
    /// Reader for a new file of `new_size` bytes.
    pub fn new(new_size: u64) -> Self {
        PatchReader { patcher: Patcher::new(new_size), input: InBuf::new() }
    }
    /// Re-initialise in place.
    pub fn init(&mut self, new_size: u64) {
        self.input.reset();
        self.patcher.init(new_size);
    }
    /// Fill `out` with new-file bytes; 0 at the verified end.
    pub fn read_into(&mut self, src: &mut impl Source, old: &mut impl ReadAt, out: &mut [u8]) -> Result<usize, Error> {
        let patcher = &mut self.patcher;
        self.input.pull(src, out, &mut |input, dst, ended| {
            if ended {
                patcher.finish_input();
            }
            patcher.patch(input, old, dst)
        })
    }
}

/// Pull delta pipeline: [`DeltaPipeline`] + input buffer.
pub struct DeltaReader {
    pipe: DeltaPipeline,
    input: InBuf,
}

impl Default for DeltaReader {
    fn default() -> Self {
        Self::new()
    }
}

impl DeltaReader {
    /// Uninitialised reader (host use).
    pub fn new() -> Self {
        DeltaReader { pipe: DeltaPipeline::new(), input: InBuf::new() }
    }
    /// Re-initialise in place.
    pub fn init(&mut self, new_size: u64, format: Format, wbits: u8) -> Result<(), Error> {
        self.input.reset();
        self.pipe.init(new_size, format, wbits).map_err(|e| self.input.fail(e))
    }
    /// Fill `out` with new-file bytes; 0 at the verified end.
    pub fn read_into(
        &mut self,
        src: &mut impl Source,
        old: &mut impl ReadAt,
        window: &mut [u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let pipe = &mut self.pipe;
        self.input.pull(src, out, &mut |input, dst, ended| {
            if ended {
                pipe.finish_input();
            }
            pipe.feed(input, window, old, dst)
        })
    }
    /// Git-blob SHA1 of the new file; [`Error::Incomplete`] before the end.
    pub fn digest(&self) -> Result<[u8; 20], Error> {
        self.input.latched()?;
        self.pipe.digest()
    }
}
