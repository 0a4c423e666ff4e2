//! `open(2)` flags, checked once.

use magicfs_types::{FsError, FsResult};

/// The flags of one `open` call that MagicFS acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Readable (`O_RDONLY`, `O_RDWR`).
    pub read: bool,
    /// Writable (`O_WRONLY`, `O_RDWR`).
    pub write: bool,
    /// Every write goes to the end (`O_APPEND`).
    pub append: bool,
    /// Create a missing file (`O_CREAT`).
    pub create: bool,
    /// With `create`: fail if it exists (`O_EXCL`).
    pub exclusive: bool,
    /// Cut to length 0 (`O_TRUNC`, with write access).
    pub truncate: bool,
    /// Must be a directory (`O_DIRECTORY`).
    pub directory: bool,
    /// Do not follow a symbolic link in the last component (`O_NOFOLLOW`).
    pub nofollow: bool,
    /// A descriptor for the path only: no reading or writing (`O_PATH`).
    pub path_only: bool,
    /// Each write is durable before it returns (`O_SYNC`, `O_DSYNC`).
    pub sync: bool,
    /// Close on exec (`O_CLOEXEC`).
    pub cloexec: bool,
    /// Non-blocking (`O_NONBLOCK`): kept for `F_GETFL`, no effect.
    pub nonblock: bool,
}

impl OpenFlags {
    /// Reads `flags`; `O_TMPFILE` is refused with `EOPNOTSUPP`, an invalid
    /// access mode with `EINVAL`. Flags that change nothing for MagicFS
    /// (`O_NOCTTY`, `O_LARGEFILE`, `O_NOATIME`, `O_DIRECT`, `O_ASYNC`) are accepted.
    pub fn parse(flags: i32) -> FsResult<OpenFlags> {
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            return Err(FsError::NotSupported);
        }
        let path_only = flags & libc::O_PATH != 0;
        let (read, write) = match flags & libc::O_ACCMODE {
            _ if path_only => (false, false),
            libc::O_RDONLY => (true, false),
            libc::O_WRONLY => (false, true),
            libc::O_RDWR => (true, true),
            _ => return Err(FsError::Invalid),
        };
        let has = |f: i32| flags & f == f;
        Ok(OpenFlags {
            read,
            write,
            append: !path_only && has(libc::O_APPEND),
            create: !path_only && has(libc::O_CREAT),
            exclusive: !path_only && has(libc::O_CREAT | libc::O_EXCL),
            truncate: write && has(libc::O_TRUNC),
            directory: has(libc::O_DIRECTORY),
            nofollow: has(libc::O_NOFOLLOW),
            path_only,
            sync: !path_only && (has(libc::O_DSYNC) || has(libc::O_SYNC)),
            cloexec: has(libc::O_CLOEXEC),
            nonblock: has(libc::O_NONBLOCK),
        })
    }

    /// The access mode as `O_RDONLY`, `O_WRONLY` or `O_RDWR` (`O_PATH`
    /// descriptors read as `O_RDONLY`).
    pub fn access_mode(&self) -> i32 {
        match (self.read, self.write) {
            (_, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
        }
    }

    /// The status flags `fcntl(F_GETFL)` reports.
    pub fn status_flags(&self) -> i32 {
        let mut f = if self.path_only { libc::O_PATH } else { self.access_mode() };
        for (on, bit) in [(self.append, libc::O_APPEND), (self.nonblock, libc::O_NONBLOCK), (self.sync, libc::O_SYNC)] {
            if on {
                f |= bit;
            }
        }
        f | libc::O_LARGEFILE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_and_refusals() {
        let f = OpenFlags::parse(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC).unwrap();
        assert!(f.write && !f.read && f.create && f.truncate && !f.exclusive);
        let f = OpenFlags::parse(libc::O_RDONLY | libc::O_TRUNC).unwrap();
        assert!(f.read && !f.truncate, "O_TRUNC needs write access");
        assert_eq!(OpenFlags::parse(libc::O_ACCMODE), Err(FsError::Invalid));
        assert_eq!(OpenFlags::parse(libc::O_TMPFILE | libc::O_RDWR), Err(FsError::NotSupported));
        let f = OpenFlags::parse(libc::O_PATH | libc::O_RDWR | libc::O_CREAT).unwrap();
        assert!(f.path_only && !f.read && !f.write && !f.create);
        let f = OpenFlags::parse(libc::O_RDWR | libc::O_APPEND).unwrap();
        assert_eq!(f.status_flags() & !libc::O_LARGEFILE, libc::O_RDWR | libc::O_APPEND);
    }
}
