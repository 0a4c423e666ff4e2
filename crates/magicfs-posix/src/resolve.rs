//! Path resolution with the kernel's rules: every component but the last
//! must be a directory or a symbolic link to one; links are followed in the
//! middle of a path always and at its end when asked; `.` and `..` are
//! looked up like any name; a path ending in `/` names a directory.

use magicfs_core::Fs;
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, ROOT_INO};
use std::collections::VecDeque;

/// Symbolic links followed in one resolution before `ELOOP` (Linux's limit).
pub const MAX_LINKS: usize = 40;

/// How absolute symbolic link targets are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Absolute {
    /// From the store's root: the store is the whole namespace (the C
    /// library, the Python package).
    StoreRoot,
    /// As host paths: a target under this prefix leads back into the store,
    /// any other leaves it and fails with `EXDEV` (the `LD_PRELOAD` shim,
    /// whose store appears at the prefix).
    HostPrefix(Vec<u8>),
}

/// Where a path leads: the directory that holds its last name, the name, and
/// the entry's attributes when it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Directory holding the name.
    pub dir: Ino,
    /// The last name (`.` for the root itself).
    pub name: Vec<u8>,
    /// The entry, or `None` when the name does not exist (yet).
    pub attr: Option<Attr>,
    /// The path ended with `/`: it must be (or become) a directory.
    pub trailing_slash: bool,
}

impl Entry {
    /// The entry's attributes, or `ENOENT`.
    pub fn existing(&self) -> FsResult<Attr> {
        self.attr.ok_or(FsError::NotFound)
    }
}

fn push_components(todo: &mut VecDeque<Vec<u8>>, path: &[u8]) {
    for c in path.rsplit(|b| *b == b'/') {
        if !c.is_empty() && c != b"." {
            todo.push_front(c.to_vec());
        }
    }
}

/// The part of `target` below `prefix`, if `target` is `prefix` or lies under it.
fn under_prefix<'t>(target: &'t [u8], prefix: &[u8]) -> Option<&'t [u8]> {
    let rest = target.strip_prefix(prefix)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

/// Resolves `path` from directory `base` (from the root when it starts with
/// `/`). `follow` follows a symbolic link in the last component.
pub fn resolve(fs: &Fs, base: Ino, path: &[u8], follow: bool, absolute: &Absolute) -> FsResult<Entry> {
    if path.is_empty() {
        return Err(FsError::NotFound);
    }
    if path.contains(&0) {
        return Err(FsError::Invalid);
    }
    let trailing_slash = path.ends_with(b"/");
    let mut dir = if path[0] == b'/' { ROOT_INO } else { base };
    let mut todo = VecDeque::new();
    push_components(&mut todo, path);
    let mut links = 0;
    loop {
        let Some(name) = todo.pop_front() else {
            // Nothing but slashes and dots: the directory itself.
            let attr = fs.getattr(dir)?;
            if attr.kind != FileKind::Dir {
                return Err(FsError::NotDir);
            }
            return Ok(Entry { dir, name: b".".to_vec(), attr: Some(attr), trailing_slash });
        };
        if name.len() > magicfs_types::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let last = todo.is_empty();
        let attr = match fs.lookup(dir, &name) {
            Ok(a) => Some(a),
            Err(FsError::NotFound) if last => None,
            Err(e) => return Err(e),
        };
        match attr {
            Some(a) if a.kind == FileKind::Symlink && (!last || follow || trailing_slash) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(FsError::Loop);
                }
                let target = fs.readlink(a.ino)?;
                if target.is_empty() {
                    return Err(FsError::NotFound);
                }
                if target[0] == b'/' {
                    let inside = match absolute {
                        Absolute::StoreRoot => &target[..],
                        Absolute::HostPrefix(p) => under_prefix(&target, p).ok_or(FsError::CrossDevice)?,
                    };
                    dir = ROOT_INO;
                    push_components(&mut todo, inside);
                } else {
                    push_components(&mut todo, &target);
                }
                if todo.is_empty() {
                    // A link to "/" (or to "."): the directory reached so far.
                    continue;
                }
            }
            Some(a) if !last => {
                if a.kind != FileKind::Dir {
                    return Err(FsError::NotDir);
                }
                dir = a.ino;
            }
            attr => {
                if trailing_slash && attr.is_some_and(|a| a.kind != FileKind::Dir) {
                    return Err(FsError::NotDir);
                }
                return Ok(Entry { dir, name, attr, trailing_slash });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_core::{Ctx, FsConfig};

    fn fs() -> Fs {
        let fs = Fs::memory(FsConfig::default());
        let a = fs.mkdir(ROOT_INO, b"a", 0o755, Ctx::default()).unwrap();
        let b = fs.mkdir(a.ino, b"b", 0o755, Ctx::default()).unwrap();
        fs.create(b.ino, b"f", 0o644, libc::O_WRONLY, Ctx::default()).unwrap();
        fs.symlink(ROOT_INO, b"rel", b"a/b", Ctx::default()).unwrap();
        fs.symlink(ROOT_INO, b"abs", b"/a/b/f", Ctx::default()).unwrap();
        fs.symlink(ROOT_INO, b"host", b"/magic/a", Ctx::default()).unwrap();
        fs.symlink(ROOT_INO, b"out", b"/etc/passwd", Ctx::default()).unwrap();
        fs.symlink(ROOT_INO, b"loop", b"loop", Ctx::default()).unwrap();
        fs.symlink(b.ino, b"up", b"../..", Ctx::default()).unwrap();
        fs
    }

    fn name_of(e: &Entry) -> &str {
        std::str::from_utf8(&e.name).unwrap()
    }

    #[test]
    fn follows_links_like_the_kernel() {
        let fs = fs();
        let root = &Absolute::StoreRoot;
        let e = resolve(&fs, ROOT_INO, b"rel/f", true, root).unwrap();
        assert_eq!((name_of(&e), e.attr.unwrap().kind), ("f", FileKind::File));
        let e = resolve(&fs, ROOT_INO, b"/abs", true, root).unwrap();
        assert_eq!(e.attr.unwrap().kind, FileKind::File);
        let e = resolve(&fs, ROOT_INO, b"abs", false, root).unwrap();
        assert_eq!(e.attr.unwrap().kind, FileKind::Symlink);
        let e = resolve(&fs, ROOT_INO, b"a/b/up/a/./b/../b/f", true, root).unwrap();
        assert_eq!(name_of(&e), "f");
        let e = resolve(&fs, ROOT_INO, b"rel/new", true, root).unwrap();
        assert_eq!((name_of(&e), e.attr), ("new", None));
        assert_eq!(resolve(&fs, ROOT_INO, b"missing/x", true, root), Err(FsError::NotFound));
        assert_eq!(resolve(&fs, ROOT_INO, b"abs/x", true, root), Err(FsError::NotDir));
        assert_eq!(resolve(&fs, ROOT_INO, b"rel/f/", true, root), Err(FsError::NotDir));
        assert_eq!(resolve(&fs, ROOT_INO, b"loop", true, root), Err(FsError::Loop));
        assert_eq!(resolve(&fs, ROOT_INO, b"loop", false, root).unwrap().attr.unwrap().kind, FileKind::Symlink);
        let e = resolve(&fs, ROOT_INO, b"//", true, root).unwrap();
        assert_eq!((name_of(&e), e.attr.unwrap().ino), (".", ROOT_INO));
        assert_eq!(resolve(&fs, ROOT_INO, b"", true, root), Err(FsError::NotFound));
    }

    #[test]
    fn absolute_targets_under_a_host_prefix() {
        let fs = fs();
        let host = &Absolute::HostPrefix(b"/magic".to_vec());
        let e = resolve(&fs, ROOT_INO, b"host/b/f", true, host).unwrap();
        assert_eq!(name_of(&e), "f");
        assert_eq!(resolve(&fs, ROOT_INO, b"out", true, host), Err(FsError::CrossDevice));
        assert_eq!(resolve(&fs, ROOT_INO, b"abs", true, host), Err(FsError::CrossDevice));
    }
}
