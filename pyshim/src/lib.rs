//! CPython extension `ota_native` (PyO3): the API of `ota_native.pyi` over
//! `ota_core::stream`'s pull adapters. This crate only converts: Python
//! objects become `Source`/`ReadAt`, core errors become exceptions through
//! [`to_py_err`], and output is copied into the caller's writable buffer.
use ota_core::bspatch::SCRATCH;
use ota_core::{Error, Format, ReadAt, Source, IN_BUF};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// The one error mapping: a callback's own exception if it raised one
/// (core reports `Error::Source`), else `ValueError(message)`.
fn to_py_err(e: Error, raised: &mut Option<PyErr>) -> PyErr {
    match (e, raised.take()) {
        (Error::Source, Some(err)) => err,
        _ => PyValueError::new_err(e.message()),
    }
}

fn value_error(e: Error) -> PyErr {
    to_py_err(e, &mut None)
}

/// Bytes of any contiguous buffer object (bytes without a copy).
fn with_bytes<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    let buf = PyBuffer::<u8>::get(obj)?;
    Ok(f(&buf.to_vec(obj.py())?))
}

/// `n` argument of readinto/update: negative means all; larger is clamped (slice semantics).
fn limit(n: isize, len: usize) -> usize {
    if n < 0 {
        len
    } else {
        (n as usize).min(len)
    }
}

/// Call `obj.readinto(ba)` and return the count (None counts as 0).
fn call_readinto(obj: &Bound<'_, PyAny>, ba: &Bound<'_, PyByteArray>) -> PyResult<usize> {
    let r = obj.call_method1("readinto", (ba,))?;
    if r.is_none() {
        return Ok(0);
    }
    let n: isize = r.extract()?;
    if n < 0 || n as usize > ba.len() {
        return Err(PyValueError::new_err("readinto returned a bad count"));
    }
    Ok(n as usize)
}

fn copy_out(ba: &Bound<'_, PyByteArray>, dst: &mut [u8]) {
    let data = ba.to_vec();
    let n = data.len().min(dst.len());
    dst[..n].copy_from_slice(&data[..n]);
}

/// A Python object with `readinto(buf)` as the core's `Source`.
struct PySource<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    ba: &'a Bound<'py, PyByteArray>,
    raised: &'a mut Option<PyErr>,
}

impl Source for PySource<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        match call_readinto(self.obj, self.ba) {
            Ok(n) => {
                let n = n.min(buf.len());
                copy_out(self.ba, &mut buf[..n]);
                Ok(n)
            }
            Err(e) => {
                *self.raised = Some(e);
                Err(Error::Source)
            }
        }
    }
}

/// A Python object with `seek(offset)` + `readinto(buf)` as the core's `ReadAt`.
struct PyOld<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    ba: &'a Bound<'py, PyByteArray>,
    raised: &'a mut Option<PyErr>,
}

impl PyOld<'_, '_> {
    fn try_read(&mut self, offset: u64, buf: &mut [u8]) -> PyResult<usize> {
        let mut got = 0;
        while got < buf.len() {
            self.obj.call_method1("seek", (offset + got as u64,))?;
            let n = call_readinto(self.obj, self.ba)?;
            if n == 0 {
                break;
            }
            let n = n.min(buf.len() - got);
            copy_out(self.ba, &mut buf[got..got + n]);
            got += n;
        }
        Ok(got)
    }
}

impl ReadAt for PyOld<'_, '_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.try_read(offset, buf).map_err(|e| {
            *self.raised = Some(e);
            Error::Source
        })
    }
}

/// Run `f` on a scratch of `n` bytes, then copy its result into `buf[:n]`.
fn fill_buffer(
    py: Python<'_>,
    buf: &Bound<'_, PyAny>,
    n: isize,
    scratch: &mut Vec<u8>,
    f: impl FnOnce(&mut [u8]) -> PyResult<usize>,
) -> PyResult<usize> {
    let _ = py;
    let pybuf = PyBuffer::<u8>::get(buf)?;
    if pybuf.readonly() || !pybuf.is_c_contiguous() {
        return Err(PyTypeError::new_err("readinto needs a writable contiguous buffer"));
    }
    let n = limit(n, pybuf.item_count());
    if scratch.len() < n {
        scratch.resize(n, 0);
    }
    let got = f(&mut scratch[..n])?.min(n);
    // Safety: `pybuf` holds a buffer export, so the object can be neither
    // resized nor freed while it lives; it is writable and C-contiguous
    // (checked above) with at least `n >= got` bytes; we hold the GIL and no
    // Python code runs between the callbacks above and this copy.
    unsafe { std::ptr::copy_nonoverlapping(scratch.as_ptr(), pybuf.buf_ptr() as *mut u8, got) };
    Ok(got)
}

fn format_arg(format: i32) -> PyResult<Format> {
    Format::from_code(format).ok_or_else(|| value_error(Error::BadFormat))
}

fn wbits_arg(wbits: i32) -> PyResult<u8> {
    match u8::try_from(wbits) {
        Ok(w) if ota_core::window_len(w) > 0 => Ok(w),
        _ => Err(value_error(Error::BadWindow)),
    }
}

/// Declared sizes are ints in 0..2**30 on every binding (the natmod takes only small ints, which
/// are below 2**30 on armv6m); anything else is ValueError, never OverflowError.
const SIZE_LIMIT: i64 = 1 << 30;

fn size_arg(size: &Bound<'_, PyAny>) -> PyResult<u64> {
    match size.extract::<i64>() {
        Ok(n) if (0..SIZE_LIMIT).contains(&n) => Ok(n as u64),
        Err(e) if !e.is_instance_of::<pyo3::exceptions::PyOverflowError>(size.py()) => Err(e),
        _ => Err(value_error(Error::BadArgument)),
    }
}

fn hexstr(d: &[u8; 20]) -> String {
    ota_core::hex(d).as_str().to_string()
}

/// Streaming Git-blob SHA1: sha1(b"blob <size>\0" + content).
#[pyclass(module = "ota_native")]
struct BlobHasher(ota_core::BlobHasher);

#[pymethods]
impl BlobHasher {
    #[new]
    fn new(size: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(BlobHasher(ota_core::BlobHasher::new(size_arg(size)?)))
    }

    #[pyo3(signature = (buf, n = -1))]
    fn update(&mut self, buf: &Bound<'_, PyAny>, n: isize) -> PyResult<()> {
        with_bytes(buf, |b| self.0.update(&b[..limit(n, b.len())]))?.map_err(value_error)
    }

    fn digest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.0.digest().map_err(value_error)?;
        Ok(PyBytes::new(py, &d))
    }

    fn hexdigest(&self) -> PyResult<String> {
        Ok(hexstr(&self.0.digest().map_err(value_error)?))
    }
}

/// Streaming inflate of `source` with a window of 2**wbits bytes.
#[pyclass(module = "ota_native")]
struct InflateReader {
    core: Box<ota_core::InflateReader>,
    window: Vec<u8>,
    scratch: Vec<u8>,
    source: Py<PyAny>,
    inbuf: Py<PyByteArray>,
    raised: Option<PyErr>,
}

#[pymethods]
impl InflateReader {
    #[new]
    #[pyo3(signature = (source, format = 2, wbits = 15))]
    fn new(py: Python<'_>, source: Py<PyAny>, format: i32, wbits: i32) -> PyResult<Self> {
        let (format, wbits) = (format_arg(format)?, wbits_arg(wbits)?);
        let mut core = Box::new(ota_core::InflateReader::new());
        core.init(format, wbits).map_err(value_error)?;
        Ok(InflateReader {
            core,
            window: vec![0; ota_core::window_len(wbits)],
            scratch: Vec::new(),
            source,
            inbuf: PyByteArray::new_with(py, IN_BUF, |_| Ok(()))?.unbind(),
            raised: None,
        })
    }

    #[pyo3(signature = (buf, n = -1))]
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>, n: isize) -> PyResult<usize> {
        let Self { core, window, scratch, source, inbuf, raised } = self;
        fill_buffer(py, buf, n, scratch, |out| {
            let mut src = PySource { obj: source.bind(py), ba: inbuf.bind(py), raised };
            let r = core.read_into(&mut src, window, out);
            r.map_err(|e| to_py_err(e, raised))
        })
    }
}

/// The Python side of a reader with a patch source and an old file (PatchReader, DeltaReader).
struct PatchIo {
    source: Py<PyAny>,
    old: Py<PyAny>,
    inbuf: Py<PyByteArray>,
    oldbuf: Py<PyByteArray>,
    raised: Option<PyErr>,
}

impl PatchIo {
    fn new(py: Python<'_>, source: Py<PyAny>, old: Py<PyAny>) -> PyResult<Self> {
        Ok(PatchIo {
            source,
            old,
            inbuf: PyByteArray::new_with(py, IN_BUF, |_| Ok(()))?.unbind(),
            oldbuf: PyByteArray::new_with(py, SCRATCH, |_| Ok(()))?.unbind(),
            raised: None,
        })
    }

    /// Runs a core call with the source and the old file as callbacks; a Python exception
    /// raised by either is kept and re-raised in place of the core's Error::Source.
    fn call<R>(&mut self, py: Python<'_>, f: impl FnOnce(&mut PySource, &mut PyOld) -> Result<R, Error>) -> PyResult<R> {
        let (mut src_raised, mut old_raised) = (None, None);
        let r = {
            let mut src = PySource { obj: self.source.bind(py), ba: self.inbuf.bind(py), raised: &mut src_raised };
            let mut o = PyOld { obj: self.old.bind(py), ba: self.oldbuf.bind(py), raised: &mut old_raised };
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
    scratch: Vec<u8>,
    io: PatchIo,
}

#[pymethods]
impl PatchReader {
    #[new]
    fn new(py: Python<'_>, source: Py<PyAny>, old: Py<PyAny>, new_size: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PatchReader {
            core: Box::new(ota_core::PatchReader::new(size_arg(new_size)?)),
            scratch: Vec::new(),
            io: PatchIo::new(py, source, old)?,
        })
    }

    #[pyo3(signature = (buf, n = -1))]
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>, n: isize) -> PyResult<usize> {
        let Self { core, scratch, io } = self;
        fill_buffer(py, buf, n, scratch, |out| io.call(py, |src, old| core.read_into(src, old, out)))
    }
}

/// One-pass delta pipeline: compressed patch -> inflate -> bspatch -> SHA1 -> buffer.
#[pyclass(module = "ota_native")]
struct DeltaReader {
    core: Box<ota_core::DeltaReader>,
    window: Vec<u8>,
    scratch: Vec<u8>,
    io: PatchIo,
}

#[pymethods]
impl DeltaReader {
    #[new]
    #[pyo3(signature = (source, old, new_size, format = 1, wbits = 12))]
    fn new(py: Python<'_>, source: Py<PyAny>, old: Py<PyAny>, new_size: &Bound<'_, PyAny>, format: i32, wbits: i32) -> PyResult<Self> {
        let (format, wbits, size) = (format_arg(format)?, wbits_arg(wbits)?, size_arg(new_size)?);
        let mut core = Box::new(ota_core::DeltaReader::new());
        core.init(size, format, wbits).map_err(value_error)?;
        Ok(DeltaReader {
            core,
            window: vec![0; ota_core::window_len(wbits)],
            scratch: Vec::new(),
            io: PatchIo::new(py, source, old)?,
        })
    }

    #[pyo3(signature = (buf, n = -1))]
    fn readinto(&mut self, py: Python<'_>, buf: &Bound<'_, PyAny>, n: isize) -> PyResult<usize> {
        let Self { core, window, scratch, io } = self;
        fill_buffer(py, buf, n, scratch, |out| io.call(py, |src, old| core.read_into(src, old, window, out)))
    }

    fn digest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let d = self.core.digest().map_err(value_error)?;
        Ok(PyBytes::new(py, &d))
    }

    fn hexdigest(&self) -> PyResult<String> {
        Ok(hexstr(&self.core.digest().map_err(value_error)?))
    }
}

/// bsdiff patch (the `bsdiff` crate's format), uncompressed. Host only.
#[pyfunction]
fn make_patch<'py>(py: Python<'py>, old: &Bound<'py, PyAny>, new: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let old = with_bytes(old, |b| b.to_vec())?;
    let new = with_bytes(new, |b| b.to_vec())?;
    let mut patch = Vec::new();
    py.detach(|| bsdiff::diff(&old, &new, &mut patch)).map_err(|e| PyValueError::new_err(e.to_string()))?;
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
#[pyfunction]
#[pyo3(signature = (data, level = 9, wbits = 15, format = 2))]
fn deflate<'py>(py: Python<'py>, data: &Bound<'py, PyAny>, level: i32, wbits: i32, format: i32) -> PyResult<Bound<'py, PyBytes>> {
    let (format, wbits) = (format_arg(format)?, wbits_arg(wbits)?);
    if !(0..=10).contains(&level) {
        return Err(PyValueError::new_err("level must be 0..10"));
    }
    let data = with_bytes(data, |b| b.to_vec())?;
    let raw = py.detach(|| deflate_raw(&data, level as u8, wbits));
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
    m.add("RAW", 1)?;
    m.add("ZLIB", 2)?;
    m.add("GZIP", 3)?;
    m.add_class::<BlobHasher>()?;
    m.add_class::<InflateReader>()?;
    m.add_class::<PatchReader>()?;
    m.add_class::<DeltaReader>()?;
    m.add_function(wrap_pyfunction!(make_patch, m)?)?;
    m.add_function(wrap_pyfunction!(deflate, m)?)?;
    Ok(())
}
