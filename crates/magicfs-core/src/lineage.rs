//! Where an inode sits in the tree: its parent, its path, its ancestors and
//! the entries of a directory, for features (generated content) that reason
//! about a file's surroundings. Regular files carry no parent pointer, so
//! [`Fs::parent_of`] scans the directories; callers run it off the FUSE
//! request loop.

use crate::fs::Fs;
use crate::node::Body;
use magicfs_types::{Attr, FileKind, FsError, FsResult, Ino, ROOT_INO};

impl Fs {
    /// The directory holding `ino` and the entry's name (the first link
    /// found, for files with several); `None` for the root and orphans.
    pub fn parent_of(&self, ino: Ino) -> Option<(Ino, Vec<u8>)> {
        if ino == ROOT_INO {
            return None;
        }
        let meta = self.meta.read();
        let hint = match meta.nodes.get(&ino).map(|n| &n.body) {
            Some(Body::Dir { parent, .. }) => Some(*parent),
            Some(_) => None,
            None => return None,
        };
        let find = |dir: Ino| {
            meta.nodes
                .get(&dir)
                .and_then(|n| n.entries())
                .and_then(|e| e.iter().find(|(_, i)| **i == ino).map(|(name, _)| (dir, name.clone())))
        };
        if let Some(p) = hint {
            return find(p);
        }
        meta.nodes.iter().filter(|(_, n)| n.attr.kind == FileKind::Dir).find_map(|(d, _)| find(*d))
    }

    /// Directories from `dir` up to the root, `dir` first.
    pub fn ancestors(&self, dir: Ino) -> Vec<Ino> {
        let meta = self.meta.read();
        let mut out = vec![dir];
        let mut cur = dir;
        while cur != ROOT_INO && out.len() < 4096 {
            match meta.nodes.get(&cur).map(|n| &n.body) {
                Some(Body::Dir { parent, .. }) => {
                    cur = *parent;
                    out.push(cur);
                }
                _ => break,
            }
        }
        out
    }

    /// The slash-separated path of `ino` from the root (`/` for the root).
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (p, name) = self.parent_of(cur)?;
            parts.push(String::from_utf8_lossy(&name).into_owned());
            cur = p;
            if parts.len() > 4096 {
                return None;
            }
        }
        parts.reverse();
        Some(format!("/{}", parts.join("/")))
    }

    /// The entries of directory `dir` with their attributes, in name order.
    pub fn children(&self, dir: Ino) -> FsResult<Vec<(Vec<u8>, Attr)>> {
        let meta = self.meta.read();
        let n = meta.nodes.get(&dir).ok_or(FsError::NotFound)?;
        let entries = n.entries().ok_or(FsError::NotDir)?;
        Ok(entries.iter().filter_map(|(name, i)| meta.nodes.get(i).map(|c| (name.clone(), c.attr))).collect())
    }

    /// Inodes carrying any of the extended attributes `names`.
    pub fn inodes_with_xattr(&self, names: &[&[u8]]) -> Vec<Ino> {
        let meta = self.meta.read();
        meta.nodes.iter().filter(|(_, n)| names.iter().any(|x| n.xattrs.contains_key(*x))).map(|(i, _)| *i).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Ctx, Fs, FsConfig};
    use magicfs_types::ROOT_INO;

    #[test]
    fn parents_paths_and_children() {
        let fs = Fs::memory(FsConfig::default());
        let ctx = Ctx { uid: 0, gid: 0 };
        let a = fs.mkdir(ROOT_INO, b"a", 0o755, ctx).unwrap();
        let b = fs.mkdir(a.ino, b"b", 0o755, ctx).unwrap();
        let (f, fh) = fs.create(b.ino, b"f.txt", 0o644, libc::O_RDWR, ctx).unwrap();
        fs.release(fh).unwrap();
        assert_eq!(fs.parent_of(f.ino), Some((b.ino, b"f.txt".to_vec())));
        assert_eq!(fs.parent_of(b.ino), Some((a.ino, b"b".to_vec())));
        assert_eq!(fs.parent_of(ROOT_INO), None);
        assert_eq!(fs.path_of(f.ino).as_deref(), Some("/a/b/f.txt"));
        assert_eq!(fs.path_of(ROOT_INO).as_deref(), Some("/"));
        assert_eq!(fs.ancestors(b.ino), vec![b.ino, a.ino, ROOT_INO]);
        let kids = fs.children(b.ino).unwrap();
        assert_eq!(kids.len(), 1);
        assert_eq!(kids[0].0, b"f.txt");
        fs.setxattr(a.ino, b"user.magic.prompt", b"p", 0).unwrap();
        assert_eq!(fs.inodes_with_xattr(&[b"user.magic.prompt"]), vec![a.ino]);
    }
}
