//! The plugin's own stdout and stderr (WASI), kept as a bounded tail in
//! memory: enough to explain a panic in a failure reason, never enough to
//! exhaust the host, and never a trap for a chatty plugin.

use crate::lock;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The last `cap` bytes the guest wrote on stdout and stderr, interleaved.
#[derive(Clone)]
pub struct GuestOutput {
    tail: Arc<Mutex<VecDeque<u8>>>,
    cap: usize,
}

impl GuestOutput {
    pub fn new(cap: usize) -> Self {
        GuestOutput {
            tail: Arc::new(Mutex::new(VecDeque::new())),
            cap,
        }
    }

    pub fn push(&self, bytes: &[u8]) {
        let mut tail = lock(&self.tail);
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (tail.len() + bytes.len()).saturating_sub(self.cap);
        let drop_front = overflow.min(tail.len());
        tail.drain(..drop_front);
        tail.extend(bytes);
    }

    pub fn text(&self) -> String {
        let tail = lock(&self.tail);
        let (a, b) = tail.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail() {
        let out = GuestOutput::new(8);
        out.push(b"0123456789");
        assert_eq!(out.text(), "23456789");
        out.push(b"ab");
        assert_eq!(out.text(), "456789ab");
    }
}
