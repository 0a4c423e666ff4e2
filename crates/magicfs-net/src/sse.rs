//! Server-sent events, read as the WHATWG event-stream format says: lines
//! end with CRLF, LF or CR; the `data:` fields of one event are joined with
//! newlines; comments (`:`) and unknown fields are skipped; a blank line
//! ends an event; an event cut off by the end of the stream is dropped.
//!
//! Written here rather than taken from a crate: the maintained SSE parsers
//! are asynchronous (tokio streams), and the backend reads on a blocking
//! thread; the format is the few rules above.

use std::io::{self, BufRead};

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` fields, joined with `\n`.
    pub data: String,
    /// The last `id:` field, if any.
    pub id: Option<String>,
}

/// Reads events from a byte stream.
pub struct EventReader<R> {
    inner: R,
    max: usize,
    after_cr: bool,
    line: Vec<u8>,
}

impl<R: BufRead> EventReader<R> {
    /// Events from `inner`; a line or event longer than `max` bytes is an error.
    pub fn new(inner: R, max: usize) -> EventReader<R> {
        EventReader { inner, max, after_cr: false, line: Vec::new() }
    }

    /// The next line into `self.line`; false at the end of the stream (a
    /// line without its end is dropped).
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            if self.after_cr && buf[0] == b'\n' {
                self.after_cr = false;
                self.inner.consume(1);
                continue;
            }
            self.after_cr = false;
            match buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.line.extend_from_slice(&buf[..i]);
                    self.after_cr = buf[i] == b'\r';
                    self.inner.consume(i + 1);
                    return Ok(true);
                }
                None => {
                    let n = buf.len();
                    self.line.extend_from_slice(buf);
                    self.inner.consume(n);
                    if self.line.len() > self.max {
                        return Err(too_long(self.max));
                    }
                }
            }
        }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut data = String::new();
        let mut event = String::new();
        let mut id = None;
        loop {
            if !self.read_line()? {
                return Ok(None);
            }
            if self.line.is_empty() {
                if data.is_empty() {
                    event.clear();
                    continue;
                }
                data.pop();
                let event = if event.is_empty() { "message".to_string() } else { event };
                return Ok(Some(Event { event, data, id }));
            }
            let text = String::from_utf8_lossy(&self.line);
            if text.starts_with(':') {
                continue;
            }
            let (field, value) = match text.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*text, ""),
            };
            match field {
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                    if data.len() > self.max {
                        return Err(too_long(self.max));
                    }
                }
                "event" => event = value.to_string(),
                "id" if !value.contains('\0') => id = Some(value.to_string()),
                _ => {}
            }
        }
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = io::Result<Event>;

    fn next(&mut self) -> Option<io::Result<Event>> {
        self.next_event().transpose()
    }
}

fn too_long(max: usize) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("an event longer than {max} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<Event> {
        EventReader::new(text.as_bytes(), 1 << 20).collect::<io::Result<Vec<_>>>().unwrap()
    }

    fn ev(data: &str) -> Event {
        Event { event: "message".into(), data: data.into(), id: None }
    }

    #[test]
    fn single_and_multi_line_data() {
        assert_eq!(events("data: a\n\ndata: b\n\n"), [ev("a"), ev("b")]);
        assert_eq!(events("data: {\"x\":\ndata: [1,\ndata:2]}\n\n"), [ev("{\"x\":\n[1,\n2]}")]);
        assert_eq!(events("data\n\n"), [ev("")]);
        assert_eq!(events("data:  two spaces\n\n"), [ev(" two spaces")]);
    }

    #[test]
    fn line_endings_comments_and_fields() {
        assert_eq!(events("data: a\r\n\r\ndata: b\r\rdata: c\n\n"), [ev("a"), ev("b"), ev("c")]);
        let got = events(": keep-alive\nevent: delta\nid: 7\nretry: 5\nfoo: bar\ndata: x\n\n");
        assert_eq!(got, [Event { event: "delta".into(), data: "x".into(), id: Some("7".into()) }]);
        // Blank lines without data dispatch nothing; an event without its blank line is dropped.
        assert_eq!(events("\n\nevent: e\n\ndata: a\n\ndata: cut"), [ev("a")]);
    }

    #[test]
    fn crlf_split_across_reads_and_limits() {
        let text = b"data: a\r\n\r\ndata: b\n\n";
        let reader = io::BufReader::with_capacity(8, &text[..]);
        let got: Vec<Event> = EventReader::new(reader, 1 << 20).collect::<io::Result<_>>().unwrap();
        assert_eq!(got, [ev("a"), ev("b")]);
        let long = format!("data: {}\n\n", "x".repeat(100));
        assert!(EventReader::new(long.as_bytes(), 50).next_event().is_err());
        let many = "data: xxxxxxxxxx\n".repeat(10) + "\n";
        assert!(EventReader::new(many.as_bytes(), 50).next_event().is_err());
    }
}
