//! Per-job cgroups, so that everything a job's programs start —
//! grandchildren, double-forked and `setsid` escapees included — can be
//! found and killed when the job ends. A process group is not enough: a
//! program can leave it, but it cannot leave its cgroup.
//!
//! Two hierarchies are used where mounted:
//! - cgroup v2: `kiln-<pidns>-<pid>-<start>-<n>/job-<id>` with `cgroup.kill`,
//!   and `pids.max` where v2 has the pids controller.
//! - cgroup v1 `pids`: the same layout, with `pids.max` bounding fork bombs.
//!
//! A program is in them before it execs: a launched one (the usual way)
//! moves itself into the v1 one, or where there is no v1 `pids` hierarchy
//! is born in the v2 one (see [`CgroupHandles`]); one spawned through the
//! `kiln-confine` helper has the helper join both. So no fresh program can
//! fork an escapee outside its job's cgroups. Only a program run unconfined (no helper) is moved in
//! right after it starts; a child it forks within those microseconds stays
//! outside. With neither hierarchy, jobs fall back to killing process
//! groups only.

use kiln_fs::process_identity::start_time;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The host's cgroups: where job cgroups are made.
pub struct CgroupRoot {
    v2: Option<PathBuf>,
    v1_pids: Option<PathBuf>,
}

impl CgroupRoot {
    /// Make this host's directories in whatever hierarchies are mounted and
    /// writable; `None` when there are none.
    pub fn create() -> Option<CgroupRoot> {
        // Unique per host, not per process: a process may run several.
        static HOSTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = HOSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}-{n}", host_key());
        let make = |mount: PathBuf, needs: &str| {
            let dir = mount.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
            if dir.join(needs).exists() {
                Some(dir)
            } else {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        };
        let v2_mount = mount_of("cgroup2", None);
        let v1_mount = mount_of("cgroup", Some("pids"));
        for mount in [&v2_mount, &v1_mount].into_iter().flatten() {
            sweep_dead_hosts(mount);
        }
        let v2 = v2_mount.and_then(|m| make(m, "cgroup.kill"));
        // Where the v2 hierarchy has the pids controller (a v2-only host),
        // job cgroups get `pids.max` through it. Failing that is no error:
        // the v1 one, or none, bounds processes instead.
        if let Some(dir) = &v2 {
            let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
            if offered {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+pids");
            }
        }
        let v1_pids = v1_mount.and_then(|m| make(m, "pids.max"));
        (v2.is_some() || v1_pids.is_some()).then_some(CgroupRoot { v2, v1_pids })
    }

    /// New, empty cgroups for one job; `pids_max` bounds its processes.
    pub fn job(&self, job_id: &str, pids_max: Option<u64>) -> JobCgroup {
        let make = |root: &Option<PathBuf>| {
            let dir = root.as_ref()?.join(format!("job-{job_id}"));
            std::fs::create_dir(&dir).ok().map(|()| dir)
        };
        let v1 = make(&self.v1_pids);
        if let (Some(dir), Some(max)) = (&v1, pids_max) {
            let _ = std::fs::write(dir.join("pids.max"), max.to_string());
        }
        let v2 = make(&self.v2);
        if let (Some(dir), Some(max)) = (&v2, pids_max) {
            let limit = dir.join("pids.max");
            if limit.exists() {
                let _ = std::fs::write(limit, max.to_string());
            }
        }
        let open = |path: Option<PathBuf>, write: bool| {
            let mut options = std::fs::OpenOptions::new();
            if write {
                options.write(true);
            } else {
                options
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC);
            }
            options.open(path?).ok().map(OwnedFd::from)
        };
        let v1_tasks = open(v1.as_ref().map(|d| d.join("tasks")), true);
        let handles = Arc::new(CgroupHandles {
            v2_dir: if v1_tasks.is_some() {
                None
            } else {
                open(v2.clone(), false)
            },
            v1_tasks,
        });
        JobCgroup { v2, v1, handles }
    }
}

impl Drop for CgroupRoot {
    fn drop(&mut self) {
        for dir in [&self.v2, &self.v1_pids].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One job's cgroups.
pub struct JobCgroup {
    v2: Option<PathBuf>,
    v1: Option<PathBuf>,
    handles: Arc<CgroupHandles>,
}

/// Open handles on a job's cgroups, for a launched program to move itself
/// into the v1 one before it execs, or to be born in the v2 one
/// (`CLONE_INTO_CGROUP`) where there is no v1 `pids` hierarchy.
///
/// The program writes `0` to v1's `tasks`, which moves just the calling
/// thread, its only one then: that costs a write, where moving a whole
/// process through `cgroup.procs` waits for an RCU grace period
/// (milliseconds). Being born in a v2 cgroup other than the host's cost
/// 50-70 us a program on a host with both hierarchies (Linux 6.18, a
/// tenth of the time of a short program), and either membership is enough
/// for the job's end to find and kill everything the program started: so
/// where v1 is there, launched programs join it alone.
pub struct CgroupHandles {
    pub v2_dir: Option<OwnedFd>,
    pub v1_tasks: Option<OwnedFd>,
}

impl JobCgroup {
    /// The directories a program joins (through the helper), joined by `:`.
    pub fn join_list(&self) -> Option<String> {
        let dirs: Vec<String> = [&self.v2, &self.v1]
            .into_iter()
            .flatten()
            .map(|d| d.display().to_string())
            .collect();
        (!dirs.is_empty()).then(|| dirs.join(":"))
    }

    /// The handles a launched program joins the job's cgroups through.
    pub fn handles(&self) -> Arc<CgroupHandles> {
        self.handles.clone()
    }

    /// Kill every process in the job's cgroups (but those in `spare`) and
    /// wait briefly until they are gone.
    pub async fn kill_all(&self, spare: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = false;
            if let Some(v2) = &self.v2
                && populated(v2, &[])
            {
                left = true;
                let _ = std::fs::write(v2.join("cgroup.kill"), "1");
            }
            if let Some(v1) = &self.v1 {
                // v1 has no cgroup.kill: signal each member; pids.max keeps
                // a fork bomb from outrunning this loop for long.
                for pid in members(v1).into_iter().filter(|p| !spare.contains(p)) {
                    left = true;
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if !left || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        for dir in [&self.v2, &self.v1].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `kiln-<pid namespace>-<pid>-<start time>`: names this host process
/// among every process that ever ran on the machine (a pid alone is
/// reused), and says which pid namespace the pid belongs to.
fn host_key() -> String {
    let pid = std::process::id();
    format!(
        "kiln-{}-{pid}-{}",
        pid_namespace().unwrap_or_default(),
        start_time(pid).unwrap_or_default()
    )
}

fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_string_lossy();
    Some(
        text.trim_start_matches("pid:[")
            .trim_end_matches(']')
            .to_string(),
    )
}

/// Kill what the jobs of hosts that died without cleaning up (SIGKILL, a
/// crash) left running, and remove their cgroups. Only hosts of this pid
/// namespace are judged (a host elsewhere cannot be seen in /proc), and a
/// host counts as gone when no process has its pid and start time.
fn sweep_dead_hosts(mount: &Path) {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return;
    };
    let Some(namespace) = pid_namespace() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name
            .to_str()
            .and_then(|n| n.strip_prefix("kiln-"))
            .and_then(|rest| rest.strip_prefix(namespace.as_str()))
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| {
                let mut parts = rest.split('-');
                Some((
                    parts.next()?.parse::<u32>().ok()?,
                    parts.next()?.to_string(),
                ))
            })
        else {
            continue;
        };
        if start_time(pid).is_some_and(|s| s == start) {
            continue;
        }
        let root = entry.path();
        let jobs: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        for job in &jobs {
            kill_members_now(job);
            let _ = std::fs::remove_dir(job);
        }
        let _ = std::fs::remove_dir(&root);
    }
}

/// Kill every member of a cgroup and wait (up to 2 s) until it is empty.
fn kill_members_now(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while populated(dir, &[]) && Instant::now() < deadline {
        if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for pid in members(dir) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live members: a zombie is dead already (v1 lists it until reaped, and a
/// reparented escapee's zombie is reaped by whoever its parent became).
fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|pid| !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1.to_string();
            after.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(true)
}

fn populated(dir: &Path, spare: &[i32]) -> bool {
    members(dir).iter().any(|p| !spare.contains(p))
}

/// The mount point of a cgroup hierarchy from /proc/self/mountinfo: the
/// cgroup2 one, or the v1 one with `controller`.
fn mount_of(fstype: &str, controller: Option<&str>) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != fstype {
            return None;
        }
        if let Some(c) = controller {
            let options = r.nth(1)?;
            if !options.split(',').any(|o| o == c) {
                return None;
            }
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_has_no_start_time_even_before_it_is_reaped() {
        assert!(start_time(std::process::id()).is_some());
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Exited but not waited for: a zombie.
        while !is_zombie(pid as i32) {
            assert!(Instant::now() < deadline, "the child never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(start_time(pid), None);
        child.wait().unwrap();
        assert_eq!(start_time(pid), None);
    }
}
