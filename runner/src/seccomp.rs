//! The default seccomp filter: the effect of Docker's default profile (moby
//! `profiles/seccomp/default.json`) for a container with the default capabilities.
//!
//! Docker's profile is an allow-list; for a container without CAP_SYS_ADMIN & co. its effect is
//! that the syscalls below fail with `EPERM`: kernel module and kexec loading, mount and
//! namespace manipulation (the usual first step of a container escape, e.g. CVE-2022-0185 needed
//! `unshare(CLONE_NEWUSER)`), keyrings (not namespaced), BPF and perf (kernel attack surface),
//! `open_by_handle_at` (the "shocker" escape: opens host files by handle), clock and swap
//! changes, `io_uring` (Docker 25 blocks it), and `clone` with namespace flags. `clone3` gets
//! `ENOSYS` so libc falls back to `clone`, whose flags the filter can inspect — as Docker does.
//! We express it as a deny-list compiled with `seccompiler`; other syscalls are allowed.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the default seccomp filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler has no BPF backend for this CPU architecture.
    #[error("no seccomp filter for architecture {arch}: {source}; run with --security-opt seccomp=unconfined")]
    Arch {
        /// `std::env::consts::ARCH`.
        arch: &'static str,
        /// seccompiler's error.
        source: seccompiler::BackendError,
    },
    /// A rule or filter of the default profile did not compile.
    #[error("compiling the default filter: {0}")]
    Compile(#[source] seccompiler::BackendError),
    /// seccomp(2) refused a program (needs no_new_privs or CAP_SYS_ADMIN).
    #[error("installing the seccomp filter: {0}")]
    Install(#[source] seccompiler::Error),
}

/// Syscalls that fail with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_nfsservctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
];

/// `clone` flags that create namespaces; `clone` with any of them fails with EPERM.
const NAMESPACE_FLAGS: &[i32] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// The two compiled programs (deny-list → EPERM; clone3 → ENOSYS).
pub struct Programs {
    /// The deny-list filter: the listed syscalls fail with EPERM.
    pub eperm: BpfProgram,
    /// The filter that makes `clone3` fail with ENOSYS, so libcs fall back to `clone`, whose flags
    /// the other filter can check.
    pub enosys: BpfProgram,
}

fn arch() -> Result<TargetArch, SeccompError> {
    let arch = std::env::consts::ARCH;
    TargetArch::try_from(arch).map_err(|source| SeccompError::Arch { arch, source })
}

fn build() -> Result<Programs, SeccompError> {
    let err = SeccompError::Compile;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        rules.insert(nr, vec![]);
    }
    let mut clone_rules = Vec::new();
    for &flag in NAMESPACE_FLAGS {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag as u64),
            flag as u64,
        )
        .map_err(err)?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(err)?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(err)?;
    let mut clone3 = BTreeMap::new();
    clone3.insert(libc::SYS_clone3, vec![]);
    let enosys = SeccompFilter::new(
        clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(err)?;
    Ok(Programs {
        eperm: eperm.try_into().map_err(err)?,
        enosys: enosys.try_into().map_err(err)?,
    })
}

/// The default programs, compiled once per process (before `fork`, so the child only installs).
pub fn default_programs() -> Result<&'static Programs, Arc<SeccompError>> {
    // Built once: a failure is kept too (shared, as every later caller reports the same one).
    static PROGRAMS: OnceLock<Result<Programs, Arc<SeccompError>>> = OnceLock::new();
    PROGRAMS
        .get_or_init(|| build().map_err(Arc::new))
        .as_ref()
        .map_err(Arc::clone)
}

/// Installs the programs on the calling thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn install(p: &Programs) -> Result<(), SeccompError> {
    seccompiler::apply_filter(&p.enosys).map_err(SeccompError::Install)?;
    seccompiler::apply_filter(&p.eperm).map_err(SeccompError::Install)
}
