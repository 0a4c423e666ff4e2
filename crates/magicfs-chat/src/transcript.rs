//! The session file format (compatible with CFS-Local): a sequence of turns,
//! each opened by a line that starts with a role prefix — `System:`,
//! `User:`, `Assistant:` — and running until the next such line. The daemon
//! adds one more prefix, `Error:`, for a turn it could not answer:
//!
//! ```text
//! Error: <kind>: <message>
//! ```
//!
//! where `<kind>` is `input` (the file is not a usable transcript), `request`
//! (the model cannot take it: too long, bad schema, bad override), `model`
//! (the model file is missing or broken), `backend` (the server or llama.cpp
//! failed) or `cancelled`. A turn directly followed by an `Error:` turn is
//! left out of the history the model sees (it was not answered, or it is a
//! partial reply).

use magicfs_llm::{ChatMessage, Role};

/// Who a turn belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRole {
    /// `System:`
    System,
    /// `User:`
    User,
    /// `Assistant:`
    Assistant,
    /// `Error:` (written by the daemon)
    Error,
}

/// Role prefixes as they open a line.
pub const PREFIXES: [(&str, TurnRole); 4] = [
    ("System:", TurnRole::System),
    ("User:", TurnRole::User),
    ("Assistant:", TurnRole::Assistant),
    ("Error:", TurnRole::Error),
];

/// One turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Speaker.
    pub role: TurnRole,
    /// Text, without the prefix and the space after it, trailing whitespace trimmed.
    pub text: String,
}

/// Why a file is not a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// Bytes that are not UTF-8 text (or a NUL byte) at this offset.
    NotText(usize),
    /// Text, but no line starts with a role prefix.
    NoTurns,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::NotText(at) => write!(f, "the session is not UTF-8 text (byte {at}); write plain text turns"),
            InputError::NoTurns => write!(
                f,
                "no turns: start lines with 'User: ' (optionally a first 'System: ' turn), e.g. echo 'User: Hello' > sessions/ID"
            ),
        }
    }
}

/// The role a line opens, if it starts with a prefix; with the rest of the line.
pub fn role_of(line: &str) -> Option<(TurnRole, &str)> {
    PREFIXES.iter().find_map(|(p, r)| line.strip_prefix(p).map(|rest| (*r, rest.strip_prefix(' ').unwrap_or(rest))))
}

/// Parses a session file. Text before the first role line is ignored (and
/// logged by the caller); a file that is only whitespace has no turns.
pub fn parse(bytes: &[u8]) -> Result<Vec<Turn>, InputError> {
    let text = std::str::from_utf8(bytes).map_err(|e| InputError::NotText(e.valid_up_to()))?;
    if let Some(i) = text.find('\0') {
        return Err(InputError::NotText(i));
    }
    let mut turns: Vec<Turn> = Vec::new();
    for line in text.split_inclusive('\n') {
        match role_of(line) {
            Some((role, rest)) => turns.push(Turn { role, text: rest.to_string() }),
            None => {
                if let Some(t) = turns.last_mut() {
                    t.text.push_str(line);
                }
            }
        }
    }
    if turns.is_empty() && !text.trim().is_empty() {
        return Err(InputError::NoTurns);
    }
    for t in &mut turns {
        let trimmed = t.text.trim_end().len();
        t.text.truncate(trimmed);
    }
    Ok(turns)
}

/// Parses the end of a session file that starts mid-transcript: the first
/// (partial) line and the text before the first role line belong to a turn
/// whose start is not in `tail`, and are left out. An empty result means no
/// turn starts in `tail`.
pub fn parse_tail(tail: &[u8]) -> Result<Vec<Turn>, InputError> {
    let Some(nl) = tail.iter().position(|b| *b == b'\n') else { return Ok(Vec::new()) };
    let rest = &tail[nl + 1..];
    let text = std::str::from_utf8(rest).map_err(|e| InputError::NotText(nl + 1 + e.valid_up_to()))?;
    if let Some(i) = text.find('\0') {
        return Err(InputError::NotText(nl + 1 + i));
    }
    let mut start = text.split_inclusive('\n').scan(0usize, |at, l| {
        let here = *at;
        *at += l.len();
        Some((here, l))
    });
    match start.find(|(_, l)| role_of(l).is_some()) {
        Some((at, _)) => parse(&rest[at..]),
        None => Ok(Vec::new()),
    }
}

/// The System turns a file starts with (from its first bytes, `head`).
pub fn leading_system(head: &[u8]) -> Vec<Turn> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<Turn> = Vec::new();
    for line in text.split_inclusive('\n') {
        match role_of(line) {
            Some((TurnRole::System, rest)) => out.push(Turn { role: TurnRole::System, text: rest.to_string() }),
            Some(_) => break,
            None if out.is_empty() => break,
            None => out.last_mut().into_iter().for_each(|t| t.text.push_str(line)),
        }
    }
    for t in &mut out {
        let trimmed = t.text.trim_end().len();
        t.text.truncate(trimmed);
    }
    out
}

/// The role of the last turn in `tail` (the end of a file), if a role line is in it.
/// `tail` may start mid-line: its first line counts only if `at_start`.
pub fn last_role(tail: &[u8], at_start: bool) -> Option<TurnRole> {
    let text = String::from_utf8_lossy(tail);
    let mut lines = text.split_inclusive('\n');
    if !at_start {
        lines.next();
    }
    lines.rev().find_map(|l| role_of(l).map(|(r, _)| r))
}

/// The history the model sees: System turns, then User and Assistant turns;
/// `Error:` turns and the turn each one answers are left out. `system`
/// (the session's `user.magic.system`) is the system prompt when the file has none.
pub fn messages(turns: &[Turn], system: Option<&str>) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        if !turns.iter().any(|t| t.role == TurnRole::System) {
            out.push(ChatMessage { role: Role::System, content: s.trim().to_string() });
        }
    }
    for (i, t) in turns.iter().enumerate() {
        let answered_by_error = turns.get(i + 1).is_some_and(|n| n.role == TurnRole::Error);
        let role = match t.role {
            TurnRole::System => Role::System,
            TurnRole::User if !answered_by_error => Role::User,
            TurnRole::Assistant if !answered_by_error => Role::Assistant,
            _ => continue,
        };
        out.push(ChatMessage { role, content: t.text.clone() });
    }
    out
}

/// Holds back streamed text that starts a line with a role prefix: a model
/// that begins to write the user's next turn has ended its own.
#[derive(Default)]
pub struct RoleGuard {
    hold: String,
    at_line_start: bool,
}

impl RoleGuard {
    /// Feeds a piece; returns the text safe to write and whether the reply ended here.
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.hold.push_str(piece);
        let mut out = String::new();
        loop {
            if self.at_line_start {
                if role_of(&self.hold).is_some() {
                    self.hold.clear();
                    return (out, true);
                }
                if PREFIXES.iter().any(|(p, _)| p.starts_with(self.hold.as_str())) {
                    return (out, false); // could still become a role line
                }
            }
            match self.hold.find('\n') {
                Some(i) => {
                    out.push_str(&self.hold[..=i]);
                    self.hold.drain(..=i);
                    self.at_line_start = true;
                }
                None => {
                    out.push_str(&self.hold);
                    self.hold.clear();
                    self.at_line_start = false;
                    return (out, false);
                }
            }
        }
    }

    /// What is held at the end.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_span_lines_until_the_next_prefix() {
        let t = parse(b"System: be brief\nUser: Hello\nthere\n\nAssistant: Hi!\nUser: again\n").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[1], Turn { role: TurnRole::User, text: "Hello\nthere".into() });
        assert_eq!(t[3].role, TurnRole::User);
        assert_eq!(parse(b"  \n").unwrap(), vec![]);
        assert_eq!(parse(b"hello").unwrap_err(), InputError::NoTurns);
        assert_eq!(parse(b"User: a\xff").unwrap_err(), InputError::NotText(7));
        assert_eq!(parse(b"User: a\0").unwrap_err(), InputError::NotText(7));
        // "Users:" is not a prefix.
        assert_eq!(parse(b"User: x\nUsers: y").unwrap().len(), 1);
    }

    #[test]
    fn history_skips_errors_and_what_they_answer() {
        let t = parse(b"User: a\nAssistant: partial\nError: backend: broke\nUser: b\n").unwrap();
        let m = messages(&t, Some("sys"));
        let roles: Vec<_> = m.iter().map(|m| (m.role, m.content.as_str())).collect();
        assert_eq!(roles, [(Role::System, "sys"), (Role::User, "a"), (Role::User, "b")]);
        let t = parse(b"System: file\nUser: a\n").unwrap();
        assert_eq!(messages(&t, Some("xattr"))[0].content, "file");
    }

    #[test]
    fn tails_start_at_their_first_whole_turn() {
        let t = parse_tail(b"lo there\nstill the old turn\nUser: b\nAssistant: c\nUser: d\n").unwrap();
        assert_eq!(t.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), ["b", "c", "d"]);
        assert_eq!(parse_tail(b"User: partial\nno role here\n").unwrap(), vec![]);
        assert_eq!(parse_tail(b"xx\xff\nUser: a\xff").unwrap_err(), InputError::NotText(11));
        let s = leading_system(b"System: be brief\nand kind\nUser: hi\nSystem: later\n");
        assert_eq!(s, vec![Turn { role: TurnRole::System, text: "be brief\nand kind".into() }]);
        assert!(leading_system(b"User: hi\n").is_empty());
    }

    #[test]
    fn last_role_in_a_tail() {
        assert_eq!(last_role(b"User: a\nAssistant: b\n", true), Some(TurnRole::Assistant));
        assert_eq!(last_role(b"r: a\nUser: b", false), Some(TurnRole::User));
        assert_eq!(last_role(b"User: b", false), None);
    }

    #[test]
    fn guard_stops_at_a_role_line() {
        let mut g = RoleGuard::default();
        let mut out = String::new();
        let mut stopped = false;
        for p in ["Hi", " there.\n", "Us", "e", "r: what", " next"] {
            let (s, stop) = g.push(p);
            out.push_str(&s);
            if stop {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(out, "Hi there.\n");
        let mut g = RoleGuard::default();
        let (s, stop) = g.push("a\nUsual\n");
        assert_eq!((s.as_str(), stop), ("a\nUsual\n", false));
        assert_eq!(g.push("Use").0, "");
        assert_eq!(g.finish(), "Use");
    }
}
