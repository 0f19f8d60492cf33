//! `USER[:GROUP]` resolution against the image's `/etc/passwd` and `/etc/group`, with runc's
//! (`libcontainer/user`) rules: numbers work without the files; names must exist; supplementary
//! groups come from `/etc/group` membership.

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
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
/// wording ("unable to find user X: no matching entries in passwd file").
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ExecUser, String> {
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, mut gid, home, name) = if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_string(), Some(e.name)),
            None => (uid, 0, "/".to_string(), None),
        }
    } else {
        match passwd_entries(passwd).find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
            None => {
                return Err(format!(
                    "unable to find user {user_part}: no matching entries in passwd file"
                ))
            }
        }
    };

    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            match group_entries(group).find(|e| e.name == g) {
                Some(e) => e.gid,
                None => {
                    return Err(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                }
            }
        };
    }

    let mut additional_gids = vec![gid];
    if let Some(name) = name {
        for e in group_entries(group) {
            if e.members.contains(&name) && !additional_gids.contains(&e.gid) {
                additional_gids.push(e.gid);
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
        let r = resolve("", None, None).unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = resolve("mallory", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(e.contains("unable to find user mallory"), "{e}");
        let e = resolve("alice:nosuch", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert!(e.contains("unable to find group nosuch"), "{e}");
        assert!(resolve("alice", None, None).is_err());
    }
}
