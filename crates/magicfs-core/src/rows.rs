//! Table rows into the in-memory inode table: one function serves loading
//! a store (every row of a snapshot) and keeping a mount of a shared volume
//! current (every row of the batches other mounts committed).

use crate::node::{Body, Meta, Node, NEXT_INO_KEY};
use magicfs_store::keys::{be_u64, split_key};
use magicfs_store::{ChunkMeta, Extent, StoreError, Table};
use magicfs_types::{Attr, ChunkId, Ino, ATTR_LEN};

/// What a change from another mount means for the kernel's caches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Inval {
    /// The name `name` in directory `parent` was added, removed or replaced.
    Entry {
        /// The directory.
        parent: Ino,
        /// The name.
        name: Vec<u8>,
    },
    /// The attributes or contents of an inode changed.
    Inode(Ino),
}

fn corrupt(what: &str, key: &[u8]) -> StoreError {
    StoreError::Corrupt(format!("undecodable {what} entry (key {key:02x?})"))
}

impl Meta {
    /// Applies one row: `value` is its new value, `None` a deletion. With
    /// `inval`, the row comes from another mount: what the kernel must
    /// forget is added there, and touched inodes get a new `remote_gen`.
    /// `orphans` rows are not part of the inode table and are ignored.
    pub fn apply_row(
        &mut self,
        t: Table,
        key: &[u8],
        value: Option<&[u8]>,
        mut inval: Option<&mut Vec<Inval>>,
    ) -> Result<(), StoreError> {
        let touched = |meta: &mut Meta, ino: Ino, inval: &mut Option<&mut Vec<Inval>>| {
            if let Some(out) = inval.as_deref_mut() {
                out.push(Inval::Inode(ino));
                if let Some(n) = meta.nodes.get_mut(&ino) {
                    n.remote_gen += 1;
                }
            }
        };
        match t {
            Table::Meta => {
                if key == NEXT_INO_KEY {
                    if let Some(b) = value.and_then(|v| <[u8; 8]>::try_from(v).ok()) {
                        self.next_ino = self.next_ino.max(u64::from_le_bytes(b));
                    }
                }
            }
            Table::Inodes => {
                let ino = be_u64(key).ok_or_else(|| corrupt("inode", key))?;
                match value {
                    None => {
                        self.nodes.remove(&ino);
                    }
                    Some(v) => {
                        let attr = Attr::decode(v).ok_or_else(|| corrupt("inode", key))?;
                        self.put_node(ino, attr, &v[ATTR_LEN.min(v.len())..]);
                    }
                }
                touched(self, ino, &mut inval);
            }
            Table::Dirents => {
                let (parent, name) = split_key(key).ok_or_else(|| corrupt("dirent", key))?;
                match value {
                    Some(v) => {
                        let child = be_u64(v).ok_or_else(|| corrupt("dirent", key))?;
                        if let Some(Body::Dir { parent: p, .. }) = self.nodes.get_mut(&child).map(|n| &mut n.body) {
                            *p = parent;
                        }
                        if let Some(e) = self.nodes.get_mut(&parent).and_then(Node::entries_mut) {
                            e.insert(name.to_vec(), child);
                        }
                    }
                    None => {
                        if let Some(e) = self.nodes.get_mut(&parent).and_then(Node::entries_mut) {
                            e.remove(name);
                        }
                    }
                }
                if let Some(out) = inval.as_deref_mut() {
                    out.push(Inval::Entry { parent, name: name.to_vec() });
                }
            }
            Table::Extents => {
                let (ino, off) =
                    split_key(key).and_then(|(i, o)| Some((i, be_u64(o)?))).ok_or_else(|| corrupt("extent", key))?;
                let e = match value {
                    Some(v) => Some(Extent::decode(v).ok_or_else(|| corrupt("extent", key))?),
                    None => None,
                };
                if let Some(f) = self.nodes.get_mut(&ino).and_then(Node::file_mut) {
                    let old = match e {
                        Some(e) => {
                            f.extent_bytes += e.len as u64;
                            f.extents.insert(off, e)
                        }
                        None => f.extents.remove(&off),
                    };
                    if let Some(old) = old {
                        f.extent_bytes -= old.len as u64;
                    }
                }
                touched(self, ino, &mut inval);
            }
            Table::Xattrs => {
                let (ino, name) = split_key(key).ok_or_else(|| corrupt("xattr", key))?;
                if let Some(n) = self.nodes.get_mut(&ino) {
                    match value {
                        Some(v) => n.xattrs.insert(name.to_vec(), v.to_vec()),
                        None => n.xattrs.remove(name),
                    };
                }
            }
            Table::Chunks => {
                let id = ChunkId(<[u8; 32]>::try_from(key).map_err(|_| corrupt("chunk", key))?);
                match value {
                    Some(v) => {
                        self.chunks.insert(id, ChunkMeta::decode(v).ok_or_else(|| corrupt("chunk", key))?);
                    }
                    None => {
                        self.chunks.remove(&id);
                    }
                }
            }
            Table::Orphans => {}
        }
        Ok(())
    }

    /// Sets an inode's attributes (and symlink target), creating the node
    /// when it is new. A file with uncommitted writes here keeps its own
    /// size and modification time where they are ahead: its next commit
    /// carries them.
    fn put_node(&mut self, ino: Ino, attr: Attr, target: &[u8]) {
        let n = match self.nodes.get_mut(&ino) {
            Some(n) if n.attr.kind == attr.kind => n,
            _ => {
                self.nodes.insert(ino, Node::new(attr, ino));
                let Some(n) = self.nodes.get_mut(&ino) else { return };
                n
            }
        };
        n.take_stored_attr(attr);
        if let Body::Symlink(t) = &mut n.body {
            *t = target.to_vec();
        }
    }
}
