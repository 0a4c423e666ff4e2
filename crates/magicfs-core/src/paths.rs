//! Paths of inodes, for callers outside the request path (search results,
//! index reconciliation): the inode table keeps only names in directories,
//! so a file's path is found by one pass over the directories.

use crate::node::Body;
use crate::Fs;
use magicfs_types::{Attr, FileKind, Ino, ROOT_INO};
use std::collections::HashMap;

impl Fs {
    /// Slash-separated paths (relative to the root, no leading slash) of the
    /// given inodes; an inode not reachable from the root is left out. For a
    /// file with several hard links, one of its names is chosen.
    pub fn paths_of(&self, inos: &[Ino]) -> HashMap<Ino, Vec<u8>> {
        let meta = self.meta.read();
        let wanted: std::collections::HashSet<Ino> = inos.iter().copied().collect();
        let mut named: HashMap<Ino, (Ino, Vec<u8>)> = HashMap::new();
        for (dir, node) in &meta.nodes {
            if let Some(entries) = node.entries() {
                for (name, child) in entries {
                    if wanted.contains(child) && !named.contains_key(child) {
                        named.insert(*child, (*dir, name.clone()));
                    }
                }
            }
        }
        let name_in_parent = |ino: Ino| -> Option<(Ino, Vec<u8>)> {
            let Body::Dir { parent, .. } = &meta.nodes.get(&ino)?.body else { return None };
            let entries = meta.nodes.get(parent)?.entries()?;
            entries.iter().find(|(_, c)| **c == ino).map(|(n, _)| (*parent, n.clone()))
        };
        let mut out = HashMap::new();
        for (ino, (mut dir, name)) in named {
            let mut parts = vec![name];
            let mut ok = true;
            while dir != ROOT_INO {
                match name_in_parent(dir) {
                    Some((p, n)) if parts.len() < 4096 => {
                        parts.push(n);
                        dir = p;
                    }
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                parts.reverse();
                out.insert(ino, parts.join(&b'/'));
            }
        }
        out
    }

    /// Attributes of every regular file.
    pub fn regular_files(&self) -> Vec<Attr> {
        let meta = self.meta.read();
        meta.nodes.values().filter(|n| n.attr.kind == FileKind::File).map(|n| n.attr).collect()
    }
}
