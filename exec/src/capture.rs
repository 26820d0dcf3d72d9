//! The in-memory copy of a program's output that a plugin can read back,
//! capped: past the cap the tail is dropped and the copy is marked truncated
//! (the log file on disk still has everything).
//!
//! The cap is a job's, not a program's: every capture of a job's programs
//! draws on one [`CaptureBudget`] (`limits.output_bytes`), and gives its
//! bytes back when dropped (when the plugin drops the program's handle), so
//! a plugin keeping thousands of handles holds no more than that in the
//! host.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of captured output a job's programs may hold at once.
#[derive(Debug)]
pub struct CaptureBudget {
    left: AtomicUsize,
}

impl CaptureBudget {
    pub fn new(bytes: usize) -> Arc<CaptureBudget> {
        Arc::new(CaptureBudget {
            left: AtomicUsize::new(bytes),
        })
    }

    /// Take up to `want` bytes; how many were taken.
    fn take(&self, want: usize) -> usize {
        let mut got = 0;
        let _ = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                got = left.min(want);
                Some(left - got)
            });
        got
    }

    fn give(&self, n: usize) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }

    /// Bytes not taken now.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
pub(crate) struct Capture {
    data: Vec<u8>,
    budget: Arc<CaptureBudget>,
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
    pub(crate) fn new(budget: Arc<CaptureBudget>) -> Self {
        Capture {
            data: Vec::new(),
            budget,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        // Once cut, the copy stays cut: later output would leave a gap.
        let room = if self.truncated {
            0
        } else {
            self.budget.take(bytes.len())
        };
        if room < bytes.len() {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..room]);
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

impl Drop for Capture {
    fn drop(&mut self) {
        self.budget.give(self.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_stops_at_the_limit_and_marks_truncation() {
        let mut c = Capture::new(CaptureBudget::new(4));
        c.push(b"ab");
        c.push(b"cdef");
        let s = c.snapshot();
        assert!(s.truncated);
        assert!(s.data.starts_with(b"abcd"));
        assert!(s.data.ends_with(TRUNCATION_MARKER));
    }

    #[test]
    fn captures_share_their_jobs_budget_and_give_it_back_when_dropped() {
        let budget = CaptureBudget::new(10);
        let mut a = Capture::new(budget.clone());
        let mut b = Capture::new(budget.clone());
        a.push(b"123456");
        b.push(b"123456");
        assert!(!a.is_truncated());
        assert!(b.is_truncated());
        assert_eq!(b.snapshot().data[..4], *b"1234");
        assert_eq!(budget.left(), 0);
        drop(a);
        assert_eq!(budget.left(), 6);
        // Once cut, a capture takes nothing more, room or not.
        b.push(b"x");
        assert_eq!(budget.left(), 6);
        drop(b);
        assert_eq!(budget.left(), 10);
    }
}
