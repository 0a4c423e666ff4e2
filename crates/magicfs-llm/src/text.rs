//! Text helpers shared by the backends: streaming UTF-8 decoding of token
//! bytes and fitting a conversation into the context.

use crate::{ChatMessage, LlmError, Role};

/// Turns a stream of byte pieces (tokens may split a character) into text:
/// [`Utf8Stream::push`] returns what is complete, keeping a split
/// character's first bytes for the next piece. Invalid bytes become U+FFFD.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes`; returns the text completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..good]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..good + bad);
                        }
                        None => {
                            self.pending.drain(..good);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Drops the oldest turns (never a System turn, never the last turn) until
/// `count(messages)` is at most `budget`. Returns the kept turns and how many
/// were dropped; fails when the System turns and the last turn alone do not fit.
pub fn fit_history(
    messages: &[ChatMessage],
    budget: usize,
    mut count: impl FnMut(&[ChatMessage]) -> Result<usize, LlmError>,
) -> Result<(Vec<ChatMessage>, usize), LlmError> {
    let Some(last) = messages.last() else { return Err(LlmError::Request("the conversation is empty".into())) };
    let full = count(messages)?;
    if full <= budget {
        return Ok((messages.to_vec(), 0));
    }
    let system: Vec<ChatMessage> = messages.iter().filter(|m| m.role == Role::System).cloned().collect();
    let mut minimal = system.clone();
    minimal.push(last.clone());
    let need = count(&minimal)?;
    if need > budget {
        return Err(LlmError::Request(format!(
            "the last turn needs {need} tokens with the system prompt; the context leaves room for {budget} \
             (send a shorter message or raise the context size)"
        )));
    }
    let mut rest: Vec<ChatMessage> = messages.iter().filter(|m| m.role != Role::System).cloned().collect();
    let mut dropped = 0;
    loop {
        // Drop the oldest turn, then up to the next User turn so the history starts with the user.
        rest.remove(0);
        dropped += 1;
        while rest.len() > 1 && rest[0].role != Role::User {
            rest.remove(0);
            dropped += 1;
        }
        let mut candidate = system.clone();
        candidate.extend(rest.iter().cloned());
        if rest.len() <= 1 || count(&candidate)? <= budget {
            return Ok((candidate, dropped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, s: &str) -> ChatMessage {
        ChatMessage { role, content: s.into() }
    }

    #[test]
    fn utf8_split_characters_are_held_back() {
        let mut u = Utf8Stream::default();
        let bytes = "héllo €".as_bytes();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&u.push(&[*b]));
        }
        out.push_str(&u.finish());
        assert_eq!(out, "héllo €");
        assert_eq!(u.push(b"a\xffb"), "a\u{FFFD}b");
    }

    #[test]
    fn history_drops_oldest_keeps_system_and_last() {
        let msgs = vec![
            m(Role::System, "sys"),
            m(Role::User, "aaaa"),
            m(Role::Assistant, "bbbb"),
            m(Role::User, "cccc"),
            m(Role::Assistant, "dddd"),
            m(Role::User, "eeee"),
        ];
        let chars = |ms: &[ChatMessage]| Ok(ms.iter().map(|m| m.content.len()).sum());
        let (kept, dropped) = fit_history(&msgs, 100, chars).unwrap();
        assert_eq!((kept.len(), dropped), (6, 0));
        let (kept, dropped) = fit_history(&msgs, 15, chars).unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(kept[0], m(Role::System, "sys"));
        assert_eq!(kept[1], m(Role::User, "cccc"));
        assert_eq!(kept.last().unwrap(), &m(Role::User, "eeee"));
        let err = fit_history(&msgs, 5, chars).unwrap_err();
        assert!(err.to_string().contains("last turn needs 7 tokens"), "{err}");
    }
}
