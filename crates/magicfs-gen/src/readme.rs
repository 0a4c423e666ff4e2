//! The `readme` generator: a Markdown page rendering a directory's tree with
//! sizes. On a directory (`user.magic.generator=readme`) it is the live
//! overlay file `README.magic`, computed on open and never stored; on an
//! empty file it stores a snapshot of the tree around the file.

use crate::error::GenError;
use crate::plugin::{ContentGenerator, Output, Progress};
use crate::request::{GenRequest, TreeEntry};

/// Sizes as `12 B`, `3.4 KiB`, `1.0 MiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Renders the page for directory `title` (its prompt, if any, as the
/// introduction) over `entries` in depth-first name order; `truncated`
/// says entries were left out.
pub fn render(title: &str, prompt: Option<&str>, entries: &[TreeEntry], truncated: bool) -> String {
    let files = entries.iter().filter(|e| !e.dir).count();
    let dirs = entries.len() - files;
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    let mut s = format!("# {title}\n\n");
    if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
        s.push_str(p.trim());
        s.push_str("\n\n");
    }
    s.push_str(&format!(
        "{files} file{}, {dirs} director{}, {} in total.\n\n```\n.\n",
        if files == 1 { "" } else { "s" },
        if dirs == 1 { "y" } else { "ies" },
        human(bytes)
    ));
    for e in entries {
        let depth = e.path.matches('/').count();
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        let indent = "    ".repeat(depth);
        if e.dir {
            s.push_str(&format!("{indent}{name}/\n"));
        } else {
            s.push_str(&format!("{indent}{name}  ({})\n", human(e.size)));
        }
    }
    if truncated {
        s.push_str("…\n");
    }
    s.push_str("```\n\nThis page is rendered by MagicFS each time it is opened.\n");
    s
}

/// The `readme` generator for regular files.
pub struct ReadmeGenerator;

impl ContentGenerator for ReadmeGenerator {
    fn name(&self) -> &str {
        "readme"
    }

    fn generate(&self, req: &GenRequest, progress: &Progress) -> Result<Output, GenError> {
        let title = req.tree_root.rsplit('/').find(|p| !p.is_empty()).unwrap_or("/");
        let entries: Vec<TreeEntry> = req.tree.iter().filter(|e| e.path != req.relative_path()).cloned().collect();
        let text = render(title, req.context.last().map(String::as_str), &entries, false);
        progress.set_bytes(text.len() as u64);
        Ok(Output { bytes: text.into_bytes(), model: "readme".into(), finish: "stop" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tree_with_sizes() {
        let e = vec![
            TreeEntry { path: "src".into(), dir: true, size: 0 },
            TreeEntry { path: "src/main.rs".into(), dir: false, size: 2048 },
            TreeEntry { path: "x".into(), dir: false, size: 5 },
        ];
        let s = render("proj", Some("A thing."), &e, false);
        assert!(s.starts_with("# proj\n\nA thing.\n\n2 files, 1 directory, 2.0 KiB in total."));
        assert!(s.contains("    main.rs  (2.0 KiB)\n"));
        assert!(s.contains("x  (5 B)\n"));
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
