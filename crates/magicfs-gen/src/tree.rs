//! Trees from one sentence: the parts the sentence names ("with a README,
//! a config file and tests": three), the JSON schema the model's answer is
//! constrained to (at least that many files), the conversation that asks
//! for it, the check of a plan against the request, and turning a valid
//! answer into directories and empty files, each carrying its own prompt.

use crate::error::GenError;
use crate::names;
use magicfs_core::{Ctx, Fs};
use magicfs_llm::{ChatMessage, Role};
use magicfs_types::{FileKind, FsError, Ino};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most files in one generated tree (more when the request names more parts).
pub const MAX_FILES: usize = 12;
/// Longest description of one file.
pub const MAX_DESCRIPTION: usize = 120;

/// The schema of a tree answer: a list of 1 to [`MAX_FILES`] files (what
/// `magicfs generate --schema` prints).
pub fn schema() -> Value {
    schema_for(1, MAX_FILES)
}

/// The schema of the model's answer: a list of `min` to `max` files, each
/// with a relative path (at most three components of safe characters) and
/// a description.
pub fn schema_for(min: usize, max: usize) -> Value {
    let part = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,24}";
    json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": min.max(1),
                "maxItems": max.max(min).max(1),
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

/// What a tree request asks for: the parts it names and how many files at least.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// Parts named in the request ("README.md", "config", "tests").
    pub parts: Vec<String>,
    /// Fewest files the plan must have: the parts named, or a number given ("five pages").
    pub count: usize,
    /// What the number given counts, singular ("page"); empty without one.
    pub counted: String,
}

/// Words that say what kind of thing a part is, not which one.
const GENERIC: [&str; 24] = [
    "a",
    "an",
    "the",
    "some",
    "one",
    "simple",
    "small",
    "basic",
    "short",
    "file",
    "files",
    "module",
    "modules",
    "script",
    "scripts",
    "folder",
    "directory",
    "page",
    "pages",
    "document",
    "for",
    "of",
    "with",
    "its",
];
/// Nouns that count files ("three modules").
const COUNTED: [&str; 12] = [
    "files",
    "modules",
    "scripts",
    "pages",
    "components",
    "parts",
    "sections",
    "documents",
    "chapters",
    "classes",
    "tests",
    "posts",
];

fn significant(phrase: &str) -> Vec<String> {
    phrase
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '/'))
        .map(|w| w.trim_matches(|c: char| c == '.' || c == '-').to_lowercase())
        .filter(|w| w.len() >= 2 && !GENERIC.contains(&w.as_str()) && crate::format::number(w).is_none())
        .collect()
}

/// Reads the parts a request names: file names (`main.py`, `README`), and
/// the items of a list after "with", "containing", "including" or ":"
/// ("with a main module, a storage module and tests"); and a count of
/// files ("three pages").
pub fn requested(prompt: &str) -> Requested {
    let mut parts: Vec<String> = Vec::new();
    let push = |parts: &mut Vec<String>, p: String| {
        if !p.is_empty() && !parts.iter().any(|q| q.eq_ignore_ascii_case(&p)) {
            parts.push(p);
        }
    };
    let lower = prompt.to_lowercase();
    let list_at =
        ["containing ", "including ", " with ", ": "].iter().filter_map(|k| lower.find(k).map(|i| i + k.len())).min();
    if let Some(at) = list_at {
        let list = &prompt[at..];
        // The sentence ends at ". ", ";" or "(" (a dot inside a file name does not end it).
        let end = [". ", ";", "("].iter().filter_map(|k| list.find(k)).min().unwrap_or(list.len());
        let list = list[..end].trim_end_matches('.');
        for item in list.split([',', '&']).flat_map(|i| i.split(" and ")) {
            let words = significant(item);
            // A long clause is a description, not a part.
            if !words.is_empty() && words.len() <= 3 {
                push(&mut parts, words.join(" "));
            }
        }
    }
    // File names anywhere ("a main.py and a Dockerfile").
    for w in prompt.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')') {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        let is_file = w.rsplit_once('.').is_some_and(|(stem, ext)| {
            !stem.is_empty() && (1..=5).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphabetic())
        });
        let known = ["readme", "makefile", "dockerfile", "license", "changelog"].contains(&w.to_lowercase().as_str());
        if is_file || known {
            let covered = parts.iter().any(|p| p.split(' ').any(|x| x.eq_ignore_ascii_case(w)));
            if !covered {
                push(&mut parts, w.to_string());
            }
        }
    }
    let words: Vec<String> = lower.split(|c: char| !c.is_alphanumeric()).map(String::from).collect();
    let (n, noun) = words
        .windows(2)
        .chain(words.windows(3))
        .filter_map(|w| {
            let n = crate::format::number(&w[0])?;
            let noun = &w[w.len() - 1];
            COUNTED.contains(&noun.as_str()).then(|| (n, noun.strip_suffix('s').unwrap_or(noun).to_string()))
        })
        .max_by_key(|(n, _)| *n)
        .unwrap_or_default();
    let count = parts.len().max(n).min(MAX_FILES * 2);
    Requested { parts, count, counted: if n > 0 { noun } else { String::new() } }
}

/// The conversation asking for the files of a project; the parts the
/// request names are listed as files the plan must include.
pub fn messages(prompt: &str, want: &Requested) -> Vec<ChatMessage> {
    let mut u = format!("Project: {}\n", prompt.trim());
    let min = want.count.max(1);
    let max = MAX_FILES.max(min);
    u.push_str(&format!(
        "List the files this project needs ({min} to {max} files): for each, a relative path such as src/main.py \
         and one sentence describing what the file contains. Never list a path twice."
    ));
    if !want.parts.is_empty() {
        u.push_str("\nThe plan must include a file for each of these parts:");
        for (i, p) in want.parts.iter().enumerate() {
            u.push_str(&format!("\n{}. {p}", i + 1));
        }
    }
    vec![
        ChatMessage {
            role: Role::System,
            content: "You plan the files of small software projects. Answer with JSON only.".into(),
        },
        ChatMessage { role: Role::User, content: u },
    ]
}

/// True when `path` is the file of `part` (a word of the part, less a plural
/// `s`, in the path, or the path is the part's file name).
fn covers(path: &str, part: &str) -> bool {
    let p = path.to_lowercase();
    part.split(' ').any(|w| {
        let w = w.to_lowercase();
        let stem = if w.len() > 3 { w.strip_suffix('s').unwrap_or(&w) } else { &w };
        p.contains(stem) || p.contains(w.rsplit_once('.').map(|(s, _)| s).unwrap_or(&w))
    })
}

/// The parts of `want` no file of the plan stands for (each file stands
/// for one part; files named exactly as a part are matched first).
pub fn missing<'a>(files: &[PlannedFile], want: &'a Requested) -> Vec<&'a str> {
    let mut used = vec![false; files.len()];
    let mut open: Vec<&str> = Vec::new();
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_lowercase();
    for part in &want.parts {
        match (0..files.len()).find(|i| !used[*i] && base(&files[*i].path) == part.to_lowercase()) {
            Some(i) => used[i] = true,
            None => open.push(part),
        }
    }
    let mut out = Vec::new();
    for part in open {
        match (0..files.len()).find(|i| !used[*i] && covers(&files[*i].path, part)) {
            Some(i) => used[i] = true,
            None => out.push(part),
        }
    }
    out
}

/// Checks a plan against its request: enough files, every named part there.
pub fn check(files: &[PlannedFile], want: &Requested) -> Result<(), String> {
    let gone = missing(files, want);
    if !gone.is_empty() {
        return Err(format!("the plan has no file for {}", gone.join(", ")));
    }
    if files.len() < want.count {
        return Err(format!("the request asks for at least {} files; the plan has {}", want.count, files.len()));
    }
    Ok(())
}

/// Adds a file for every part of `want` the plan lacks (named after the
/// part, with the extension most files of the plan have), then numbered
/// files of what a count counts ("five pages": `page-1.md`, …) up to the
/// count: what the model left out after every attempt.
pub fn complete(mut files: Vec<PlannedFile>, want: &Requested, prompt: &str) -> Vec<PlannedFile> {
    let mut exts: Vec<&str> = files.iter().filter_map(|f| f.path.rsplit_once('.').map(|(_, e)| e)).collect();
    exts.sort_unstable();
    let ext =
        exts.chunk_by(|a, b| a == b).max_by_key(|c| c.len()).map(|c| c[0].to_string()).unwrap_or_else(|| "md".into());
    // Pages, posts and chapters are documents, whatever else the plan holds.
    let prose = ["page", "post", "chapter", "section", "document"].contains(&want.counted.as_str());
    let counted_ext = match prose && !["md", "html", "txt", "rst"].contains(&ext.as_str()) {
        true => "md".to_string(),
        false => ext.clone(),
    };
    let gone: Vec<String> = missing(&files, want).into_iter().map(String::from).collect();
    for part in gone {
        let base: String = part
            .split(' ')
            .collect::<Vec<_>>()
            .join("_")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .skip_while(|c| matches!(c, '.' | '-'))
            .take(20)
            .collect();
        let base = if base.is_empty() { "part".to_string() } else { base };
        let path =
            if base.contains('.') || base.eq_ignore_ascii_case("makefile") || base.eq_ignore_ascii_case("dockerfile") {
                base
            } else if base.eq_ignore_ascii_case("readme") {
                "README.md".into()
            } else {
                format!("{base}.{ext}")
            };
        if files.iter().any(|f| f.path == path) {
            continue;
        }
        let description: String = format!("The {part} of {}", prompt.trim()).chars().take(MAX_DESCRIPTION).collect();
        files.push(PlannedFile { path, description });
    }
    let noun: String = want.counted.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect();
    let noun = if noun.is_empty() { "part".to_string() } else { noun };
    let mut k = 1;
    while files.len() < want.count.min(MAX_FILES * 2) {
        let path = format!("{noun}-{k}.{counted_ext}");
        k += 1;
        if files.iter().any(|f| f.path == path) {
            continue;
        }
        let description: String =
            format!("{noun} {} of {}", k - 1, prompt.trim()).chars().take(MAX_DESCRIPTION).collect();
        files.push(PlannedFile { path, description });
    }
    files
}

/// One file of a planned tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
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
    fn requests_name_parts_and_counts() {
        let r = requested("a Python CLI todo app with a main module, a storage module, tests and a README");
        assert_eq!(r.parts, ["main", "storage", "tests", "readme"]);
        assert_eq!(r.count, 4);
        let r = requested("a static website with index.html, style.css and script.js");
        assert_eq!((r.parts.len(), r.count), (3, 3), "{r:?}");
        let r = requested("a blog with five pages");
        assert_eq!((r.parts.len(), r.count, r.counted.as_str()), (0, 5, "page"), "{r:?}");
        assert_eq!(requested("a Rust library for parsing dates"), Requested::default());
        let r = requested("a backup tool: a Makefile, backup.sh and restore.sh");
        assert_eq!(r.parts, ["makefile", "backup.sh", "restore.sh"]);
        // An exact name is matched before a name that merely contains it.
        let r = requested("a toolkit with install.sh and uninstall.sh");
        let plan =
            parse(r#"{"files":[{"path":"uninstall.sh","description":"u"},{"path":"install.sh","description":"i"}]}"#)
                .unwrap();
        assert!(check(&plan, &r).is_ok());
    }

    #[test]
    fn plans_are_checked_and_completed() {
        let want = requested("a todo app with a main module, a storage module, tests and a README");
        let plan = parse(
            r#"{"files":[{"path":"src/main.py","description":"entry"},{"path":"src/storage.py","description":"db"},
            {"path":"src/main.py","description":"again"}]}"#,
        )
        .unwrap();
        assert_eq!(plan.len(), 2, "a path named twice is one file");
        assert_eq!(check(&plan, &want).unwrap_err(), "the plan has no file for tests, readme");
        let done = complete(plan, &want, "a todo app");
        assert!(check(&done, &want).is_ok(), "{done:?}");
        assert_eq!(
            done.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["src/main.py", "src/storage.py", "tests.py", "README.md"]
        );
        let few = requested("a site with four pages");
        assert!(check(&done[..2], &few).unwrap_err().contains("at least 4 files"));
        // A bare count: the files the model left out are numbered.
        let blog = requested("a blog with five pages");
        assert_eq!(blog.counted, "page");
        let one = parse(r#"{"files":[{"path":"src/main.py","description":"the blog"}]}"#).unwrap();
        let done = complete(one, &blog, "a blog with five pages");
        assert!(check(&done, &blog).is_ok(), "{done:?}");
        assert_eq!(
            done.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["src/main.py", "page-1.md", "page-2.md", "page-3.md", "page-4.md"]
        );
        assert_eq!(done[2].description, "page 2 of a blog with five pages");
    }

    #[test]
    fn schema_is_an_object_schema() {
        let s = schema();
        assert_eq!(s["properties"]["files"]["maxItems"], MAX_FILES);
        assert!(s["properties"]["files"]["items"]["properties"]["path"]["pattern"].as_str().unwrap().starts_with('^'));
    }
}
