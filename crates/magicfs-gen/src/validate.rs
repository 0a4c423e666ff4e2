//! Is a generated file valid for its type? JSON, YAML, TOML and CSV are
//! parsed (`serde_json`, `yaml-rust2`, `toml`, `csv`); program sources are
//! checked by a real parser: the language's own checker where it is
//! installed (`python3`'s `ast.parse`, `bash -n`), else a tree-sitter
//! grammar (always for Rust and JavaScript). Prose is checked against the
//! shape its prompt asks for. Every format must be non-empty.

use crate::format::{check_shape, Format, Shape};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a language's checker may run on one file.
const CHECK_TIME: Duration = Duration::from_secs(10);

/// Checks `text` as a file of `format` (with the `shape` its prompt asks
/// for); the error says what is wrong, for the status and the retry count.
pub fn validate(format: Format, shape: Option<Shape>, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the answer is empty".into());
    }
    match format {
        Format::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => match crate::format::nested_loop(&v) {
                Some(at) => Err(format!("a loop: {at} nested in itself")),
                None => Ok(()),
            },
            Err(e) => Err(format!("not JSON: {e}")),
        },
        Format::Yaml => match yaml_rust2::YamlLoader::load_from_str(text) {
            Ok(docs) if !docs.is_empty() => Ok(()),
            Ok(_) => Err("not YAML: no document".into()),
            Err(e) => Err(format!("not YAML: {e}")),
        },
        Format::Toml => toml::from_str::<toml::Table>(text)
            .map(|_| ())
            .map_err(|e| format!("not TOML: {}", e.to_string().lines().next().unwrap_or_default())),
        Format::Csv => csv(text),
        Format::Python => match tool("python3") {
            true => run_checker("python3", &["-c", "import ast,sys; ast.parse(sys.stdin.read())"], text),
            false => tree_sitter(tree_sitter_python::LANGUAGE.into(), text),
        }
        .map_err(|e| format!("not Python: {e}")),
        Format::Shell => match tool("bash") {
            true => run_checker("bash", &["-n"], text),
            false => tree_sitter(tree_sitter_bash::LANGUAGE.into(), text),
        }
        .map_err(|e| format!("not a shell script: {e}")),
        Format::Rust => tree_sitter(tree_sitter_rust::LANGUAGE.into(), text).map_err(|e| format!("not Rust: {e}")),
        Format::JavaScript => {
            tree_sitter(tree_sitter_javascript::LANGUAGE.into(), text).map_err(|e| format!("not JavaScript: {e}"))
        }
        Format::Markdown | Format::Text => shape.map_or(Ok(()), |s| check_shape(s, text)),
        Format::Other => Ok(()),
    }
}

/// Why an answer that parses describes its file instead of holding its
/// contents, if it does: JSON, YAML or TOML whose values are (four in
/// five or more) the file's own name or a format's (`file: ci.yml` / `type: json`, `{"type":
/// "json", "data": {"type": "json"}}`), or a text file that is a script
/// (`#!`). A small model does this; such a file is asked for again. Data
/// that names its file beside real values (`"name": "config.toml"`, then
/// the settings) passes: it is about the right thing, and asking again
/// often gives a worse answer.
pub fn describes_itself(format: Format, name: &str, text: &str) -> Option<String> {
    match format {
        Format::Json | Format::Yaml | Format::Toml => {
            let leaves = data_leaves(format, text)?;
            let name = name.to_lowercase();
            let own = |v: &String| *v == name || ["json", "yaml", "yml", "toml", "file"].contains(&v.as_str());
            let about = leaves.iter().filter(|v| own(v)).count();
            (about > 0 && about * 5 >= leaves.len() * 4).then(|| {
                format!("it describes the file ({about} of its {} values are its name or format)", leaves.len())
            })
        }
        Format::Text | Format::Markdown if text.trim_start().starts_with("#!") => Some("a script, not text".into()),
        _ => None,
    }
}

/// The scalar values of structured data, lower-cased; `None` when it does
/// not parse.
fn data_leaves(format: Format, text: &str) -> Option<Vec<String>> {
    fn json(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => m.values().for_each(|x| json(x, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|x| json(x, out)),
            serde_json::Value::String(s) => out.push(s.trim().to_lowercase()),
            other => out.push(other.to_string()),
        }
    }
    fn yaml(v: &yaml_rust2::Yaml, out: &mut Vec<String>) {
        use yaml_rust2::Yaml;
        match v {
            Yaml::Hash(m) => m.values().for_each(|x| yaml(x, out)),
            Yaml::Array(a) => a.iter().for_each(|x| yaml(x, out)),
            Yaml::String(s) | Yaml::Real(s) => out.push(s.trim().to_lowercase()),
            Yaml::Integer(i) => out.push(i.to_string()),
            Yaml::Boolean(b) => out.push(b.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match format {
        Format::Json => json(&serde_json::from_str(text).ok()?, &mut out),
        Format::Toml => json(&toml::from_str::<serde_json::Value>(text).ok()?, &mut out),
        _ => yaml_rust2::YamlLoader::load_from_str(text).ok()?.iter().for_each(|d| yaml(d, &mut out)),
    }
    Some(out)
}

/// A source cut off by the token limit, cut back to its longest run of
/// whole top-level items (statements, functions, commands) that the
/// checker accepts; `None` when no such run holds code. The cut points
/// come from the tree-sitter grammar; the last few are confirmed with
/// [`validate`], longest first.
pub fn complete_prefix(format: Format, text: &str) -> Option<String> {
    let lang: tree_sitter::Language = match format {
        Format::Python => tree_sitter_python::LANGUAGE.into(),
        Format::Shell => tree_sitter_bash::LANGUAGE.into(),
        Format::Rust => tree_sitter_rust::LANGUAGE.into(),
        Format::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
        _ => return None,
    };
    let mut p = tree_sitter::Parser::new();
    p.set_language(&lang).ok()?;
    let tree = p.parse(text, None)?;
    // Top-level items in order; a cut-off file's parse wraps them in ERROR
    // nodes, which are looked into. The first fragment ends the run.
    let mut items = Vec::new();
    top_items(tree.root_node(), &mut items);
    let mut ends = Vec::new();
    let mut code = false;
    for n in items {
        if n.has_error() || n.is_missing() || !whole_item(n.kind()) {
            break;
        }
        code |= !n.kind().contains("comment");
        if code {
            // Whole lines: up to the end of the line the item ends on.
            let end = text[n.end_byte()..].find('\n').map_or(text.len(), |i| n.end_byte() + i);
            ends.push(end);
        }
    }
    ends.dedup();
    ends.into_iter().rev().take(3).find_map(|end| {
        let prefix = format!("{}\n", text[..end].trim_end());
        validate(format, None, &prefix).is_ok().then_some(prefix)
    })
}

/// Structured data cut off by the token limit or the loop detector, cut
/// back to its longest part that parses: JSON up to its last complete
/// member with the open brackets closed, YAML, TOML and CSV up to their
/// last whole line that parses. `None` when nothing parses.
pub fn complete_data(format: Format, text: &str) -> Option<String> {
    let ok = |t: &str| !t.trim().is_empty() && validate(format, None, t).is_ok();
    match format {
        Format::Json => json_cuts(text).into_iter().rev().take(64).find(|t| ok(t)),
        Format::Yaml | Format::Toml | Format::Csv => {
            let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
            ends.into_iter().rev().take(256).map(|i| format!("{}\n", &text[..i])).find(|t| ok(t))
        }
        _ => None,
    }
}

/// Candidate JSON texts from a cut-off one, shortest first: each ends after
/// a complete value inside a container (before a `,`, or after a closing
/// bracket) with the brackets still open at that point closed.
fn json_cuts(text: &str) -> Vec<String> {
    let mut open: Vec<u8> = Vec::new();
    let mut in_str = false;
    let mut escaped = false;
    let mut out = Vec::new();
    let close = |upto: &str, open: &[u8]| {
        let mut t = upto.trim_end().to_string();
        for b in open.iter().rev() {
            t.push(if *b == b'{' { '}' } else { ']' });
        }
        t.push('\n');
        t
    };
    for (i, b) in text.bytes().enumerate() {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => open.push(b),
            b'}' | b']' => {
                open.pop();
                out.push(close(&text[..=i], &open));
                if open.is_empty() {
                    break;
                }
            }
            b',' if !open.is_empty() => out.push(close(&text[..i], &open)),
            _ => {}
        }
    }
    out
}

/// The named children of `n`, looking into ERROR nodes.
fn top_items<'t>(n: tree_sitter::Node<'t>, out: &mut Vec<tree_sitter::Node<'t>>) {
    let mut cursor = n.walk();
    for c in n.children(&mut cursor) {
        if c.is_error() {
            top_items(c, out);
        } else if c.is_named() {
            out.push(c);
        }
    }
}

/// Node kinds that stand as a whole top-level item of a source file.
fn whole_item(kind: &str) -> bool {
    ["statement", "definition", "declaration", "item", "comment", "command"].iter().any(|k| kind.ends_with(k))
        || matches!(kind, "pipeline" | "list" | "variable_assignment" | "subshell" | "macro_invocation")
}

/// A table: at least a header and one row, every row as wide as the header.
fn csv(text: &str) -> Result<(), String> {
    let mut r = ::csv::ReaderBuilder::new().has_headers(false).flexible(false).from_reader(text.as_bytes());
    let mut rows = 0usize;
    let mut width = 0usize;
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("not CSV: {e}"))?;
        width = rec.len();
        rows += 1;
    }
    if rows < 2 || width < 2 {
        return Err(format!("not a CSV table: {rows} rows of {width} columns"));
    }
    Ok(())
}

/// True when `program` can be run (looked up once per program).
fn tool(program: &'static str) -> bool {
    static PYTHON: OnceLock<bool> = OnceLock::new();
    static BASH: OnceLock<bool> = OnceLock::new();
    let cell = if program == "python3" { &PYTHON } else { &BASH };
    *cell.get_or_init(|| {
        let arg = if program == "python3" { "pass" } else { "true" };
        Command::new(program)
            .args(["-c", arg])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Runs a checker that reads the source on stdin and fails on a syntax error.
fn run_checker(program: &str, args: &[&str], text: &str) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let input = text.as_bytes().to_vec();
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
    });
    let deadline = Instant::now() + CHECK_TIME;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish checking within {CHECK_TIME:?}"));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let _ = writer.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    if status.success() {
        Ok(())
    } else {
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("syntax error").trim();
        Err(last.chars().take(200).collect())
    }
}

/// Parses `text` with a tree-sitter grammar; an ERROR or MISSING node is a syntax error.
fn tree_sitter(lang: tree_sitter::Language, text: &str) -> Result<(), String> {
    let mut p = tree_sitter::Parser::new();
    p.set_language(&lang).map_err(|e| format!("tree-sitter: {e}"))?;
    let tree = p.parse(text, None).ok_or("tree-sitter gave no tree")?;
    let root = tree.root_node();
    if !root.has_error() {
        return Ok(());
    }
    let mut cursor = root.walk();
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        if n.is_error() || n.is_missing() {
            let at = n.start_position();
            return Err(format!("syntax error at line {}, column {}", at.row + 1, at.column + 1));
        }
        if n.has_error() {
            stack.extend(n.children(&mut cursor));
        }
    }
    Err("syntax error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_describe_their_file_are_found() {
        let d = |f, name, text| describes_itself(f, name, text);
        // Found: values that are mostly the file's name or a format, a
        // script as text.
        assert!(d(Format::Json, "weather.json", r#"{"type": "json", "data": {"type":"json"}}"#).is_some());
        assert!(d(Format::Yaml, "ci.yml", "file: CI.yml\ntype: json\n").unwrap().contains("2 of its 2 values"));
        let alerts = "name = \"alerts.toml\"\ntype = \"file\"\n\n[data]\ntype = \"json\"\n";
        assert!(d(Format::Toml, "alerts.toml", alerts).is_some());
        assert!(d(Format::Text, "joke.txt", "#!/bin/bash\necho hi\n").unwrap().contains("script"));
        // Not found: data that names its file beside real values, data about
        // other things, program sources, prose.
        let config =
            "name = \"config.toml\"\ntype = \"json\"\n\n[data]\nhost = \"0.0.0.0\"\nport = 8080\ntitle = \"x\"\n";
        assert_eq!(d(Format::Toml, "config.toml", config), None);
        let cargo =
            "description = \"A regex tool\"\nname = \"Cargo.toml\"\ntype = \"json\"\nfile = \"toml\"\nedition = 2021\n";
        assert_eq!(d(Format::Toml, "Cargo.toml", cargo), None);
        assert_eq!(d(Format::Json, "users.json", r#"{"users": [{"name": "Ann", "type": "admin"}]}"#), None);
        assert_eq!(d(Format::Json, "empty.json", "{}"), None);
        assert_eq!(d(Format::Shell, "run.sh", "#!/bin/sh\necho run.sh\n"), None);
        assert_eq!(d(Format::Text, "owls.txt", "Owls hunt at night. owls.txt\n"), None);
    }

    #[test]
    fn data_formats() {
        assert!(validate(Format::Json, None, "{\"a\": [1, 2]}").is_ok());
        assert!(validate(Format::Json, None, "{\"a\": ").unwrap_err().starts_with("not JSON"));
        assert!(validate(Format::Yaml, None, "name: x\nitems:\n  - a\n  - b\n").is_ok());
        assert!(validate(Format::Yaml, None, "a: [1\nb: }").is_err());
        assert!(validate(Format::Toml, None, "a = 1\n[t]\nb = \"x\"\n").is_ok());
        assert!(validate(Format::Toml, None, "a = 1\na = 2\n").unwrap_err().starts_with("not TOML"));
        assert!(validate(Format::Csv, None, "a,b\n1,2\n3,4\n").is_ok());
        assert!(validate(Format::Csv, None, "a,b\n1,2,3\n").is_err());
        assert_eq!(validate(Format::Json, None, " \n").unwrap_err(), "the answer is empty");
        let e = validate(Format::Json, None, "{\"d\": {\"d\": {\"d\": 1}}}").unwrap_err();
        assert_eq!(e, "a loop: d/d/d nested in itself");
    }

    #[test]
    fn sources_are_parsed() {
        assert!(validate(Format::Python, None, "def f(x):\n    return x + 1\n").is_ok());
        let e = validate(Format::Python, None, "def f(x)\n    return x\n").unwrap_err();
        assert!(e.starts_with("not Python"), "{e}");
        assert!(validate(Format::Shell, None, "#!/bin/bash\nfor f in *; do echo \"$f\"; done\n").is_ok());
        assert!(validate(Format::Shell, None, "if true; then echo x\n").is_err());
        assert!(validate(Format::Rust, None, "fn main() { println!(\"hi\"); }\n").is_ok());
        assert!(validate(Format::Rust, None, "fn main( { }\n").unwrap_err().contains("line 1"));
        assert!(validate(Format::JavaScript, None, "const f = (a) => a * 2;\nconsole.log(f(2));\n").is_ok());
        assert!(validate(Format::JavaScript, None, "function (\n").is_err());
        // The tree-sitter fallbacks agree on these.
        assert!(tree_sitter(tree_sitter_python::LANGUAGE.into(), "def f(x)\n    return x\n").is_err());
        assert!(tree_sitter(tree_sitter_bash::LANGUAGE.into(), "echo hi | wc -l\n").is_ok());
    }

    #[test]
    fn cut_off_sources_keep_their_whole_items() {
        let py = "import os\n\ndef a():\n    return 1\n\ndef b(x):\n    if x:\n        return [1,\n";
        assert!(validate(Format::Python, None, py).is_err());
        assert_eq!(complete_prefix(Format::Python, py).unwrap(), "import os\n\ndef a():\n    return 1\n");
        let sh = "#!/bin/bash\nset -e\necho start\nfor f in *; do\n  echo \"$f";
        assert_eq!(complete_prefix(Format::Shell, sh).unwrap(), "#!/bin/bash\nset -e\necho start\n");
        assert_eq!(complete_prefix(Format::Python, "# only a comment\ndef f(:\n"), None);
        assert_eq!(complete_prefix(Format::Json, "{\"a\": "), None);
    }

    #[test]
    fn cut_off_data_keeps_what_parses() {
        let j = "{\"name\": \"x\", \"deps\": {\"a\": \"1\", \"b\": \"2\", \"c\": ";
        let fixed = complete_data(Format::Json, j).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(v, serde_json::json!({"name": "x", "deps": {"a": "1", "b": "2"}}));
        let j = "[{\"a\": \"x,]}\"}, {\"a\": \"y\"";
        let v: serde_json::Value = serde_json::from_str(&complete_data(Format::Json, j).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!([{"a": "x,]}"}]));
        let t = "[server]\nhost = \"a\"\nport = 80\nname = \"unfin";
        assert_eq!(complete_data(Format::Toml, t).unwrap(), "[server]\nhost = \"a\"\nport = 80\n");
        assert_eq!(complete_data(Format::Json, "{\"a\": "), None);
    }

    #[test]
    fn prose_follows_its_shape() {
        assert!(validate(Format::Text, Some(Shape::Lines(3)), "a\nb\nc\n").is_ok());
        assert!(validate(Format::Text, Some(Shape::Lines(3)), "a\nb\nc\nd\n").is_err());
        assert!(validate(Format::Markdown, None, "# Title\n").is_ok());
    }
}
