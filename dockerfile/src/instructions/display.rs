//! Instructions written back in BuildKit's canonical form: what history entries and cache keys
//! hold.

use std::fmt;

use super::*;

impl fmt::Display for Instruction {
    /// A canonical one-line rendering (used in cache keys and progress output).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kw = self.keyword();
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        let opt = |name: &str, v: &Option<String>| {
            v.as_ref()
                .map(|v| format!(" --{name}={v}"))
                .unwrap_or_default()
        };
        match self {
            Instruction::Run(r) => {
                write!(f, "{kw}")?;
                for m in &r.mounts {
                    write!(f, " --mount={m}")?;
                }
                if let Some(n) = r.network {
                    write!(f, " --network={}", format!("{n:?}").to_lowercase())?;
                }
                if let Some(s) = r.security {
                    write!(f, " --security={}", format!("{s:?}").to_lowercase())?;
                }
                write_cmdline(f, &r.command)
            }
            Instruction::Cmd(c) | Instruction::Entrypoint(c) => {
                write!(f, "{kw}")?;
                write_cmdline(f, c)
            }
            Instruction::Shell(v) => write!(f, "{kw} {}", json(v)),
            Instruction::Copy(c) => {
                write!(
                    f,
                    "{kw}{}{}{}",
                    opt("from", &c.from),
                    opt("chown", &c.chown),
                    opt("chmod", &c.chmod)
                )?;
                if c.link {
                    write!(f, " --link")?;
                }
                if c.parents {
                    write!(f, " --parents")?;
                }
                for e in &c.exclude {
                    write!(f, " --exclude={e}")?;
                }
                write_sources(f, &c.sources, &c.inline, &c.dest)
            }
            Instruction::Add(a) => {
                write!(
                    f,
                    "{kw}{}{}{}",
                    opt("chown", &a.chown),
                    opt("chmod", &a.chmod),
                    opt("checksum", &a.checksum)
                )?;
                if a.link {
                    write!(f, " --link")?;
                }
                if a.keep_git_dir {
                    write!(f, " --keep-git-dir")?;
                }
                if let Some(u) = a.unpack {
                    write!(f, " --unpack={u}")?;
                }
                for e in &a.exclude {
                    write!(f, " --exclude={e}")?;
                }
                write_sources(f, &a.sources, &a.inline, &a.dest)
            }
            Instruction::Env(kv) | Instruction::Label(kv) => {
                write!(f, "{kw}")?;
                for p in kv {
                    write!(f, " {}={}", p.key, p.value)?;
                }
                Ok(())
            }
            Instruction::Arg(a) => {
                write!(f, "{kw}")?;
                for d in a {
                    match &d.default {
                        Some(v) => write!(f, " {}={v}", d.key)?,
                        None => write!(f, " {}", d.key)?,
                    }
                }
                Ok(())
            }
            Instruction::Expose(v) | Instruction::Volume(v) => write!(f, "{kw} {}", v.join(" ")),
            Instruction::User(s)
            | Instruction::Workdir(s)
            | Instruction::StopSignal(s)
            | Instruction::Onbuild(s)
            | Instruction::Maintainer(s) => write!(f, "{kw} {s}"),
            Instruction::Healthcheck(Healthcheck::None) => write!(f, "{kw} NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                write!(f, "{kw}")?;
                for (n, d) in [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ] {
                    if let Some(d) = d {
                        write!(f, " --{n}={}ns", d.as_nanos())?;
                    }
                }
                if let Some(r) = retries {
                    write!(f, " --retries={r}")?;
                }
                write!(f, " {}", json(test))
            }
        }
    }
}

fn write_cmdline(f: &mut fmt::Formatter<'_>, c: &CommandLine) -> fmt::Result {
    if c.shell_form {
        write!(f, " {}", c.args.join(" "))?;
        for h in &c.heredocs {
            write!(f, "\n{}{}", h.body(), h.name)?;
        }
        Ok(())
    } else {
        write!(f, " {}", serde_json::to_string(&c.args).unwrap_or_default())
    }
}

fn write_sources(
    f: &mut fmt::Formatter<'_>,
    sources: &[String],
    inline: &[InlineSource],
    dest: &str,
) -> fmt::Result {
    write!(f, " {}", serde_json::to_string(sources).unwrap_or_default())?;
    for i in inline {
        write!(
            f,
            " <<{}:{}",
            i.path,
            serde_json::to_string(&i.data).unwrap_or_default()
        )?;
    }
    write!(f, " {dest}")
}
