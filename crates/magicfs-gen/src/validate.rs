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
        Format::Json => {
            serde_json::from_str::<serde_json::Value>(text).map(|_| ()).map_err(|e| format!("not JSON: {e}"))
        }
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
    fn prose_follows_its_shape() {
        assert!(validate(Format::Text, Some(Shape::Lines(3)), "a\nb\nc\n").is_ok());
        assert!(validate(Format::Text, Some(Shape::Lines(3)), "a\nb\nc\nd\n").is_err());
        assert!(validate(Format::Markdown, None, "# Title\n").is_ok());
    }
}
