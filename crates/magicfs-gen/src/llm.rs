//! The `llm` generator: the daemon's one language model writes the file,
//! seeing its path, the project's prompts, the directory structure and the
//! small files next to it.

use crate::error::GenError;
use crate::format::{self, Constraint, Format};
use crate::plugin::{ContentGenerator, Output, Progress};
use crate::request::GenRequest;
use magicfs_llm::{ChatMessage, FinishReason, GenParams, LlmBackend, LoopDetector, Purpose, Role, Sampling};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Instructions given to the model for every file.
const SYSTEM: &str = "You write the complete contents of one file of a project. \
Answer with the file's contents only: no explanations before or after, no Markdown code fences.";

/// Settings of the `llm` generator.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Token limit per file (a file's `user.magic.max_tokens` overrides).
    pub max_tokens: u32,
    /// Sampling of file contents (a file's `user.magic.<key>` xattrs override).
    pub sampling: Sampling,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings { max_tokens: 384, sampling: Sampling::defaults(Purpose::File) }
    }
}

/// The built-in `llm` generator over a shared backend (or none configured).
pub struct LlmGenerator {
    backend: Option<Arc<dyn LlmBackend>>,
    settings: LlmSettings,
}

impl LlmGenerator {
    /// A generator over `backend`; with `None`, every request fails with a
    /// message saying how to configure a model.
    pub fn new(backend: Option<Arc<dyn LlmBackend>>, settings: LlmSettings) -> LlmGenerator {
        LlmGenerator { backend, settings }
    }
}

fn format_of(req: &GenRequest) -> Format {
    Format::parse(&req.format).unwrap_or_else(|| format::detect(&req.name, &req.prompt))
}

/// The conversation asking for one file: the project, its structure, the
/// small files next to it, the file's task, and what kind of file it is.
pub fn file_messages(req: &GenRequest) -> Vec<ChatMessage> {
    let mut u = String::new();
    if !req.context.is_empty() {
        u.push_str("Project: ");
        u.push_str(&req.context.join("\n"));
        u.push_str("\n\n");
    }
    if !req.tree.is_empty() {
        u.push_str("Files in the project:\n");
        for e in &req.tree {
            if e.dir {
                u.push_str(&format!("  {}/\n", e.path));
            } else {
                u.push_str(&format!("  {}\n", e.path));
            }
        }
        u.push('\n');
    }
    for s in &req.siblings {
        if let Some(c) = &s.content {
            u.push_str(&format!("Contents of {}:\n{}\n\n", s.name, c.trim_end()));
        }
    }
    let f = format_of(req);
    let own_prompt = !req.prompt.is_empty() && req.context.last().is_none_or(|c| c != &req.prompt);
    if own_prompt && matches!(f, Format::Text | Format::Markdown) {
        // Prose is asked for by what it is ("Write a haiku about disks."):
        // told the file's name, a small model writes about the file ("The
        // contents of the file haiku.txt are: …").
        u.push_str(&format!("Write {}.", req.prompt.trim_end_matches('.')));
    } else {
        u.push_str(&format!("Write the file {}.", req.relative_path()));
        if own_prompt {
            u.push_str(&format!("\nIt should be: {}", req.prompt));
        }
    }
    u.push('\n');
    u.push_str(&format::instructions(f, format::shape(f, &req.prompt), req.attempt));
    vec![ChatMessage { role: Role::System, content: SYSTEM.to_string() }, ChatMessage { role: Role::User, content: u }]
}

/// The file's content in an answer: a Markdown code fence around the whole
/// answer is removed; for program sources and data, the first fenced block
/// is taken when the model wrapped it in explanations. Ends with a newline.
pub fn clean_answer(text: &str, format: Format) -> String {
    let t = text.trim();
    let lines: Vec<&str> = t.lines().collect();
    let fence = |l: &&str| l.trim_start().starts_with("```");
    let body: Vec<&str> = match lines.iter().position(fence) {
        Some(0) => {
            let rest = &lines[1..];
            match rest.iter().position(fence) {
                Some(end) => rest[..end].to_vec(),
                None => rest.to_vec(),
            }
        }
        Some(open) if format.is_source() || format.constrained() => {
            let rest = &lines[open + 1..];
            match rest.iter().position(fence) {
                Some(end) => rest[..end].to_vec(),
                None => rest.to_vec(),
            }
        }
        _ => lines,
    };
    let mut s = body.join("\n").trim_end().to_string();
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

impl ContentGenerator for LlmGenerator {
    fn name(&self) -> &str {
        "llm"
    }

    fn generate(&self, req: &GenRequest, progress: &Progress) -> Result<Output, GenError> {
        let backend = self.backend.as_ref().ok_or_else(|| {
            GenError::Model(
                "no language model is configured; mount with --model-path FILE.gguf or --llm-url URL".into(),
            )
        })?;
        let f = format_of(req);
        let constraint = format::constraint(f, format::shape(f, &req.prompt), &req.prompt, req.attempt);
        let mut params = GenParams {
            max_tokens: self.settings.max_tokens,
            sampling: match constraint {
                Some(_) => self.settings.sampling.for_grammar(),
                None => self.settings.sampling.clone(),
            },
            cancel: Some(progress.cancel.clone()),
            ..GenParams::default()
        };
        for (k, v) in &req.sampling {
            let r = match k.as_str() {
                "max_tokens" => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .map(|n| params.max_tokens = n)
                    .ok_or(format!("max_tokens={v:?} is not a whole number of at least 1")),
                _ => params.sampling.set(k, v),
            };
            r.map_err(|e| GenError::Model(format!("user.magic.{e}")))?;
        }
        params.sampling.seed = Some(params.sampling.seed_for(req.attempt));
        match constraint {
            Some(Constraint::Schema(s)) => params.json_schema = Some(s),
            Some(Constraint::Grammar(g)) => params.grammar = Some(g),
            None => {}
        }
        let mut produced = 0u64;
        let mut loops = LoopDetector::new();
        let mut looped = None;
        let mut sink = |piece: &str| {
            produced += piece.len() as u64;
            progress.set_bytes(produced);
            if progress.cancelled() {
                return ControlFlow::Break(());
            }
            if let Some(keep) = loops.push(piece) {
                looped = Some(keep);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let done = backend.chat(&file_messages(req), &params, &mut sink).map_err(|e| GenError::Model(e.to_string()))?;
        let (text, finish) = match (looped, done.finish) {
            (Some(keep), _) => (&done.text[..keep.min(done.text.len())], FinishReason::Loop),
            (None, FinishReason::Cancelled) => return Err(GenError::Cancelled),
            (None, f) => (done.text.as_str(), f),
        };
        let text = clean_answer(text, f);
        // YAML and TOML asked for as JSON (the first attempts): an answer
        // cut short keeps its complete data; one that still does not
        // convert (or loops) is empty, and asked for again.
        let text = match format::via_json(f, req.attempt) {
            true => format::from_json(f, &text)
                .or_else(|| {
                    crate::validate::complete_data(Format::Json, &text).and_then(|whole| format::from_json(f, &whole))
                })
                .unwrap_or_default(),
            false => text,
        };
        Ok(Output { bytes: text.into_bytes(), model: backend.model_id(), finish: finish.name() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Sibling, TreeEntry};

    #[test]
    fn fences_are_removed() {
        assert_eq!(clean_answer("```python\nprint(1)\n```\n", Format::Python), "print(1)\n");
        assert_eq!(clean_answer("plain", Format::Text), "plain\n");
        assert_eq!(clean_answer("  \n", Format::Text), "");
        let chatty = "Here is the script:\n```bash\necho hi\n```\nIt prints hi.";
        assert_eq!(clean_answer(chatty, Format::Shell), "echo hi\n");
        assert_eq!(clean_answer(chatty, Format::Markdown), format!("{chatty}\n"), "prose keeps its code blocks");
    }

    #[test]
    fn the_prompt_carries_path_structure_and_siblings() {
        let req = GenRequest {
            version: 1,
            generator: "llm".into(),
            path: "/todo/src/main.py".into(),
            name: "main.py".into(),
            prompt: "entry point".into(),
            context: vec!["a CLI todo app in Python".into()],
            tree_root: "/todo".into(),
            tree: vec![
                TreeEntry { path: "src".into(), dir: true, size: 0 },
                TreeEntry { path: "src/main.py".into(), dir: false, size: 0 },
            ],
            siblings: vec![Sibling { name: "util.py".into(), size: 10, content: Some("def f(): pass".into()) }],
            format: "py".into(),
            attempt: 1,
            sampling: Default::default(),
        };
        let m = file_messages(&req);
        let u = &m[1].content;
        for needle in [
            "a CLI todo app",
            "src/main.py",
            "util.py",
            "def f(): pass",
            "Write the file src/main.py",
            "entry point",
            "Python 3",
        ] {
            assert!(u.contains(needle), "{needle} missing from {u}");
        }
        // Prose is asked for by what it is, not by its file's name.
        let poem = GenRequest {
            path: "/todo/haiku.txt".into(),
            name: "haiku.txt".into(),
            prompt: "a haiku about disks.".into(),
            format: "txt".into(),
            ..req
        };
        let u = &file_messages(&poem)[1].content;
        assert!(u.contains("Write a haiku about disks.\n"), "{u}");
        assert!(!u.contains("Write the file") && !u.contains("It should be"), "{u}");
    }
}
