//! Reading the command line: configuration files, `-o` mount options and
//! environment variables, all folded into clap's own definitions of the
//! flags, so a flag added to `cli.rs` can at once be set in every way.
//!
//! Precedence, highest first: flags on the command line (`-o` options of
//! `magicfs mount` count as flags), environment variables, configuration
//! files, built-in defaults.
//!
//! A configuration file is TOML. A table per subcommand holds its flags by
//! their long name (`[mount]`, `[serve]`, `[index.status]`); a flag that can
//! be repeated takes an array; a switch takes `true` or `false`; a positional
//! argument is named like its placeholder (`mountpoint`). The `[env]` table
//! sets environment variables that are not already set (those without a
//! flag: `MAGICFS_LLM_API_KEY`, `RUST_LOG`, …). Files read: `--config FILE`
//! (or `$MAGICFS_CONFIG`) alone if given, else `/etc/magicfs/config.toml`
//! then `$XDG_CONFIG_HOME/magicfs/config.toml`, the user's file winning.
//!
//! Settings from a file become the flags' defaults: `--help` shows them, an
//! environment variable or a flag overrides them, and one that conflicts
//! with a flag given on the command line (`memory = true` against `--data`)
//! steps aside.

use crate::cli::Cli;
use clap::builder::OsStr;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// Why the command line could not be read.
#[derive(Debug)]
pub enum ParseError {
    /// clap's own (usage errors, and `--help` / `--version`, which exit 0).
    Clap(clap::Error),
    /// A configuration file or `-o` option that cannot be used.
    Usage(String),
}

impl From<clap::Error> for ParseError {
    fn from(e: clap::Error) -> Self {
        ParseError::Clap(e)
    }
}

/// Old names of environment variables, folded into their current names when
/// those are not set: `(old, current)`.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("MAGICFS_LOG", "RUST_LOG"),
    ("CFS_MODEL_PATH", "MAGICFS_MODEL_PATH"),
    ("CFS_N_THREADS", "MAGICFS_LLM_THREADS"),
    ("CFS_N_CTX", "MAGICFS_N_CTX"),
    ("CFS_N_GPU_LAYERS", "MAGICFS_N_GPU_LAYERS"),
    ("CFS_MAX_TOKENS", "MAGICFS_MAX_TOKENS"),
    ("CFS_TEMPERATURE", "MAGICFS_TEMPERATURE"),
    ("OPENAI_API_KEY", "MAGICFS_LLM_API_KEY"),
];

/// `-o` options named differently from their flags.
const OPTION_ALIASES: &[(&str, &str)] = &[("nosearch", "no-search"), ("nochat", "no-chat")];

/// Options mount(8) and systemd pass along for themselves.
fn is_mount8_option(key: &str) -> bool {
    matches!(
        key,
        "defaults" | "auto" | "noauto" | "user" | "users" | "owner" | "group" | "nofail" | "_netdev" | "comment"
    ) || key.starts_with("x-")
}

fn set_env(name: &str, value: impl AsRef<std::ffi::OsStr>) {
    // Runs in `main` before any other thread starts.
    std::env::set_var(name, value);
}

fn env_is_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Reads the command line: folds old variable names, expands `-o`, loads the
/// configuration files and parses with their settings as defaults.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ParseError> {
    // An empty variable counts as unset (clap would take it for a flag
    // given without its value).
    let empty: Vec<OsString> = std::env::vars_os()
        .filter(|(k, v)| v.is_empty() && k.to_string_lossy().starts_with("MAGICFS_"))
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        // Runs in `main` before any other thread starts.
        std::env::remove_var(k);
    }
    for (old, new) in ENV_ALIASES {
        if !env_is_set(new) {
            if let Some(v) = std::env::var_os(old).filter(|v| !v.is_empty()) {
                set_env(new, v);
            }
        }
    }
    let argv = expand_mount_options(&Cli::command(), argv)?;
    let files = config_files(&argv)?;
    let settings = Settings::load(&files)?;
    settings.export_env();
    // clap reads a flag's variable when the flag is defined: define them
    // again now that `[env]` is in the environment.
    let (cmd, applied) = settings.apply(Cli::command())?;
    parse_with(cmd, applied, &argv)
}

/// Parses, then drops file settings that conflict with what the command line
/// or the environment gave, and parses again.
/// Every round drops at least one setting, so the loop ends.
fn parse_with(mut cmd: Command, applied: Vec<Applied>, argv: &[OsString]) -> Result<Cli, ParseError> {
    let mut applied = applied;
    loop {
        let matches = cmd.clone().try_get_matches_from(argv)?;
        let stale: Vec<Applied> = conflicting(&cmd, &matches, &applied).into_iter().cloned().collect();
        if stale.is_empty() {
            return Ok(Cli::from_arg_matches(&matches)?);
        }
        for a in &stale {
            cmd = at_path(cmd, &a.path, &mut |sc| {
                sc.mut_arg(&a.id, |arg| arg.default_values(a.old_defaults.clone()).required(a.old_required))
            });
        }
        applied.retain(|a| !stale.iter().any(|s| s.path == a.path && s.id == a.id));
    }
}

/// A flag whose default a configuration file replaced.
#[derive(Clone, Debug)]
struct Applied {
    path: Vec<String>,
    id: String,
    old_defaults: Vec<OsString>,
    old_required: bool,
}

/// Settings from the files that lost to a conflicting flag or variable.
fn conflicting<'a>(cmd: &Command, matches: &ArgMatches, applied: &'a [Applied]) -> Vec<&'a Applied> {
    let explicit = |m: &ArgMatches, id: &str| {
        matches!(m.value_source(id), Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable))
    };
    let mut out = Vec::new();
    for a in applied {
        let (mut sc, mut m) = (cmd, matches);
        let mut found = true;
        for name in &a.path {
            match (sc.find_subcommand(name), m.subcommand_matches(name)) {
                (Some(c), Some(sm)) => (sc, m) = (c, sm),
                _ => {
                    found = false;
                    break;
                }
            }
        }
        if !found || m.value_source(&a.id) != Some(ValueSource::DefaultValue) {
            continue;
        }
        let Some(arg) = sc.get_arguments().find(|x| x.get_id() == a.id.as_str()) else { continue };
        let against = sc.get_arg_conflicts_with(arg).into_iter().any(|o| explicit(m, o.get_id().as_str()));
        let against_us = sc.get_arguments().any(|o| {
            explicit(m, o.get_id().as_str()) && sc.get_arg_conflicts_with(o).iter().any(|c| c.get_id() == arg.get_id())
        });
        if against || against_us {
            out.push(a);
        }
    }
    out
}

/// Runs `f` on the subcommand at `path` (the root for an empty path).
fn at_path(cmd: Command, path: &[String], f: &mut dyn FnMut(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(cmd),
        Some((first, rest)) => cmd.mut_subcommand(first, |sc| at_path(sc, rest, f)),
    }
}

/// The file `--config` names (or `$MAGICFS_CONFIG`), else the default files
/// that exist.
fn config_files(argv: &[OsString]) -> Result<Vec<PathBuf>, ParseError> {
    let mut explicit = None;
    let mut it = argv.iter().skip(1);
    while let Some(t) = it.next() {
        let t = t.to_string_lossy();
        if t == "--" {
            break;
        }
        if t == "--config" {
            explicit = it.next().map(PathBuf::from);
        } else if let Some(v) = t.strip_prefix("--config=") {
            explicit = Some(PathBuf::from(v));
        }
    }
    let explicit = explicit.or_else(|| std::env::var_os("MAGICFS_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from));
    match explicit {
        // `/dev/null` (no settings at all) is as good as an empty file.
        Some(f) if f.exists() && !f.is_dir() => Ok(vec![f]),
        Some(f) => Err(ParseError::Usage(format!(
            "configuration file {} does not exist or is a directory (named by --config or MAGICFS_CONFIG)",
            f.display()
        ))),
        None => Ok(magicfs_types::dirs::config_files().into_iter().filter(|f| f.is_file()).collect()),
    }
}

/// Where a setting came from, for messages.
#[derive(Clone)]
struct Origin(PathBuf);

/// The merged configuration files.
struct Settings {
    table: toml::Table,
    origin: BTreeMap<String, Origin>,
}

impl Settings {
    fn load(files: &[PathBuf]) -> Result<Settings, ParseError> {
        let mut s = Settings { table: toml::Table::new(), origin: BTreeMap::new() };
        for f in files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ParseError::Usage(format!("cannot read configuration file {}: {e}", f.display())))?;
            let t: toml::Table =
                text.parse().map_err(|e| ParseError::Usage(format!("configuration file {}: {e}", f.display())))?;
            merge(&mut s.table, t, "", &Origin(f.clone()), &mut s.origin);
        }
        Ok(s)
    }

    fn origin_of(&self, key: &str) -> String {
        self.origin.get(key).map(|o| o.0.display().to_string()).unwrap_or_else(|| "configuration".into())
    }

    /// Sets the `[env]` variables that are not set already.
    fn export_env(&self) {
        let Some(toml::Value::Table(env)) = self.table.get("env") else { return };
        for (k, v) in env {
            if std::env::var_os(k).is_none() {
                if let Some(v) = scalar(v) {
                    set_env(k, v);
                }
            }
        }
    }

    /// The command with every setting as its flag's default.
    fn apply(&self, cmd: Command) -> Result<(Command, Vec<Applied>), ParseError> {
        let mut applied = Vec::new();
        let mut root = self.table.clone();
        if let Some(env) = root.remove("env") {
            if !env.is_table() {
                return Err(ParseError::Usage(format!("{}: [env] must be a table", self.origin_of("env"))));
            }
        }
        let cmd = self.apply_table(cmd, &root, &mut Vec::new(), &mut applied)?;
        Ok((cmd, applied))
    }

    fn apply_table(
        &self,
        mut cmd: Command,
        table: &toml::Table,
        path: &mut Vec<String>,
        applied: &mut Vec<Applied>,
    ) -> Result<Command, ParseError> {
        for (key, value) in table {
            let dotted = path.iter().chain(std::iter::once(key)).cloned().collect::<Vec<_>>().join(".");
            let origin = self.origin_of(&dotted);
            if let (toml::Value::Table(sub), Some(sc)) = (value, cmd.find_subcommand(key)) {
                let name = sc.get_name().to_string();
                path.push(name.clone());
                let mut err = None;
                cmd = cmd.mut_subcommand(&name, |sc| match self.apply_table(sc.clone(), sub, path, applied) {
                    Ok(c) => c,
                    Err(e) => {
                        err = Some(e);
                        sc
                    }
                });
                path.pop();
                if let Some(e) = err {
                    return Err(e);
                }
                continue;
            }
            let Some(arg) = find_arg(&cmd, key) else {
                return Err(ParseError::Usage(format!(
                    "{origin}: unknown setting {} (known here: {})",
                    shown(path, key),
                    known(&cmd)
                )));
            };
            let values = values(value).ok_or_else(|| {
                ParseError::Usage(format!(
                    "{origin}: {} takes a string, number, boolean or an array of them",
                    shown(path, key)
                ))
            })?;
            let many = matches!(arg.get_action(), ArgAction::Append)
                || arg.get_num_args().is_some_and(|r| r.max_values() > 1)
                || arg.get_value_delimiter().is_some();
            if values.len() > 1 && !many {
                return Err(ParseError::Usage(format!("{origin}: {} takes one value", shown(path, key))));
            }
            for v in &values {
                check_value(arg, v)
                    .map_err(|m| ParseError::Usage(format!("{origin}: {} = {v:?}: {m}", shown(path, key))))?;
            }
            let id = arg.get_id().to_string();
            applied.push(Applied {
                path: path.clone(),
                id: id.clone(),
                old_defaults: arg.get_default_values().iter().map(|v| v.to_os_string()).collect(),
                old_required: arg.is_required_set(),
            });
            let secret = arg.is_hide_env_values_set();
            cmd = cmd.mut_arg(&id, |a| {
                let a = a.default_values(values.iter().cloned().map(OsStr::from)).required(false);
                if secret {
                    a.hide_default_value(true)
                } else {
                    a
                }
            });
        }
        Ok(cmd)
    }
}

/// Deep-merges `from` into `into`, recording which file each key came from.
fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    origin: &Origin,
    seen: &mut BTreeMap<String, Origin>,
) {
    for (k, v) in from {
        let dotted = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b, &dotted, origin, seen),
            (_, v) => {
                if let toml::Value::Table(t) = &v {
                    for sub in t.keys() {
                        seen.insert(format!("{dotted}.{sub}"), origin.clone());
                    }
                }
                seen.insert(dotted, origin.clone());
                into.insert(k, v);
            }
        }
    }
}

fn shown(path: &[String], key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("[{}] {key}", path.join("."))
    }
}

/// The settings a table of `cmd` knows: its flags and its subcommands.
fn known(cmd: &Command) -> String {
    let mut names: Vec<String> = cmd.get_arguments().filter(|a| !is_builtin(a)).map(setting_name).collect();
    names.extend(cmd.get_subcommands().filter(|s| s.get_name() != "help").map(|s| format!("[{}]", s.get_name())));
    names.join(", ")
}

fn is_builtin(a: &clap::Arg) -> bool {
    matches!(a.get_id().as_str(), "help" | "version" | "config")
}

/// The name a flag goes by in a configuration file and in `-o`.
fn setting_name(a: &clap::Arg) -> String {
    a.get_long().map(String::from).unwrap_or_else(|| a.get_id().as_str().replace('_', "-"))
}

/// The flag `key` names in `cmd`: by long name or id, `_` and `-` alike.
fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a clap::Arg> {
    let norm = key.replace('_', "-");
    cmd.get_arguments()
        .filter(|a| !is_builtin(a) || a.get_id() == "config")
        .find(|a| setting_name(a) == norm || a.get_id().as_str().replace('_', "-") == norm)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

fn values(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        v => scalar(v).map(|s| vec![s]),
    }
}

/// Runs `value` through `arg`'s own parser; the parser's message if it is
/// refused.
fn check_value(arg: &clap::Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("check")
        .no_binary_name(true)
        .arg(clap::Arg::new("v").long("v").value_parser(arg.get_value_parser().clone()).action(ArgAction::Set));
    match probe.try_get_matches_from([format!("--v={value}")]) {
        Ok(_) => Ok(()),
        Err(e) => Err(std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            first.replace(" for '--v <v>'", "")
        })),
    }
}

/// Turns `magicfs mount`'s `-o` options that name a flag of the mount
/// (`-o model-path=FILE,watch=/srv/docs,no_chat`) into those flags, placed
/// right after the subcommand so that flags given later on the line win.
/// Kernel and mount(8) options stay in `-o` for the mount itself.
pub fn expand_mount_options(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ParseError> {
    let Some(at) = subcommand_index(&argv) else { return Ok(argv) };
    let Some(mount) = cmd.find_subcommand("mount").filter(|_| argv[at] == "mount") else { return Ok(argv) };
    let mut out: Vec<OsString> = argv[..=at].to_vec();
    let mut flags: Vec<OsString> = Vec::new();
    let mut rest = argv[at + 1..].iter();
    while let Some(t) = rest.next() {
        let s = t.to_string_lossy();
        let opts = if s == "--" {
            out.push(t.clone());
            out.extend(rest.by_ref().cloned());
            break;
        } else if s == "-o" {
            match rest.next() {
                Some(v) => v.to_string_lossy().into_owned(),
                None => {
                    out.push(t.clone());
                    continue;
                }
            }
        } else if let Some(v) = s.strip_prefix("-o").filter(|_| !s.starts_with("--")) {
            v.trim_start_matches('=').to_string()
        } else {
            out.push(t.clone());
            continue;
        };
        let mut kept = Vec::new();
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = opt.split_once('=').map_or((opt, None), |(k, v)| (k, Some(v)));
            let key = OPTION_ALIASES.iter().find(|(a, _)| *a == key).map_or(key, |(_, f)| *f);
            if key == "config" {
                let v = value.ok_or_else(|| ParseError::Usage("-o config= needs a file".into()))?;
                // Global flag: it goes before the subcommand.
                out.splice(1..1, [OsString::from("--config"), OsString::from(v)]);
                continue;
            }
            if is_mount8_option(key) {
                kept.push(opt.to_string());
                continue;
            }
            let Some(arg) = find_arg(mount, key).filter(|a| !a.is_positional() && a.get_id() != "options") else {
                kept.push(opt.to_string());
                continue;
            };
            let flag = OsString::from(format!("--{}", setting_name(arg)));
            match (arg.get_action().takes_values(), value) {
                (true, Some(v)) => flags.extend([flag, OsString::from(v)]),
                (true, None) => return Err(ParseError::Usage(format!("-o {key} needs a value: -o {key}=VALUE"))),
                (false, None) => flags.push(flag),
                (false, Some(v)) => match v {
                    "true" | "yes" | "on" | "1" => flags.push(flag),
                    "false" | "no" | "off" | "0" => {}
                    _ => {
                        return Err(ParseError::Usage(format!("-o {key}={v}: a switch takes no value (or true/false)")))
                    }
                },
            }
        }
        if !kept.is_empty() {
            out.push("-o".into());
            out.push(kept.join(",").into());
        }
    }
    let at = out.iter().position(|t| t == "mount").unwrap_or(out.len() - 1);
    out.splice(at + 1..at + 1, flags);
    Ok(out)
}

/// Index of the subcommand in `argv`: the first word after the root's own
/// options (`--config FILE`).
fn subcommand_index(argv: &[OsString]) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let t = argv[i].to_string_lossy();
        if t == "--config" {
            i += 2;
        } else if t.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}
