//! Foreign-architecture programs through binfmt_misc and QEMU user emulation.
//!
//! The kernel runs an ELF of another architecture when a binfmt_misc handler matches its header
//! (Documentation/admin-guide/binfmt-misc.rst). strata registers Debian's `qemu-user-static`
//! handlers (`/usr/lib/binfmt.d/qemu-*.conf`, the systemd-binfmt format
//! `:name:type:offset:magic:mask:interpreter:flags`) always with the `F` ("fix binary") flag: the
//! kernel opens the interpreter at registration, so it runs inside any mount namespace — a
//! sandbox's rootfs needs no `/usr/bin/qemu-*` of its own (the reason BuildKit's and podman's
//! docs require `F` too).
//!
//! Handlers are global to the kernel (or the user namespace, since Linux 6.7): registering one is
//! a change of the host, so strata does it only when asked (`strata binfmt --install`).

use std::path::{Path, PathBuf};

/// Where binfmt_misc is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Where Debian's `qemu-user-static` puts its handler definitions.
pub const DEBIAN_CONF_DIR: &str = "/usr/lib/binfmt.d";

/// Why binfmt_misc could not be read or changed, or a platform cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// A file under binfmt_misc or binfmt.d could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// binfmt_misc is not mounted and could not be.
    #[error("cannot mount binfmt_misc on {BINFMT_DIR}: {0} (as root: mount -t binfmt_misc binfmt_misc {BINFMT_DIR})")]
    Mount(nix::Error),
    /// No handler is registered for an architecture strata must run.
    #[error("cannot run {arch} programs here: no binfmt_misc handler is registered for {qemu}; install qemu-user-static (apt-get install qemu-user-static) and run `strata binfmt --install`")]
    NoHandler {
        /// The GOARCH asked for.
        arch: String,
        /// The QEMU architecture name looked for.
        qemu: String,
    },
    /// `--install` found no Debian handler definition for an architecture.
    #[error("no QEMU handler definition for {arch} in {DEBIAN_CONF_DIR}: install qemu-user-static (apt-get install qemu-user-static)")]
    NoDefinition {
        /// The architecture.
        arch: String,
    },
    /// A definition line that is not `:name:type:offset:magic:mask:interpreter:flags`.
    #[error("{path}: not a binfmt_misc definition (expected :name:type:offset:magic:mask:interpreter:flags)")]
    BadDefinition {
        /// The file.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BinfmtError + '_ {
    move |source| BinfmtError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A registered handler, as `/proc/sys/fs/binfmt_misc/<name>` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its name (`qemu-aarch64`).
    pub name: String,
    /// Whether it is enabled.
    pub enabled: bool,
    /// The interpreter path.
    pub interpreter: String,
    /// Its flags (`OCF`, `F`…).
    pub flags: String,
}

/// QEMU's name for a Go architecture (`arm64` → `aarch64`), as the handler files are named.
pub fn qemu_arch(goarch: &str) -> String {
    match goarch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        "loong64" => "loongarch64",
        other => other,
    }
    .to_string()
}

/// Whether binfmt_misc is mounted (its `register` file exists).
pub fn is_mounted() -> bool {
    Path::new(BINFMT_DIR).join("register").exists()
}

/// Mounts binfmt_misc on [`BINFMT_DIR`] when it is not; true when this call mounted it.
pub fn ensure_mounted() -> Result<bool, BinfmtError> {
    if is_mounted() {
        return Ok(false);
    }
    nix::mount::mount(
        Some("binfmt_misc"),
        BINFMT_DIR,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(BinfmtError::Mount)?;
    Ok(true)
}

/// The registered handlers, by name (empty when binfmt_misc is not mounted).
pub fn handlers() -> Result<Vec<Handler>, BinfmtError> {
    let dir = Path::new(BINFMT_DIR);
    if !is_mounted() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        let path = entry.path();
        // A handler removed between readdir and read is simply gone.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        out.push(parse_handler(&name, &text));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Parses a handler file: `enabled`/`disabled`, `interpreter PATH`, `flags: XYZ`, ….
fn parse_handler(name: &str, text: &str) -> Handler {
    let mut h = Handler {
        name: name.to_string(),
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
    };
    for line in text.lines() {
        if line == "enabled" {
            h.enabled = true;
        } else if let Some(i) = line.strip_prefix("interpreter ") {
            h.interpreter = i.to_string();
        } else if let Some(f) = line.strip_prefix("flags: ") {
            h.flags = f.to_string();
        }
    }
    h
}

/// The enabled handler that runs `goarch` programs, if any (`qemu-<arch>` or any handler whose
/// name ends in the QEMU architecture, as other installers name them).
pub fn handler_for(goarch: &str) -> Result<Option<Handler>, BinfmtError> {
    let qemu = qemu_arch(goarch);
    Ok(handlers()?.into_iter().find(|h| {
        h.enabled && (h.name == format!("qemu-{qemu}") || h.name.ends_with(&format!("-{qemu}")))
    }))
}

/// Ok when this machine can run `goarch` programs: natively, or through a registered handler.
pub fn check(goarch: &str, host_goarch: &str) -> Result<(), BinfmtError> {
    if goarch == host_goarch || (host_goarch == "amd64" && goarch == "386") {
        return Ok(());
    }
    match handler_for(goarch)? {
        Some(_) => Ok(()),
        None => Err(BinfmtError::NoHandler {
            arch: goarch.to_string(),
            qemu: qemu_arch(goarch),
        }),
    }
}

/// A handler definition from binfmt.d, ready to write to `register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The handler name (`qemu-aarch64`).
    pub name: String,
    /// The line to register, with `F` among its flags.
    pub line: String,
}

/// Reads a binfmt.d definition and makes sure its flags hold `F`.
pub fn read_definition(path: &Path) -> Result<Definition, BinfmtError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = || BinfmtError::BadDefinition {
        path: path.to_path_buf(),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(bad)?;
    // The first character is the field separator (usually ':').
    let sep = line.chars().next().ok_or_else(bad)?;
    let fields: Vec<&str> = line[sep.len_utf8()..].split(sep).collect();
    if fields.len() != 7 || fields[0].is_empty() || fields[5].is_empty() {
        return Err(bad());
    }
    let mut flags = fields[6].to_string();
    if !flags.contains('F') {
        flags.push('F');
    }
    let mut parts: Vec<String> = fields[..6].iter().map(|s| s.to_string()).collect();
    parts.push(flags);
    Ok(Definition {
        name: fields[0].to_string(),
        line: format!("{sep}{}", parts.join(&sep.to_string())),
    })
}

/// The Debian definition for `goarch` (`/usr/lib/binfmt.d/qemu-<arch>.conf`).
pub fn debian_definition(goarch: &str) -> Result<Definition, BinfmtError> {
    let path = Path::new(DEBIAN_CONF_DIR).join(format!("qemu-{}.conf", qemu_arch(goarch)));
    if !path.exists() {
        return Err(BinfmtError::NoDefinition {
            arch: goarch.to_string(),
        });
    }
    read_definition(&path)
}

/// Every Debian QEMU definition present (none when qemu-user-static is not installed).
pub fn debian_definitions() -> Result<Vec<Definition>, BinfmtError> {
    let dir = Path::new(DEBIAN_CONF_DIR);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(io(dir))?.path();
        let is_qemu = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("qemu-") && n.ends_with(".conf"));
        if is_qemu {
            out.push(read_definition(&path)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Registers `def` unless a handler of that name exists; true when this call registered it.
pub fn register(def: &Definition) -> Result<bool, BinfmtError> {
    ensure_mounted()?;
    let existing = Path::new(BINFMT_DIR).join(&def.name);
    if existing.exists() {
        return Ok(false);
    }
    let reg = Path::new(BINFMT_DIR).join("register");
    std::fs::write(&reg, def.line.as_bytes()).map_err(io(&reg))?;
    Ok(true)
}

/// Removes the handler `name` (writing `-1` to its file); false when there was none.
pub fn unregister(name: &str) -> Result<bool, BinfmtError> {
    let path = Path::new(BINFMT_DIR).join(name);
    if !path.exists() {
        return Ok(false);
    }
    std::fs::write(&path, b"-1").map_err(io(&path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_gets_the_f_flag() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("qemu-aarch64.conf");
        std::fs::write(
            &p,
            ":qemu-aarch64:M::\\x7f\\x45:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP\n",
        )
        .unwrap();
        let d = read_definition(&p).unwrap();
        assert_eq!(d.name, "qemu-aarch64");
        assert!(d.line.ends_with(":OPF"), "{}", d.line);
        std::fs::write(&p, "garbage\n").unwrap();
        assert!(read_definition(&p).is_err());
    }

    #[test]
    fn handler_file_and_names() {
        let h = parse_handler(
            "qemu-aarch64",
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\n",
        );
        assert!(h.enabled && h.flags == "OCF" && h.interpreter.ends_with("static"));
        assert_eq!(qemu_arch("arm64"), "aarch64");
        assert_eq!(qemu_arch("riscv64"), "riscv64");
        assert!(check("amd64", "amd64").is_ok());
    }
}
