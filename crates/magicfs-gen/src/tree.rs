//! Trees from one sentence: the JSON schema the model's answer is
//! constrained to, the conversation that asks for it, and turning a valid
//! answer into directories and empty files, each carrying its own prompt.

use crate::error::GenError;
use crate::names;
use magicfs_core::{Ctx, Fs};
use magicfs_llm::{ChatMessage, Role};
use magicfs_types::{FileKind, FsError, Ino};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most files in one generated tree.
pub const MAX_FILES: usize = 6;
/// Longest description of one file.
pub const MAX_DESCRIPTION: usize = 120;

/// The schema of the model's answer: a list of files, each with a relative
/// path (at most three components of safe characters) and a description.
pub fn schema() -> Value {
    let part = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,24}";
    json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_FILES,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": { "type": "string", "pattern": format!("^{part}(/{part}){{0,2}}$") },
                        "description": { "type": "string", "minLength": 1, "maxLength": MAX_DESCRIPTION }
                    },
                    "required": ["path", "description"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["files"],
        "additionalProperties": false
    })
}

/// The conversation asking for the files of a project.
pub fn messages(prompt: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: Role::System,
            content: "You plan the files of small software projects. Answer with JSON only.".into(),
        },
        ChatMessage {
            role: Role::User,
            content: format!(
                "Project: {}\nList the files this project needs (at most {MAX_FILES}): for each, a relative path \
                 such as src/main.py and one sentence describing what the file contains.",
                prompt.trim()
            ),
        },
    ]
}

/// One file of a planned tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlannedFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// What the file contains (becomes its prompt).
    pub description: String,
}

#[derive(Deserialize)]
struct Answer {
    files: Vec<PlannedFile>,
}

/// Parses the model's answer and keeps the usable files: no `.`/`..`
/// components, no duplicates, no file that is also a directory of another.
pub fn parse(text: &str) -> Result<Vec<PlannedFile>, GenError> {
    let a: Answer = serde_json::from_str(text.trim())
        .map_err(|e| GenError::Tree(format!("the answer is not the expected JSON: {e}")))?;
    let mut out: Vec<PlannedFile> = Vec::new();
    for f in a.files.into_iter().take(MAX_FILES * 2) {
        let path = f.path.trim().trim_matches('/').to_string();
        let parts: Vec<&str> = path.split('/').collect();
        let ok = !path.is_empty()
            && parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".." && p.len() <= 255 && !p.contains('\0'));
        let clash = out.iter().any(|o| {
            o.path == path || path.starts_with(&format!("{}/", o.path)) || o.path.starts_with(&format!("{path}/"))
        });
        if ok && !clash {
            out.push(PlannedFile { path, description: f.description.trim().to_string() });
        }
    }
    if out.is_empty() {
        return Err(GenError::Tree("the answer names no usable file".into()));
    }
    Ok(out)
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Files created, relative to the directory.
    pub created: Vec<String>,
    /// Files left alone because something already had their name.
    pub kept: Vec<String>,
}

/// Creates the planned files under `dir` (empty, each with its description
/// as `user.magic.prompt`), records the prompt and the answer on `dir`.
/// Existing files are never touched.
pub fn apply(
    fs: &Fs,
    dir: Ino,
    prompt: &str,
    answer: &str,
    files: &[PlannedFile],
    ctx: Ctx,
) -> Result<Applied, GenError> {
    fs.setxattr(dir, names::PROMPT, prompt.as_bytes(), 0)?;
    fs.setxattr(dir, names::TREE, answer.as_bytes(), 0)?;
    let mut done = Applied::default();
    'files: for f in files {
        let parts: Vec<&str> = f.path.split('/').collect();
        let mut cur = dir;
        for p in &parts[..parts.len() - 1] {
            cur = match fs.lookup(cur, p.as_bytes()) {
                Ok(a) if a.kind == FileKind::Dir => a.ino,
                Ok(_) => {
                    done.kept.push(f.path.clone());
                    continue 'files;
                }
                Err(FsError::NotFound) => fs.mkdir(cur, p.as_bytes(), 0o755, ctx)?.ino,
                Err(e) => return Err(e.into()),
            };
        }
        let name = parts[parts.len() - 1].as_bytes();
        match fs.lookup(cur, name) {
            Ok(_) => done.kept.push(f.path.clone()),
            Err(FsError::NotFound) => {
                let (a, fh) = fs.create(cur, name, 0o644, libc::O_RDONLY, ctx)?;
                fs.release(fh)?;
                fs.setxattr(a.ino, names::PROMPT, f.description.as_bytes(), 0)?;
                done.created.push(f.path.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use magicfs_core::FsConfig;
    use magicfs_types::ROOT_INO;

    #[test]
    fn parse_keeps_safe_distinct_paths() {
        let t = r#"{"files":[{"path":"src/main.py","description":"entry"},{"path":"../x","description":"bad"},
            {"path":"src/main.py","description":"dup"},{"path":"src","description":"clash"},{"path":"README.md","description":"doc"}]}"#;
        let f = parse(t).unwrap();
        assert_eq!(f.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["src/main.py", "README.md"]);
        assert!(parse("{\"files\":[]}").is_err());
        assert!(parse("not json").is_err());
    }

    #[test]
    fn apply_creates_empty_prompted_files() {
        let fs = Fs::memory(FsConfig::default());
        let ctx = Ctx { uid: 0, gid: 0 };
        let dir = fs.mkdir(ROOT_INO, b"todo", 0o755, ctx).unwrap().ino;
        let files = parse(
            r#"{"files":[{"path":"src/main.py","description":"entry"},{"path":"README.md","description":"doc"}]}"#,
        )
        .unwrap();
        let r = apply(&fs, dir, "a todo app", "{}", &files, ctx).unwrap();
        assert_eq!(r.created, ["src/main.py", "README.md"]);
        let main = fs.resolve("/todo/src/main.py").unwrap();
        assert_eq!(main.size, 0);
        assert_eq!(fs.getxattr(main.ino, names::PROMPT).unwrap(), b"entry");
        assert_eq!(fs.getxattr(dir, names::PROMPT).unwrap(), b"a todo app");
        let again = apply(&fs, dir, "a todo app", "{}", &files, ctx).unwrap();
        assert_eq!(again.kept.len(), 2);
    }

    #[test]
    fn schema_is_an_object_schema() {
        let s = schema();
        assert_eq!(s["properties"]["files"]["maxItems"], MAX_FILES);
        assert!(s["properties"]["files"]["items"]["properties"]["path"]["pattern"].as_str().unwrap().starts_with('^'));
    }
}
