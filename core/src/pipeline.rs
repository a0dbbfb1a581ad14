//! One-pass delta pipeline: compressed patch in -> inflate -> bspatch ->
//! Git-blob SHA1 -> new-file bytes out.
//!
//! The inflated patch bytes are handed to the patcher straight from the
//! inflate window (no intermediate buffer). The end of the compressed stream
//! is the end of the patch; call [`DeltaPipeline::finish_input`] when the
//! compressed input has ended so a truncated stream is an error. Bytes after
//! the compressed stream are not consumed. Errors latch.
//!
//! ```
//! use ota_core::{DeltaPipeline, Format, Status};
//! // Patch that turns b"abc" into b"abd": mix 3 bytes [0,0,1], no copy, seek 0.
//! let mut patch = Vec::new();
//! for v in [3u64, 0, 0] { patch.extend_from_slice(&v.to_le_bytes()); }
//! patch.extend_from_slice(&[0, 0, 1]);
//! // Stored (uncompressed) raw deflate block holding the patch.
//! let mut z = vec![1u8, patch.len() as u8, 0, !(patch.len() as u8), 0xff];
//! z.extend_from_slice(&patch);
//! let mut pipe = DeltaPipeline::new();
//! pipe.init(3, Format::Raw, 8).unwrap();
//! let (mut window, mut out) = ([0u8; 256], [0u8; 8]);
//! let mut old: &[u8] = b"abc";
//! pipe.finish_input();
//! let p = pipe.feed(&z, &mut window, &mut old, &mut out).unwrap();
//! assert_eq!((p.status, &out[..p.written]), (Status::Done, &b"abd"[..]));
//! assert_eq!(pipe.digest().unwrap(), ota_core::blob_sha1(b"abd"));
//! ```

use crate::bspatch::{Patcher, ReadAt};
use crate::inflate::{Format, Inflater, Progress, Status};
use crate::{BlobHasher, Error};

/// Inflater + Patcher + BlobHasher (~11 KB, most of it the inflater).
/// All-zero bytes are a valid (uninitialised) value.
pub struct DeltaPipeline {
    inflater: Inflater,
    patcher: Patcher,
    hasher: BlobHasher,
    err: u8,
}

impl Default for DeltaPipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl DeltaPipeline {
    /// Uninitialised pipeline (host use; builds ~11 KB by value).
    pub fn new() -> Self {
        DeltaPipeline { inflater: Inflater::new(), patcher: Patcher::new(0), hasher: BlobHasher::new(0), err: 0 }
    }

    /// Re-initialise in place for a new file of `new_size` bytes, patch
    /// compressed as `format` with window `2**wbits`.
    pub fn init(&mut self, new_size: u64, format: Format, wbits: u8) -> Result<(), Error> {
        self.err = 0;
        self.patcher.init(new_size);
        self.hasher.init(new_size);
        self.inflater.init(format, wbits).map_err(|e| self.fail(e))
    }

    /// Declare that the compressed input has ended.
    pub fn finish_input(&mut self) {
        self.inflater.finish_input();
    }

    fn fail(&mut self, e: Error) -> Error {
        e.latch(&mut self.err)
    }

    /// True once the new file is complete and every check passed.
    pub fn is_done(&self) -> bool {
        self.err == 0 && self.patcher.state() == crate::bspatch::State::Done
    }

    /// Push call: feed compressed patch bytes, get new-file bytes in `out`.
    pub fn feed(&mut self, input: &[u8], window: &mut [u8], old: &mut impl ReadAt, out: &mut [u8]) -> Result<Progress, Error> {
        if let Some(e) = Error::from_code(self.err as i32) {
            return Err(e);
        }
        match self.feed_inner(input, window, old, out) {
            Ok(p) => Ok(p),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn feed_inner(&mut self, input: &[u8], window: &mut [u8], old: &mut impl ReadAt, out: &mut [u8]) -> Result<Progress, Error> {
        let mut consumed = 0usize;
        let mut written = 0usize;
        loop {
            if self.patcher.state() == crate::bspatch::State::Done {
                return Ok(Progress { consumed, written, status: Status::Done });
            }
            let pending = self.inflater.pending(window).len();
            if pending == 0 {
                let (c, st) = self.inflater.fill(input.get(consumed..).unwrap_or(&[]), window)?;
                consumed += c;
                match st {
                    Status::NeedInput => return Ok(Progress { consumed, written, status: Status::NeedInput }),
                    Status::Done => self.patcher.finish_input(),
                    Status::NeedOutput => {}
                }
            }
            let dst = out.get_mut(written..).unwrap_or(&mut []);
            let p = self.patcher.patch(self.inflater.pending(window), old, dst)?;
            self.inflater.consume(window, p.consumed);
            if let Some(new_bytes) = dst.get(..p.written) {
                self.hasher.update(new_bytes)?;
            }
            written += p.written;
            match p.status {
                Status::NeedOutput => return Ok(Progress { consumed, written, status: Status::NeedOutput }),
                Status::Done => return Ok(Progress { consumed, written, status: Status::Done }),
                Status::NeedInput => {}
            }
        }
    }

    /// Git-blob SHA1 of the new file; [`Error::Incomplete`] before the end.
    pub fn digest(&self) -> Result<[u8; 20], Error> {
        if let Some(e) = Error::from_code(self.err as i32) {
            return Err(e);
        }
        if !self.is_done() {
            return Err(Error::Incomplete);
        }
        self.hasher.digest()
    }
}
