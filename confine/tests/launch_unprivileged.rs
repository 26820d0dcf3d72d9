//! A host without capabilities may launch programs only where no network
//! namespace must be entered. In a test binary of its own: changing a
//! thread's uid makes the whole process non-dumpable, which would change
//! what tests/launch.rs observes of its programs.

use kiln_confine::{ConfineError, Launch, Launcher, Network, Policy};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

#[test]
fn a_thread_without_capabilities_launches_only_with_the_network_allowed() {
    let denied = Policy::system();
    let mut allowed = Policy::system();
    allowed.network = Network::Allowed;
    let (refused, status) = std::thread::spawn(move || {
        // SAFETY: getuid cannot fail.
        if unsafe { libc::getuid() } == 0 {
            // The raw system call changes only this thread's credentials
            // (glibc's setresuid would change every thread's), and it
            // loses every capability with them.
            let nobody = 65534;
            // SAFETY: integer arguments only.
            let r = unsafe { libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) };
            assert_eq!(r, 0);
        }
        let refused = Launcher::new(&denied).unwrap_err();
        let launcher = Launcher::new(&allowed).unwrap();
        let program = CString::new("/bin/sh").unwrap();
        let args = [
            program.clone(),
            CString::new("-c").unwrap(),
            // Confined: no_new_privs, and Landlock keeps /root closed.
            CString::new("grep -q 'NoNewPrivs:.1' /proc/$$/status && ! ls /root").unwrap(),
        ];
        let cwd = CString::new("/").unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let child = launcher
            .launch(&Launch {
                program: &program,
                args: &args,
                env: &[],
                cwd: &cwd,
                stdin: null.as_fd(),
                stdout: null.as_fd(),
                stderr: null.as_fd(),
                process_group: true,
                cgroup: None,
                join: &[],
            })
            .unwrap();
        // SAFETY: a zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                child.pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        assert_eq!(r, 0);
        // SAFETY: waitid filled in a SIGCHLD siginfo.
        (refused, unsafe { info.si_status() })
    })
    .join()
    .unwrap();
    assert!(
        matches!(refused, ConfineError::NotForLauncher(_)),
        "{refused}"
    );
    assert!(refused.to_string().contains("CAP_SYS_ADMIN"), "{refused}");
    assert_eq!(status, 0, "the program was not confined as expected");
}
