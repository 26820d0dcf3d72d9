//! Per-job cgroups (v2), so that everything a job's programs start —
//! grandchildren, double-forked and `setsid` escapees included — can be
//! found and killed when the job ends. A process group is not enough: a
//! program can leave it, but it cannot leave its cgroup.
//!
//! The host makes `kiln-<pid>/job-<id>` under the cgroup2 mount; each
//! program's confinement helper moves itself there before it execs, so no
//! child can be forked outside it. Where no writable cgroup2 hierarchy
//! exists, jobs fall back to killing process groups only, and the host says
//! so once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The host's cgroup: where job cgroups are made.
pub struct CgroupRoot {
    dir: PathBuf,
}

impl CgroupRoot {
    /// Find a writable cgroup2 mount and make this host's directory in it.
    pub fn create() -> Result<CgroupRoot, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let dir = mount.join(format!("kiln-{}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        if !dir.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&dir);
            return Err("the kernel has no cgroup.kill (Linux 5.14 or later needed)".into());
        }
        Ok(CgroupRoot { dir })
    }

    /// A new, empty cgroup for one job.
    pub fn job(&self, job_id: &str) -> Result<JobCgroup, String> {
        let dir = self.dir.join(format!("job-{job_id}"));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(JobCgroup { dir })
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// One job's cgroup.
pub struct JobCgroup {
    dir: PathBuf,
}

impl JobCgroup {
    /// The directory whose `cgroup.procs` a program joins.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Whether any process is still in the cgroup.
    pub fn is_populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false)
    }

    /// Kill every process in the cgroup and wait (briefly) until it is
    /// empty.
    pub async fn kill_all(&self) {
        if !self.is_populated() {
            return;
        }
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_populated() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        // Removing a cgroup fails while it has members; kill_all ran first
        // on every path that ends a job.
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The mount point of the cgroup2 hierarchy, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if !right.starts_with("cgroup2 ") {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}
