//! `ota_core`: the no_std core of `ota_native` (MicroPython natmod and PyO3 extension).
//!
//! - [`blob`]: streaming Git-blob SHA1 with a declared size.
//! - [`inflate`]: streaming raw/zlib/gzip inflate into a caller-owned window.
//! - [`bspatch`]: streaming bspatch (format of the `bsdiff` crate) with a random-access old file.
//! - [`pipeline`]: inflate -> bspatch -> SHA1 in one pass.
//! - [`stream`]: pull adapters (`read_into`) used by both bindings.
//! - [`error`]: the one error table (codes, messages, exception types).
//! - [`api`]: the Python API's arguments (names, defaults, checks) for both bindings.
//! - `sign` (feature `ed25519`): streaming Ed25519 verification, host signing.
//!
//! No allocator, no writable statics, no `unsafe`, no panics on any input:
//! errors are values and latch. Every state struct is valid when all-zero and
//! has an in-place `init`, so a binding can place it in memory it owns.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod api;
pub mod blob;
pub mod bspatch;
pub mod error;
pub mod inflate;
pub mod pipeline;
#[cfg(feature = "ed25519")]
pub mod sign;
pub mod stream;

#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

pub use blob::{blob_sha1, hex, BlobHasher, Hex};
pub use bspatch::{apply_patch, Patcher, ReadAt};
pub use error::{Error, Exception};
pub use inflate::{inflate_all, window_len, Format, Inflater, Progress, Status};
pub use pipeline::DeltaPipeline;
pub use stream::{DeltaReader, InflateReader, PatchReader, Source, IN_BUF};
