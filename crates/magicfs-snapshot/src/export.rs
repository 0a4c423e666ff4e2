//! Writing a tree as one snapshot document, one entry at a time, file
//! contents read and encoded in pieces.

use crate::error::{SnapshotError, SnapshotResult};
use crate::path::join;
use crate::text::{is_text, write_escaped, write_string, TextCheck};
use crate::tree::{Stat, Tree};
use crate::{kind_name, Summary, FORMAT, VERSION};
use base64::engine::general_purpose::STANDARD;
use base64::write::EncoderWriter;
use base64::Engine as _;
use magicfs_types::{FileKind, Timespec};
use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};

/// Longest content written as one JSON string; longer contents become an
/// array of pieces of at most this many bytes (text) or encoded bytes (base64).
pub const LONG: usize = 1 << 20;

/// Bytes of file content read at a time.
const PIECE: usize = 256 << 10;

/// Writes the whole of `tree` to `out` as a snapshot document: entries
/// parents-first, names sorted, the second and later names of a hard-linked
/// inode as `link` entries. Memory use does not grow with file sizes: each
/// file is read and written in pieces.
pub fn export(tree: &mut dyn Tree, out: &mut dyn Write) -> SnapshotResult<Summary> {
    let mut out = BufWriter::with_capacity(PIECE, out);
    let mut w = Exporter { tree, summary: Summary::default(), buf: vec![0; PIECE], links: HashMap::new() };
    let head = format!("{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"entries\":[\n");
    out.write_all(head.as_bytes()).map_err(write_err)?;
    w.walk(&mut out)?;
    out.write_all(b"\n]}\n").map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(w.summary)
}

fn write_err(e: io::Error) -> SnapshotError {
    SnapshotError::io("writing the snapshot", e)
}

fn utf8(path: &str, bytes: Vec<u8>, what: &str) -> SnapshotResult<String> {
    String::from_utf8(bytes).map_err(|e| SnapshotError::Unsupported {
        path: path.to_string(),
        reason: format!("{what} {:?} is not valid UTF-8", String::from_utf8_lossy(e.as_bytes())),
    })
}

/// A directory being listed: its path, its sorted names and the next one.
struct Open {
    path: String,
    names: Vec<String>,
    next: usize,
}

struct Exporter<'t> {
    tree: &'t mut dyn Tree,
    summary: Summary,
    buf: Vec<u8>,
    /// First path written for each inode with more than one name.
    links: HashMap<(u64, u64), String>,
}

impl Exporter<'_> {
    fn walk(&mut self, out: &mut dyn Write) -> SnapshotResult<()> {
        let root = self.tree.stat("")?;
        if root.kind != FileKind::Dir {
            return Err(SnapshotError::Unsupported {
                path: String::new(),
                reason: "the root is not a directory".into(),
            });
        }
        self.entry(out, "", &root)?;
        let mut stack = vec![self.open("")?];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.get(top.next) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let path = join(&top.path, name);
            let st = self.tree.stat(&path)?;
            out.write_all(b",\n").map_err(write_err)?;
            if st.kind != FileKind::Dir && st.nlink > 1 {
                if let Some(first) = self.links.get(&st.id) {
                    write_link(out, &path, st.kind, first).map_err(write_err)?;
                    self.summary.entries += 1;
                    self.summary.links += 1;
                    continue;
                }
                self.links.insert(st.id, path.clone());
            }
            self.entry(out, &path, &st)?;
            if st.kind == FileKind::Dir {
                let open = self.open(&path)?;
                stack.push(open);
            }
        }
        Ok(())
    }

    /// Lists a directory, names sorted (by bytes).
    fn open(&mut self, path: &str) -> SnapshotResult<Open> {
        let mut names = Vec::new();
        for n in self.tree.list(path)? {
            names.push(utf8(&join(path, &String::from_utf8_lossy(&n)), n, "name")?);
        }
        names.sort_unstable();
        Ok(Open { path: path.to_string(), names, next: 0 })
    }

    fn entry(&mut self, out: &mut dyn Write, path: &str, st: &Stat) -> SnapshotResult<()> {
        let mut xattrs = Vec::new();
        for (name, value) in self.tree.xattrs(path)? {
            // POSIX ACLs and other system.* attributes are kernel-encoded
            // views of permissions, not data; MagicFS does not take them.
            if !name.starts_with(b"system.") {
                xattrs.push((utf8(path, name, "extended attribute name")?, value));
            }
        }
        xattrs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let target = match st.kind {
            FileKind::Symlink => Some(utf8(path, self.tree.read_link(path)?, "symbolic link target")?),
            _ => None,
        };
        self.head(out, path, st, &xattrs, target.as_deref()).map_err(write_err)?;
        if st.kind == FileKind::File {
            out.write_all(b",\"content\":").map_err(write_err)?;
            self.content(out, path)?;
            self.summary.files += 1;
        }
        out.write_all(b"}").map_err(write_err)?;
        self.summary.entries += 1;
        if st.kind == FileKind::Dir {
            self.summary.dirs += 1;
        }
        Ok(())
    }

    fn head(
        &self,
        out: &mut dyn Write,
        path: &str,
        st: &Stat,
        xattrs: &[(String, Vec<u8>)],
        target: Option<&str>,
    ) -> io::Result<()> {
        out.write_all(b"{\"path\":")?;
        write_string(out, path)?;
        write!(out, ",\"type\":\"{}\",\"mode\":{},\"uid\":{},\"gid\":{}", kind_name(st.kind), st.perm, st.uid, st.gid)?;
        write_time(out, "atime", st.atime)?;
        write_time(out, "mtime", st.mtime)?;
        if !xattrs.is_empty() {
            out.write_all(b",\"xattrs\":{")?;
            for (i, (name, value)) in xattrs.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_string(out, name)?;
                out.write_all(b":")?;
                write_value(out, value)?;
            }
            out.write_all(b"}")?;
        }
        if let Some(t) = target {
            out.write_all(b",\"target\":")?;
            write_string(out, t)?;
        }
        if matches!(st.kind, FileKind::CharDev | FileKind::BlockDev) {
            write!(out, ",\"rdev\":{}", st.rdev)?;
        }
        Ok(())
    }

    /// Writes a file's content: read once to see whether it is text (and
    /// how long), then again to write it, escaped as text or encoded as
    /// base64. Contents longer than [`LONG`] are written as an array of
    /// pieces, each a complete string, so an import never holds more than
    /// one piece.
    fn content(&mut self, out: &mut dyn Write, path: &str) -> SnapshotResult<()> {
        let read_err = |e| SnapshotError::io(format!("reading {path}"), e);
        // First pass: text or not, and longer than LONG or not (reading
        // stops as soon as both are known).
        let (text, long) = {
            let mut check = TextCheck::default();
            let mut text = true;
            let mut total = 0u64;
            let mut r = self.tree.open_file(path)?;
            loop {
                let n = read_some(&mut *r, &mut self.buf).map_err(read_err)?;
                total += n as u64;
                if n == 0 {
                    break (text && check.finish(), total > LONG as u64);
                }
                text = text && check.feed(&self.buf[..n]);
                if !text && total > LONG as u64 {
                    break (false, true);
                }
            }
        };
        let mut r = self.tree.open_file(path)?;
        let mut bytes = 0u64;
        out.write_all(if text { b"{\"utf8\":" } else { b"{\"base64\":" }).map_err(write_err)?;
        out.write_all(if long { b"[\"" } else { b"\"" }).map_err(write_err)?;
        if text {
            let mut check = TextCheck::default();
            let mut piece = 0usize;
            loop {
                let n = read_some(&mut *r, &mut self.buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                if !check.feed(&self.buf[..n]) {
                    return Err(changed(path));
                }
                let mut data = &self.buf[..n];
                while !data.is_empty() {
                    let room = LONG - piece;
                    if !long || data.len() <= room {
                        write_escaped(out, data).map_err(write_err)?;
                        piece += data.len();
                        break;
                    }
                    // Cut at a character boundary at most `room` bytes in; if
                    // a character begun in the previous read continues here,
                    // finish it first (a piece may exceed LONG by 3 bytes).
                    let cont = |b: u8| b & 0xC0 == 0x80;
                    let mut cut = room;
                    while cut > 0 && cont(data[cut]) {
                        cut -= 1;
                    }
                    if cut == 0 {
                        while cut < data.len() && cont(data[cut]) {
                            cut += 1;
                        }
                    }
                    write_escaped(out, &data[..cut]).map_err(write_err)?;
                    out.write_all(b"\",\"").map_err(write_err)?;
                    piece = 0;
                    data = &data[cut..];
                }
                bytes += n as u64;
            }
            if !check.finish() {
                return Err(changed(path));
            }
        } else {
            // Raw bytes per piece: a multiple of 3, so no piece but the last is padded.
            const RAW_PIECE: usize = LONG / 4 * 3;
            let mut enc = EncoderWriter::new(&mut *out, &STANDARD);
            let mut piece = 0usize;
            loop {
                let n = read_some(&mut *r, &mut self.buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                let mut data = &self.buf[..n];
                while !data.is_empty() {
                    if long && piece == RAW_PIECE {
                        let w = enc.finish().map_err(write_err)?;
                        w.write_all(b"\",\"").map_err(write_err)?;
                        enc = EncoderWriter::new(w, &STANDARD);
                        piece = 0;
                    }
                    let take = if long { data.len().min(RAW_PIECE - piece) } else { data.len() };
                    enc.write_all(&data[..take]).map_err(write_err)?;
                    piece += take;
                    data = &data[take..];
                }
                bytes += n as u64;
            }
            enc.finish().map_err(write_err)?;
        }
        out.write_all(if long { b"\"]}" } else { b"\"}" }).map_err(write_err)?;
        self.summary.bytes += bytes;
        Ok(())
    }
}

fn changed(path: &str) -> SnapshotError {
    let e = io::Error::new(io::ErrorKind::InvalidData, "the file changed while it was being exported");
    SnapshotError::io(format!("reading {path}"), e)
}

/// Fills as much of `buf` as one or more reads give before the end.
fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn write_time(out: &mut dyn Write, key: &str, t: Timespec) -> io::Result<()> {
    write!(out, ",\"{key}\":[{},{}]", t.sec, t.nsec)
}

/// Writes an encoded value: `{"utf8":"..."}` for text, else `{"base64":"..."}`.
fn write_value(out: &mut dyn Write, value: &[u8]) -> io::Result<()> {
    if is_text(value) {
        out.write_all(b"{\"utf8\":\"")?;
        write_escaped(out, value)?;
    } else {
        out.write_all(b"{\"base64\":\"")?;
        out.write_all(STANDARD.encode(value).as_bytes())?;
    }
    out.write_all(b"\"}")
}

fn write_link(out: &mut dyn Write, path: &str, kind: FileKind, first: &str) -> io::Result<()> {
    out.write_all(b"{\"path\":")?;
    write_string(out, path)?;
    write!(out, ",\"type\":\"{}\",\"link\":", kind_name(kind))?;
    write_string(out, first)?;
    out.write_all(b"}")
}

#[cfg(test)]
mod long_content_tests {
    use crate::{export, import, FsTree};
    use magicfs_core::{Fs, FsConfig, OpenOptions};
    use std::io::{Cursor, Read, Write};
    use std::sync::Arc;

    fn tree_with(files: &[(&str, Vec<u8>)]) -> FsTree {
        let fs = Arc::new(Fs::memory(FsConfig::default()));
        for (name, data) in files {
            fs.open_path(name, OpenOptions::new().write(true).create(true)).unwrap().write_all(data).unwrap();
        }
        FsTree::new(Arc::try_unwrap(fs).ok().unwrap())
    }

    #[test]
    fn long_contents_are_pieces_and_round_trip() {
        // Text with multi-byte characters straddling every piece boundary, and binary data.
        let text: Vec<u8> = "aé€😀".repeat(300_000).into_bytes();
        let bin = magicfs_types::noise::noise((3 << 20) + 7, 5);
        let mut src = tree_with(&[("text.txt", text.clone()), ("bin.dat", bin.clone())]);
        let mut doc = Vec::new();
        export(&mut src, &mut doc).unwrap();
        let s = String::from_utf8(doc.clone()).unwrap();
        assert!(s.contains("{\"utf8\":[\""), "long text is written in pieces");
        assert!(s.contains("{\"base64\":[\""), "long binary is written in pieces");
        let mut dst = FsTree::new(Fs::memory(FsConfig::default()));
        import(Cursor::new(doc.clone()), &mut dst).unwrap();
        let fs = dst.fs();
        let back = |p: &str| {
            let ino = fs.resolve(p).unwrap().ino;
            let mut v = Vec::new();
            std::fs::File::from(fs.export_memfd(ino).unwrap()).read_to_end(&mut v).unwrap();
            v
        };
        assert!(back("text.txt") == text);
        assert!(back("bin.dat") == bin);
        let mut again = Vec::new();
        export(&mut dst, &mut again).unwrap();
        assert!(again == doc, "export -> import -> export is identical");
    }
}
