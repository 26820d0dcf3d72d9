//! Descriptor hygiene: whatever the helper inherited above stderr must not
//! reach the program.

use crate::ConfineError;
use std::io;

/// Marks every descriptor from 3 up close-on-exec. Call it first thing in the
/// helper: descriptors opened afterwards (by std, the landlock crate, this
/// crate) are close-on-exec already. Marking instead of closing keeps the
/// helper's own descriptors usable until the exec.
pub fn cloexec_inherited_fds() -> Result<(), ConfineError> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk the open descriptors instead.
    let entries = std::fs::read_dir("/proc/self/fd").map_err(ConfineError::Fds)?;
    for entry in entries {
        let entry = entry.map_err(ConfineError::Fds)?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // EBADF: the directory's own descriptor, closed by now.
        // SAFETY: fcntl on an integer; a stale number fails harmlessly.
        if fd > 2 && unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBADF) {
                return Err(ConfineError::Fds(e));
            }
        }
    }
    Ok(())
}
