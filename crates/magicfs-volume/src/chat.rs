//! Chat turns through a mount's `sessions/` directory: append a User turn,
//! close, and follow the file as the daemon streams the reply into it.

use crate::error::{VResult, VolumeError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest message accepted in one turn.
pub const MAX_MESSAGE: usize = 64 << 10;

/// Checks a session id: a plain name, not hidden.
pub fn check_session_id(id: &str) -> VResult<()> {
    if id.is_empty() || id.starts_with('.') || id.contains('/') || id.contains('\0') || id.len() > 255 {
        return Err(VolumeError::BadArgument(format!(
            "session id {id:?}: use a plain name of at most 255 bytes (no '/', not starting with '.')"
        )));
    }
    Ok(())
}

/// Checks a message and shapes it as one User turn.
pub fn user_turn(message: &str) -> VResult<String> {
    let text = message.trim_end();
    if text.trim().is_empty() {
        return Err(VolumeError::BadArgument("the message is empty: say something".into()));
    }
    if text.len() > MAX_MESSAGE {
        return Err(VolumeError::TooLarge(format!("the message is longer than {MAX_MESSAGE} bytes")));
    }
    Ok(format!("User: {text}\n"))
}

/// Hands the new bytes of a reply to `on_piece`, without the leading
/// `Assistant: ` and without splitting a UTF-8 character; keeps the whole reply.
#[derive(Default)]
pub(crate) struct ReplyText {
    pending: Vec<u8>,
    started: bool,
    pub(crate) text: String,
}

impl ReplyText {
    pub(crate) fn push(&mut self, bytes: &[u8], on_piece: &mut dyn FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let mut piece = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        if !self.started {
            if piece.len() < "Assistant: ".len() && "Assistant: ".starts_with(&piece) {
                // Not enough yet to tell the prefix from the reply.
                self.pending.splice(0..0, piece.into_bytes());
                return;
            }
            if let Some(rest) = piece.strip_prefix("Assistant: ") {
                piece = rest.to_string();
            }
            self.started = true;
        }
        if !piece.is_empty() {
            on_piece(&piece);
            self.text.push_str(&piece);
        }
    }

    pub(crate) fn finish(mut self, on_piece: &mut dyn FnMut(&str)) -> String {
        if !self.pending.is_empty() {
            let rest = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            on_piece(&rest);
            self.text.push_str(&rest);
        }
        self.text
    }
}

/// Appends a User turn to `sessions/<id>` of a mount (`dir` is the
/// `sessions/` directory) and follows the file until the reply is complete
/// (its sentinel `.generating.<id>` is gone). Returns the reply.
pub fn send_on_mount(
    dir: &Path,
    id: &str,
    message: &str,
    deadline: Instant,
    on_piece: &mut dyn FnMut(&str),
) -> VResult<String> {
    let turn = user_turn(message)?;
    let path = dir.join(id);
    let sentinel = dir.join(format!(".generating.{id}"));
    let shown = format!("sessions/{id}");
    let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| VolumeError::io(e, &shown))?;
        f.write_all(turn.as_bytes()).map_err(|e| VolumeError::io(e, &shown))?;
    } // close: the daemon queues the reply and creates the sentinel before this returns
    let mut offset = start + turn.len() as u64;
    let mut reply = ReplyText::default();
    let mut buf = Vec::new();
    loop {
        let generating = sentinel.exists();
        let mut f = std::fs::File::open(&path).map_err(|e| VolumeError::io(e, &shown))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| VolumeError::io(e, &shown))?;
        buf.clear();
        f.read_to_end(&mut buf).map_err(|e| VolumeError::io(e, &shown))?;
        if !buf.is_empty() {
            offset += buf.len() as u64;
            reply.push(&buf, on_piece);
        } else if !generating {
            return finish(reply, on_piece);
        }
        wait_or_give_up(deadline, &shown)?;
    }
}

/// Sleeps before the next look at a session, or gives up past `deadline`.
pub(crate) fn wait_or_give_up(deadline: Instant, shown: &str) -> VResult<()> {
    if Instant::now() > deadline {
        return Err(VolumeError::Unavailable(format!(
            "{shown}: no complete reply in time; it goes on streaming into the file"
        )));
    }
    std::thread::sleep(Duration::from_millis(30));
    Ok(())
}

/// The reply, or the daemon's `Error:` turn as an error.
pub(crate) fn finish(reply: ReplyText, on_piece: &mut dyn FnMut(&str)) -> VResult<String> {
    let text = reply.finish(on_piece);
    let trimmed = text.trim_start();
    if let Some(e) = trimmed.strip_prefix("Error: ") {
        return Err(VolumeError::Unavailable(format!("the model did not answer: {}", e.trim())));
    }
    // A reply cut short is followed by an error turn.
    if let Some(at) = text.find("\nError: ") {
        return Err(VolumeError::Unavailable(format!(
            "the reply stopped early: {}",
            text[at + "\nError: ".len()..].trim()
        )));
    }
    Ok(text.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_role_and_keeps_characters_whole() {
        let mut r = ReplyText::default();
        let mut seen = Vec::new();
        let mut sink = |p: &str| seen.push(p.to_string());
        r.push(b"Assis", &mut sink);
        r.push(b"tant: Bonjour \xc3", &mut sink);
        r.push(b"\xa9t\xc3\xa9\n", &mut sink);
        let text = r.finish(&mut sink);
        assert_eq!(text, "Bonjour été\n");
        assert_eq!(seen.concat(), "Bonjour été\n");
        assert!(check_session_id("../x").is_err());
        assert!(check_session_id(".generating.a").is_err());
        assert!(check_session_id("chat1").is_ok());
        assert!(user_turn("  ").is_err());
    }
}
