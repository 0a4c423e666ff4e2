//! The `llm` generator: the daemon's one language model writes the file,
//! seeing its path, the project's prompts, the directory structure and the
//! small files next to it.

use crate::error::GenError;
use crate::plugin::{ContentGenerator, Output, Progress};
use crate::request::GenRequest;
use magicfs_llm::{ChatMessage, FinishReason, GenParams, LlmBackend, Role};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Instructions given to the model for every file.
const SYSTEM: &str = "You write the complete contents of one file of a project. \
Answer with the file's contents only: no explanations before or after, no Markdown code fences.";

/// Settings of the `llm` generator.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Token limit per file.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings { max_tokens: 384, temperature: 0.7 }
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

/// The conversation asking for one file.
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
    u.push_str(&format!("Write the file {}.", req.relative_path()));
    if !req.prompt.is_empty() && req.context.last().is_none_or(|c| c != &req.prompt) {
        u.push_str(&format!("\nIt should be: {}", req.prompt));
    }
    vec![ChatMessage { role: Role::System, content: SYSTEM.to_string() }, ChatMessage { role: Role::User, content: u }]
}

/// Removes a Markdown code fence around the whole answer, if any, and ends
/// the text with a newline.
pub fn clean_answer(text: &str) -> String {
    let t = text.trim();
    let mut lines: Vec<&str> = t.lines().collect();
    if lines.first().is_some_and(|l| l.trim_start().starts_with("```")) {
        lines.remove(0);
        if let Some(i) = lines.iter().rposition(|l| l.trim_start().starts_with("```")) {
            lines.truncate(i);
        }
    }
    let mut s = lines.join("\n").trim_end().to_string();
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
        let params = GenParams {
            max_tokens: self.settings.max_tokens,
            temperature: self.settings.temperature,
            ..GenParams::default()
        };
        let mut produced = 0u64;
        let mut sink = |piece: &str| {
            produced += piece.len() as u64;
            progress.set_bytes(produced);
            if progress.cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let done = backend.chat(&file_messages(req), &params, &mut sink).map_err(|e| GenError::Model(e.to_string()))?;
        let finish = match done.finish {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => return Err(GenError::Cancelled),
        };
        let text = clean_answer(&done.text);
        if text.is_empty() {
            return Err(GenError::Model("the model answered with no text".into()));
        }
        Ok(Output { bytes: text.into_bytes(), model: backend.model_id(), finish })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Sibling, TreeEntry};

    #[test]
    fn fences_are_removed() {
        assert_eq!(clean_answer("```python\nprint(1)\n```\n"), "print(1)\n");
        assert_eq!(clean_answer("plain"), "plain\n");
        assert_eq!(clean_answer("  \n"), "");
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
        };
        let m = file_messages(&req);
        let u = &m[1].content;
        for needle in
            ["a CLI todo app", "src/main.py", "util.py", "def f(): pass", "Write the file src/main.py", "entry point"]
        {
            assert!(u.contains(needle), "{needle} missing from {u}");
        }
    }
}
