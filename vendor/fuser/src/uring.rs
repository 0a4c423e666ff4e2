//! FUSE over io_uring (Linux 6.14 and later, with the fuse module parameter
//! `enable_uring=Y`).
//!
//! The kernel keeps one queue per CPU and hands a request to the queue of
//! the CPU that made it. Each queue here is served by one thread pinned to
//! that CPU, so a request is taken, answered and its caller woken on one
//! CPU, without the cross-CPU wake-ups of the `/dev/fuse` read loop.
//!
//! Each queue entry is a pair of buffers registered with the kernel: a
//! header (the request's `fuse_in_header`, its per-operation header, and the
//! entry's commit id and payload size) and a payload buffer (names, write
//! data; on the way back, the reply's payload). A request is reassembled
//! into the layout the parser expects, dispatched like any other, and its
//! reply is written back into the entry, which a `COMMIT_AND_FETCH` command
//! returns to the kernel together with a request for the next one.

use std::fmt;
use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread;
use std::thread::ThreadId;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use nix::unistd::Uid;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::ReplyEmpty;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::reply::Reply;
use crate::reply::ReplySender;
use crate::request::RequestWithSender;
use crate::session::FilesystemHolder;
use crate::session::SessionACL;
use crate::session::SessionEventLoop;

/// `FUSE_IO_URING_CMD_REGISTER`: give the kernel an entry to fill.
const CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`: answer a request, take the next.
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then
/// `struct fuse_uring_ent_in_out` (flags, commit_id, payload_sz, ...).
const OP_IN: usize = 128;
const OP_IN_MAX: usize = 128;
const ENT_IN_OUT: usize = 256;
const HEADER_LEN: usize = 288;
/// Headers get a page of their own.
const HEADER_ALLOC: usize = 4096;
/// `struct fuse_in_header` and `struct fuse_out_header`.
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// Entries per queue: requests a CPU can have in flight at once, held
/// replies (a read waiting for slow work) included. Payload pages are
/// allocated zeroed and untouched, so an entry that never carries a large
/// request costs address space only.
const DEPTH: usize = 64;

/// A page-aligned, zero-filled anonymous mapping that never moves; its pages
/// take memory only once written.
struct Buf {
    ptr: *mut u8,
    len: usize,
}

impl Buf {
    fn new(len: usize) -> io::Result<Buf> {
        let len = len.max(1);
        // SAFETY: a fresh private anonymous mapping, no address hint.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Buf {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// One queue entry: its buffers and the iovec that registered them.
struct Entry {
    header: Buf,
    payload: Buf,
    payload_len: usize,
    iov: Box<[libc::iovec; 2]>,
}

/// One per-CPU queue and the io_uring that talks to it.
struct Queue {
    qid: u16,
    fd: RawFd,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// Serializes pushes to the submission queue (replies may be sent
    /// from any thread).
    sq: Mutex<()>,
    entries: Vec<Entry>,
    thread: OnceLock<ThreadId>,
}

// SAFETY: the raw buffers are only touched by whoever holds the entry: the
// kernel until it completes the entry's command, then the serving thread,
// then the one `RingSender` that answers it.
unsafe impl Send for Queue {}
// SAFETY: as above; the submission queue is guarded by `sq`, the completion
// queue is only read by the queue's own thread.
unsafe impl Sync for Queue {}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").field("qid", &self.qid).finish()
    }
}

/// The 80 bytes of command data: `struct fuse_uring_cmd_req`.
fn cmd_req(commit_id: u64, qid: u16) -> [u8; 80] {
    let mut c = [0u8; 80];
    c[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    c[16..18].copy_from_slice(&qid.to_ne_bytes());
    c
}

/// Sets the SQE's `len` field, which `UringCmd80` does not expose.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: `Entry128` is a `repr(C)` `io_uring_sqe` followed by 64 bytes
    // of command data, 128 bytes in all; `len` is the u32 at offset 24.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: the same bytes, back to the type they came from.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

impl Queue {
    fn new(qid: u16, fd: RawFd, payload_len: usize) -> io::Result<Queue> {
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(2 * DEPTH as u32)
            .build(2 * DEPTH as u32)?;
        let mut entries = Vec::with_capacity(DEPTH);
        for _ in 0..DEPTH {
            let header = Buf::new(HEADER_ALLOC)?;
            let payload = Buf::new(payload_len)?;
            let iov = Box::new([
                libc::iovec {
                    iov_base: header.ptr.cast(),
                    iov_len: HEADER_LEN,
                },
                libc::iovec {
                    iov_base: payload.ptr.cast(),
                    iov_len: payload_len,
                },
            ]);
            entries.push(Entry {
                header,
                payload,
                payload_len,
                iov,
            });
        }
        Ok(Queue {
            qid,
            fd,
            ring,
            sq: Mutex::new(()),
            entries,
            thread: OnceLock::new(),
        })
    }

    /// Queues a command; submits it unless the serving thread will.
    fn push(&self, sqe: squeue::Entry128) -> io::Result<()> {
        {
            let _guard = self.sq.lock();
            // SAFETY: pushes are serialized by `sq`.
            unsafe {
                let mut sq = self.ring.submission_shared();
                sq.push(&sqe)
                    .map_err(|_| io::Error::other("io_uring submission queue is full"))?;
                sq.sync();
            }
        }
        if self.thread.get() != Some(&thread::current().id()) {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn register(&self, idx: usize) -> squeue::Entry128 {
        let sqe = opcode::UringCmd80::new(types::Fd(self.fd), CMD_REGISTER)
            .cmd(cmd_req(0, self.qid))
            .addr(Some(self.entries[idx].iov.as_ptr() as u64))
            .build()
            .user_data(idx as u64);
        with_len(sqe, 2)
    }

    fn commit(&self, idx: usize, commit_id: u64) -> squeue::Entry128 {
        opcode::UringCmd80::new(types::Fd(self.fd), CMD_COMMIT_AND_FETCH)
            .cmd(cmd_req(commit_id, self.qid))
            .build()
            .user_data(idx as u64)
    }
}

/// Answers the request held by one ring entry.
#[derive(Debug, Clone)]
pub(crate) struct RingSender {
    queue: Arc<Queue>,
    idx: usize,
    commit_id: u64,
    ch: ChannelSender,
}

impl RingSender {
    /// The device channel, for what the ring does not carry.
    pub(crate) fn channel(&self) -> &ChannelSender {
        &self.ch
    }

    /// Writes a reply (out header first, then the payload) into the entry
    /// and hands the entry back to the kernel.
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        let e = &self.queue.entries[self.idx];
        let (head, rest) = data
            .split_first()
            .filter(|(h, _)| h.len() == OUT_HEADER)
            .ok_or_else(|| io::Error::other("reply without a FUSE out header"))?;
        let total: usize = rest.iter().map(|s| s.len()).sum();
        // SAFETY: this sender holds the entry (see `Queue`); the copies stay
        // inside the header and payload allocations.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), e.header.ptr, OUT_HEADER);
            if total > e.payload_len {
                // Too large for the entry: answer EIO instead.
                let eio = -libc::EIO;
                std::ptr::copy_nonoverlapping(
                    eio.to_ne_bytes().as_ptr(),
                    e.header.ptr.add(4),
                    4,
                );
                write_payload_sz(e, 0);
            } else {
                let mut at = 0;
                for s in rest {
                    std::ptr::copy_nonoverlapping(s.as_ptr(), e.payload.ptr.add(at), s.len());
                    at += s.len();
                }
                write_payload_sz(e, total as u32);
            }
        }
        self.queue.push(self.queue.commit(self.idx, self.commit_id))
    }
}

/// Sets `ring_ent_in_out.payload_sz`.
unsafe fn write_payload_sz(e: &Entry, n: u32) {
    // SAFETY: the field lies inside the header allocation.
    unsafe {
        std::ptr::copy_nonoverlapping(
            n.to_ne_bytes().as_ptr(),
            e.header.ptr.add(ENT_IN_OUT + 16),
            4,
        );
    }
}

/// Reads a native-endian integer at `at` of `p`.
unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: the caller points inside an allocation.
    unsafe { std::ptr::read_unaligned(p.cast::<u32>()) }
}

unsafe fn read_u64(p: *const u8) -> u64 {
    // SAFETY: the caller points inside an allocation.
    unsafe { std::ptr::read_unaligned(p.cast::<u64>()) }
}

/// Starts one serving thread per CPU. Returns once every queue is set up
/// (the kernel switches to the ring when all queues have entries).
pub(crate) fn start<FS: Filesystem>(
    filesystem: Arc<FilesystemHolder<FS>>,
    ch: Channel,
    allowed: SessionACL,
    session_owner: Uid,
    payload_len: usize,
) -> io::Result<()> {
    let cpus = possible_cpus();
    let fd = ch.as_fd().as_raw_fd();
    for qid in 0..cpus {
        let queue = Arc::new(Queue::new(qid as u16, fd, payload_len)?);
        let se = SessionEventLoop {
            thread_name: format!("fuser-ring-{qid}"),
            filesystem: filesystem.clone(),
            ch: ch.clone(),
            allowed,
            session_owner,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name(format!("fuser-ring-{qid}"))
            .spawn(move || serve(queue, se, tx))?;
        rx.recv()
            .map_err(|_| io::Error::other("ring thread ended during setup"))??;
    }
    debug!("FUSE over io_uring: {cpus} queues of {DEPTH} entries, {payload_len} byte payloads");
    Ok(())
}

/// The kernel keeps a queue for every possible CPU (`nr_cpu_ids`): the
/// highest number in `/sys/devices/system/cpu/possible`, plus one.
fn possible_cpus() -> usize {
    let listed = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            s.trim()
                .split([',', '-'])
                .filter_map(|n| n.parse::<usize>().ok())
                .max()
        })
        .map(|n| n + 1);
    // SAFETY: sysconf has no preconditions.
    listed.unwrap_or_else(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize)
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            debug!("cannot pin ring thread to CPU {cpu}: {}", io::Error::last_os_error());
        }
    }
}

fn serve<FS: Filesystem>(
    queue: Arc<Queue>,
    se: SessionEventLoop<FS>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    pin(queue.qid as usize);
    let _ = queue.thread.set(thread::current().id());
    let registered = (0..queue.entries.len())
        .try_for_each(|i| queue.push(queue.register(i)))
        .and_then(|()| queue.ring.submit().map(|_| ()));
    let failed = registered.is_err();
    let _ = ready.send(registered);
    if failed {
        return;
    }
    let ch = se.ch.sender();
    let mut buf: Vec<u8> = Vec::with_capacity(IN_HEADER + OP_IN_MAX + queue.entries[0].payload_len);
    let mut done: Vec<(usize, i32)> = Vec::with_capacity(2 * DEPTH);
    loop {
        if let Err(e) = queue.ring.submit_and_wait(1) {
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            error!("ring {}: {e}", queue.qid);
            return;
        }
        done.clear();
        // SAFETY: only this thread reads the completion queue.
        unsafe {
            done.extend(
                queue
                    .ring
                    .completion_shared()
                    .map(|c| (c.user_data() as usize, c.result())),
            );
        }
        for &(idx, res) in &done {
            if res < 0 {
                let err = io::Error::from_raw_os_error(-res);
                match -res {
                    libc::ENOTCONN | libc::ENODEV | libc::ECANCELED => {
                        debug!("ring {}: {err}, stopping", queue.qid)
                    }
                    _ => error!("ring {} entry {idx}: {err}", queue.qid),
                }
                return;
            }
            if idx >= queue.entries.len() {
                error!("ring {}: completion for unknown entry {idx}", queue.qid);
                return;
            }
            handle(&queue, idx, &se, &ch, &mut buf);
        }
    }
}

/// Rebuilds the request of entry `idx` in `/dev/fuse` layout and dispatches it.
fn handle<FS: Filesystem>(
    queue: &Arc<Queue>,
    idx: usize,
    se: &SessionEventLoop<FS>,
    ch: &ChannelSender,
    buf: &mut Vec<u8>,
) {
    let e = &queue.entries[idx];
    // SAFETY: the kernel completed the entry's command, so its buffers hold
    // a request and belong to this thread until the reply.
    let (commit_id, unique) = unsafe {
        let h = e.header.ptr;
        let len = read_u32(h) as usize;
        let unique = read_u64(h.add(8));
        let commit_id = read_u64(h.add(ENT_IN_OUT + 8));
        let payload = (read_u32(h.add(ENT_IN_OUT + 16)) as usize).min(e.payload_len);
        let op = len.checked_sub(IN_HEADER + payload).filter(|n| *n <= OP_IN_MAX);
        buf.clear();
        if let Some(op) = op {
            buf.extend_from_slice(std::slice::from_raw_parts(h, IN_HEADER));
            buf.extend_from_slice(std::slice::from_raw_parts(h.add(OP_IN), op));
            buf.extend_from_slice(std::slice::from_raw_parts(e.payload.ptr, payload));
        }
        (commit_id, unique)
    };
    let sender = ReplySender::Ring(RingSender {
        queue: queue.clone(),
        idx,
        commit_id,
        ch: ch.clone(),
    });
    let req = if buf.is_empty() {
        None
    } else {
        RequestWithSender::new(sender.clone(), buf)
    };
    match req {
        Some(req) => {
            if let Ok(Operation::Destroy(_)) = req.request.operation() {
                req.reply::<ReplyEmpty>().ok();
            } else {
                req.dispatch(se);
            }
        }
        None => {
            error!("ring {}: malformed request {unique}", queue.qid);
            <crate::reply::ReplyRaw as Reply>::new(crate::ll::RequestId(unique), sender)
                .error(crate::ll::Errno::EIO);
        }
    }
}
