//! A host without capabilities is refused the fast path. In a test binary
//! of its own: changing a thread's uid makes the whole process non-dumpable,
//! which would hide from tests/spawner.rs whether capabilities alone keep
//! programs from tracing the spawner thread.

use kiln_confine::{ConfineError, Network, Policy, Spawner};

#[test]
fn a_thread_without_capabilities_is_refused() {
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        // Already the case under test.
        let err = Spawner::start(&Policy::system()).unwrap_err();
        assert!(matches!(err, ConfineError::NotForSpawner(_)), "{err}");
        return;
    }
    let mut p = Policy::system();
    p.network = Network::Allowed;
    // The raw system call changes only this thread's credentials (glibc's
    // setresuid would change every thread's), and it loses every
    // capability with them.
    let err = std::thread::spawn(move || {
        let nobody = 65534;
        // SAFETY: integer arguments only.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) };
        assert_eq!(r, 0);
        Spawner::start(&p).map(|_| ())
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(matches!(err, ConfineError::NotForSpawner(_)), "{err}");
    assert!(err.to_string().contains("no capabilities"), "{err}");
}
