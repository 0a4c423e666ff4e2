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
/// the conversation fits `budget` tokens; the kept history starts with a
/// User turn. Returns the kept turns and how many were dropped; fails when
/// the System turns and the last turn alone do not fit.
///
/// Linear in the conversation: `count_one` (the cost of one turn, template
/// included) is asked once per turn, walking back from the newest, and
/// `count_all` (the exact cost of a whole conversation) checks the result,
/// dropping one more turn at a time in the rare case the estimate was short.
pub fn fit_history(
    messages: &[ChatMessage],
    budget: usize,
    mut count_one: impl FnMut(&ChatMessage) -> Result<usize, LlmError>,
    mut count_all: impl FnMut(&[ChatMessage]) -> Result<usize, LlmError>,
) -> Result<(Vec<ChatMessage>, usize), LlmError> {
    if messages.is_empty() {
        return Err(LlmError::Request("the conversation is empty".into()));
    }
    let system: Vec<&ChatMessage> = messages.iter().filter(|m| m.role == Role::System).collect();
    let turns: Vec<&ChatMessage> = messages.iter().filter(|m| m.role != Role::System).collect();
    let mut used = 0usize;
    for m in &system {
        used += count_one(m)?;
    }
    // Newest first, as many turns as fit by the per-turn estimate.
    let mut first = turns.len();
    while first > 0 {
        let cost = count_one(turns[first - 1])?;
        if used + cost > budget && first < turns.len() {
            break;
        }
        used += cost;
        first -= 1;
    }
    let start_at_user = |mut i: usize| {
        while i + 1 < turns.len() && turns[i].role != Role::User {
            i += 1;
        }
        i
    };
    let build = |from: usize| -> Vec<ChatMessage> {
        system.iter().copied().chain(turns[from..].iter().copied()).cloned().collect()
    };
    let mut from = if first == 0 { 0 } else { start_at_user(first) };
    loop {
        let kept = build(from);
        let cost = count_all(&kept)?;
        if cost <= budget {
            return Ok((kept, messages.len() - system.len() - (turns.len() - from)));
        }
        if from + 1 >= turns.len() {
            return Err(LlmError::Request(format!(
                "the last turn needs {cost} tokens with the system prompt; the context leaves room for {budget} \
                 (send a shorter message or raise the context size)"
            )));
        }
        from = start_at_user(from + 1);
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
        let one = |m: &ChatMessage| Ok(m.content.len());
        let chars = |ms: &[ChatMessage]| Ok(ms.iter().map(|m| m.content.len()).sum());
        let (kept, dropped) = fit_history(&msgs, 100, one, chars).unwrap();
        assert_eq!((kept.len(), dropped), (6, 0));
        let (kept, dropped) = fit_history(&msgs, 15, one, chars).unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(kept[0], m(Role::System, "sys"));
        assert_eq!(kept[1], m(Role::User, "cccc"));
        assert_eq!(kept.last().unwrap(), &m(Role::User, "eeee"));
        let err = fit_history(&msgs, 5, one, chars).unwrap_err();
        assert!(err.to_string().contains("last turn needs 7 tokens"), "{err}");
        // An estimate that is short is corrected by the exact count.
        let (kept, dropped) = fit_history(&msgs, 19, |m| Ok(m.content.len() / 2), |ms| chars(ms)).unwrap();
        assert_eq!((kept.len(), dropped), (4, 2), "{kept:?}");
    }

    #[test]
    fn a_long_history_is_fitted_in_linear_time() {
        let mut msgs = vec![m(Role::System, "sys")];
        for i in 0..20_000 {
            msgs.push(m(if i % 2 == 0 { Role::User } else { Role::Assistant }, "a few words of a turn"));
        }
        let (mut ones, mut alls) = (0usize, 0usize);
        let (kept, dropped) = fit_history(
            &msgs,
            1000,
            |m| {
                ones += 1;
                Ok(m.content.len() / 4 + 3)
            },
            |ms| {
                alls += ms.len();
                Ok(ms.iter().map(|m| m.content.len() / 4 + 3).sum())
            },
        )
        .unwrap();
        assert_eq!(kept.len() + dropped, msgs.len());
        assert_eq!(kept[1].role, Role::User);
        assert!(ones < 200 && alls < 200, "{ones} per-turn counts, {alls} turns counted whole");
    }
}
