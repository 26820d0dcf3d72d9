//! Naming a process among every one that ever ran on the machine (a pid
//! alone is reused): its pid and its start time. The host records itself
//! so; a later host judges by it whether the recorder is still alive.

/// A process's start time, in clock ticks since boot: with its pid, it
/// names the process among every one that ever ran on the machine.
/// `None` when there is no such process or it has died and waits to be
/// reaped (a killed host whose parent has not collected it yet is gone).
pub fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    Some(fields.nth(18)?.to_string())
}
