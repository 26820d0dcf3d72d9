//! `kiln:plugin/log`: leveled plugin messages, appended to `kiln.log` in the
//! job directory and published as events.

use crate::bindings::log::{Host, Level};
use crate::interfaces::{View, scope};

/// Longest message kept; the rest is cut.
const MAX_MESSAGE: usize = 16 << 10;

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl Host for View<'_, scope::Events<'_>> {
    async fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        let Ok(b) = self.bound() else { return Ok(()) };
        if message.len() > MAX_MESSAGE {
            let cut = (0..=MAX_MESSAGE)
                .rev()
                .find(|&i| message.is_char_boundary(i))
                .unwrap_or(0);
            message.truncate(cut);
        }
        b.events.log(b.job, level_name(level), message);
        Ok(())
    }
}
