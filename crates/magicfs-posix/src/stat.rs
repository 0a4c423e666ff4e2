//! Attributes as `struct stat` and `struct statx`.

use magicfs_types::{Attr, Timespec};

/// The device number stores report in `st_dev` (major 4095, minor "MF"):
/// distinct from any real device, so `cp` and `tar` never take a file of
/// the store for a host file with the same inode number.
pub const DEV_MAJOR: u32 = 4095;
/// See [`DEV_MAJOR`].
pub const DEV_MINOR: u32 = 0x4d46;

/// The block size reported: reads and writes of this size go straight through.
pub const BLKSIZE: u64 = 64 << 10;

fn blocks(a: &Attr) -> u64 {
    a.size.div_ceil(512)
}

/// Fills `st` from `a`.
pub fn fill_stat(a: &Attr, st: &mut libc::stat) {
    // SAFETY: `libc::stat` is plain old data; all-zero is a valid value.
    *st = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(DEV_MAJOR, DEV_MINOR);
    st.st_ino = a.ino;
    st.st_mode = a.mode();
    st.st_nlink = a.nlink as _;
    st.st_uid = a.uid;
    st.st_gid = a.gid;
    st.st_rdev = a.rdev as u64;
    st.st_size = a.size as i64;
    st.st_blksize = BLKSIZE as _;
    st.st_blocks = blocks(a) as i64;
    st.st_atime = a.atime.sec;
    st.st_atime_nsec = a.atime.nsec as _;
    st.st_mtime = a.mtime.sec;
    st.st_mtime_nsec = a.mtime.nsec as _;
    st.st_ctime = a.ctime.sec;
    st.st_ctime_nsec = a.ctime.nsec as _;
}

fn ts(t: Timespec) -> libc::statx_timestamp {
    // SAFETY: plain old data; all-zero is a valid value.
    let mut s: libc::statx_timestamp = unsafe { std::mem::zeroed() };
    s.tv_sec = t.sec;
    s.tv_nsec = t.nsec;
    s
}

/// Fills `stx` from `a` (every basic field and the birth time).
pub fn fill_statx(a: &Attr, stx: &mut libc::statx) {
    // SAFETY: plain old data; all-zero is a valid value.
    *stx = unsafe { std::mem::zeroed() };
    stx.stx_mask = libc::STATX_BASIC_STATS | libc::STATX_BTIME;
    stx.stx_blksize = BLKSIZE as u32;
    stx.stx_nlink = a.nlink;
    stx.stx_uid = a.uid;
    stx.stx_gid = a.gid;
    stx.stx_mode = a.mode() as u16;
    stx.stx_ino = a.ino;
    stx.stx_size = a.size;
    stx.stx_blocks = blocks(a);
    stx.stx_atime = ts(a.atime);
    stx.stx_btime = ts(a.crtime);
    stx.stx_ctime = ts(a.ctime);
    stx.stx_mtime = ts(a.mtime);
    stx.stx_rdev_major = libc::major(a.rdev as u64);
    stx.stx_rdev_minor = libc::minor(a.rdev as u64);
    stx.stx_dev_major = DEV_MAJOR;
    stx.stx_dev_minor = DEV_MINOR;
}
