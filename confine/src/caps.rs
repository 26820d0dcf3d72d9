//! Capabilities: a program started as root would otherwise get every
//! capability at exec, and with CAP_SYS_RESOURCE it could raise its hard
//! rlimits again (with CAP_SYS_BOOT reboot the machine, and so on). Clearing
//! the bounding, inheritable and ambient sets before exec leaves it none.

use crate::ConfineError;
use std::io;

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_SETPCAP: u32 = 8;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<[Data; 2]> {
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 takes two data structs.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn capset(data: &[Data; 2]) -> io::Result<()> {
    let mut header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: version 3 takes two data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's permitted set (bit n: capability n).
pub(crate) fn permitted() -> Result<u64, ConfineError> {
    let data = capget().map_err(|e| ConfineError::Capabilities(format!("capget: {e}")))?;
    Ok(u64::from(data[0].permitted) | u64::from(data[1].permitted) << 32)
}

/// Whether the calling thread has capability `cap` in its effective set.
pub(crate) fn effective(cap: u32) -> bool {
    capget().is_ok_and(|d| {
        let set = u64::from(d[0].effective) | u64::from(d[1].effective) << 32;
        set & (1 << cap) != 0
    })
}

/// Clears the ambient, inheritable and bounding sets. Returns whether the
/// exec'd program is left without capabilities. For a caller with no
/// permitted capabilities that is already so (with no_new_privs, file
/// capabilities are not granted at exec either).
pub(crate) fn clear() -> Result<bool, ConfineError> {
    let fail = |what: &str, e: io::Error| ConfineError::Capabilities(format!("{what}: {e}"));
    let mut data = capget().map_err(|e| fail("capget", e))?;
    let permitted = data.iter().any(|d| d.permitted != 0);
    let inheritable = data.iter().any(|d| d.inheritable != 0);
    if !permitted && !inheritable {
        return Ok(true);
    }
    // SAFETY: prctl with integer arguments only. EINVAL means a kernel
    // without ambient capabilities, so there is nothing to clear.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(fail("clearing the ambient set", e));
        }
    }
    if inheritable {
        for d in &mut data {
            d.inheritable = 0;
        }
        capset(&data).map_err(|e| fail("clearing the inheritable set", e))?;
    }
    let has_setpcap = data[0].effective & (1 << CAP_SETPCAP) != 0;
    if !has_setpcap {
        return if bounding_set_is_empty() {
            Ok(true)
        } else {
            Err(ConfineError::Capabilities(
                "CAP_SETPCAP is missing, so the bounding set cannot be emptied".into(),
            ))
        };
    }
    // Capability numbers past the kernel's last one fail with EINVAL.
    for cap in 0..64 {
        // SAFETY: as above.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                break;
            }
            return Err(fail(&format!("dropping capability {cap}"), e));
        }
    }
    Ok(true)
}

fn bounding_set_is_empty() -> bool {
    // SAFETY: prctl with integer arguments only; EINVAL (-1) past the last
    // capability ends the scan.
    (0..64)
        .map(|cap| unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) })
        .take_while(|r| *r >= 0)
        .all(|r| r == 0)
}
