//! The live job tree `kiln run` (and `kiln watch`, from a server's event
//! stream) draws on a terminal: one line per job of the run (the job, its
//! sub-jobs, theirs), with state, a progress bar, elapsed time and the
//! latest progress message, redrawn in place.
//!
//! The model ([`TreeModel`]) only folds events into lines, so what is drawn
//! can be tested without a terminal; [`live_tree`] redraws it ten times a
//! second on stderr.

use kiln_host::JobState;
use kiln_host::events::{Event, EventKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, oneshot};

const BAR: usize = 20;

#[derive(Debug, Clone)]
struct Node {
    id: String,
    task: String,
    state: JobState,
    fraction: Option<f32>,
    message: String,
    started: Option<Instant>,
    ended: Option<Instant>,
}

/// The jobs of one run, as the events so far describe them.
pub struct TreeModel {
    root: String,
    /// Keyed by the id's numbers (`12.3.1` → [12, 3, 1]) so that a parent
    /// comes before its sub-jobs and `12.10` after `12.9`.
    jobs: BTreeMap<Vec<u64>, Node>,
    lagged: u64,
}

fn id_key(id: &str) -> Vec<u64> {
    id.split('.')
        .map(|n| n.parse().unwrap_or(u64::MAX))
        .collect()
}

impl TreeModel {
    /// A tree for the job `root` and its sub-jobs; events of other jobs are
    /// ignored.
    pub fn new(root: &str) -> TreeModel {
        TreeModel {
            root: root.to_string(),
            jobs: BTreeMap::new(),
            lagged: 0,
        }
    }

    fn ours(&self, id: &str) -> bool {
        id == self.root
            || id
                .strip_prefix(self.root.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
    }

    pub fn apply(&mut self, e: &Event, now: Instant) {
        if !self.ours(&e.job_id) {
            return;
        }
        let node = self.jobs.entry(id_key(&e.job_id)).or_insert_with(|| Node {
            id: e.job_id.clone(),
            task: e.task.clone(),
            state: JobState::Pending,
            fraction: None,
            message: String::new(),
            started: None,
            ended: None,
        });
        match &e.kind {
            EventKind::State { state } => {
                node.state = *state;
                if *state == JobState::Running && node.started.is_none() {
                    node.started = Some(now);
                }
                if state.is_final() {
                    node.started.get_or_insert(now);
                    node.ended = Some(now);
                    if *state == JobState::Finished {
                        node.fraction = Some(1.0);
                    }
                }
            }
            EventKind::Progress {
                fraction,
                phase,
                message,
            } => {
                if fraction.is_some() {
                    node.fraction = *fraction;
                }
                node.message = if phase.is_empty() {
                    message.clone()
                } else {
                    format!("{phase}: {message}")
                };
            }
            EventKind::Finished {
                reason: Some(reason),
                ..
            } => node.message = reason.clone(),
            _ => {}
        }
    }

    pub fn lagged(&mut self, n: u64) {
        self.lagged += n;
    }

    /// The lines to draw, each cut to `width` characters.
    pub fn render(&self, now: Instant, width: usize) -> Vec<String> {
        let mut lines: Vec<String> = self
            .jobs
            .values()
            .map(|n| {
                let depth = n.id.matches('.').count() - self.root.matches('.').count();
                let label = match depth {
                    0 => n.id.clone(),
                    d => format!("{}└ {}", "  ".repeat(d - 1), n.id),
                };
                let elapsed = match (n.started, n.ended) {
                    (Some(s), Some(e)) => format_elapsed(e.duration_since(s)),
                    (Some(s), None) => format_elapsed(now.duration_since(s)),
                    _ => String::new(),
                };
                let line = format!(
                    "{label:<12} {:<14} {:<14} {} {elapsed:>7}  {}",
                    n.task,
                    n.state.as_str(),
                    bar(n.fraction),
                    n.message
                );
                cut(&line, width)
            })
            .collect();
        if self.lagged > 0 {
            lines.push(format!(
                "({} events skipped: the view fell behind)",
                self.lagged
            ));
        }
        lines
    }
}

fn bar(fraction: Option<f32>) -> String {
    match fraction {
        Some(f) => {
            let filled = ((f.clamp(0.0, 1.0) * BAR as f32).round() as usize).min(BAR);
            format!(
                "[{}{}] {:>3.0}%",
                "#".repeat(filled),
                "-".repeat(BAR - filled),
                f * 100.0
            )
        }
        None => format!("[{}]     ", " ".repeat(BAR)),
    }
}

fn format_elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    }
}

/// Guest text with control characters (newlines, escape sequences) made
/// harmless: they would break the redraw or drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn cut(line: &str, width: usize) -> String {
    let line = printable(line);
    let line = line.trim_end();
    match line.char_indices().nth(width) {
        Some((i, _)) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// Columns of the terminal on stderr (100 when it cannot be asked).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct it is given, nothing else.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return usize::from(ws.ws_col);
        }
    }
    100
}

/// Draws the tree in place: moves up over the previous drawing, rewrites
/// every line and clears what is left below.
struct Painter<W: Write> {
    out: W,
    drawn: usize,
}

impl<W: Write> Painter<W> {
    fn paint(&mut self, lines: &[String]) {
        let mut frame = String::new();
        if self.drawn > 0 {
            frame.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for line in lines {
            frame.push_str("\r\x1b[2K");
            frame.push_str(line);
            frame.push('\n');
        }
        frame.push_str("\x1b[J");
        // The view is a courtesy: a closed stderr must not stop the run.
        let _ = self.out.write_all(frame.as_bytes());
        let _ = self.out.flush();
        self.drawn = lines.len();
    }
}

/// The running view; [`LiveTree::stop`] draws the final state and returns.
pub struct LiveTree {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl LiveTree {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// What a live tree is drawn from.
pub enum Received {
    /// An event, and when it happened.
    Event(Event, Instant),
    /// This many events were lost: the reader fell behind.
    Lagged(u64),
}

/// Where a live tree reads its events: the host's bus (`kiln run`), or a
/// channel fed from a server's event stream (`kiln watch`).
pub trait EventSource: Send + 'static {
    /// The next event, waiting for it; `None` once the source is closed.
    fn next(&mut self) -> impl Future<Output = Option<Received>> + Send;
    /// An event already sent, without waiting; `None` when there is none.
    fn try_next(&mut self) -> Option<Received>;
}

impl EventSource for broadcast::Receiver<Event> {
    async fn next(&mut self) -> Option<Received> {
        match self.recv().await {
            Ok(e) => Some(Received::Event(e, Instant::now())),
            Err(RecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(RecvError::Closed) => None,
        }
    }

    fn try_next(&mut self) -> Option<Received> {
        match self.try_recv() {
            Ok(e) => Some(Received::Event(e, Instant::now())),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(_) => None,
        }
    }
}

/// Events with the time each happened.
impl EventSource for mpsc::UnboundedReceiver<(Event, Instant)> {
    async fn next(&mut self) -> Option<Received> {
        self.recv().await.map(|(e, at)| Received::Event(e, at))
    }

    fn try_next(&mut self) -> Option<Received> {
        self.try_recv().ok().map(|(e, at)| Received::Event(e, at))
    }
}

/// Draw the tree of job `root` on `out` until stopped, or until `rx` is
/// closed.
pub fn live_tree(
    root: &str,
    rx: impl EventSource,
    out: impl Write + Send + 'static,
    width: Option<usize>,
) -> LiveTree {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(draw(TreeModel::new(root), rx, out, width, stopped));
    LiveTree { stop, task }
}

async fn draw(
    mut model: TreeModel,
    mut rx: impl EventSource,
    out: impl Write,
    width: Option<usize>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut painter = Painter { out, drawn: 0 };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            e = rx.next() => match e {
                Some(Received::Event(e, at)) => model.apply(&e, at),
                Some(Received::Lagged(n)) => model.lagged(n),
                None => break,
            },
            _ = tick.tick() => {
                let w = width.unwrap_or_else(terminal_width);
                painter.paint(&model.render(Instant::now(), w));
            }
            _ = &mut stopped => break,
        }
    }
    // Events already sent before the stop still belong in the last frame.
    while let Some(e) = rx.try_next() {
        match e {
            Received::Event(e, at) => model.apply(&e, at),
            Received::Lagged(n) => model.lagged(n),
        }
    }
    let w = width.unwrap_or_else(terminal_width);
    painter.paint(&model.render(Instant::now(), w));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, task: &str, kind: EventKind) -> Event {
        Event {
            job_id: id.into(),
            task: task.into(),
            kind,
        }
    }

    fn state(id: &str, task: &str, state: JobState) -> Event {
        ev(id, task, EventKind::State { state })
    }

    #[test]
    fn sub_jobs_are_drawn_below_their_parent_with_state_and_progress() {
        let t0 = Instant::now();
        let mut m = TreeModel::new("7");
        m.apply(&state("7", "refine_scan", JobState::Running), t0);
        m.apply(&state("7.10", "refmac", JobState::Queued), t0);
        m.apply(&state("7.2", "refmac", JobState::Running), t0);
        m.apply(&state("70", "other", JobState::Running), t0);
        m.apply(&state("7.1", "demo_copycell", JobState::Running), t0);
        m.apply(&state("7.1.1", "mtzdump", JobState::Finished), t0);
        m.apply(
            &ev(
                "7",
                "refine_scan",
                EventKind::Progress {
                    fraction: Some(0.5),
                    phase: "refinement".into(),
                    message: "1 of 2".into(),
                },
            ),
            t0,
        );
        let lines = m.render(t0 + Duration::from_millis(1500), 200);
        let ids: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().find(|w| w.starts_with('7')).unwrap())
            .collect();
        assert_eq!(ids, ["7", "7.1", "7.1.1", "7.2", "7.10"], "{lines:#?}");
        assert!(
            lines[0].contains("[##########----------]  50%"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("1.5s") && lines[0].contains("refinement: 1 of 2"));
        assert!(lines[2].starts_with("  └ 7.1.1") && lines[2].contains("finished"));
        assert!(lines[2].contains("[####################] 100%"));
        assert!(lines[4].contains("queued"), "{}", lines[4]);
        assert!(m.render(t0, 10).iter().all(|l| l.chars().count() <= 10));
        m.apply(
            &ev(
                "7.2",
                "refmac",
                EventKind::Progress {
                    fraction: None,
                    phase: String::new(),
                    message: "a\nb\x1b[2Jc".into(),
                },
            ),
            t0,
        );
        let lines = m.render(t0, 200);
        assert!(
            lines.iter().all(|l| !l.chars().any(char::is_control)),
            "{lines:?}"
        );
    }

    #[test]
    fn each_frame_moves_up_over_the_last_one() {
        let mut p = Painter {
            out: Vec::new(),
            drawn: 0,
        };
        p.paint(&["a".into(), "b".into()]);
        p.paint(&["c".into()]);
        let text = String::from_utf8(p.out).unwrap();
        assert_eq!(
            text,
            "\r\x1b[2Ka\n\r\x1b[2Kb\n\x1b[J\x1b[2A\r\x1b[2Kc\n\x1b[J"
        );
    }
}
