//! Streaming bspatch for the patch format of the `bsdiff` crate (0.2).
//!
//! Format (no header, no compression): repeated entries of
//! `[mix_len u64 LE][copy_len u64 LE][seek i64 sign-magnitude LE]`, then
//! `mix_len` bytes added (wrapping) to `old[oldpos..]`, then `copy_len` literal
//! bytes; `oldpos += mix_len`, then `oldpos += seek`.
//!
//! Contract:
//! - Declare the new file's size up front ([`Patcher::new`] / [`Patcher::init`]).
//!   Output past it is [`Error::PatchTooLong`]; an end before it is
//!   [`Error::PatchTooShort`].
//! - Feed patch bytes in chunks of any size; the old file is read through
//!   [`ReadAt`] at (offset, buffer) into a fixed [`SCRATCH`]-byte cache.
//! - A mix block or seek that leaves the old file is [`Error::PatchOldRange`]
//!   (checked up front when [`ReadAt::old_len`] is known, else a short read is
//!   [`Error::OldRead`]); a negative position is always `PatchOldRange`; an
//!   arithmetic overflow is [`Error::PatchControl`].
//! - The format has no end marker: call [`Patcher::finish_input`] when the
//!   patch has ended; the next call returns [`Status::Done`] if the input ended
//!   on an entry boundary with exactly `new_size` bytes out, else
//!   [`Error::PatchTruncated`] / [`Error::PatchTooShort`].
//! - Errors latch.
//!
//! ```
//! use ota_core::bspatch::{Patcher, Status};
//! let old = b"hello world";
//! // one entry: mix 5 bytes (+0 => "hello"), copy "!", seek 0
//! let mut patch = Vec::new();
//! patch.extend_from_slice(&5u64.to_le_bytes());
//! patch.extend_from_slice(&1u64.to_le_bytes());
//! patch.extend_from_slice(&0u64.to_le_bytes());
//! patch.extend_from_slice(&[0, 0, 0, 0, 0, b'!']);
//! let mut p = Patcher::new(6);
//! let mut out = [0u8; 6];
//! let mut old_reader: &[u8] = old;
//! let r = p.patch(&patch, &mut old_reader, &mut out).unwrap();
//! assert_eq!((r.consumed, r.written), (patch.len(), 6));
//! p.finish_input();
//! assert_eq!(p.patch(&[], &mut old_reader, &mut []).unwrap().status, Status::Done);
//! assert_eq!(&out, b"hello!");
//! ```

use crate::Error;
pub use crate::inflate::{Progress, Status};

/// Bytes of old file cached per read.
pub const SCRATCH: usize = 256;

/// Random-access reader of the old file.
pub trait ReadAt {
    /// Read up to `buf.len()` bytes at `offset`; return the count. Fewer than
    /// `buf.len()` only at the end of the old file. A failure of the caller's
    /// callback is [`Error::Source`].
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error>;
    /// The old file's size if known (enables up-front range checks).
    fn old_len(&self) -> Option<u64> {
        None
    }
}

impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = self.get(start..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
        Ok(n)
    }
    fn old_len(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

/// Patcher states, named after the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Reading a 24-byte control entry.
    Control = 0,
    /// Adding diff bytes to old bytes.
    Mix = 1,
    /// Copying literal bytes.
    Copy = 2,
    /// Finished and verified.
    Done = 3,
    /// Failed (see [`Patcher::error`]).
    Failed = 4,
}

/// Streaming bspatch state (about 340 bytes). All-zero bytes are a valid
/// value (a patcher for an empty new file), so bindings may init in place.
pub struct Patcher {
    state: State,
    err: u8,
    ended: bool,
    ctrl_len: u8,
    ctrl: [u8; 24],
    new_size: u64,
    written: u64,
    oldpos: u64,
    next_oldpos: u64,
    // Lengths of the current entry left to do: usize, checked against the new size first
    // (cheaper than u64 on 32-bit targets, where new sizes the device can declare fit).
    mix_left: usize,
    copy_left: usize,
    cache_off: u64,
    cache_len: usize,
    cache: [u8; SCRATCH],
}

impl Patcher {
    /// A patcher producing exactly `new_size` bytes.
    pub fn new(new_size: u64) -> Self {
        let mut p = Patcher {
            state: State::Control,
            err: 0,
            ended: false,
            ctrl_len: 0,
            ctrl: [0; 24],
            new_size: 0,
            written: 0,
            oldpos: 0,
            next_oldpos: 0,
            mix_left: 0,
            copy_left: 0,
            cache_off: 0,
            cache_len: 0,
            cache: [0; SCRATCH],
        };
        p.init(new_size);
        p
    }

    /// Re-initialise in place.
    pub fn init(&mut self, new_size: u64) {
        self.state = State::Control;
        self.err = 0;
        self.ended = false;
        self.ctrl_len = 0;
        self.new_size = new_size;
        self.written = 0;
        self.oldpos = 0;
        self.next_oldpos = 0;
        self.mix_left = 0;
        self.copy_left = 0;
        self.cache_off = 0;
        self.cache_len = 0;
    }

    /// Declare that the patch has ended.
    pub fn finish_input(&mut self) {
        self.ended = true;
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// New-file bytes produced so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Declared new size.
    pub fn new_size(&self) -> u64 {
        self.new_size
    }

    /// The latched error, if any.
    pub fn error(&self) -> Option<Error> {
        Error::from_code(self.err as i32)
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed;
        e.latch(&mut self.err)
    }

    /// Push call: apply patch bytes from `input`, writing new-file bytes to `out`.
    pub fn patch(&mut self, input: &[u8], old: &mut impl ReadAt, out: &mut [u8]) -> Result<Progress, Error> {
        let mut consumed = 0usize;
        let mut written = 0usize;
        loop {
            let rest = input.get(consumed..).unwrap_or(&[]);
            let room = out.len().saturating_sub(written);
            match self.state {
                State::Failed => return Err(self.error().unwrap_or(Error::BadArgument)),
                State::Done => return Ok(Progress { consumed, written, status: Status::Done }),
                State::Control => {
                    if rest.is_empty() {
                        if !self.ended {
                            return Ok(Progress { consumed, written, status: Status::NeedInput });
                        }
                        if self.ctrl_len != 0 {
                            return Err(self.fail(Error::PatchTruncated));
                        }
                        if self.written != self.new_size {
                            return Err(self.fail(Error::PatchTooShort));
                        }
                        self.state = State::Done;
                        continue;
                    }
                    let have = self.ctrl_len as usize;
                    let n = (24 - have).min(rest.len());
                    if let (Some(d), Some(s)) = (self.ctrl.get_mut(have..have + n), rest.get(..n)) {
                        d.copy_from_slice(s);
                    }
                    consumed += n;
                    self.ctrl_len += n as u8;
                    if self.ctrl_len == 24 {
                        self.ctrl_len = 0;
                        self.control(old)?;
                    }
                }
                State::Mix | State::Copy => {
                    let left = if self.state == State::Mix { self.mix_left } else { self.copy_left };
                    if rest.is_empty() {
                        if self.ended {
                            return Err(self.fail(Error::PatchTruncated));
                        }
                        return Ok(Progress { consumed, written, status: Status::NeedInput });
                    }
                    if room == 0 {
                        return Ok(Progress { consumed, written, status: Status::NeedOutput });
                    }
                    let n = left.min(rest.len()).min(room);
                    let (Some(src), Some(dst)) = (rest.get(..n), out.get_mut(written..written + n)) else {
                        return Err(self.fail(Error::BadArgument));
                    };
                    let n = if self.state == State::Mix {
                        let k = self.mix(src, dst, old)?;
                        self.mix_left -= k;
                        k
                    } else {
                        dst.copy_from_slice(src);
                        self.copy_left -= n;
                        n
                    };
                    consumed += n;
                    written += n;
                    self.written += n as u64;
                    self.advance();
                }
            }
        }
    }

    /// After a block: Mix -> Copy -> Control as lengths run out.
    fn advance(&mut self) {
        if self.state == State::Mix && self.mix_left == 0 {
            self.oldpos = self.next_oldpos;
            self.state = State::Copy;
        }
        if self.state == State::Copy && self.copy_left == 0 {
            self.state = State::Control;
        }
    }

    /// Decode and validate a complete control entry.
    fn control(&mut self, old: &impl ReadAt) -> Result<(), Error> {
        let c = self.ctrl;
        let word = |i: usize| u64::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3], c[i + 4], c[i + 5], c[i + 6], c[i + 7]]);
        let (mix, copy, seek_raw) = (word(0), word(8), word(16));
        let remaining = self.new_size - self.written; // written <= new_size always
        if mix > remaining || copy > remaining - mix {
            return Err(self.fail(Error::PatchTooLong));
        }
        let Some(mix_end) = self.oldpos.checked_add(mix) else {
            return Err(self.fail(Error::PatchControl));
        };
        let magnitude = seek_raw & !(1u64 << 63);
        let next = if seek_raw >> 63 == 0 {
            match mix_end.checked_add(magnitude) {
                Some(v) => v,
                None => return Err(self.fail(Error::PatchControl)),
            }
        } else {
            match mix_end.checked_sub(magnitude) {
                Some(v) => v,
                None => return Err(self.fail(Error::PatchOldRange)),
            }
        };
        // bsdiff's reference keeps positions in i64.
        if next > i64::MAX as u64 {
            return Err(self.fail(Error::PatchControl));
        }
        if let Some(len) = old.old_len() {
            if (mix > 0 && mix_end > len) || next > len {
                return Err(self.fail(Error::PatchOldRange));
            }
        }
        // Both are <= the declared new size (checked above). Only a new size beyond usize::MAX
        // (more than 4 GiB on a 32-bit target; the natmod cannot declare one) makes this fail.
        let (Ok(mix), Ok(copy)) = (usize::try_from(mix), usize::try_from(copy)) else {
            return Err(self.fail(Error::PatchControl));
        };
        self.mix_left = mix;
        self.copy_left = copy;
        self.next_oldpos = next;
        self.state = State::Mix;
        self.advance();
        Ok(())
    }

    /// Mix `src` (diff bytes) with old bytes at `oldpos` into `dst`; returns bytes done (> 0).
    fn mix(&mut self, src: &[u8], dst: &mut [u8], old: &mut impl ReadAt) -> Result<usize, Error> {
        let cache_end = self.cache_off + self.cache_len as u64;
        if self.oldpos < self.cache_off || self.oldpos >= cache_end {
            // Refill at oldpos with no more than the mix still needs, so a short read is an error.
            let want = self.mix_left.min(SCRATCH);
            self.cache_len = 0;
            let got = match old.read_at(self.oldpos, &mut self.cache[..want]) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(e)),
            };
            if got != want {
                return Err(self.fail(Error::OldRead));
            }
            self.cache_off = self.oldpos;
            self.cache_len = got;
        }
        let at = (self.oldpos - self.cache_off) as usize;
        let avail = self.cache.get(at..self.cache_len).unwrap_or(&[]);
        let n = avail.len().min(src.len()).min(dst.len());
        for ((d, s), o) in dst.iter_mut().zip(src).zip(avail).take(n) {
            *d = s.wrapping_add(*o);
        }
        if n == 0 {
            return Err(self.fail(Error::OldRead));
        }
        self.oldpos += n as u64;
        Ok(n)
    }
}

/// One-shot bspatch of whole buffers: `out.len()` is the declared new size.
///
/// ```
/// let mut out = [0u8; 0];
/// ota_core::apply_patch(b"old", &[], &mut out).unwrap();
/// ```
pub fn apply_patch(old: &[u8], patch: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let mut p = Patcher::new(out.len() as u64);
    let mut reader: &[u8] = old;
    p.finish_input();
    let r = p.patch(patch, &mut reader, out)?;
    match r.status {
        Status::Done => Ok(()),
        _ => Err(Error::PatchTooLong),
    }
}
