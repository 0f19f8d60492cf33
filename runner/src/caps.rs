//! Capabilities: reduce the bounding set to the allowed mask, then set effective = permitted =
//! mask and inheritable = ambient = empty (capabilities(7)).
//!
//! Inheritable stays empty because of runc CVE-2022-24769 (moby GHSA-2mm7-x5h6-5pvq): a non-empty
//! inheritable set let a process in the container regain capabilities through `execve` of a binary
//! with inheritable file capabilities. After `execve`, root gets exactly the bounding set and any
//! other user gets nothing — Docker's behaviour.

use crate::failure::{Context, Failure};
use crate::sys;

/// Drops every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so do it
/// before changing uid).
pub fn drop_bounding(keep: u64) -> Result<(), Failure> {
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINVAL {
                // Past the kernel's last capability (/proc/sys/kernel/cap_last_cap).
                break;
            }
            return Err(e).ctx(|| format!("dropping capability {cap} from the bounding set"));
        }
    }
    Ok(())
}

/// Sets effective = permitted = `keep`, inheritable = 0, and clears the ambient set.
pub fn set_process_caps(keep: u64) -> Result<(), Failure> {
    sys::capset(keep, keep, 0).ctx(|| "capset".into())?;
    // SAFETY: prctl with integer arguments.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(nix::errno::Errno::last()).ctx(|| "clearing ambient capabilities".into());
    }
    Ok(())
}

/// Sets `no_new_privs` (prctl(2) PR_SET_NO_NEW_PRIVS): setuid binaries and file capabilities
/// can't raise privileges after `execve`; also what lets an unprivileged process install seccomp.
pub fn set_no_new_privs() -> Result<(), Failure> {
    // SAFETY: prctl with integer arguments.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if ret < 0 {
        return Err(nix::errno::Errno::last()).ctx(|| "setting no_new_privs".into());
    }
    Ok(())
}
