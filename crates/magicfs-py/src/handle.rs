//! `Handle`: an open file of a store, behind `magicfs.File` (an
//! `io.RawIOBase`). Reads and writes run without the GIL, straight between
//! the caller's buffer and the filesystem.

use crate::errors::os_error;
use crate::shared::Live;
use crate::store::{read_bytes, stat_tuple, StatTuple};
use magicfs_posix::{FsError, OpenFile};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A caller's memory handed to a call made without the GIL: the buffer (or
/// fresh `bytes` object) stays alive and unresized for the whole call.
#[derive(Clone, Copy)]
pub struct RawBuf {
    ptr: usize,
    len: usize,
}

impl RawBuf {
    pub fn new(buf: &mut [u8]) -> RawBuf {
        RawBuf { ptr: buf.as_mut_ptr() as usize, len: buf.len() }
    }

    /// # Safety
    /// The memory is still alive and nothing else uses it meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.len) }
    }
}

/// An open file of a store.
#[pyclass(frozen, module = "magicfs._magicfs", name = "Handle")]
pub struct Handle {
    file: OpenFile,
    name: String,
    store: Arc<Live>,
    closed: AtomicBool,
    wrote: AtomicBool,
}

impl Handle {
    pub fn new(file: OpenFile, name: String, store: Arc<Live>) -> Handle {
        Handle { file, name, store, closed: AtomicBool::new(false), wrote: AtomicBool::new(false) }
    }

    fn live(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(PyValueError::new_err("I/O operation on closed file"));
        }
        Ok(())
    }

    fn err(&self) -> impl Fn(FsError) -> PyErr + '_ {
        move |e| os_error(e, &self.name)
    }
}

/// A writable, contiguous byte buffer of the caller's (`bytearray`,
/// `memoryview`, `array`, `numpy` …).
fn writable_buffer(b: &Bound<'_, PyAny>) -> PyResult<(PyBuffer<u8>, RawBuf)> {
    let buf =
        PyBuffer::<u8>::get(b).map_err(|_| PyTypeError::new_err("readinto() needs a writable bytes-like object"))?;
    if buf.readonly() || !buf.is_c_contiguous() {
        return Err(PyTypeError::new_err("readinto() needs a writable, contiguous bytes-like object"));
    }
    let raw = RawBuf { ptr: buf.buf_ptr() as usize, len: buf.len_bytes() };
    Ok((buf, raw))
}

#[pymethods]
impl Handle {
    /// The path it was opened with.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn readable(&self) -> bool {
        self.file.flags().read
    }

    fn writable(&self) -> bool {
        self.file.flags().write
    }

    /// Reads into `buffer` at the offset; returns the number of bytes read.
    fn readinto(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.live()?;
        let (_keep, raw) = writable_buffer(buffer)?;
        // SAFETY: `_keep` holds the buffer (and blocks resizing) until we return.
        py.detach(|| self.file.read(unsafe { raw.slice() })).map_err(self.err())
    }

    /// Reads up to `size` bytes (to the end for -1) at the offset.
    #[pyo3(signature = (size=-1))]
    fn read<'py>(&self, py: Python<'py>, size: i64) -> PyResult<Bound<'py, PyBytes>> {
        self.live()?;
        let pos = self.file.tell();
        let end = py.detach(|| self.file.stat()).map_err(self.err())?.size;
        let want = end.saturating_sub(pos).min(if size < 0 { u64::MAX } else { size as u64 });
        let len = usize::try_from(want).map_err(|_| os_error(FsError::FileTooBig, &self.name))?;
        if !self.file.flags().read {
            return Err(os_error(FsError::BadHandle, &self.name));
        }
        let out = read_bytes(py, self.file.fs(), self.file.ino(), pos, len).map_err(self.err())?;
        self.file.seek(pos as i64 + out.as_bytes().len() as i64, libc::SEEK_SET).map_err(self.err())?;
        Ok(out)
    }

    /// Writes a bytes-like object at the offset (the end with `O_APPEND`).
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.live()?;
        let buf = PyBuffer::<u8>::get(data).map_err(|_| PyTypeError::new_err("write() needs a bytes-like object"))?;
        if !buf.is_c_contiguous() {
            return Err(PyTypeError::new_err("write() needs a contiguous bytes-like object"));
        }
        let raw = RawBuf { ptr: buf.buf_ptr() as usize, len: buf.len_bytes() };
        self.wrote.store(true, Ordering::Relaxed);
        // SAFETY: `buf` holds the object's buffer until we return; it is only read.
        py.detach(|| self.file.write(unsafe { raw.slice() })).map_err(self.err())
    }

    /// Moves the offset (`whence`: 0 start, 1 current, 2 end, 3 data, 4 hole).
    #[pyo3(signature = (offset, whence=0))]
    fn seek(&self, offset: i64, whence: i32) -> PyResult<u64> {
        self.live()?;
        self.file.seek(offset, whence).map_err(self.err())
    }

    fn tell(&self) -> PyResult<u64> {
        self.live()?;
        Ok(self.file.tell())
    }

    /// Cuts or extends the file to `size` bytes.
    fn truncate(&self, py: Python<'_>, size: u64) -> PyResult<u64> {
        self.live()?;
        self.wrote.store(true, Ordering::Relaxed);
        py.detach(|| self.file.truncate(size)).map_err(self.err())?;
        Ok(size)
    }

    /// Commits what was written and makes the store durable (`os.fsync`).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.live()?;
        py.detach(|| self.file.sync()).map_err(self.err())
    }

    /// The attributes as the tuple `magicfs.Store.stat` uses.
    fn _fstat(&self, py: Python<'_>) -> PyResult<StatTuple> {
        self.live()?;
        Ok(stat_tuple(&py.detach(|| self.file.stat()).map_err(self.err())?))
    }

    /// Commits what was written and closes; a failed commit raises. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        py.detach(|| {
            let r = self.file.close();
            if self.wrote.load(Ordering::Relaxed) {
                self.store.note_written(self.file.ino());
            }
            r
        })
        .map_err(self.err())
    }
}
