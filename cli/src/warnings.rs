//! What the libraries warn about (`tracing` records at level WARN and
//! above: confinement that is incomplete, a log file that cannot be
//! written, an audit trail that cannot be kept) shown on stderr as
//! `kiln: warning: ...`; everything below WARN stays quiet.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

struct KilnFormat;

impl<S, N> FormatEvent<S, N> for KilnFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = if *event.metadata().level() == Level::ERROR {
            "error"
        } else {
            "warning"
        };
        write!(writer, "kiln: {level}: ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Send WARN and ERROR records to stderr.
pub fn install() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(Level::WARN)
        .with_writer(std::io::stderr)
        .event_format(KilnFormat)
        .try_init();
}

/// For `kiln serve`, a long-lived service whose operator reads its log:
/// INFO and above, timestamped, on stderr.
pub fn install_for_service() {
    let _ = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .with_writer(std::io::stderr)
        .try_init();
}
