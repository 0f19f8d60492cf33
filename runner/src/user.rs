//! `USER[:GROUP]` resolution against the image's `/etc/passwd` and `/etc/group`, with runc's
//! (`libcontainer/user`) rules: numbers work without the files; names must exist; supplementary
//! groups come from `/etc/group` membership.
//!
//! Every uid and gid, whether written as a number or found in the image's files, must be in
//! `0..=2147483647` ([`MAX_ID`]), as runc requires ("uids and gids must be in range
//! 0-2147483647"): `(uid_t)-1` (4294967295) means "leave unchanged" to setresuid(2) and
//! setresgid(2), so `USER 4294967295` would otherwise keep the process root with every default
//! capability. [`parse_id`] is the one place a numeric id is read; the CLI and the builder
//! (`--chown`, `USER`, WORKDIR ownership) use it too.

/// The largest uid or gid a container process or a file in an image may get (runc's bound).
pub const MAX_ID: u32 = i32::MAX as u32;

/// Why a `USER[:GROUP]` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A uid or gid outside `0..=2147483647` (written as a number, or an image's `/etc/passwd`
    /// or `/etc/group` entry).
    #[error("invalid {what} {value}: uids and gids must be in range 0-{MAX_ID}; use a smaller id")]
    IdOutOfRange {
        /// `uid` or `gid`.
        what: &'static str,
        /// The id as written.
        value: String,
    },
    /// A user name that is not in the image's `/etc/passwd` (Docker's wording).
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// A group name that is not in the image's `/etc/group` (Docker's wording).
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
}

/// Reads a numeric uid or gid (`what` is "uid" or "gid", for the error). `Ok(None)` when `s` is
/// not a number (a name, to be looked up); an error when it is a number outside
/// `0..=`[`MAX_ID`], however many digits it has.
pub fn parse_id(what: &'static str, s: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n)),
        _ => Err(UserError::IdOutOfRange {
            what,
            value: s.to_string(),
        }),
    }
}

/// Checks the numeric parts of a `USER[:GROUP]` spec without any `/etc/passwd`: for a caller
/// (the CLI) that wants to refuse an out-of-range id before creating anything.
pub fn check_numeric_ids(spec: &str) -> Result<(), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    parse_id("uid", user)?;
    if let Some(g) = group {
        parse_id("gid", g)?;
    }
    Ok(())
}

/// An id already read as a number (from an image's `/etc/passwd` or `/etc/group`, or a RUN
/// mount's `uid=`/`gid=`), bounded as [`parse_id`] bounds a number written by the user.
pub fn bounded(what: &'static str, id: u32) -> Result<u32, UserError> {
    if id <= MAX_ID {
        Ok(id)
    } else {
        Err(UserError::IdOutOfRange {
            what,
            value: id.to_string(),
        })
    }
}

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// The uid to run as.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Supplementary groups: the user's groups from `/etc/group`.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when unknown), for `HOME`.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 6 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members,
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …). Errors use Docker's
/// wording ("unable to find user X: no matching entries in passwd file"); an id out of
/// `0..=`[`MAX_ID`] is refused wherever it comes from.
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, UserError> {
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, mut gid, home, name) = match parse_id("uid", user_part)? {
        Some(uid) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_string(), Some(e.name)),
            None => (uid, 0, "/".to_string(), None),
        },
        None => match passwd_entries(passwd).find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
            None => return Err(UserError::UnknownUser(user_part.to_string())),
        },
    };
    let uid = bounded("uid", uid)?;

    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match parse_id("gid", g)? {
            Some(n) => n,
            None => match group_entries(group).find(|e| e.name == g) {
                Some(e) => e.gid,
                None => return Err(UserError::UnknownGroup(g.to_string())),
            },
        };
    }
    let gid = bounded("gid", gid)?;

    let mut additional_gids = vec![gid];
    // Supplementary groups only in the implicit form: `name:group` sets exactly that group
    // (runc's libcontainer/user GetExecUser, which Docker and BuildKit both follow).
    let explicit_group = group_part.is_some_and(|g| !g.is_empty());
    if let Some(name) = name.filter(|_| !explicit_group) {
        for e in group_entries(group) {
            if e.members.contains(&name) && !additional_gids.contains(&e.gid) {
                additional_gids.push(bounded("gid", e.gid)?);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nwheel:x:10:alice,bob\n";

    #[test]
    fn names_numbers_and_groups() {
        let a = resolve("alice", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((a.uid, a.gid, a.home.as_str()), (1000, 1000, "/home/alice"));
        assert_eq!(a.additional_gids, vec![1000, 10]);
        let n = resolve("4242:77", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 77, "/"));
        let g = resolve("nobody:wheel", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!((g.uid, g.gid), (65534, 10));
        // An explicit group is the only one: alice's wheel membership does not come along.
        let e = resolve("alice:alice", Some(PASSWD), Some(GROUP)).unwrap();
        assert_eq!(e.additional_gids, vec![1000]);
        let r = resolve("", None, None).unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("mallory", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(e.to_string().contains("unable to find user mallory"), "{e}");
        let e = resolve("alice:nosuch", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(e.to_string().contains("unable to find group nosuch"), "{e}");
        assert!(resolve("alice", None, None).is_err());
    }

    #[test]
    fn ids_out_of_range_are_refused_wherever_they_come_from() {
        for spec in [
            "4294967295",
            "0:4294967295",
            "2147483648",
            "99999999999999999999",
        ] {
            let e = resolve(spec, Some(PASSWD), Some(GROUP)).unwrap_err();
            let value = spec.rsplit(':').next().unwrap_or(spec);
            assert!(
                matches!(&e, UserError::IdOutOfRange { value: v, .. } if v == value),
                "{spec}: {e}"
            );
            assert!(e.to_string().contains(value), "{e}");
        }
        let hostile = "evil:x:4294967295:0::/:/bin/sh\nbadgid:x:5:4294967295::/:/bin/sh\n";
        let hostile_group = "root:x:0:\nbig:x:4294967295:alice\n";
        assert!(matches!(
            resolve("evil", Some(hostile), None),
            Err(UserError::IdOutOfRange { what: "uid", .. })
        ));
        assert!(matches!(
            resolve("badgid", Some(hostile), None),
            Err(UserError::IdOutOfRange { what: "gid", .. })
        ));
        assert!(matches!(
            resolve("alice", Some(PASSWD), Some(hostile_group)),
            Err(UserError::IdOutOfRange { what: "gid", .. })
        ));
        let max = resolve("2147483647:2147483647", None, None).unwrap();
        assert_eq!((max.uid, max.gid), (MAX_ID, MAX_ID));
        assert_eq!(
            check_numeric_ids("0:4294967295"),
            Err(UserError::IdOutOfRange {
                what: "gid",
                value: "4294967295".into()
            })
        );
        assert_eq!(check_numeric_ids("alice:wheel"), Ok(()));
    }
}
