//! Server-sent events (the WHATWG `text/event-stream` format), parsed
//! incrementally from the bytes as they arrive: lines end in LF, CRLF or
//! CR (split anywhere across chunks), `:` starts a comment (the server's
//! keep-alives), a blank line ends an event, `data` lines join with LF,
//! and `id` persists as the last event id until another one is set.

use std::time::Duration;

/// One event as dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; "message" when there was none.
    pub event: String,
    /// The `data:` lines, joined by LF.
    pub data: String,
    /// The `id:` field of this event, if it had one.
    pub id: Option<String>,
}

/// More in one line, or one event, than any Kiln event needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge(pub usize);

pub struct SseParser {
    line: Vec<u8>,
    /// The last byte seen was a CR: an LF right after it ends nothing.
    after_cr: bool,
    /// Still at the stream's start, where one byte-order mark is skipped.
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    last_id: Option<String>,
    retry: Option<Duration>,
    max: usize,
}

impl SseParser {
    /// A parser refusing lines and events over `max` bytes.
    pub fn new(max: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            last_id: None,
            retry: None,
            max,
        }
    }

    /// The last event id the stream set (the `Last-Event-ID` to reconnect
    /// with).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection time the stream asked for (`retry:`), if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Feed bytes; the events they complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        let out = Vec::new();
        if self.at_start {
            // A BOM may arrive split over chunks: wait for three bytes.
            let have = self.line.len() + bytes.len();
            if have < 3 && b"\xEF\xBB\xBF".starts_with(&[&self.line[..], bytes].concat()) {
                self.line.extend_from_slice(bytes);
                return Ok(out);
            }
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(bytes);
            self.at_start = false;
            let start = if head.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            return self.feed_bytes(&head[start..], out);
        }
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        self.feed_bytes(bytes, out)
    }

    fn feed_bytes(
        &mut self,
        mut bytes: &[u8],
        mut out: Vec<SseEvent>,
    ) -> Result<Vec<SseEvent>, TooLarge> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..end]);
            if self.line.len() > self.max {
                return Err(TooLarge(self.max));
            }
            let line = std::mem::take(&mut self.line);
            if let Some(e) = self.line_done(&line)? {
                out.push(e);
            }
            let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            if bytes[end] == b'\r' && end + 1 == bytes.len() {
                self.after_cr = true;
            }
            bytes = &bytes[end + if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > self.max {
            return Err(TooLarge(self.max));
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<SseEvent>, TooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(TooLarge(self.max));
                }
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_string());
                self.last_id = Some(value.to_string());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let id = self.id.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_at_once(text: &[u8]) -> Vec<SseEvent> {
        SseParser::new(1 << 20).feed(text).unwrap()
    }

    /// The same bytes fed one at a time give the same events.
    fn byte_by_byte(text: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        text.iter()
            .flat_map(|b| p.feed(std::slice::from_ref(b)).unwrap())
            .collect()
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn events_comments_and_line_endings() {
        let text =
            b"\xEF\xBB\xBF: keep-alive\n\nid: 1\nevent: state\ndata: {\"a\":\r\ndata:1}\r\n\r\n\
            : keep-alive\r\rid:2\revent:log\rdata: x\r\rdata: no id\nretry: 1500\n\n\
            id: 3\n\nevent: tail\ndata: unfinished";
        let want = vec![
            ev("state", "{\"a\":\n1}", Some("1")),
            ev("log", "x", Some("2")),
            ev("message", "no id", None),
        ];
        for events in [all_at_once(text), byte_by_byte(text)] {
            assert_eq!(events, want);
        }
        let mut p = SseParser::new(1 << 20);
        p.feed(text).unwrap();
        // An id with no data dispatches nothing but is still the last id.
        assert_eq!(p.last_id(), Some("3"));
        assert_eq!(p.retry(), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn a_crlf_split_across_chunks_ends_one_line() {
        let mut p = SseParser::new(1 << 20);
        assert!(p.feed(b"data: a\r").unwrap().is_empty());
        assert_eq!(p.feed(b"\n\r").unwrap(), vec![ev("message", "a", None)]);
        assert!(p.feed(b"\ndata: b\n").unwrap().is_empty());
        assert_eq!(p.feed(b"\n").unwrap(), vec![ev("message", "b", None)]);
    }

    #[test]
    fn empty_data_lines_count_and_odd_fields_are_ignored() {
        let events = all_at_once(b"data\ndata\n\nfoo: bar\ndata: x\nid: a\0b\n\n");
        assert_eq!(
            events,
            vec![ev("message", "\n", None), ev("message", "x", None)]
        );
    }

    #[test]
    fn an_endless_line_or_event_is_refused() {
        let mut p = SseParser::new(16);
        assert_eq!(p.feed(&[b'x'; 17]), Err(TooLarge(16)));
        let mut p = SseParser::new(16);
        assert!(p.feed(b"data: 0123456789\n").is_ok());
        assert_eq!(p.feed(b"data: 0123456789\n"), Err(TooLarge(16)));
    }
}
