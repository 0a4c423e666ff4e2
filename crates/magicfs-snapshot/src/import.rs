//! Reading a snapshot document into a tree, all or nothing: a first pass
//! checks the whole document without writing, a second pass applies it.

use crate::error::{SnapshotError, SnapshotResult};
use crate::parse;
use crate::path;
use crate::tree::{Attrs, Tree};
use crate::{kind_name, Summary};
use magicfs_types::{FileKind, XATTR_SIZE_MAX};
use std::collections::HashMap;
use std::io::{BufReader, Read, Seek, SeekFrom};

/// Bytes of the document read at a time.
const READ_BUFFER: usize = 256 << 10;

/// Namespaces of the extended attributes a snapshot carries.
const XATTR_NAMESPACES: [&str; 3] = ["user.", "trusted.", "security."];

/// Longest symbolic link target accepted, in bytes.
const TARGET_MAX: usize = 4095;

/// Imports the document `input` into `tree`: refuses a tree that is not
/// empty, checks the whole document ([`validate`]), then rewinds `input`
/// and writes it ([`apply`]). Nothing is written unless the check passes.
pub fn import<R: Read + Seek>(mut input: R, tree: &mut dyn Tree) -> SnapshotResult<Summary> {
    ensure_empty(tree, "the destination")?;
    validate(&mut input)?;
    input.seek(SeekFrom::Start(0)).map_err(|e| SnapshotError::io("rewinding the snapshot", e))?;
    apply(input, tree)
}

/// Refuses a tree that already holds entries; `name` says which in the message.
pub fn ensure_empty(tree: &mut dyn Tree, name: &str) -> SnapshotResult<()> {
    if tree.is_empty()? {
        Ok(())
    } else {
        Err(SnapshotError::NotEmpty(name.to_string()))
    }
}

/// Checks a whole document without writing anything: JSON syntax, the
/// schema, paths, order (parents first, each directory followed by what it
/// holds), hard-link targets, base64. Errors carry the line and column.
pub fn validate(input: impl Read) -> SnapshotResult<Summary> {
    let mut engine = Engine::new(None);
    parse::document(BufReader::with_capacity(READ_BUFFER, input), &mut engine)?;
    engine.end()
}

/// Writes a document into `tree` entry by entry, as it is read. Call
/// [`validate`] on the same bytes first: an error here leaves what was
/// written so far.
pub fn apply(input: impl Read, tree: &mut dyn Tree) -> SnapshotResult<Summary> {
    let mut engine = Engine::new(Some(tree));
    parse::document(BufReader::with_capacity(READ_BUFFER, input), &mut engine)?;
    let summary = engine.end()?;
    if let Some(t) = engine.tree {
        t.finish()?;
    }
    Ok(summary)
}

/// A file's content as it appears in an entry.
pub(crate) enum Content {
    /// No `content` field.
    Absent,
    /// Checked (first pass) or already written to the tree (second pass).
    Done,
    /// Held until the entry's path and type are known.
    Held {
        /// The JSON string(s): one, or the pieces of a long content.
        pieces: Vec<String>,
        /// True when the pieces are base64, false when they are the content itself.
        base64: bool,
    },
}

/// One entry as read from the document.
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) kind: FileKind,
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) atime: Option<magicfs_types::Timespec>,
    pub(crate) mtime: Option<magicfs_types::Timespec>,
    pub(crate) xattrs: Option<Vec<(String, Vec<u8>)>>,
    pub(crate) content: Content,
    pub(crate) target: Option<String>,
    pub(crate) rdev: Option<u64>,
    pub(crate) link: Option<String>,
}

/// Why an entry could not be taken.
pub(crate) enum Fail {
    /// The document breaks the schema (reported with its position).
    Schema(String),
    /// The tree refused a write.
    Tree(SnapshotError),
}

impl From<SnapshotError> for Fail {
    fn from(e: SnapshotError) -> Self {
        Fail::Tree(e)
    }
}

/// A directory whose entries are still coming, with the attributes to set
/// once they are all written (writing into a directory changes its times).
struct OpenDir {
    path: String,
    attrs: Option<Attrs>,
}

/// The state of one pass over a document; `tree` is `None` for the checking
/// pass.
pub(crate) struct Engine<'t> {
    pub(crate) tree: Option<&'t mut dyn Tree>,
    /// A tree error met inside the parser, reported instead of the parser's.
    pub(crate) failure: Option<SnapshotError>,
    /// Every path so far with its type (hard-link targets, duplicates).
    seen: HashMap<String, FileKind>,
    /// The root and the directories enclosing the last entry.
    open: Vec<OpenDir>,
    summary: Summary,
}

impl<'t> Engine<'t> {
    fn new(tree: Option<&'t mut dyn Tree>) -> Self {
        let root = OpenDir { path: String::new(), attrs: None };
        Engine { tree, failure: None, seen: HashMap::new(), open: vec![root], summary: Summary::default() }
    }

    /// True on the writing pass.
    pub(crate) fn writing(&self) -> bool {
        self.tree.is_some()
    }

    /// Places an entry in the tree's order: checks its path, that it is new,
    /// and that its directory encloses the previous entry; closes the
    /// directories it leaves. Called once per entry, before it is written.
    pub(crate) fn place(&mut self, path: &str, kind: FileKind) -> Result<(), Fail> {
        if path.is_empty() {
            if self.summary.entries > 0 {
                return Err(Fail::Schema("the root entry (empty path) must be the first entry".into()));
            }
            if kind != FileKind::Dir {
                return Err(Fail::Schema("the root entry must be a directory".into()));
            }
            self.summary.entries += 1;
            return Ok(());
        }
        path::check(path).map_err(Fail::Schema)?;
        if self.seen.contains_key(path) {
            return Err(Fail::Schema(format!("entry {path:?} appears twice")));
        }
        let (parent, _) = path::split(path);
        while self.open.last().is_some_and(|d| d.path != parent) && self.open.len() > 1 {
            self.close_dir()?;
        }
        if self.open.last().is_none_or(|d| d.path != parent) {
            return Err(Fail::Schema(match self.seen.get(parent) {
                Some(FileKind::Dir) => format!(
                    "entry {path:?} comes after the entries of its directory ended; entries must be in pre-order (each directory followed by everything under it)"
                ),
                Some(k) => format!("entry {path:?} is under {parent:?}, which is a {}, not a directory", kind_name(*k)),
                None => format!("entry {path:?} comes before its directory {parent:?}; parents must come first"),
            }));
        }
        self.seen.insert(path.to_string(), kind);
        self.summary.entries += 1;
        Ok(())
    }

    /// Closes the innermost open directory, restoring its attributes.
    fn close_dir(&mut self) -> Result<(), Fail> {
        if let Some(d) = self.open.pop() {
            if let (Some(t), Some(a)) = (self.tree.as_deref_mut(), d.attrs) {
                t.set_attrs(&d.path, FileKind::Dir, &a)?;
            }
        }
        Ok(())
    }

    /// Takes a file's content on the checking pass, where its path may not
    /// be known yet. `text` is base64 when `base64`.
    pub(crate) fn check_content(&mut self, text: &str, base64: bool, first: bool) -> Result<(), Fail> {
        let len = if base64 {
            decoded_len(text).map_err(|e| Fail::Schema(format!("content is not valid base64: {e}")))?
        } else {
            text.len() as u64
        };
        self.summary.files += first as u64;
        self.summary.bytes += len;
        Ok(())
    }

    /// Takes a file's content, or one piece of it: checks it (first pass)
    /// or, in the second pass, creates the file at `path` with the first
    /// piece and appends the others, decoded in pieces.
    pub(crate) fn content(&mut self, path: &str, text: &str, base64: bool, first: bool) -> Result<(), Fail> {
        let Some(t) = self.tree.as_deref_mut() else { return self.check_content(text, base64, first) };
        let mut plain = text.as_bytes();
        let mut decoded;
        let r: &mut dyn std::io::Read = if base64 {
            decoded = base64::read::DecoderReader::new(text.as_bytes(), &base64::engine::general_purpose::STANDARD);
            &mut decoded
        } else {
            &mut plain
        };
        let written = if first { t.make_file(path, r)? } else { t.append_file(path, r)? };
        self.summary.files += first as u64;
        self.summary.bytes += written;
        Ok(())
    }

    /// Checks the fields of a complete entry against its type and writes
    /// what is left of it: the node itself (unless its content already
    /// created it), its extended attributes and attributes.
    pub(crate) fn finish(&mut self, e: Entry) -> Result<(), Fail> {
        let schema = |m: String| Err(Fail::Schema(m));
        let p = &e.path;
        if let Some(link) = &e.link {
            let extra = e.mode.is_some()
                || e.uid.is_some()
                || e.gid.is_some()
                || e.atime.is_some()
                || e.mtime.is_some()
                || e.xattrs.is_some()
                || !matches!(e.content, Content::Absent)
                || e.target.is_some()
                || e.rdev.is_some();
            if extra {
                return schema(format!("hard-link entry {p:?} may hold only path, type and link"));
            }
            if p.is_empty() || e.kind == FileKind::Dir {
                return schema(format!("entry {p:?}: directories cannot be hard links"));
            }
            if link == p {
                return schema(format!("hard-link entry {p:?} names itself"));
            }
            match self.seen.get(link.as_str()) {
                None => {
                    return schema(format!("hard-link entry {p:?} names {link:?}, which has not appeared before it"))
                }
                Some(k) if *k != e.kind => {
                    let (k, want) = (kind_name(*k), kind_name(e.kind));
                    return schema(format!("hard-link entry {p:?} is a {want} but {link:?} is a {k}"));
                }
                Some(_) => {}
            }
            self.summary.links += 1;
            if let Some(t) = self.tree.as_deref_mut() {
                t.make_link(p, link)?;
            }
            return Ok(());
        }
        let Some(mode) = e.mode else { return schema(format!("entry {p:?} has no mode")) };
        if mode > 0o7777 {
            return schema(format!("entry {p:?}: mode {mode:#o} has bits beyond 0o7777 (give permission bits only)"));
        }
        let name = kind_name(e.kind);
        if e.kind != FileKind::File && !matches!(e.content, Content::Absent) {
            return schema(format!("entry {p:?} is a {name} and cannot have content"));
        }
        match (&e.target, e.kind) {
            (None, FileKind::Symlink) => return schema(format!("symbolic link {p:?} has no target")),
            (Some(t), FileKind::Symlink) if t.is_empty() || t.len() > TARGET_MAX || t.contains('\0') => {
                return schema(format!("symbolic link {p:?}: the target must be 1 to 4095 bytes without NUL"));
            }
            (Some(_), k) if k != FileKind::Symlink => {
                return schema(format!("entry {p:?} is a {name} and has no target"))
            }
            _ => {}
        }
        if e.rdev.is_some() && !matches!(e.kind, FileKind::CharDev | FileKind::BlockDev) {
            return schema(format!("entry {p:?} is a {name} and has no device number"));
        }
        let xattrs = e.xattrs.unwrap_or_default();
        for (n, v) in &xattrs {
            if n.is_empty() || n.len() > 255 || n.contains('\0') {
                return schema(format!(
                    "entry {p:?}: extended attribute name {n:?} must be 1 to 255 bytes without NUL"
                ));
            }
            if !XATTR_NAMESPACES.iter().any(|ns| n.starts_with(ns)) {
                return schema(format!(
                    "entry {p:?}: extended attribute {n:?} is outside the user., trusted. and security. namespaces"
                ));
            }
            if v.len() > XATTR_SIZE_MAX {
                return schema(format!("entry {p:?}: extended attribute {n:?} is larger than 64 KiB"));
            }
        }
        let attrs = Attrs { perm: Some(mode), uid: e.uid, gid: e.gid, atime: e.atime, mtime: e.mtime };
        if let Content::Held { pieces, base64 } = &e.content {
            if pieces.is_empty() {
                self.content(p, "", false, true)?;
            }
            for (i, piece) in pieces.iter().enumerate() {
                self.content(p, piece, *base64, i == 0)?;
            }
        } else if e.kind == FileKind::File && matches!(e.content, Content::Absent) {
            self.content(p, "", false, true)?;
        }
        if e.kind == FileKind::Dir {
            self.summary.dirs += 1;
        }
        let Some(t) = self.tree.as_deref_mut() else {
            if e.kind == FileKind::Dir && !p.is_empty() {
                self.open.push(OpenDir { path: p.clone(), attrs: None });
            }
            return Ok(());
        };
        match e.kind {
            FileKind::Dir if p.is_empty() => {}
            FileKind::Dir => t.make_dir(p)?,
            FileKind::File => {}
            FileKind::Symlink => t.make_symlink(p, e.target.as_deref().unwrap_or_default().as_bytes())?,
            k => t.make_node(p, k, e.rdev.unwrap_or(0))?,
        }
        for (n, v) in &xattrs {
            t.set_xattr(p, n.as_bytes(), v)?;
        }
        if e.kind == FileKind::Dir {
            if p.is_empty() {
                if let Some(root) = self.open.first_mut() {
                    root.attrs = Some(attrs);
                }
            } else {
                self.open.push(OpenDir { path: p.clone(), attrs: Some(attrs) });
            }
        } else {
            t.set_attrs(p, e.kind, &attrs)?;
        }
        Ok(())
    }

    /// Ends the pass: closes every open directory, the root last.
    fn end(&mut self) -> SnapshotResult<Summary> {
        while !self.open.is_empty() {
            if let Err(f) = self.close_dir() {
                return Err(match f {
                    Fail::Tree(e) => e,
                    Fail::Schema(m) => SnapshotError::Invalid { line: 0, column: 0, message: m },
                });
            }
        }
        Ok(self.summary)
    }
}

/// Length of the bytes a base64 text decodes to, decoding it in pieces;
/// an error if it is not valid (padded, standard alphabet) base64.
fn decoded_len(text: &str) -> std::io::Result<u64> {
    let mut r = base64::read::DecoderReader::new(text.as_bytes(), &base64::engine::general_purpose::STANDARD);
    std::io::copy(&mut r, &mut std::io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{export, FsTree, HostTree};
    use magicfs_core::{Fs, FsConfig};
    use std::io::Cursor;

    const T: &str = r#""uid":0,"gid":0,"atime":[1700000000,1],"mtime":[1700000001,999999999]"#;

    fn doc(entries: &[String]) -> String {
        format!("{{\"format\":\"magicfs-snapshot\",\"version\":1,\"entries\":[\n{}\n]}}\n", entries.join(",\n"))
    }

    fn sample() -> Vec<String> {
        vec![
            format!(r#"{{"path":"","type":"dir","mode":493,{T}}}"#),
            format!(r#"{{"path":"a","type":"dir","mode":1023,{T},"xattrs":{{"user.d":{{"utf8":"dir"}}}}}}"#),
            format!(
                r#"{{"path":"a/bin","type":"file","mode":2541,{T},"xattrs":{{"user.b":{{"base64":"AAE="}},"user.t":{{"utf8":"x\"y"}}}},"content":{{"base64":"AAECAw=="}}}}"#
            ),
            r#"{"path":"a/link","type":"file","link":"a/bin"}"#.to_string(),
            format!(r#"{{"path":"a/sub","type":"dir","mode":320,{T}}}"#),
            format!(
                r#"{{"path":"a/text","type":"file","mode":420,{T},"content":{{"utf8":"line\n\"q\" \\ ✓\u0001"}}}}"#
            ),
            format!(r#"{{"path":"dev","type":"chardev","mode":432,{T},"rdev":259}}"#),
            format!(r#"{{"path":"empty","type":"file","mode":384,{T},"content":{{"utf8":""}}}}"#),
            format!(r#"{{"path":"fifo","type":"fifo","mode":420,{T}}}"#),
            format!(r#"{{"path":"sym","type":"symlink","mode":511,{T},"target":"a/text"}}"#),
        ]
    }

    fn memory_tree() -> FsTree {
        FsTree::new(Fs::memory(FsConfig::default()))
    }

    fn export_string(tree: &mut dyn Tree) -> String {
        let mut out = Vec::new();
        export(tree, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The error of validating a document whose entries after the root are `entries`.
    fn invalid(entries: &[&str]) -> (usize, usize, String) {
        let mut all = vec![format!(r#"{{"path":"","type":"dir","mode":493,{T}}}"#)];
        all.extend(entries.iter().map(|e| e.to_string()));
        match validate(Cursor::new(doc(&all))) {
            Err(SnapshotError::Invalid { line, column, message }) => (line, column, message),
            other => panic!("expected an invalid document, got {other:?}"),
        }
    }

    fn assert_invalid(entries: &[&str], needle: &str) {
        let (line, column, message) = invalid(entries);
        assert!(line > 0 && column > 0, "no position for {message}");
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }

    #[test]
    fn round_trip_through_a_store() {
        let text = doc(&sample());
        let summary = validate(Cursor::new(&text)).unwrap();
        assert_eq!((summary.entries, summary.files, summary.links, summary.bytes), (10, 3, 1, 4 + 15));
        let mut tree = memory_tree();
        import(Cursor::new(&text), &mut tree).unwrap();
        let a = tree.fs().resolve("a/bin").unwrap();
        assert_eq!((a.perm, a.nlink, a.size), (0o4755, 2, 4));
        assert_eq!(tree.fs().read(a.ino, 0, 10).unwrap(), [0, 1, 2, 3]);
        assert_eq!(export_string(&mut tree), text);
    }

    #[test]
    fn round_trip_through_a_host_directory() {
        let dir = tempfile::tempdir().unwrap();
        let text = doc(&sample());
        let mut tree = HostTree::open(dir.path()).unwrap();
        import(Cursor::new(&text), &mut tree).unwrap();
        assert_eq!(export_string(&mut tree), text);
    }

    #[test]
    fn fields_in_any_order() {
        let mut entries = sample();
        entries[5] = format!(
            r#"{{"content":{{"utf8":"line\n\"q\" \\ ✓\u0001"}},"mode":420,{T},"type":"file","path":"a/text"}}"#
        );
        let mut tree = memory_tree();
        import(Cursor::new(doc(&entries)), &mut tree).unwrap();
        assert_eq!(export_string(&mut tree), doc(&sample()));
    }

    #[test]
    fn validation_errors_name_the_place() {
        let f = |p: &str| format!(r#"{{"path":"{p}","type":"file","mode":420}}"#);
        assert_invalid(&[&f("/etc/passwd")], "absolute");
        assert_invalid(&[&f("a/../b")], "\"..\" component");
        assert_invalid(&[&f("a//b")], "empty component");
        assert_invalid(&[&f("d/x")], "comes before its directory");
        let d = r#"{"path":"d","type":"dir","mode":493}"#;
        assert_invalid(&[d, &f("e"), &f("d/x")], "pre-order");
        assert_invalid(&[&f("e"), &f("e/x")], "not a directory");
        assert_invalid(&[&f("e"), &f("e")], "appears twice");
        assert_invalid(&[r#"{"path":"e","type":"file","mode":420,"content":{"base64":"@@@"}}"#], "base64");
        assert_invalid(&[r#"{"path":"e","type":"file","mode":420,"content":{"base64":"AAE"}}"#], "base64");
        assert_invalid(&[r#"{"path":"e","type":"whatever","mode":420}"#], "unknown type");
        assert_invalid(&[r#"{"path":"e","type":"file","mode":420,"colour":1}"#], "colour");
        assert_invalid(&[r#"{"path":"e","type":"file","link":"nowhere"}"#], "has not appeared");
        assert_invalid(&[d, r#"{"path":"e","type":"dir","link":"d"}"#], "directories cannot be hard links");
        assert_invalid(&[&f("e"), r#"{"path":"g","type":"fifo","link":"e"}"#], "is a fifo but");
        assert_invalid(&[r#"{"path":"e","type":"file","link":"e"}"#], "names itself");
        assert_invalid(&[r#"{"path":"e","type":"file"}"#], "no mode");
        assert_invalid(&[r#"{"path":"e","type":"file","mode":4096}"#], "0o7777");
        assert_invalid(&[r#"{"path":"e","type":"symlink","mode":511}"#], "no target");
        assert_invalid(&[r#"{"path":"e","type":"dir","mode":493,"content":{"utf8":""}}"#], "cannot have content");
        assert_invalid(&[r#"{"path":"e","type":"file","mode":420,"mtime":[1,1000000000]}"#], "nanoseconds");
        assert_invalid(&[r#"{"path":"","type":"dir","mode":493}"#], "first entry");
        let acl = r#"{"path":"e","type":"file","mode":420,"xattrs":{"system.posix_acl_access":{"base64":"AA=="}}}"#;
        assert_invalid(&[acl], "namespaces");
        let dup = r#"{"path":"e","type":"file","mode":420,"xattrs":{"user.a":{"utf8":""},"user.a":{"utf8":""}}}"#;
        assert_invalid(&[dup], "appears twice");
        let (line, _, _) = invalid(&[&f("ok"), &f("/abs")]);
        assert_eq!(line, 4, "the line of the offending entry");
    }

    #[test]
    fn header_is_checked() {
        for (text, needle) in [
            (r#"{"format":"tarball","version":1,"entries":[]}"#, "format"),
            (r#"{"format":"magicfs-snapshot","version":2,"entries":[]}"#, "version 2"),
            (r#"{"format":"magicfs-snapshot","version":1}"#, "entries"),
            (r#"{"format":"magicfs-snapshot","version":1,"entries":[]} trailing"#, "trailing"),
            ("[]", "snapshot object"),
        ] {
            match validate(Cursor::new(text)) {
                Err(SnapshotError::Invalid { message, .. }) => assert!(message.contains(needle), "{message}"),
                other => panic!("{text} gave {other:?}"),
            }
        }
    }

    #[test]
    fn truncated_input_is_refused_with_a_position() {
        let text = doc(&sample());
        for cut in [1, text.len() / 3, text.len() / 2, text.len() - 3] {
            match validate(Cursor::new(&text[..cut])) {
                Err(SnapshotError::Invalid { line, column, message }) => {
                    assert!(line > 0 && message.contains("EOF"), "cut at {cut}: {message} at {line}:{column}")
                }
                other => panic!("cut at {cut} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_failed_import_leaves_the_destination_untouched() {
        let mut entries = sample();
        entries.push(r#"{"path":"zz/late","type":"file","mode":420}"#.to_string());
        let text = doc(&entries);
        let mut tree = memory_tree();
        assert!(matches!(import(Cursor::new(&text), &mut tree), Err(SnapshotError::Invalid { .. })));
        assert!(tree.list("").unwrap().is_empty(), "nothing written into the store");
        let root = tree.stat("").unwrap();
        assert_ne!(root.mtime.sec, 1700000001, "root attributes untouched");
        let dir = tempfile::tempdir().unwrap();
        let mut host = HostTree::open(dir.path()).unwrap();
        let before = host.stat("").unwrap();
        assert!(import(Cursor::new(&text[..text.len() / 2]), &mut host).is_err());
        assert!(host.list("").unwrap().is_empty(), "nothing written into the directory");
        assert_eq!(host.stat("").unwrap().perm, before.perm);
    }

    #[test]
    fn non_empty_destinations_are_refused() {
        let mut tree = memory_tree();
        import(Cursor::new(doc(&sample())), &mut tree).unwrap();
        match import(Cursor::new(doc(&sample()[..1])), &mut tree) {
            Err(SnapshotError::NotEmpty(_)) => {}
            other => panic!("expected NotEmpty, got {other:?}"),
        }
    }
}
