//! Which files the server may read: those under its root directories.
//!
//! A requested path is refused when it has `..` components, and otherwise
//! resolved with every symlink followed; the result must still lie under a
//! root. A path outside the roots is refused whether or not it exists, so the
//! answer says nothing about files outside them. A path holding a NUL byte
//! is malformed (400).
//!
//! Only regular files are read: a FIFO, device or socket under a root is
//! refused (403) without being opened, and files are opened non-blocking,
//! so one swapped in after the check cannot hold a request either.

use crate::error::{HttpError, HttpResult};
use percent_encoding::percent_decode_str;
use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The canonical root directories.
#[derive(Clone, Debug)]
pub struct Roots {
    dirs: Vec<PathBuf>,
}

impl Roots {
    /// Roots from canonical directories (as in [`crate::ServeConfig::roots`]).
    pub fn new(dirs: Vec<PathBuf>) -> Roots {
        Roots { dirs }
    }

    /// The directories, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// True when the canonical path `p` is a root or lies under one.
    pub fn contains(&self, p: &Path) -> bool {
        self.dirs.iter().any(|d| p.starts_with(d))
    }

    /// Resolves a compute request's `data_url`: `file:///abs/path` or
    /// `/abs/path`. Other schemes are refused (400), as are paths outside the
    /// roots (403); a missing file under a root is 404.
    pub fn resolve_data_url(&self, url: &str) -> HttpResult<PathBuf> {
        let path = if let Some(rest) = url.strip_prefix("file://") {
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            if !rest.starts_with('/') {
                return Err(HttpError::BadRequest(format!(
                    "data_url {url:?}: a file URL names a local absolute path, such as file:///data/big.bin"
                )));
            }
            percent_decode_str(rest)
                .decode_utf8()
                .map_err(|_| HttpError::BadRequest(format!("data_url {url:?}: its percent-escapes are not UTF-8")))?
                .into_owned()
        } else if let Some((scheme, _)) = url.split_once("://") {
            return Err(HttpError::BadRequest(format!(
                "data_url {url:?}: remote sources are not supported by this server ({scheme}://); use file:///path or /path of a file under a root"
            )));
        } else if url.starts_with('/') {
            url.to_string()
        } else {
            return Err(HttpError::BadRequest(format!(
                "data_url {url:?}: give file:///absolute/path or /absolute/path of a file under a root"
            )));
        };
        self.resolve(Path::new(&path), url)
    }

    /// Resolves `rel`, a path relative to the first root (already
    /// percent-decoded), as `/files/` names it.
    pub fn resolve_in_first(&self, rel: &str) -> HttpResult<PathBuf> {
        let Some(first) = self.dirs.first() else {
            return Err(HttpError::NotFound("no root directory is served".into()));
        };
        no_nul(rel)?;
        let rel_path = Path::new(rel);
        if !rel_path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(forbidden(rel));
        }
        self.resolve(&first.join(rel_path), rel)
    }

    /// Resolves `rel`, relative to the first root, as the destination of a
    /// file being received: plain name components only, the parent directory
    /// existing under the root, the name not a directory nor a transfer's
    /// temporary name.
    pub fn resolve_new_in_first(&self, rel: &str) -> HttpResult<PathBuf> {
        let Some(first) = self.dirs.first() else {
            return Err(HttpError::NotFound("no root directory is served".into()));
        };
        no_nul(rel)?;
        let rel_path = Path::new(rel);
        let normal = rel_path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        let Some(name) = rel_path.file_name().filter(|_| normal && !rel.ends_with('/')) else {
            return Err(forbidden(rel));
        };
        if name.to_string_lossy().contains(magicfs_remote::index::INCOMING_MARK) {
            return Err(HttpError::BadRequest(format!("{rel}: that name is reserved for files being received")));
        }
        let parent = first.join(rel_path.parent().unwrap_or(Path::new("")));
        let parent = match parent.canonicalize() {
            Ok(p) if self.contains(&p) && p.is_dir() => p,
            Ok(_) => return Err(forbidden(rel)),
            Err(_) => {
                return Err(HttpError::NotFound(format!(
                    "{rel}: the directory does not exist on this server; create it first"
                )))
            }
        };
        let dest = parent.join(name);
        if dest.is_dir() {
            return Err(HttpError::BadRequest(format!("{rel} is a directory on this server")));
        }
        Ok(dest)
    }

    /// Canonicalizes `path` (absolute) and checks that it lies under a root.
    fn resolve(&self, path: &Path, shown: &str) -> HttpResult<PathBuf> {
        no_nul(&path.to_string_lossy())?;
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) || path.as_os_str().len() > 4096
        {
            return Err(forbidden(shown));
        }
        match path.canonicalize() {
            Ok(canonical) if self.contains(&canonical) => Ok(canonical),
            Ok(_) => Err(forbidden(shown)),
            Err(e) if e.kind() == ErrorKind::NotFound && self.contains(path) => {
                Err(HttpError::NotFound(format!("{shown}: no such file")))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Err(forbidden(shown)),
            Err(e) => Err(io_error(shown, &e)),
        }
    }
}

/// Refuses a path holding a NUL byte, which no file name can.
fn no_nul(path: &str) -> HttpResult<()> {
    if path.contains('\0') {
        return Err(HttpError::BadRequest(format!("{path:?}: a path cannot hold a NUL byte (%00)")));
    }
    Ok(())
}

/// What a file that is not regular is, for messages.
fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Checks that `path` (resolved under a root) is a regular file without
/// opening it: a FIFO, device or socket is 403; a directory is whatever
/// `dir` makes of its message.
pub(crate) fn check_regular(path: &Path, shown: &str, dir: fn(String) -> HttpError) -> HttpResult<Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(shown, &e))?;
    if meta.is_file() {
        Ok(meta)
    } else if meta.is_dir() {
        Err(dir(format!("{shown} is a directory, not a regular file")))
    } else {
        Err(HttpError::Forbidden(format!(
            "{shown} is {}; this server reads regular files only and does not open it",
            kind(&meta)
        )))
    }
}

/// Opens a regular file for reading (see [`check_regular`]), non-blocking,
/// and checks again what was opened.
pub(crate) fn open_regular(path: &Path, shown: &str, dir: fn(String) -> HttpError) -> HttpResult<(File, Metadata)> {
    check_regular(path, shown, dir)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| io_error(shown, &e))?;
    let meta = file.metadata().map_err(|e| io_error(shown, &e))?;
    if !meta.is_file() {
        return Err(HttpError::Forbidden(format!("{shown} is {}; this server reads regular files only", kind(&meta))));
    }
    Ok((file, meta))
}

/// The refusal of a path outside the roots.
fn forbidden(shown: &str) -> HttpError {
    HttpError::Forbidden(format!("{shown}: the path lies outside the directories this server serves"))
}

/// The error for an I/O failure on a file the request names.
pub(crate) fn io_error(shown: &str, e: &std::io::Error) -> HttpError {
    match e.kind() {
        ErrorKind::NotFound => HttpError::NotFound(format!("{shown}: no such file")),
        ErrorKind::PermissionDenied => HttpError::Forbidden(format!("{shown}: permission denied")),
        _ => HttpError::Internal(format!("{shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> (tempfile::TempDir, Roots) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("a.bin"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("out")).unwrap();
        std::os::unix::fs::symlink("a.bin", root.join("in")).unwrap();
        (dir, Roots::new(vec![root]))
    }

    #[test]
    fn data_urls() {
        let (dir, r) = roots();
        let root = dir.path().canonicalize().unwrap();
        let a = root.join("a.bin");
        assert_eq!(r.resolve_data_url(&format!("file://{}", a.display())).unwrap(), a);
        assert_eq!(r.resolve_data_url(&a.display().to_string()).unwrap(), a);
        assert_eq!(r.resolve_data_url(&format!("file://{}/%61.bin", root.display())).unwrap(), a);
        assert_eq!(r.resolve_data_url(&format!("{}/in", root.display())).unwrap(), a);
        for bad in ["file:///etc/passwd", "/etc/passwd", "/etc/nonexistent"] {
            assert!(matches!(r.resolve_data_url(bad), Err(HttpError::Forbidden(_))), "{bad}");
        }
        let dotdot = format!("{}/../{}/a.bin", root.display(), root.file_name().unwrap().to_string_lossy());
        assert!(matches!(r.resolve_data_url(&dotdot), Err(HttpError::Forbidden(_))));
        assert!(matches!(r.resolve_data_url(&format!("{}/out", root.display())), Err(HttpError::Forbidden(_))));
        assert!(matches!(r.resolve_data_url(&format!("{}/none", root.display())), Err(HttpError::NotFound(_))));
        for remote in ["http://10.0.0.1/x", "https://example.com/x", "ftp://h/x", "s3://b/k"] {
            let e = r.resolve_data_url(remote).unwrap_err();
            assert!(matches!(e, HttpError::BadRequest(_)), "{remote}");
            assert!(e.to_string().contains("remote sources are not supported by this server"), "{e}");
        }
        assert!(matches!(r.resolve_data_url("a.bin"), Err(HttpError::BadRequest(_))));
        assert!(matches!(r.resolve_data_url("file://host/x"), Err(HttpError::BadRequest(_))));
    }

    #[test]
    fn relative_paths() {
        let (dir, r) = roots();
        let a = dir.path().canonicalize().unwrap().join("a.bin");
        assert_eq!(r.resolve_in_first("a.bin").unwrap(), a);
        assert_eq!(r.resolve_in_first("./in").unwrap(), a);
        for bad in ["../a.bin", "/etc/passwd", "x/../../a.bin", "out"] {
            assert!(matches!(r.resolve_in_first(bad), Err(HttpError::Forbidden(_))), "{bad}");
        }
        assert!(matches!(r.resolve_in_first("none"), Err(HttpError::NotFound(_))));
    }

    #[test]
    fn nul_bytes_and_special_files() {
        let (dir, r) = roots();
        assert!(matches!(r.resolve_in_first("a\0b"), Err(HttpError::BadRequest(_))));
        let root = dir.path().canonicalize().unwrap();
        assert!(matches!(
            r.resolve_data_url(&format!("file://{}/a%00", root.display())),
            Err(HttpError::BadRequest(_))
        ));
        let fifo = root.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a path this test owns.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let resolved = r.resolve_in_first("fifo").unwrap();
        let e = open_regular(&resolved, "fifo", HttpError::NotFound).unwrap_err();
        assert!(matches!(e, HttpError::Forbidden(_)) && e.to_string().contains("FIFO"), "{e}");
        let e = check_regular(&root, "root", HttpError::BadRequest).unwrap_err();
        assert!(matches!(e, HttpError::BadRequest(_)), "{e}");
        assert!(open_regular(&root.join("a.bin"), "a.bin", HttpError::NotFound).is_ok());
    }
}
