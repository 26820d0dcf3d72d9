//! The in-memory copy of a program's output that a plugin can read back,
//! capped: past the cap the tail is dropped and the copy is marked truncated
//! (the log file on disk still has everything).

#[derive(Debug)]
pub(crate) struct Capture {
    data: Vec<u8>,
    limit: usize,
    truncated: bool,
}

/// A snapshot of captured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub data: Vec<u8>,
    pub truncated: bool,
}

/// Appended to captured output that hit the cap.
pub const TRUNCATION_MARKER: &[u8] = b"\n[kiln: output truncated; the log file holds all of it]\n";

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture {
            data: Vec::new(),
            limit,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Output has been dropped at the cap: whatever comes later is too.
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated
    }

    pub(crate) fn snapshot(&self) -> Captured {
        let mut data = self.data.clone();
        if self.truncated {
            data.extend_from_slice(TRUNCATION_MARKER);
        }
        Captured {
            data,
            truncated: self.truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_stops_at_the_limit_and_marks_truncation() {
        let mut c = Capture::new(4);
        c.push(b"ab");
        c.push(b"cdef");
        let s = c.snapshot();
        assert!(s.truncated);
        assert!(s.data.starts_with(b"abcd"));
        assert!(s.data.ends_with(TRUNCATION_MARKER));
    }
}
