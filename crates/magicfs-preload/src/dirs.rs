//! Directory streams: `opendir`, `fdopendir`, `readdir`, `closedir`,
//! `dirfd`, `rewinddir`, `telldir`, `seekdir`. A store directory's `DIR *`
//! points to the shim's own stream (with a descriptor, for `dirfd`); the C
//! library's streams pass through.

use crate::state::{answer, file, install, posix, route, set_errno, uninstall, Route};
use magicfs_posix::DirStream;
use magicfs_types::FileKind;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_long};
use std::sync::atomic::{AtomicUsize, Ordering};

type Dir = *mut libc::DIR;

/// A store directory being read.
struct StoreDir {
    fd: c_int,
    stream: DirStream,
    entry: libc::dirent64,
}

/// Addresses of the streams that are the shim's.
static OURS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn ours(d: Dir) -> Option<&'static mut StoreDir> {
    if COUNT.load(Ordering::Acquire) == 0 || d.is_null() {
        return None;
    }
    let known = OURS.lock().as_ref().is_some_and(|s| s.contains(&(d as usize)));
    // SAFETY: the address was made by `adopt` from a live Box and is removed before it is freed.
    known.then(|| unsafe { &mut *(d as *mut StoreDir) })
}

fn adopt(fd: c_int, stream: DirStream) -> Dir {
    // SAFETY: plain old data; all-zero is a valid value.
    let entry: libc::dirent64 = unsafe { std::mem::zeroed() };
    let p = Box::into_raw(Box::new(StoreDir { fd, stream, entry })) as usize;
    OURS.lock().get_or_insert_with(HashSet::new).insert(p);
    COUNT.fetch_add(1, Ordering::Release);
    p as Dir
}

fn dt(kind: FileKind) -> u8 {
    match kind {
        FileKind::File => libc::DT_REG,
        FileKind::Dir => libc::DT_DIR,
        FileKind::Symlink => libc::DT_LNK,
        FileKind::Fifo => libc::DT_FIFO,
        FileKind::Socket => libc::DT_SOCK,
        FileKind::CharDev => libc::DT_CHR,
        FileKind::BlockDev => libc::DT_BLK,
    }
}

#[no_mangle]
pub unsafe extern "C" fn opendir(path: *const c_char) -> Dir {
    // SAFETY: the caller's path.
    match unsafe { route(libc::AT_FDCWD, path) } {
        Route::Store { base, path } => answer(std::ptr::null_mut(), || {
            let f = posix()?.open(base, &path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            let stream = f.list()?;
            let fd = install(f, true)?;
            Ok(adopt(fd, stream))
        }),
        Route::Host => forward!(opendir: fn(*const c_char) -> Dir, std::ptr::null_mut(), (path)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> Dir {
    match file(fd) {
        Some(f) => answer(std::ptr::null_mut(), || Ok(adopt(fd, f.list()?))),
        None => forward!(fdopendir: fn(c_int) -> Dir, std::ptr::null_mut(), (fd)),
    }
}

fn next(d: &mut StoreDir) -> *mut libc::dirent64 {
    let Some((pos, e)) = d.stream.next_entry() else { return std::ptr::null_mut() };
    let ent = &mut d.entry;
    ent.d_ino = e.ino;
    ent.d_off = pos as i64;
    ent.d_reclen = std::mem::size_of::<libc::dirent64>() as u16;
    ent.d_type = dt(e.kind);
    let n = e.name.len().min(ent.d_name.len() - 1);
    for (dst, src) in ent.d_name.iter_mut().zip(&e.name[..n]) {
        *dst = *src as c_char;
    }
    ent.d_name[n] = 0;
    ent
}

#[no_mangle]
pub unsafe extern "C" fn readdir(d: Dir) -> *mut libc::dirent {
    match ours(d) {
        Some(sd) => next(sd).cast(),
        None => forward!(readdir: fn(Dir) -> *mut libc::dirent, std::ptr::null_mut(), (d)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn readdir64(d: Dir) -> *mut libc::dirent64 {
    match ours(d) {
        Some(sd) => next(sd),
        None => forward!(readdir64: fn(Dir) -> *mut libc::dirent64, std::ptr::null_mut(), (d)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn closedir(d: Dir) -> c_int {
    if ours(d).is_none() {
        return forward!(closedir: fn(Dir) -> c_int, -1, (d));
    }
    if let Some(s) = OURS.lock().as_mut() {
        s.remove(&(d as usize));
    }
    COUNT.fetch_sub(1, Ordering::Release);
    // SAFETY: made by `adopt`; no longer listed, so never reached again.
    let sd = unsafe { Box::from_raw(d as *mut StoreDir) };
    answer(-1, || uninstall(sd.fd).map(|_| 0))
}

#[no_mangle]
pub unsafe extern "C" fn dirfd(d: Dir) -> c_int {
    match ours(d) {
        Some(sd) => sd.fd,
        None => forward!(dirfd: fn(Dir) -> c_int, -1, (d)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn rewinddir(d: Dir) {
    match ours(d) {
        Some(sd) => sd.stream.seek(0),
        None => {
            if let Some(f) = real!(rewinddir: fn(Dir) -> ()) {
                // SAFETY: forwarding the caller's stream.
                unsafe { f(d) }
            }
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn telldir(d: Dir) -> c_long {
    match ours(d) {
        Some(sd) => sd.stream.tell() as c_long,
        None => forward!(telldir: fn(Dir) -> c_long, -1, (d)),
    }
}

#[no_mangle]
pub unsafe extern "C" fn seekdir(d: Dir, pos: c_long) {
    match ours(d) {
        Some(sd) => sd.stream.seek(pos.max(0) as usize),
        None => {
            if let Some(f) = real!(seekdir: fn(Dir, c_long) -> ()) {
                // SAFETY: forwarding the caller's arguments.
                unsafe { f(d, pos) }
            }
        }
    }
}

/// `readdir_r` is deprecated and unused by current programs: store
/// directories answer `ENOTSUP`.
#[no_mangle]
pub unsafe extern "C" fn readdir_r(d: Dir, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int {
    if ours(d).is_some() {
        set_errno(libc::ENOTSUP);
        return libc::ENOTSUP;
    }
    forward!(readdir_r: fn(Dir, *mut libc::dirent, *mut *mut libc::dirent) -> c_int, libc::ENOSYS, (d, entry, result))
}
