//! Which files are generated, by what, from which prompt; and the context a
//! generator sees.
//!
//! Inheritance: an empty regular file is generated when it, or any directory
//! above it, carries `user.magic.prompt` or `user.magic.generator`. The
//! generator is the file's own, else the nearest directory's (a directory's
//! `readme` is its overlay and is not inherited), else `llm`; `none` switches
//! generation off for the file or the subtree. The task is the file's own
//! prompt, else the nearest directory's; every directory prompt above the
//! file is given as context, outermost first. The directory structure shown
//! is that of the outermost directory with a prompt (the project root), or
//! the file's directory.

use crate::names;
use crate::plugin::{DEFAULT_GENERATOR, NO_GENERATOR};
use crate::request::{GenRequest, Sibling, TreeEntry, REQUEST_VERSION};
use magicfs_core::Fs;
use magicfs_types::{FileKind, FsResult, Ino};
use std::collections::BTreeMap;

/// Entries of the directory structure given to a generator.
pub const TREE_ENTRIES: usize = 200;
/// Depth of the directory structure given to a generator.
pub const TREE_DEPTH: usize = 6;
/// Largest sibling whose text is included.
pub const SIBLING_BYTES: u64 = 4096;
/// Total bytes of sibling texts included.
pub const CONTEXT_BUDGET: usize = 8192;

/// The decision to generate one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The file.
    pub ino: Ino,
    /// Its directory.
    pub parent: Ino,
    /// Generator name.
    pub generator: String,
    /// The task (may be empty for plugins that need none).
    pub prompt: String,
    /// Directory prompts above the file, outermost first.
    pub context: Vec<String>,
    /// Directory whose structure the generator sees.
    pub root: Ino,
    /// Sampling overrides (`user.magic.<key>`) of the file, else the nearest directory setting each.
    pub sampling: BTreeMap<String, String>,
}

fn text_xattr(fs: &Fs, ino: Ino, name: &[u8]) -> Option<String> {
    fs.getxattr(ino, name).ok().map(|v| String::from_utf8_lossy(&v).trim().to_string())
}

/// True when the file itself names a prompt or a generator.
pub fn has_own_rules(fs: &Fs, ino: Ino) -> bool {
    fs.getxattr(ino, names::PROMPT).is_ok() || fs.getxattr(ino, names::GENERATOR).is_ok()
}

/// Decides whether `ino` is generated now. Without `force`, only an empty
/// regular file with no buffered writes and no provenance (content once
/// generated is never silently regenerated) qualifies; `force` is the
/// explicit regeneration. Scans the directories: call it off the request loop.
pub fn plan(fs: &Fs, ino: Ino, force: bool) -> FsResult<Option<Plan>> {
    let attr = fs.getattr(ino)?;
    if attr.kind != FileKind::File {
        return Ok(None);
    }
    if !force && (attr.size > 0 || fs.dirty_bytes(ino) > 0 || fs.getxattr(ino, names::PROV_TIME).is_ok()) {
        return Ok(None);
    }
    let Some((parent, _)) = fs.parent_of(ino) else { return Ok(None) };
    let own_gen = text_xattr(fs, ino, names::GENERATOR).filter(|g| !g.is_empty());
    let own_prompt = text_xattr(fs, ino, names::PROMPT).filter(|p| !p.is_empty());
    let mut dir_prompts = Vec::new();
    let mut dir_gen = None;
    let mut root = None;
    for d in fs.ancestors(parent) {
        if let Some(p) = text_xattr(fs, d, names::PROMPT).filter(|p| !p.is_empty()) {
            dir_prompts.push(p);
            root = Some(d);
        }
        if dir_gen.is_none() {
            dir_gen = text_xattr(fs, d, names::GENERATOR).filter(|g| !g.is_empty() && g != "readme");
        }
    }
    dir_prompts.reverse();
    let generator = match (own_gen, dir_gen) {
        (Some(g), _) | (None, Some(g)) => g,
        (None, None) if own_prompt.is_some() || !dir_prompts.is_empty() => DEFAULT_GENERATOR.to_string(),
        (None, None) => return Ok(None),
    };
    if generator == NO_GENERATOR {
        return Ok(None);
    }
    let prompt = own_prompt.or_else(|| dir_prompts.last().cloned()).unwrap_or_default();
    let mut sampling = BTreeMap::new();
    for i in std::iter::once(ino).chain(fs.ancestors(parent)) {
        for key in magicfs_llm::sampling::KEYS.iter().chain(&["max_tokens"]) {
            if sampling.contains_key(*key) {
                continue;
            }
            if let Some(v) = text_xattr(fs, i, format!("user.magic.{key}").as_bytes()).filter(|v| !v.is_empty()) {
                sampling.insert(key.to_string(), v);
            }
        }
    }
    Ok(Some(Plan { ino, parent, generator, prompt, context: dir_prompts, root: root.unwrap_or(parent), sampling }))
}

/// The entries under `dir`, depth first in name order, with paths relative
/// to it; the flag says the limits cut the walk short.
pub fn walk(fs: &Fs, dir: Ino, max_entries: usize, max_depth: usize) -> (Vec<TreeEntry>, bool) {
    fn go(fs: &Fs, dir: Ino, prefix: &str, depth: usize, max: (usize, usize), out: &mut Vec<TreeEntry>) -> bool {
        let Ok(kids) = fs.children(dir) else { return false };
        for (name, a) in kids {
            if out.len() >= max.0 {
                return true;
            }
            let path = format!("{prefix}{}", String::from_utf8_lossy(&name));
            let is_dir = a.kind == FileKind::Dir;
            out.push(TreeEntry { path: path.clone(), dir: is_dir, size: if is_dir { 0 } else { a.size } });
            if is_dir && depth + 1 < max.1 && go(fs, a.ino, &format!("{path}/"), depth + 1, max, out) {
                return true;
            }
        }
        false
    }
    let mut out = Vec::new();
    let cut = go(fs, dir, "", 0, (max_entries, max_depth), &mut out);
    (out, cut)
}

/// Builds the request for `plan`: path, structure, siblings and their small
/// texts within [`CONTEXT_BUDGET`].
pub fn request(fs: &Fs, plan: &Plan) -> FsResult<GenRequest> {
    let path = fs.path_of(plan.ino).unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    let tree_root = fs.path_of(plan.root).unwrap_or_else(|| "/".into());
    let (tree, _) = walk(fs, plan.root, TREE_ENTRIES, TREE_DEPTH);
    let mut siblings = Vec::new();
    let mut budget = CONTEXT_BUDGET;
    for (n, a) in fs.children(plan.parent)? {
        if a.ino == plan.ino {
            continue;
        }
        let mut name = String::from_utf8_lossy(&n).into_owned();
        let mut content = None;
        if a.kind == FileKind::Dir {
            name.push('/');
        } else if a.kind == FileKind::File && a.size > 0 && a.size <= SIBLING_BYTES && (a.size as usize) <= budget {
            if let Ok(bytes) = fs.read(a.ino, 0, a.size) {
                if !bytes.contains(&0) {
                    if let Ok(t) = String::from_utf8(bytes) {
                        budget -= t.len();
                        content = Some(t);
                    }
                }
            }
        }
        siblings.push(Sibling { name, size: a.size, content });
    }
    let format = crate::format::detect(&name, &plan.prompt).name().to_string();
    Ok(GenRequest {
        version: REQUEST_VERSION,
        generator: plan.generator.clone(),
        path,
        name,
        prompt: plan.prompt.clone(),
        context: plan.context.clone(),
        tree_root,
        tree,
        siblings,
        format,
        attempt: 1,
        sampling: plan.sampling.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_core::{Ctx, FsConfig};
    use magicfs_types::ROOT_INO;

    fn file(fs: &Fs, dir: Ino, name: &[u8], data: &[u8]) -> Ino {
        let (a, fh) = fs.create(dir, name, 0o644, libc::O_RDWR, Ctx { uid: 0, gid: 0 }).unwrap();
        fs.write(a.ino, 0, data).unwrap();
        fs.release(fh).unwrap();
        a.ino
    }

    #[test]
    fn inheritance_and_context() {
        let fs = Fs::memory(FsConfig::default());
        let ctx = Ctx { uid: 0, gid: 0 };
        let proj = fs.mkdir(ROOT_INO, b"proj", 0o755, ctx).unwrap().ino;
        let src = fs.mkdir(proj, b"src", 0o755, ctx).unwrap().ino;
        let main = file(&fs, src, b"main.py", b"");
        let util = file(&fs, src, b"util.py", b"def helper():\n    return 1\n");
        let big = file(&fs, src, b"big.txt", &vec![b'x'; 5000]);
        // No prompt anywhere: nothing is generated.
        assert_eq!(plan(&fs, main, false).unwrap(), None);
        fs.setxattr(proj, names::PROMPT, b"a todo app", 0).unwrap();
        let p = plan(&fs, main, false).unwrap().unwrap();
        assert_eq!((p.generator.as_str(), p.prompt.as_str(), p.root), ("llm", "a todo app", proj));
        fs.setxattr(main, names::PROMPT, b"the entry point", 0).unwrap();
        fs.setxattr(src, names::GENERATOR, b"shout", 0).unwrap();
        let p = plan(&fs, main, false).unwrap().unwrap();
        assert_eq!((p.generator.as_str(), p.prompt.as_str()), ("shout", "the entry point"));
        assert_eq!(p.context, vec!["a todo app".to_string()]);
        // Non-empty files are left alone unless forced.
        assert_eq!(plan(&fs, util, false).unwrap(), None);
        assert!(plan(&fs, util, true).unwrap().is_some());
        let r = request(&fs, &p).unwrap();
        assert_eq!((r.path.as_str(), r.name.as_str(), r.tree_root.as_str()), ("/proj/src/main.py", "main.py", "/proj"));
        assert_eq!(r.relative_path(), "src/main.py");
        assert!(r.tree.iter().any(|e| e.path == "src/util.py" && e.size > 0));
        let u = r.siblings.iter().find(|s| s.name == "util.py").unwrap();
        assert!(u.content.as_deref().unwrap().contains("helper"));
        let b = r.siblings.iter().find(|s| s.name == "big.txt").unwrap();
        assert_eq!(b.content, None, "over the per-file budget");
        assert!(r.siblings.iter().all(|s| s.name != "main.py"));
        // `none` switches a subtree off; provenance stops automatic regeneration.
        fs.setxattr(main, names::GENERATOR, b"none", 0).unwrap();
        assert_eq!(plan(&fs, main, false).unwrap(), None);
        fs.removexattr(main, names::GENERATOR).unwrap();
        fs.setxattr(main, names::PROV_TIME, b"t", 0).unwrap();
        assert_eq!(plan(&fs, main, false).unwrap(), None);
        let _ = big;
    }
}
