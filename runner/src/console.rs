//! The container's terminal (`-t`): a pty allocated from the container's *own* devpts instance,
//! as runc's console socket does, so `tty`, `/proc/self/fd/0` and job control see a
//! `/dev/pts/N` that exists inside the container. The master is passed to strata over a unix
//! socket (SCM_RIGHTS, unix(7)); the slave becomes stdin/stdout/stderr and the controlling tty.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::failure::{Context, Failure};

/// In the container, after `pivot_root`: opens `/dev/ptmx`, makes the slave our controlling
/// terminal on fds 0–2, sends the master over `sock`.
pub fn setup_in_container(sock: RawFd, winsize: Option<&libc::winsize>) -> Result<(), Failure> {
    let master = nix::fcntl::open(
        "/dev/pts/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "opening the container's /dev/pts/ptmx".into())?;
    // SAFETY: `open` just returned this fd and nothing else owns it; OwnedFd takes sole ownership
    // and closes it once.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK with a pointer to an int on our ptmx fd.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(nix::errno::Errno::last()).ctx(|| "unlocking the pty".into());
    }
    // TIOCGPTPEER (Linux 4.13) opens the slave from the master without a path lookup, so no
    // `/dev/pts/N` swapped by anyone can be opened instead (the reason runc adopted it).
    // SAFETY: ioctl returning a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(nix::errno::Errno::last()).ctx(|| "opening the pty slave".into());
    }
    // SAFETY: fresh fd from the kernel.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some(ws) = winsize {
        // SAFETY: TIOCSWINSZ with a valid winsize.
        unsafe {
            libc::ioctl(
                slave.as_raw_fd(),
                libc::TIOCSWINSZ,
                ws as *const libc::winsize,
            )
        };
    }
    // SAFETY: TIOCSCTTY on our slave; we are a session leader (setsid earlier).
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY as _, 0) } < 0 {
        return Err(nix::errno::Errno::last())
            .ctx(|| "making the pty the controlling terminal".into());
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).ctx(|| "attaching the pty".into())?;
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "sending the pty master to strata".into())?;
    Ok(())
}

/// In strata: receives the master (None if the container failed before sending it).
pub fn receive_master(sock: RawFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(m) => break m,
        }
    };
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS gave us these fds; we own them now.
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            return owned.pop();
        }
    }
    None
}
