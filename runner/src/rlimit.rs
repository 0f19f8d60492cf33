//! Process resource limits (`--ulimit NAME=SOFT[:HARD]`), Docker's syntax (go-units
//! `ParseUlimit`): the names of `setrlimit(2)` without the `RLIMIT_` prefix, lower case; the hard
//! limit defaults to the soft one; `-1` is unlimited (`RLIM_INFINITY`). They are set in the
//! container's process just before `execve`, while it still has `CAP_SYS_RESOURCE` to raise a
//! hard limit, and are inherited by everything it starts (`setrlimit(2)`: limits survive
//! `execve` and `fork`).

use serde::{Deserialize, Serialize};

/// Which resource a [`Rlimit`] limits (`setrlimit(2)`'s `RLIMIT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlimitResource {
    /// `RLIMIT_AS`: address space, bytes.
    As,
    /// `RLIMIT_CORE`: core file size, bytes.
    Core,
    /// `RLIMIT_CPU`: CPU time, seconds.
    Cpu,
    /// `RLIMIT_DATA`: data segment, bytes.
    Data,
    /// `RLIMIT_FSIZE`: file size, bytes.
    Fsize,
    /// `RLIMIT_LOCKS`: file locks.
    Locks,
    /// `RLIMIT_MEMLOCK`: locked memory, bytes.
    Memlock,
    /// `RLIMIT_MSGQUEUE`: POSIX message queues, bytes.
    Msgqueue,
    /// `RLIMIT_NICE`: nice ceiling.
    Nice,
    /// `RLIMIT_NOFILE`: open files.
    Nofile,
    /// `RLIMIT_NPROC`: processes of the user.
    Nproc,
    /// `RLIMIT_RSS`: resident set, bytes.
    Rss,
    /// `RLIMIT_RTPRIO`: real-time priority ceiling.
    Rtprio,
    /// `RLIMIT_RTTIME`: real-time CPU time, microseconds.
    Rttime,
    /// `RLIMIT_SIGPENDING`: queued signals.
    Sigpending,
    /// `RLIMIT_STACK`: stack size, bytes.
    Stack,
}

impl RlimitResource {
    const ALL: [(&'static str, RlimitResource); 16] = [
        ("as", RlimitResource::As),
        ("core", RlimitResource::Core),
        ("cpu", RlimitResource::Cpu),
        ("data", RlimitResource::Data),
        ("fsize", RlimitResource::Fsize),
        ("locks", RlimitResource::Locks),
        ("memlock", RlimitResource::Memlock),
        ("msgqueue", RlimitResource::Msgqueue),
        ("nice", RlimitResource::Nice),
        ("nofile", RlimitResource::Nofile),
        ("nproc", RlimitResource::Nproc),
        ("rss", RlimitResource::Rss),
        ("rtprio", RlimitResource::Rtprio),
        ("rttime", RlimitResource::Rttime),
        ("sigpending", RlimitResource::Sigpending),
        ("stack", RlimitResource::Stack),
    ];

    /// The resource called `name` (`nofile`), as Docker names them.
    pub fn from_name(name: &str) -> Option<RlimitResource> {
        RlimitResource::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
    }

    /// Its name (`nofile`).
    pub fn name(self) -> &'static str {
        RlimitResource::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("?", |(n, _)| n)
    }

    fn nix(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource as R;
        match self {
            RlimitResource::As => R::RLIMIT_AS,
            RlimitResource::Core => R::RLIMIT_CORE,
            RlimitResource::Cpu => R::RLIMIT_CPU,
            RlimitResource::Data => R::RLIMIT_DATA,
            RlimitResource::Fsize => R::RLIMIT_FSIZE,
            RlimitResource::Locks => R::RLIMIT_LOCKS,
            RlimitResource::Memlock => R::RLIMIT_MEMLOCK,
            RlimitResource::Msgqueue => R::RLIMIT_MSGQUEUE,
            RlimitResource::Nice => R::RLIMIT_NICE,
            RlimitResource::Nofile => R::RLIMIT_NOFILE,
            RlimitResource::Nproc => R::RLIMIT_NPROC,
            RlimitResource::Rss => R::RLIMIT_RSS,
            RlimitResource::Rtprio => R::RLIMIT_RTPRIO,
            RlimitResource::Rttime => R::RLIMIT_RTTIME,
            RlimitResource::Sigpending => R::RLIMIT_SIGPENDING,
            RlimitResource::Stack => R::RLIMIT_STACK,
        }
    }
}

/// One resource limit; `u64::MAX` is unlimited (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The resource.
    pub resource: RlimitResource,
    /// The soft limit (what the process gets; it may raise it up to `hard`).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// A `--ulimit` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RlimitError {
    /// Not `NAME=SOFT[:HARD]`.
    #[error("invalid ulimit {0:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048")]
    Syntax(String),
    /// A name `setrlimit(2)` does not know.
    #[error("invalid ulimit {0:?}: unknown resource (use one of: as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)")]
    Resource(String),
    /// A value that is not a number (or -1 for unlimited).
    #[error("invalid ulimit {0:?}: the limits are numbers, or -1 for unlimited")]
    Value(String),
    /// soft > hard, which `setrlimit(2)` refuses with EINVAL.
    #[error("invalid ulimit {0:?}: the soft limit must be less than or equal to the hard limit")]
    SoftAboveHard(String),
}

impl Rlimit {
    /// Parses `NAME=SOFT[:HARD]` (Docker's `--ulimit`).
    pub fn parse(spec: &str) -> Result<Rlimit, RlimitError> {
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| RlimitError::Syntax(spec.into()))?;
        let resource =
            RlimitResource::from_name(name).ok_or_else(|| RlimitError::Resource(spec.into()))?;
        let value = |v: &str| match v {
            "-1" => Ok(u64::MAX),
            _ => v
                .parse::<u64>()
                .map_err(|_| RlimitError::Value(spec.into())),
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => {
                let v = value(values)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(RlimitError::SoftAboveHard(spec.into()));
        }
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }

    /// Sets it on the calling process.
    pub(crate) fn apply(&self) -> nix::Result<()> {
        let v = |n: u64| {
            if n == u64::MAX {
                nix::sys::resource::RLIM_INFINITY
            } else {
                n as nix::libc::rlim_t
            }
        };
        nix::sys::resource::setrlimit(self.resource.nix(), v(self.soft), v(self.hard))
    }
}

impl std::fmt::Display for Rlimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |n: u64| {
            if n == u64::MAX {
                "-1".to_string()
            } else {
                n.to_string()
            }
        };
        write!(
            f,
            "{}={}:{}",
            self.resource.name(),
            v(self.soft),
            v(self.hard)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_syntax() {
        let r = Rlimit::parse("nofile=1024:2048").unwrap();
        assert_eq!(
            (r.resource, r.soft, r.hard),
            (RlimitResource::Nofile, 1024, 2048)
        );
        let r = Rlimit::parse("nproc=512").unwrap();
        assert_eq!((r.soft, r.hard), (512, 512));
        let r = Rlimit::parse("core=-1").unwrap();
        assert_eq!((r.soft, r.hard), (u64::MAX, u64::MAX));
        assert_eq!(r.to_string(), "core=-1:-1");
        assert!(matches!(
            Rlimit::parse("nofile"),
            Err(RlimitError::Syntax(_))
        ));
        assert!(matches!(
            Rlimit::parse("files=1"),
            Err(RlimitError::Resource(_))
        ));
        assert!(matches!(
            Rlimit::parse("nofile=lots"),
            Err(RlimitError::Value(_))
        ));
        assert!(matches!(
            Rlimit::parse("nofile=2048:1024"),
            Err(RlimitError::SoftAboveHard(_))
        ));
    }
}
