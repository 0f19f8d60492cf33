//! `COPY --chmod`: octal (`0755`) or, since Dockerfile 1.14, symbolic (`+x`, `u=rwX,go=rX`,
//! `g=u`) modes, as chmod(1) reads them — without a umask: a clause with no `ugoa` applies to
//! all (BuildKit's behaviour). `X` sets execute only on directories and on files that already
//! have an execute bit.

/// Why a `--chmod` value was refused (BuildKit's wording, which its tests match).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// Digits only, but not an octal mode up to 07777.
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    OutOfRange(String),
    /// Neither octal nor a symbolic mode.
    #[error("invalid chmod parameter: '{0}': not an octal or symbolic mode")]
    Syntax(String),
}

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// An absolute mode (`0o7777` at most).
    Octal(u32),
    /// Clauses applied in order.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` action of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of `u`, `g`, `o` selected (`0o4000|0o700` for `u`, ...).
    who: u32,
    op: u8,
    perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// `rwxst` letters (and whether `X` was given).
    Bits {
        rwx: u32,
        big_x: bool,
        s: bool,
        t: bool,
    },
    /// Copy from the current `u`, `g` or `o` bits.
    Copy(u8),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl Chmod {
    /// Parses a `--chmod` value; errors say what is wrong with it.
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| ChmodError::OutOfRange(s.to_string()));
        }
        let bad = || ChmodError::Syntax(s.to_string());
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let b = part.as_bytes();
            let mut i = 0;
            let mut who = 0;
            while i < b.len() && matches!(b[i], b'u' | b'g' | b'o' | b'a') {
                who |= match b[i] {
                    b'u' => WHO_U,
                    b'g' => WHO_G,
                    b'o' => WHO_O,
                    _ => WHO_U | WHO_G | WHO_O,
                };
                i += 1;
            }
            if who == 0 {
                who = WHO_U | WHO_G | WHO_O;
            }
            if i == b.len() {
                return Err(bad());
            }
            while i < b.len() {
                let op = b[i];
                if !matches!(op, b'+' | b'-' | b'=') {
                    return Err(bad());
                }
                i += 1;
                let perms = if i < b.len() && matches!(b[i], b'u' | b'g' | b'o') {
                    i += 1;
                    Perms::Copy(b[i - 1])
                } else {
                    let (mut rwx, mut big_x, mut st_s, mut st_t) = (0, false, false, false);
                    while i < b.len() && matches!(b[i], b'r' | b'w' | b'x' | b'X' | b's' | b't') {
                        match b[i] {
                            b'r' => rwx |= 4,
                            b'w' => rwx |= 2,
                            b'x' => rwx |= 1,
                            b'X' => big_x = true,
                            b's' => st_s = true,
                            _ => st_t = true,
                        }
                        i += 1;
                    }
                    Perms::Bits {
                        rwx,
                        big_x,
                        s: st_s,
                        t: st_t,
                    }
                };
                clauses.push(Clause { who, op, perms });
            }
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode an entry whose permission bits are `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut m = mode & 0o7777;
        for c in clauses {
            // The rwx triplet spread over the selected classes.
            let spread = |rwx: u32| -> u32 {
                let mut v = 0;
                if c.who & 0o700 != 0 {
                    v |= rwx << 6;
                }
                if c.who & 0o070 != 0 {
                    v |= rwx << 3;
                }
                if c.who & 0o007 != 0 {
                    v |= rwx;
                }
                v
            };
            let bits = match &c.perms {
                Perms::Copy(from) => {
                    let rwx = match from {
                        b'u' => (m >> 6) & 7,
                        b'g' => (m >> 3) & 7,
                        _ => m & 7,
                    };
                    spread(rwx)
                }
                Perms::Bits { rwx, big_x, s, t } => {
                    let mut rwx = *rwx;
                    if *big_x && (is_dir || m & 0o111 != 0) {
                        rwx |= 1;
                    }
                    let mut v = spread(rwx);
                    if *s {
                        v |= c.who & 0o6000;
                    }
                    if *t && c.who & 0o1000 != 0 {
                        v |= 0o1000;
                    }
                    v
                }
            };
            match c.op {
                b'+' => m |= bits,
                b'-' => m &= !bits,
                _ => {
                    // `=`: clear the selected classes (set-id bits of a directory are kept, as
                    // chmod(1) does), then set.
                    let mut clear = c.who & 0o777;
                    if !is_dir {
                        clear |= c.who & 0o7000;
                    }
                    m = (m & !clear) | bits;
                }
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(Chmod::parse("0755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(sym("640", 0o777, false), 0o640);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(
            sym("u=rwX,go=rX", 0o600, false),
            0o644,
            "X: not executable stays so"
        );
        assert_eq!(sym("u=rwX,go=rX", 0o700, false), 0o755);
        assert_eq!(sym("u=rwX,go=rX", 0o700, true), 0o755);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("go-rwx", 0o755, false), 0o700);
        assert_eq!(sym("u+s,+t", 0o755, true), 0o5755);
        assert_eq!(sym("a=r", 0o4755, false), 0o444);
        for bad in ["", "8", "07777777", "z+x", "u", "u+x,", "+q"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
