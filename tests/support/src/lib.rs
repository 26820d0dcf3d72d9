//! The harness of Kiln's tests that need something of the machine: root,
//! Landlock of some ABI, a pids cgroup. libtest can only pass such a test
//! where its need is missing, which reads as if it had run; here it is
//! reported as ignored, saying why:
//!
//! ```text
//! test files_outside_the_policy_stay_closed ... ignored (skipped: needs root: running as uid 1000)
//! ```
//!
//! In CI (`CI` set to anything but `false` or `0`) a missing need fails the
//! test instead: CI is where these tests must run. A run that lacks a need
//! on purpose (the suite run again as an unprivileged user) names it in
//! `KILN_TEST_WITHOUT`, a comma-separated list of needs (`root`,
//! `landlock-6`, `pids-cgroup`, ...); those tests are then skipped in CI too.
//!
//! A test binary using it sets `harness = false` and ends in
//! `kiln_test_support::run(vec![...])`.

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::future::Future;
use std::process::ExitCode;

/// Something a test needs of the machine, and how to tell it is there.
#[derive(Clone, Copy)]
pub struct Need {
    /// As written in `KILN_TEST_WITHOUT` and in the skip message.
    pub name: &'static str,
    /// `Err` says what is missing.
    pub check: fn() -> Result<(), String>,
}

/// The test process runs as root.
pub const ROOT: Need = Need {
    name: "root",
    check: || {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        if uid == 0 {
            Ok(())
        } else {
            Err(format!("running as uid {uid}"))
        }
    },
};

/// Landlock, of any ABI.
pub const LANDLOCK: Need = Need {
    name: "landlock",
    check: || match landlock_abi() {
        0 => Err("Landlock is not available".into()),
        _ => Ok(()),
    },
};

/// Landlock ABI 6 or later (signal and abstract-socket scoping).
pub const LANDLOCK_6: Need = Need {
    name: "landlock-6",
    check: || match landlock_abi() {
        abi if abi >= 6 => Ok(()),
        0 => Err("Landlock is not available".into()),
        abi => Err(format!("Landlock ABI {abi}")),
    },
};

/// A cgroup hierarchy where this user may make cgroups (cgroup v2, or the
/// v1 `pids` one): the host puts each job's programs in cgroups of their
/// own there, and kills what escaped their process group through them.
pub const CGROUPS: Need = Need {
    name: "cgroups",
    check: || {
        let mounts = cgroup_mounts()?;
        let usable: Vec<&CgroupMount> = mounts.iter().filter(|m| m.v2 || m.pids).collect();
        if usable.iter().any(|m| m.writable()) {
            Ok(())
        } else {
            Err(format!(
                "no cgroup v2 or v1 pids hierarchy this user may write (mounted: {:?})",
                usable.iter().map(|m| &m.path).collect::<Vec<_>>()
            ))
        }
    },
};

/// A pids controller where this user may make cgroups: the v1 `pids`
/// hierarchy, or cgroup v2 with `pids` enabled below its root. The host
/// bounds a job's processes (`program_processes`) with it; without one,
/// the limit is not applied.
pub const PIDS_CGROUP: Need = Need {
    name: "pids-cgroup",
    check: || {
        let mounts = cgroup_mounts()?;
        let with_pids: Vec<&CgroupMount> = mounts.iter().filter(|m| m.pids).collect();
        if with_pids.iter().any(|m| m.writable()) {
            Ok(())
        } else {
            Err(format!(
                "no pids cgroup this user may write (with the pids controller: {:?})",
                with_pids.iter().map(|m| &m.path).collect::<Vec<_>>()
            ))
        }
    },
};

/// A mounted cgroup hierarchy.
struct CgroupMount {
    path: String,
    v2: bool,
    /// Has the pids controller: v1's `pids`, or v2 with pids enabled for
    /// the cgroups below its root.
    pids: bool,
}

impl CgroupMount {
    fn writable(&self) -> bool {
        let probe = std::path::Path::new(&self.path)
            .join(format!("kiln-test-probe-{}", std::process::id()));
        let made = std::fs::create_dir(&probe).is_ok();
        let _ = std::fs::remove_dir(&probe);
        made
    }
}

/// The cgroup hierarchies this process sees, from /proc/self/mountinfo.
fn cgroup_mounts() -> Result<Vec<CgroupMount>, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let options = r.nth(1)?;
            let path = left.split_whitespace().nth(4)?.to_string();
            let (v2, pids) = match fstype {
                "cgroup2" => {
                    let control = std::fs::read_to_string(format!("{path}/cgroup.subtree_control"));
                    (
                        true,
                        control.is_ok_and(|c| c.split_whitespace().any(|c| c == "pids")),
                    )
                }
                "cgroup" => (false, options.split(',').any(|o| o == "pids")),
                _ => return None,
            };
            Some(CgroupMount { path, v2, pids })
        })
        .collect())
}

/// The kernel's Landlock ABI version; 0 without Landlock. Asked of the
/// kernel here rather than through `kiln_confine::probe`: kiln-confine's
/// own tests use this crate.
pub fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with the version flag, landlock_create_ruleset takes no
    // attribute and returns a number, not a descriptor.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi.max(0)
}

/// One test: a name, a body, and what it needs.
pub struct Test {
    name: String,
    needs: Vec<Need>,
    only_when_asked: Option<&'static str>,
    body: Box<dyn FnOnce() + Send>,
}

impl Test {
    pub fn new(name: &str, body: impl FnOnce() + Send + 'static) -> Test {
        Test {
            name: name.to_string(),
            needs: Vec::new(),
            only_when_asked: None,
            body: Box::new(body),
        }
    }

    /// A test whose body is async: it runs on a multi-threaded tokio
    /// runtime of its own, as `#[tokio::test(flavor = "multi_thread")]`.
    pub fn tokio<F>(name: &str, body: impl FnOnce() -> F + Send + 'static) -> Test
    where
        F: Future<Output = ()>,
    {
        Test::new(name, move || {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(body())
        })
    }

    pub fn needs(mut self, need: Need) -> Test {
        self.needs.push(need);
        self
    }

    /// Runs only when asked for by name with `--ignored`, as `#[ignore]`.
    pub fn only_when_asked(mut self, why: &'static str) -> Test {
        self.only_when_asked = Some(why);
        self
    }

    fn trial(self, policy: Policy) -> Trial {
        let Test {
            name,
            needs,
            only_when_asked,
            body,
        } = self;
        let name_for_thread = name.clone();
        Trial::ignorable_test(name, move || match policy.decide(&needs) {
            Decision::Run => {
                // A thread of its own, named after the test, as libtest
                // gives each test: libtest-mimic's pool reuses threads, and
                // some tests leave theirs changed (a launcher shields the
                // thread that launches).
                let thread = std::thread::Builder::new()
                    .name(name_for_thread)
                    .spawn(body);
                match thread.map(|t| t.join()) {
                    Ok(Ok(())) => Ok(Completion::Completed),
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    Err(e) => Err(Failed::from(format!("cannot start the test's thread: {e}"))),
                }
            }
            Decision::Fail(message) => Err(Failed::from(message)),
            Decision::Skip(message) => Ok(Completion::ignored_with(message)),
        })
        .with_ignored_flag(only_when_asked.is_some())
    }
}

/// What becomes of a test, given its needs and where it runs.
#[derive(Debug, PartialEq)]
enum Decision {
    Run,
    Fail(String),
    Skip(String),
}

/// Where the tests run: in CI or not, and what the run lacks on purpose.
#[derive(Clone)]
struct Policy {
    ci: bool,
    without: Vec<String>,
}

impl Policy {
    fn from_env() -> Policy {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        let without = std::env::var("KILN_TEST_WITHOUT")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Policy { ci, without }
    }
}

impl Policy {
    fn decide(&self, needs: &[Need]) -> Decision {
        // Needs are checked in order, up to the first one missing: a later
        // one may only make sense given the earlier (the helper run as
        // another user needs root to change user at all).
        let Some((need, why)) = needs
            .iter()
            .find_map(|n| (n.check)().err().map(|why| (n, why)))
        else {
            return Decision::Run;
        };
        let what = format!("{}: {why}", need.name);
        if self.ci && !self.without.iter().any(|w| w == need.name) {
            return Decision::Fail(format!(
                "this test needs {what}, which CI must provide; a run that lacks it on \
                 purpose says so with KILN_TEST_WITHOUT={}",
                need.name
            ));
        }
        Decision::Skip(format!("skipped: needs {what}"))
    }
}

/// Run the tests as libtest would, with libtest's arguments.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let args = Arguments::from_args();
    let policy = Policy::from_env();
    let trials = tests.into_iter().map(|t| t.trial(policy.clone())).collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// `test!(name)` is [`Test::new`] named after the function `name`.
#[macro_export]
macro_rules! test {
    ($name:ident) => {
        $crate::Test::new(stringify!($name), $name)
    };
}

/// `tokio_test!(name)` is [`Test::tokio`] named after the async function `name`.
#[macro_export]
macro_rules! tokio_test {
    ($name:ident) => {
        $crate::Test::tokio(stringify!($name), $name)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABSENT: Need = Need {
        name: "absent",
        check: || Err("never here".into()),
    };
    const OTHER_ABSENT: Need = Need {
        name: "other-absent",
        check: || Err("not here either".into()),
    };
    const HERE: Need = Need {
        name: "here",
        check: || Ok(()),
    };

    fn policy(ci: bool, without: &[&str]) -> Policy {
        Policy {
            ci,
            without: without.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_missing_need_skips_outside_ci_and_fails_in_ci_unless_waived() {
        let needs = [HERE, ABSENT];
        assert_eq!(
            policy(false, &[]).decide(&needs),
            Decision::Skip("skipped: needs absent: never here".into())
        );
        assert!(matches!(policy(true, &[]).decide(&needs), Decision::Fail(m)
            if m.contains("needs absent: never here, which CI must provide")
                && m.ends_with("KILN_TEST_WITHOUT=absent")));
        assert!(matches!(
            policy(true, &["here"]).decide(&needs),
            Decision::Fail(_)
        ));
        assert!(matches!(
            policy(true, &["root", "absent"]).decide(&needs),
            Decision::Skip(_)
        ));
        // Only the first missing need counts: a waived one hides the rest.
        assert!(matches!(
            policy(true, &["absent"]).decide(&[ABSENT, OTHER_ABSENT]),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn met_needs_run() {
        assert_eq!(policy(true, &[]).decide(&[HERE, HERE]), Decision::Run);
        assert_eq!(policy(true, &[]).decide(&[]), Decision::Run);
    }
}
