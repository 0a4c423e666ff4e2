//! What kind of file is being generated — from its extension, else from the
//! prompt — and the shape the prompt asks for ("a haiku": three lines, "five
//! tips": five items). Each format brings the grammar that constrains the
//! model's answer (JSON through a JSON schema; CSV and counted lines through
//! GBNF grammars written so that whatever they allow parses) and the words
//! that tell the model what to write. YAML and TOML files are first asked
//! for as one JSON object under the schema and converted ([`from_json`]):
//! a small model writes far more relevant data as JSON than as YAML or TOML
//! under a grammar (see BENCHMARKS.md). Later attempts use the formats' own
//! GBNF grammars, which always parse.

use serde_json::{json, Value};

/// The format of a generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// `.json`
    Json,
    /// `.yaml`, `.yml`
    Yaml,
    /// `.toml`
    Toml,
    /// `.csv`
    Csv,
    /// `.py`
    Python,
    /// `.sh`, `.bash`
    Shell,
    /// `.rs`
    Rust,
    /// `.js`, `.mjs`, `.cjs`
    JavaScript,
    /// `.md`, `.markdown`
    Markdown,
    /// `.txt`, no extension
    Text,
    /// Anything else (`.html`, `.go`, `Dockerfile`, …): checked for emptiness and loops only.
    Other,
}

impl Format {
    /// Every format, in a stable order.
    pub const ALL: [Format; 11] = [
        Format::Json,
        Format::Yaml,
        Format::Toml,
        Format::Csv,
        Format::Python,
        Format::Shell,
        Format::Rust,
        Format::JavaScript,
        Format::Markdown,
        Format::Text,
        Format::Other,
    ];

    /// Short name (`json`, `py`, …) as counted in `.magic/status`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
            Format::Toml => "toml",
            Format::Csv => "csv",
            Format::Python => "py",
            Format::Shell => "sh",
            Format::Rust => "rs",
            Format::JavaScript => "js",
            Format::Markdown => "md",
            Format::Text => "txt",
            Format::Other => "other",
        }
    }

    /// The format called `name` (as [`Format::name`] gives it).
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// What the model is told the file is.
    fn description(self) -> &'static str {
        match self {
            Format::Json => "a JSON document",
            Format::Yaml => "a YAML document (key: value lines, lists as '- item' lines)",
            Format::Toml => "a TOML document (key = value lines, [table] headers)",
            Format::Csv => "a CSV table: a header row, then data rows with the same columns",
            Format::Python => "a complete Python 3 program",
            Format::Shell => "a complete bash script",
            Format::Rust => "a complete Rust source file",
            Format::JavaScript => "a complete JavaScript file",
            Format::Markdown => "a Markdown document",
            Format::Text => "plain text",
            Format::Other => "the file",
        }
    }

    /// True for formats whose answer a grammar constrains.
    pub fn constrained(self) -> bool {
        matches!(self, Format::Json | Format::Yaml | Format::Toml | Format::Csv)
    }

    /// True for program sources (checked by a parser).
    pub fn is_source(self) -> bool {
        matches!(self, Format::Python | Format::Shell | Format::Rust | Format::JavaScript)
    }
}

/// The format of file `name`: its extension, else a format the prompt names.
pub fn detect(name: &str, prompt: &str) -> Format {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let by_ext = match ext {
        "json" => Some(Format::Json),
        "yaml" | "yml" => Some(Format::Yaml),
        "toml" => Some(Format::Toml),
        "csv" => Some(Format::Csv),
        "py" => Some(Format::Python),
        "sh" | "bash" => Some(Format::Shell),
        "rs" => Some(Format::Rust),
        "js" | "mjs" | "cjs" => Some(Format::JavaScript),
        "md" | "markdown" => Some(Format::Markdown),
        "txt" | "text" => Some(Format::Text),
        "" => None,
        _ => Some(Format::Other),
    };
    if let Some(f) = by_ext {
        return f;
    }
    let p = words(prompt);
    let has = |w: &str| p.iter().any(|x| x == w);
    if has("json") {
        Format::Json
    } else if has("yaml") {
        Format::Yaml
    } else if has("toml") {
        Format::Toml
    } else if has("csv") {
        Format::Csv
    } else if has("python") {
        Format::Python
    } else if has("bash") || (has("shell") && has("script")) {
        Format::Shell
    } else if has("markdown") {
        Format::Markdown
    } else {
        Format::Text
    }
}

/// The structure a prompt asks of prose (Markdown or plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Exactly this many lines of text (a haiku: 3, a limerick: 5, "four lines").
    Lines(usize),
    /// This many `- ` list items.
    Items(usize),
    /// This many numbered steps.
    Steps(usize),
    /// This many paragraphs.
    Paragraphs(usize),
}

impl Shape {
    /// The instruction given to the model.
    fn instruction(self) -> String {
        match self {
            Shape::Lines(n) => format!("Answer with exactly {n} lines of text and nothing else."),
            Shape::Items(n) => {
                format!("Answer with a list of exactly {n} items, one per line, each starting with '- '.")
            }
            Shape::Steps(n) => format!("Answer with exactly {n} numbered steps, one per line: '1. ', '2. ', …"),
            Shape::Paragraphs(n) => format!("Answer with exactly {n} paragraphs separated by blank lines."),
        }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// `three` → 3 (one to twenty), or digits.
pub fn number(word: &str) -> Option<usize> {
    const NAMES: [&str; 20] = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    word.parse::<usize>().ok().or_else(|| NAMES.iter().position(|n| *n == word).map(|i| i + 1))
}

/// The shape of a prose file that `prompt` asks for, if it asks for one.
pub fn shape(format: Format, prompt: &str) -> Option<Shape> {
    if !matches!(format, Format::Markdown | Format::Text) {
        return None;
    }
    let w = words(prompt);
    let has = |x: &str| w.iter().any(|y| y == x);
    if has("haiku") {
        return Some(Shape::Lines(3));
    }
    if has("limerick") {
        return Some(Shape::Lines(5));
    }
    if has("sonnet") {
        return Some(Shape::Lines(14));
    }
    for pair in w.windows(2).chain(w.windows(3)) {
        let Some(n) = number(&pair[0]).filter(|n| (1..=30).contains(n)) else { continue };
        // "three lines", "five short tips", "4 bullet points"
        let noun = pair[pair.len() - 1].as_str();
        let shape = match noun {
            "lines" | "line" | "verses" => Shape::Lines(n),
            "steps" | "step" | "instructions" => Shape::Steps(n),
            "paragraphs" | "paragraph" => Shape::Paragraphs(n),
            "items" | "bullets" | "points" | "tips" | "reasons" | "ideas" | "facts" | "things" | "rules" | "names"
            | "examples" | "questions" => Shape::Items(n),
            _ => continue,
        };
        return Some(shape);
    }
    None
}

/// How the model's answer is constrained.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// A JSON schema (through llama.cpp's schema-to-grammar conversion).
    Schema(Value),
    /// A GBNF grammar with rule `root`.
    Grammar(String),
}

/// Attempts at a YAML or TOML file that ask the model for JSON (converted
/// by [`from_json`]); later attempts hold it to the format's own grammar,
/// which always parses, for a model whose JSON keeps failing (looping,
/// cut short).
pub const JSON_ATTEMPTS: u32 = 2;

/// Whether attempt `attempt` at a file of `format` asks for JSON to convert.
pub fn via_json(format: Format, attempt: u32) -> bool {
    matches!(format, Format::Yaml | Format::Toml) && attempt <= JSON_ATTEMPTS
}

/// The constraint of `format` (and `shape`) at attempt `attempt`, if any.
pub fn constraint(format: Format, shape: Option<Shape>, prompt: &str, attempt: u32) -> Option<Constraint> {
    match format {
        Format::Json => Some(Constraint::Schema(json_schema(prompt))),
        _ if via_json(format, attempt) => Some(Constraint::Schema(json!({"type": "object"}))),
        Format::Yaml => Some(Constraint::Grammar(YAML.into())),
        Format::Toml => Some(Constraint::Grammar(TOML.into())),
        Format::Csv => Some(Constraint::Grammar(csv_grammar())),
        Format::Markdown | Format::Text => shape.map(|s| Constraint::Grammar(shape_grammar(s))),
        _ => None,
    }
}

/// The schema of a JSON file: an array when the prompt's head says so ("a
/// list of users", "a JSON array of three books, each with…": of objects
/// when its items have fields), else an object ("a book with … a list of
/// chapters" is a book).
fn json_schema(prompt: &str) -> Value {
    let lower = prompt.to_lowercase();
    let head_end = [" with ", ":", ",", " that ", " where "].iter().filter_map(|k| lower.find(k)).min();
    let head = words(&lower[..head_end.unwrap_or(lower.len())]);
    let all = words(&lower);
    let has = |ws: &[String], x: &str| ws.iter().any(|w| w == x);
    if !(has(&head, "array") || has(&head, "list")) || has(&head, "object") {
        return json!({"type": "object"});
    }
    let records = has(&all, "each") || has(&all, "with") || has(&all, "objects");
    match records {
        true => json!({"type": "array", "items": {"type": "object"}, "minItems": 1}),
        false => json!({"type": "array", "minItems": 1}),
    }
}

/// The words appended to the request: what the file is and its shape.
pub fn instructions(format: Format, shape: Option<Shape>, attempt: u32) -> String {
    let what = match via_json(format, attempt) {
        true => "its data as one JSON object (it is saved as this file's format)",
        false => format.description(),
    };
    let mut s = format!("Write {what}.");
    if format.is_source() || format.constrained() {
        s.push_str(" No explanations and no Markdown code fences: only the file's contents.");
    }
    if let Some(sh) = shape {
        s.push(' ');
        s.push_str(&sh.instruction());
    }
    s
}

/// The file text of a YAML or TOML file the model wrote as a JSON object;
/// `None` for other formats and for an answer that is not one JSON object
/// or loops (the file is asked for again). `null`s are left out, which
/// TOML cannot hold.
pub fn from_json(format: Format, answer: &str) -> Option<String> {
    if !matches!(format, Format::Yaml | Format::Toml) {
        return None;
    }
    let mut v: Value = serde_json::from_str(answer.trim()).ok()?;
    if !v.is_object() || nested_loop(&v).is_some() {
        return None;
    }
    drop_nulls(&mut v);
    match format {
        Format::Toml => toml::to_string(&v).ok(),
        _ => {
            let mut out = String::new();
            yaml_rust2::YamlEmitter::new(&mut out).dump(&yaml_of(&v)).ok()?;
            let body = out.strip_prefix("---").unwrap_or(&out).trim_start_matches('\n');
            Some(format!("{}\n", body.trim_end()))
        }
    }
}

/// A key nested in itself three times (`{"data": {"data": {"data": …`),
/// or objects and arrays nested deeper than 8: a small model's loop that
/// a grammar lets through. Says where, for the retry's log.
pub fn nested_loop(v: &Value) -> Option<String> {
    fn go<'a>(v: &'a Value, path: &mut Vec<&'a str>) -> Option<String> {
        let n = path.len();
        if n > 8 || (n >= 3 && path[n - 1] == path[n - 2] && path[n - 2] == path[n - 3]) {
            return Some(path.join("/"));
        }
        let mut child = |k: &'a str, x: &'a Value| {
            path.push(k);
            let found = go(x, path);
            path.pop();
            found
        };
        match v {
            Value::Object(m) => m.iter().find_map(|(k, x)| child(k, x)),
            Value::Array(a) => a.iter().find_map(|x| child("[]", x)),
            _ => None,
        }
    }
    go(v, &mut Vec::new())
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => {
            a.retain(|x| !x.is_null());
            a.iter_mut().for_each(drop_nulls);
        }
        _ => {}
    }
}

fn yaml_of(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(yaml_of).collect()),
        Value::Object(m) => Yaml::Hash(m.iter().map(|(k, x)| (Yaml::String(k.clone()), yaml_of(x))).collect()),
    }
}

/// YAML: top-level keys with scalars, lists or one level of keys below.
/// Plain scalars start with a letter and hold no `:` or `#`, so every
/// answer the grammar allows is valid YAML.
const YAML: &str = r##"root ::= comment? entry{1,16}
comment ::= "# " [^\n]{0,80} "\n"
entry ::= key ":" (" " scalar "\n" | "\n" block)
block ::= list | map
list ::= ("  - " scalar "\n"){1,12}
map ::= ("  " key ":" (" " scalar "\n" | "\n" sublist)){1,12}
sublist ::= ("    - " scalar "\n"){1,12}
key ::= [a-zA-Z_] [a-zA-Z0-9_]{0,30}
scalar ::= number | quoted | word
number ::= "-"? [0-9]{1,9} ("." [0-9]{1,6})?
quoted ::= "\"" [^"\\\n]{0,100} "\""
word ::= [a-zA-Z] [a-zA-Z0-9 ._/()-]{0,80}
"##;

/// TOML: key = value lines, then tables; basic strings without escapes.
const TOML: &str = r##"root ::= comment? (kv{1,12} table{0,6} | table{1,6})
comment ::= "# " [^\n]{0,80} "\n"
table ::= "\n"? "[" key "]\n" kv{1,12}
kv ::= key " = " value "\n"
key ::= [a-zA-Z_] [a-zA-Z0-9_-]{0,30}
value ::= string | number | bool | array
elem ::= string | number | bool
array ::= "[" (elem (", " elem){0,11})? "]"
string ::= "\"" [^"\\\x00-\x1f]{0,100} "\""
number ::= "-"? ("0" | [1-9] [0-9]{0,12}) ("." [0-9]{1,6})?
bool ::= "true" | "false"
"##;

/// CSV: a header and 2 to 30 rows, every row with as many fields as the
/// header (one alternative per column count, 2 to 8).
fn csv_grammar() -> String {
    let mut g = String::from("root ::= ");
    g.push_str(&(2..=8).map(|k| format!("t{k}")).collect::<Vec<_>>().join(" | "));
    g.push('\n');
    for k in 2..=8 {
        g.push_str(&format!("t{k} ::= r{k} r{k}{{2,30}}\nr{k} ::= field{} \"\\n\"\n", " \",\" field".repeat(k - 1)));
    }
    g.push_str("field ::= [a-zA-Z0-9] [a-zA-Z0-9 ._/-]{0,39} | \"\\\"\" [^\"\\n]{0,60} \"\\\"\"\n");
    g
}

/// Counted lines, items, steps or paragraphs.
fn shape_grammar(shape: Shape) -> String {
    // Lines of prose: no Markdown markup at their start, no preamble ending in ':'.
    // Nor a digit: "1. 1. 2. 3." is a small model's loop, not a step.
    let text = r#"text ::= [^\n#*>`:0-9 -] [^\n]{2,118} [^\n:]"#;
    match shape {
        Shape::Lines(n) => format!("root ::= (text \"\\n\"){{{n}}}\n{text}\n"),
        Shape::Items(n) => format!("root ::= (\"- \" text \"\\n\"){{{n}}}\n{text}\n"),
        Shape::Steps(n) => {
            let steps: Vec<String> = (1..=n).map(|i| format!("\"{i}. \" text \"\\n\"")).collect();
            format!("root ::= {}\n{text}\n", steps.join(" "))
        }
        Shape::Paragraphs(n) => {
            let more = if n > 1 { format!(" (\"\\n\" para){{{}}}", n - 1) } else { String::new() };
            format!("root ::= para{more}\npara ::= [^\\n#*>`-] [^\\n]{{40,700}} \"\\n\"\n")
        }
    }
}

/// Whether `text` has `shape` (lines that are not blank are counted).
pub fn check_shape(shape: Shape, text: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let (want, got, what) = match shape {
        Shape::Lines(n) => (n, lines.len(), "lines"),
        Shape::Items(n) => (n, lines.iter().filter(|l| l.starts_with("- ") || l.starts_with("* ")).count(), "items"),
        Shape::Steps(n) => {
            let numbered =
                lines.iter().filter(|l| l.split_once(". ").is_some_and(|(d, _)| d.parse::<usize>().is_ok())).count();
            (n, numbered, "numbered steps")
        }
        Shape::Paragraphs(n) => (n, text.split("\n\n").filter(|p| !p.trim().is_empty()).count(), "paragraphs"),
    };
    if got != want {
        return Err(format!("the prompt asks for {want} {what}; the answer has {got}"));
    }
    // One line said over and over ("No, no, no." three times) is too short
    // for the loop cut, and is no poem.
    if matches!(shape, Shape::Lines(_)) && want > 1 && lines.iter().all(|l| *l == lines[0]) {
        return Err(format!("its {want} lines are one line repeated"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_extensions_and_prompts() {
        assert_eq!(detect("config.YAML", ""), Format::Yaml);
        assert_eq!(detect("a.yml", "a JSON file"), Format::Yaml, "the extension wins");
        assert_eq!(detect("settings", "the settings as JSON"), Format::Json);
        assert_eq!(detect("run", "a bash script that backs up /home"), Format::Shell);
        assert_eq!(detect("notes", "some thoughts"), Format::Text);
        assert_eq!(detect("index.html", ""), Format::Other);
        assert_eq!(detect("Makefile", ""), Format::Text);
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
        }
    }

    #[test]
    fn shapes_from_prompts() {
        assert_eq!(shape(Format::Text, "a haiku about disks"), Some(Shape::Lines(3)));
        assert_eq!(shape(Format::Markdown, "Five tips for sleeping well"), Some(Shape::Items(5)));
        assert_eq!(shape(Format::Markdown, "list 4 short reasons to use git"), Some(Shape::Items(4)));
        assert_eq!(shape(Format::Text, "a poem in 6 lines"), Some(Shape::Lines(6)));
        assert_eq!(shape(Format::Markdown, "how to bake bread in 3 steps"), Some(Shape::Steps(3)));
        assert_eq!(shape(Format::Text, "two paragraphs about owls"), Some(Shape::Paragraphs(2)));
        assert_eq!(shape(Format::Text, "a story about a cat"), None);
        assert_eq!(shape(Format::Python, "a haiku printer"), None);
        assert!(check_shape(Shape::Lines(3), "a\nb\n\nc\n").is_ok());
        assert!(check_shape(Shape::Lines(3), "a\nb\n").unwrap_err().contains("asks for 3 lines"));
        let said_thrice = "No, no, no.\nNo, no, no.\nNo, no, no.\n";
        assert!(check_shape(Shape::Lines(3), said_thrice).unwrap_err().contains("one line repeated"));
        assert!(check_shape(Shape::Lines(3), "I am the disk.\nI am the one.\nI am the disk.\n").is_ok());
        assert!(check_shape(Shape::Steps(2), "1. mix\n2. bake\n").is_ok());
    }

    #[test]
    fn grammars_name_their_rules() {
        let csv = csv_grammar();
        assert!(csv.contains("t3 ::= r3 r3{2,30}") && csv.contains("r3 ::= field \",\" field \",\" field \"\\n\""));
        assert!(shape_grammar(Shape::Lines(3)).starts_with("root ::= (text \"\\n\"){3}"));
        assert!(shape_grammar(Shape::Steps(2)).starts_with("root ::= \"1. \" text \"\\n\" \"2. \" text \"\\n\""));
        assert_eq!(
            constraint(Format::Json, None, "a list of users as a JSON array", 1),
            Some(Constraint::Schema(json!({"type": "array", "minItems": 1})))
        );
        let records = json!({"type": "array", "items": {"type": "object"}, "minItems": 1});
        assert_eq!(
            constraint(Format::Json, None, "a JSON array of three users, each with a name and an email", 1),
            Some(Constraint::Schema(records))
        );
        let object = Some(Constraint::Schema(json!({"type": "object"})));
        assert_eq!(constraint(Format::Json, None, "a book with its title and a list of chapters", 1), object);
        assert_eq!(constraint(Format::Json, None, "settings of a server: host, port and a list of origins", 1), object);
        assert_eq!(constraint(Format::Python, None, "", 1), None);
        assert_eq!(constraint(Format::Toml, None, "", 1), Some(Constraint::Schema(json!({"type": "object"}))));
        assert_eq!(constraint(Format::Toml, None, "", JSON_ATTEMPTS + 1), Some(Constraint::Grammar(TOML.into())));
        assert!(instructions(Format::Yaml, None, 1).contains("JSON object"));
        assert!(instructions(Format::Yaml, None, 3).contains("a YAML document"));
    }

    #[test]
    fn yaml_and_toml_come_from_a_json_object() {
        let answer = r#"{"name": "demo: app", "port": 8080, "ratio": 0.5, "debug": false, "gone": null,
            "tags": ["a", "b # c"], "db": {"host": "localhost", "users": [{"name": "x"}]}}"#;
        let y = from_json(Format::Yaml, answer).unwrap();
        let doc = &yaml_rust2::YamlLoader::load_from_str(&y).unwrap()[0];
        assert_eq!(doc["name"].as_str(), Some("demo: app"), "{y}");
        assert_eq!(doc["port"].as_i64(), Some(8080));
        assert_eq!(doc["tags"][1].as_str(), Some("b # c"));
        assert_eq!(doc["db"]["users"][0]["name"].as_str(), Some("x"));
        assert!(doc["gone"].is_badvalue(), "nulls are left out: {y}");
        let t = from_json(Format::Toml, answer).unwrap();
        let table: toml::Table = toml::from_str(&t).unwrap();
        assert_eq!(table["name"].as_str(), Some("demo: app"), "{t}");
        assert_eq!(table["db"]["users"][0]["name"].as_str(), Some("x"));
        assert!(!table.contains_key("gone"));
        assert_eq!(from_json(Format::Toml, "[1, 2]"), None, "TOML needs a table");
        assert_eq!(from_json(Format::Yaml, "{\"cut\": "), None, "an answer cut short is asked for again");
        assert_eq!(from_json(Format::Json, "{}"), None);
        let looped = r#"{"data": {"data": {"data": {"description": "x"}}}}"#;
        assert_eq!(nested_loop(&serde_json::from_str(looped).unwrap()).as_deref(), Some("data/data/data"));
        assert_eq!(from_json(Format::Yaml, looped), None, "a nesting loop is asked for again");
        assert_eq!(nested_loop(&serde_json::from_str(r#"{"a": [[1], [2]], "b": {"b": 1}}"#).unwrap()), None);
    }
}
