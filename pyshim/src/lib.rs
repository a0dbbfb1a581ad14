//! CPython extension `ota_native` (PyO3): the API of `ota_native.pyi` over
//! `ota_core::stream`'s pull adapters. This crate only converts, as the natmod's C glue does:
//! arguments are bound and checked by the core ([`ota_core::api`]: the same names, defaults,
//! counts and checks as the natmod), Python objects become `Source`/`ReadAt`, every failure
//! is the core's [`Error`] raised through [`py_err`] (its exception and message), and output
//! is copied into the caller's buffer. No `unsafe` here: buffers are copied through PyO3's safe
//! `PyBuffer` methods.
#![forbid(unsafe_code)]

use ota_core::api::{self, Binder, Call, Int, ABSENT, BUF, FORMAT, N, NOT_INT, OLD, PUBLIC_KEY, SIGNATURE, SIZE, SLOTS, SOURCE, WBITS};
use ota_core::bspatch::SCRATCH;
use ota_core::{Error, Exception, Format, ReadAt, Source, IN_BUF};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyTuple};

/// The core's exception for `e`, with its fixed message.
fn py_err(e: Error) -> PyErr {
    match e.exception() {
        Exception::TypeError => PyTypeError::new_err(e.message()),
        Exception::ValueError => PyValueError::new_err(e.message()),
    }
}

/// A callback's own exception if it raised one (the core reports `Error::Source`), else [`py_err`].
fn to_py_err(e: Error, raised: &mut Option<PyErr>) -> PyErr {
    match (e, raised.take()) {
        (Error::Source, Some(err)) => err,
        _ => py_err(e),
    }
}

// ---- arguments: the core binds and checks them -----------------------------------------

/// An int argument as the core takes it ([`api::Int`]): exact ints only, as in the natmod
/// (a bool or an object with `__index__` is [`NOT_INT`]).
fn int_arg(o: Option<&Bound<'_, PyAny>>) -> Int {
    match o {
        None => ABSENT,
        Some(o) if !o.is_exact_instance_of::<PyInt>() => NOT_INT,
        Some(o) => api::int(o.extract::<i64>().ok()),
    }
}

type Slots<'py> = [Option<Bound<'py, PyAny>>; SLOTS];

/// The arguments of `call` bound to their slots by the core's [`Binder`]: positional ones first,
/// then keywords in call order (as the natmod gets them).
fn bind<'py>(call: Call, args: &Bound<'py, PyTuple>, kwargs: Option<&Bound<'py, PyDict>>) -> PyResult<Slots<'py>> {
    let mut b = Binder::new(call, kwargs.map_or(0, |k| k.len())).map_err(py_err)?;
    let mut slots: Slots<'py> = Default::default();
    for (i, v) in args.iter().enumerate() {
        slots[b.positional(i).map_err(py_err)?] = Some(v);
    }
    for (k, v) in kwargs.into_iter().flatten() {
        slots[b.keyword(&k.extract::<String>()?).map_err(py_err)?] = Some(v);
    }
    b.finish().map_err(py_err)?;
    Ok(slots)
}

/// A constructor's checked ints (size, format, wbits) with the core's defaults.
fn new_args(call: Call, s: &Slots<'_>) -> PyResult<api::NewArgs> {
    api::new_args(call, int_arg(s[SIZE].as_ref()), int_arg(s[FORMAT].as_ref()), int_arg(s[WBITS].as_ref())).map_err(py_err)
}

/// The bytes of a buffer as one of MicroPython's: a C-contiguous buffer of any item type, seen
/// as its bytes; [`Error::NotBuffer`] for anything else (a str too), or unless writable when asked.
fn byte_buffer(o: &Bound<'_, PyAny>, writable: bool) -> PyResult<PyBuffer<u8>> {
    let view = PyMemoryView::from(o).and_then(|m| m.call_method1("cast", ("B",)));
    match view.and_then(|v| PyBuffer::<u8>::get(&v)) {
        Ok(b) if !(writable && b.readonly()) => Ok(b),
        _ => Err(py_err(Error::NotBuffer)),
    }
}

/// Bytes of any buffer object (bytes without a copy).
fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    let buf = byte_buffer(obj, false)?;
    Ok(f(&buf.to_vec(obj.py())?))
}

/// Calls `readinto(ba)` with `ba` sized to `n` bytes (the natmod passes a view of exactly the
/// bytes asked for); its result as an [`api::Int`] (None: [`ABSENT`]) for [`api::read_count`].
fn call_readinto(meth: &Bound<'_, PyAny>, ba: &Bound<'_, PyByteArray>, n: usize) -> PyResult<Int> {
    if ba.len() != n {
        ba.resize(n)?;
    }
    let r = meth.call1((ba,))?;
    Ok(if r.is_none() { ABSENT } else { int_arg(Some(&r)) })
}

fn copy_out(ba: &Bound<'_, PyByteArray>, dst: &mut [u8]) {
    let data = ba.to_vec();
    let n = data.len().min(dst.len());
    dst[..n].copy_from_slice(&data[..n]);
}

// ---- callbacks ------------------------------------------------------------------------------

/// A source's bound `readinto` as the core's `Source`.
struct PySource<'a, 'py> {
    readinto: &'a Bound<'py, PyAny>,
    ba: &'a Bound<'py, PyByteArray>,
    raised: &'a mut Option<PyErr>,
}

impl Source for PySource<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match call_readinto(self.readinto, self.ba, buf.len()) {
            Ok(r) => {
                let k = api::read_count(r, buf.len())?;
                copy_out(self.ba, &mut buf[..k]);
                Ok(k)
            }
            Err(e) => {
                *self.raised = Some(e);
                Err(Error::Source)
            }
        }
    }
}

/// The old file's bound `seek` and `readinto` as the core's `ReadAt`; like the natmod, it seeks
/// only when the file is not already at the offset (`pos`: where it is, None = unknown).
struct PyOld<'a, 'py> {
    seek: &'a Bound<'py, PyAny>,
    readinto: &'a Bound<'py, PyAny>,
    ba: &'a Bound<'py, PyByteArray>,
    pos: &'a mut Option<u64>,
    raised: &'a mut Option<PyErr>,
}

impl ReadAt for PyOld<'_, '_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        // readinto may return short counts: read until full or end of file.
        let mut got = 0;
        while got < buf.len() {
            let at = offset + got as u64;
            let rest = buf.len() - got;
            let r = match *self.pos {
                Some(p) if p == at => Ok(()),
                _ => self.seek.call1((at,)).map(drop),
            }
            .and_then(|()| call_readinto(self.readinto, self.ba, rest));
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    *self.pos = None;
                    *self.raised = Some(e);
                    return Err(Error::Source);
                }
            };
            // As the natmod: a negative result leaves the position unknown (a bad count latches).
            *self.pos = if r < 0 { None } else { Some(at.wrapping_add(r as u64)) };
            match api::read_count(r, rest)? {
                0 => break,
                k => {
                    copy_out(self.ba, &mut buf[got..got + k]);
                    got += k;
                }
            }
        }
        Ok(got)
    }
}

/// `readinto(buf, n=-1, /)`: binds and checks the arguments (the natmod's order: arguments,
/// buffer, busy, n), then runs `f` on a scratch of `n` bytes and copies its result into `buf`.
fn readinto_call<T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::False>>(
    slf: &Bound<'_, T>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    f: impl FnOnce(&mut T, Python<'_>, &mut [u8]) -> PyResult<usize>,
) -> PyResult<usize> {
    let py = slf.py();
    let s = bind(Call::Readinto, args, kwargs)?;
    let target = byte_buffer(s[BUF].as_ref().expect("bound"), true)?;
    let mut this = slf.try_borrow_mut().map_err(|_| py_err(Error::BadArgument))?;
    let n = api::count(int_arg(s[N].as_ref()), target.item_count()).map_err(py_err)?;
    let mut scratch = vec![0u8; n];
    let got = f(&mut this, py, &mut scratch)?.min(n);
    if got > 0 {
        // PyBuffer copies whole buffers: read it, put the output in front, write it back.
        let mut whole = target.to_vec(py)?;
        whole[..got].copy_from_slice(&scratch[..got]);
        target.copy_from_slice(py, &whole)?;
    }
    Ok(got)
}

/// `digest()` / `hexdigest()`: no arguments (the core counts them), then the digest.
fn digest_call<T: pyo3::PyClass>(
    slf: &Bound<'_, T>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    f: impl FnOnce(&T) -> Result<[u8; 20], Error>,
) -> PyResult<[u8; 20]> {
    bind(Call::Digest, args, kwargs)?;
    let this = slf.try_borrow().map_err(|_| py_err(Error::BadArgument))?;
    f(&this).map_err(py_err)
}

fn hexstr(d: &[u8; 20]) -> String {
    ota_core::hex(d).as_str().to_string()
}

// ---- the classes ----------------------------------------------------------------------------

/// Streaming Git-blob SHA1: sha1(b"blob <size>\0" + content).
#[pyclass(module = "ota_native")]
struct BlobHasher(ota_core::BlobHasher);

#[pymethods]
impl BlobHasher {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(size)")]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let a = new_args(Call::BlobHasher, &bind(Call::BlobHasher, args, kwargs)?)?;
        Ok(BlobHasher(ota_core::BlobHasher::new(a.size)))
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, buf, n=-1, /)")]
    fn update(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let s = bind(Call::Update, args, kwargs)?;
        let buf = s[BUF].as_ref().expect("bound");
        // A str has a (read) buffer on MicroPython only: refused on both.
        let data = with_bytes(buf, |b| b.to_vec())?;
        let mut this = slf.try_borrow_mut().map_err(|_| py_err(Error::BadArgument))?;
        let n = api::count(int_arg(s[N].as_ref()), data.len()).map_err(py_err)?;
        this.0.update(&data[..n]).map_err(py_err)
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, /)")]
    fn digest<'py>(slf: &Bound<'py, Self>, args: &Bound<'py, PyTuple>, kwargs: Option<&Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyBytes>> {
        let d = digest_call(slf, args, kwargs, |h| h.0.digest())?;
        Ok(PyBytes::new(slf.py(), &d))
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, /)")]
    fn hexdigest(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        Ok(hexstr(&digest_call(slf, args, kwargs, |h| h.0.digest())?))
    }
}

/// The bound `readinto` of a source (an AttributeError here, as in the natmod's constructor).
fn source_of<'py>(s: &Slots<'py>) -> PyResult<Py<PyAny>> {
    Ok(s[SOURCE].as_ref().expect("bound").getattr("readinto")?.unbind())
}

/// Streaming inflate of `source` with a window of 2**wbits bytes.
#[pyclass(module = "ota_native")]
struct InflateReader {
    core: Box<ota_core::InflateReader>,
    window: Vec<u8>,
    readinto: Py<PyAny>,
    inbuf: Py<PyByteArray>,
    raised: Option<PyErr>,
}

#[pymethods]
impl InflateReader {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(source, format=ZLIB, wbits=15)")]
    fn new(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let s = bind(Call::InflateReader, args, kwargs)?;
        let a = new_args(Call::InflateReader, &s)?;
        let mut core = Box::new(ota_core::InflateReader::new());
        core.init(a.format, a.wbits).map_err(py_err)?;
        Ok(InflateReader {
            core,
            window: vec![0; ota_core::window_len(a.wbits)],
            readinto: source_of(&s)?,
            inbuf: PyByteArray::new_with(py, IN_BUF, |_| Ok(()))?.unbind(),
            raised: None,
        })
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, buf, n=-1, /)")]
    fn readinto(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<usize> {
        readinto_call(slf, args, kwargs, |this, py, out| {
            let Self { core, window, readinto, inbuf, raised } = this;
            let mut src = PySource { readinto: readinto.bind(py), ba: inbuf.bind(py), raised };
            let r = core.read_into(&mut src, window, out);
            r.map_err(|e| to_py_err(e, raised))
        })
    }
}

/// The Python side of a reader with a patch source and an old file (PatchReader, DeltaReader).
struct PatchIo {
    readinto: Py<PyAny>,
    old_seek: Py<PyAny>,
    old_readinto: Py<PyAny>,
    inbuf: Py<PyByteArray>,
    oldbuf: Py<PyByteArray>,
    old_pos: Option<u64>,
    raised: Option<PyErr>,
}

impl PatchIo {
    /// The bound methods, in the natmod's order: source.readinto, old.seek, old.readinto.
    fn new(py: Python<'_>, s: &Slots<'_>) -> PyResult<Self> {
        let old = s[OLD].as_ref().expect("bound");
        Ok(PatchIo {
            readinto: source_of(s)?,
            old_seek: old.getattr("seek")?.unbind(),
            old_readinto: old.getattr("readinto")?.unbind(),
            inbuf: PyByteArray::new_with(py, IN_BUF, |_| Ok(()))?.unbind(),
            oldbuf: PyByteArray::new_with(py, SCRATCH, |_| Ok(()))?.unbind(),
            old_pos: None,
            raised: None,
        })
    }

    /// Runs a core call with the source and the old file as callbacks; a Python exception
    /// raised by either is kept and re-raised in place of the core's Error::Source.
    fn call<R>(&mut self, py: Python<'_>, f: impl FnOnce(&mut PySource, &mut PyOld) -> Result<R, Error>) -> PyResult<R> {
        let (mut src_raised, mut old_raised) = (None, None);
        let r = {
            let mut src = PySource { readinto: self.readinto.bind(py), ba: self.inbuf.bind(py), raised: &mut src_raised };
            let mut o = PyOld {
                seek: self.old_seek.bind(py),
                readinto: self.old_readinto.bind(py),
                ba: self.oldbuf.bind(py),
                pos: &mut self.old_pos,
                raised: &mut old_raised,
            };
            f(&mut src, &mut o)
        };
        if let Some(e) = src_raised.or(old_raised) {
            self.raised = Some(e);
        }
        r.map_err(|e| to_py_err(e, &mut self.raised))
    }
}

/// Streaming bspatch (format of the `bsdiff` crate) of an uncompressed patch.
#[pyclass(module = "ota_native")]
struct PatchReader {
    core: Box<ota_core::PatchReader>,
    io: PatchIo,
}

#[pymethods]
impl PatchReader {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(source, old, new_size)")]
    fn new(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let s = bind(Call::PatchReader, args, kwargs)?;
        let a = new_args(Call::PatchReader, &s)?;
        Ok(PatchReader { core: Box::new(ota_core::PatchReader::new(a.size)), io: PatchIo::new(py, &s)? })
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, buf, n=-1, /)")]
    fn readinto(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<usize> {
        readinto_call(slf, args, kwargs, |this, py, out| {
            let Self { core, io } = this;
            io.call(py, |src, old| core.read_into(src, old, out))
        })
    }
}

/// One-pass delta pipeline: compressed patch -> inflate -> bspatch -> SHA1 -> buffer.
#[pyclass(module = "ota_native")]
struct DeltaReader {
    core: Box<ota_core::DeltaReader>,
    window: Vec<u8>,
    io: PatchIo,
}

#[pymethods]
impl DeltaReader {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(source, old, new_size, format=RAW, wbits=12)")]
    fn new(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let s = bind(Call::DeltaReader, args, kwargs)?;
        let a = new_args(Call::DeltaReader, &s)?;
        let mut core = Box::new(ota_core::DeltaReader::new());
        core.init(a.size, a.format, a.wbits).map_err(py_err)?;
        Ok(DeltaReader { core, window: vec![0; ota_core::window_len(a.wbits)], io: PatchIo::new(py, &s)? })
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, buf, n=-1, /)")]
    fn readinto(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<usize> {
        readinto_call(slf, args, kwargs, |this, py, out| {
            let Self { core, window, io } = this;
            io.call(py, |src, old| core.read_into(src, old, window, out))
        })
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, /)")]
    fn digest<'py>(slf: &Bound<'py, Self>, args: &Bound<'py, PyTuple>, kwargs: Option<&Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyBytes>> {
        let d = digest_call(slf, args, kwargs, |r| r.core.digest())?;
        Ok(PyBytes::new(slf.py(), &d))
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, /)")]
    fn hexdigest(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<String> {
        Ok(hexstr(&digest_call(slf, args, kwargs, |r| r.core.digest())?))
    }
}

/// Streaming Ed25519 verification (RFC 8032, strict: S < L, no small-order key or R): the
/// natmod's `ota_ed25519.Verifier`.
#[pyclass(module = "ota_native")]
struct Verifier(ota_core::sign::Verifier);

#[pymethods]
impl Verifier {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(public_key, signature)")]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let s = bind(Call::Verifier, args, kwargs)?;
        // As the natmod: both buffers checked, then the core checks their bytes.
        let key = with_bytes(s[PUBLIC_KEY].as_ref().expect("bound"), |b| b.to_vec())?;
        let sig = with_bytes(s[SIGNATURE].as_ref().expect("bound"), |b| b.to_vec())?;
        ota_core::sign::Verifier::new(&key, &sig).map(Verifier).map_err(py_err)
    }

    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, buf, n=-1, /)")]
    fn update(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<()> {
        let s = bind(Call::Update, args, kwargs)?;
        let data = with_bytes(s[BUF].as_ref().expect("bound"), |b| b.to_vec())?;
        let mut this = slf.try_borrow_mut().map_err(|_| py_err(Error::BadArgument))?;
        let n = api::count(int_arg(s[N].as_ref()), data.len()).map_err(py_err)?;
        this.0.update(&data[..n]).map_err(py_err)
    }

    /// True when the signature is valid for the bytes fed; else the core's ValueError.
    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, /)")]
    fn verify(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<bool> {
        bind(Call::Verify, args, kwargs)?;
        let mut this = slf.try_borrow_mut().map_err(|_| py_err(Error::BadArgument))?;
        this.0.verify().map(|()| true).map_err(py_err)
    }
}

// ---- host only --------------------------------------------------------------------------------

/// The Ed25519 public key (32 bytes) of a private key (its 32-byte seed, RFC 8032). Host only.
#[pyfunction]
fn ed25519_public_key<'py>(py: Python<'py>, private_key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let seed = with_bytes(private_key, |b| b.to_vec())?;
    Ok(PyBytes::new(py, &ota_core::sign::public_key(&seed).map_err(py_err)?))
}

/// The Ed25519 signature (64 bytes, R then S) of `message` by a private key (32-byte seed).
/// Deterministic (RFC 8032). Host only.
#[pyfunction]
fn ed25519_sign<'py>(py: Python<'py>, private_key: &Bound<'py, PyAny>, message: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let seed = with_bytes(private_key, |b| b.to_vec())?;
    let msg = with_bytes(message, |b| b.to_vec())?;
    Ok(PyBytes::new(py, &ota_core::sign::sign(&seed, &msg).map_err(py_err)?))
}

/// bsdiff patch (the `bsdiff` crate's format), uncompressed. Host only.
#[pyfunction]
fn make_patch<'py>(py: Python<'py>, old: &Bound<'py, PyAny>, new: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let old = with_bytes(old, |b| b.to_vec())?;
    let new = with_bytes(new, |b| b.to_vec())?;
    let mut patch = Vec::new();
    // Writes to a Vec do not fail.
    py.detach(|| bsdiff::diff(&old, &new, &mut patch)).map_err(|_| py_err(Error::Internal))?;
    Ok(PyBytes::new(py, &patch))
}

/// Raw deflate of `data` whose match distances stay below 2**wbits.
///
/// miniz_oxide has no window-size option (its window is 32 KiB), so for
/// wbits < 15 the compressor does a *full* flush (which empties its
/// dictionary) after every 2**wbits input bytes: no match can reach back past
/// the current 2**wbits-byte segment. Costs some ratio at small windows.
fn deflate_raw(data: &[u8], level: u8, wbits: u8) -> Vec<u8> {
    use miniz_oxide::deflate::core::{compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus};
    let flags = create_comp_flags_from_zip_params(level.into(), -15, 0);
    let mut c = CompressorOxide::new(flags);
    let seg = if wbits >= 15 { data.len().max(1) } else { 1usize << wbits };
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunks: Vec<&[u8]> = data.chunks(seg).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let flush = if i == last { TDEFLFlush::Finish } else { TDEFLFlush::Full };
        let mut input = chunk;
        loop {
            let (status, used, written) = compress(&mut c, input, &mut buf, flush);
            out.extend_from_slice(&buf[..written]);
            input = &input[used..];
            match status {
                TDEFLStatus::Done => break,
                TDEFLStatus::Okay if input.is_empty() && written < buf.len() => break,
                TDEFLStatus::Okay => {}
                _ => break,
            }
        }
    }
    out
}

/// Compress with miniz_oxide, window 2**wbits (8..15), as RAW, ZLIB or GZIP. Host only.
/// The defaults and checks are the core's ([`api::deflate_args`]).
#[pyfunction]
#[pyo3(signature = (data, level = None, wbits = None, format = None), text_signature = "(data, level=9, wbits=15, format=ZLIB)")]
fn deflate<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    level: Option<&Bound<'py, PyAny>>,
    wbits: Option<&Bound<'py, PyAny>>,
    format: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let (level, wbits, format) = api::deflate_args(int_arg(level), int_arg(wbits), int_arg(format)).map_err(py_err)?;
    let data = with_bytes(data, |b| b.to_vec())?;
    let raw = py.detach(|| deflate_raw(&data, level, wbits));
    let out = match format {
        Format::Raw => raw,
        Format::Zlib => {
            // CMF: deflate, CINFO = wbits - 8; FLG: FLEVEL 2 (default), FCHECK.
            let cmf = ((wbits - 8) << 4) | 8;
            let mut flg: u8 = 2 << 6;
            flg += (31 - ((cmf as u16 * 256 + flg as u16) % 31) as u8) % 31;
            let mut v = vec![cmf, flg];
            v.extend_from_slice(&raw);
            v.extend_from_slice(&ota_core::inflate::adler32(1, &data).to_be_bytes());
            v
        }
        Format::Gzip => {
            let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
            v.extend_from_slice(&raw);
            v.extend_from_slice(&ota_core::inflate::crc32(0, &data).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v
        }
    };
    Ok(PyBytes::new(py, &out))
}

#[pymodule]
fn ota_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RAW", Format::Raw as u8)?;
    m.add("ZLIB", Format::Zlib as u8)?;
    m.add("GZIP", Format::Gzip as u8)?;
    m.add_class::<BlobHasher>()?;
    m.add_class::<InflateReader>()?;
    m.add_class::<PatchReader>()?;
    m.add_class::<DeltaReader>()?;
    m.add_class::<Verifier>()?;
    m.add_function(wrap_pyfunction!(ed25519_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(ed25519_sign, m)?)?;
    m.add_function(wrap_pyfunction!(make_patch, m)?)?;
    m.add_function(wrap_pyfunction!(deflate, m)?)?;
    Ok(())
}
