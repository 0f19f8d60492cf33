//! `WWW-Authenticate` challenges (RFC 7235 syntax, as distribution-spec's token auth uses them):
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`
//! or `Basic realm="registry"`. Parameter values may be quoted strings with `\` escapes, and a scope
//! list may hold several space-separated scopes; `error="insufficient_scope"` marks a token that lacks
//! an action and must be re-requested.

/// The authentication scheme a registry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic with the user's credentials on every request.
    Basic {
        /// The protection space the registry names, echoed back for the user's information.
        realm: String,
    },
    /// A bearer token from `realm` (the token server) for `service` and scopes.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` parameter to send the token server, when the registry gave one.
        service: Option<String>,
        /// The scope the registry says the request needs (`repository:NAME:pull`...), if given.
        scope: Option<String>,
        /// The registry's `error` parameter (e.g. `insufficient_scope`) when it rejected a token.
        error: Option<String>,
    },
}

/// Parses the first usable challenge (Bearer preferred over Basic) from `WWW-Authenticate` values.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = None;
    for value in values {
        for (scheme, params) in split_challenges(value) {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            if scheme.eq_ignore_ascii_case("bearer") {
                if let Some(realm) = get("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                        error: get("error"),
                    });
                }
            } else if scheme.eq_ignore_ascii_case("basic") && basic.is_none() {
                basic = Some(Challenge::Basic {
                    realm: get("realm").unwrap_or_default(),
                });
            }
        }
    }
    basic
}

/// Splits one header value into (scheme, params) pairs. A new challenge starts at a token that is
/// followed by whitespace and not by `=`.
fn split_challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b',' || bytes[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        if start == i {
            break;
        }
        let token = &value[start..i];
        let mut j = i;
        while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' {
            // name=value parameter of the current challenge.
            j += 1;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                j += 1;
            }
            let mut val = String::new();
            if j < bytes.len() && bytes[j] == b'"' {
                j += 1;
                while j < bytes.len() && bytes[j] != b'"' {
                    if bytes[j] == b'\\' && j + 1 < bytes.len() {
                        j += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch_len = utf8_len(bytes[j]);
                    val.push_str(value.get(j..j + ch_len).unwrap_or(""));
                    j += ch_len;
                }
                j += 1;
            } else {
                let vs = j;
                while j < bytes.len() && bytes[j] != b',' {
                    j += 1;
                }
                val = value[vs..j].trim().to_string();
            }
            if let Some(last) = out.last_mut() {
                last.1.push((token.to_string(), val));
            }
            i = j;
        } else {
            out.push((token.to_string(), Vec::new()));
            i = j;
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_all_parameters() {
        let c = parse_challenges([
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push repository:c:pull".into()),
                error: Some("insufficient_scope".into()),
            })
        );
    }

    #[test]
    fn basic_and_quoted_escapes_and_preference() {
        assert_eq!(
            parse_challenges([r#"Basic realm="my \"reg\"""#]),
            Some(Challenge::Basic {
                realm: r#"my "reg""#.into()
            })
        );
        let both = parse_challenges([r#"Basic realm="x", Bearer realm="https://t/",service=s"#]);
        assert!(
            matches!(both, Some(Challenge::Bearer { ref realm, ref service, .. }) if realm == "https://t/" && service.as_deref() == Some("s"))
        );
        assert_eq!(parse_challenges(["Negotiate", ""]), None);
        assert_eq!(parse_challenges(["Bearer service=\"no-realm\""]), None);
    }

    #[test]
    fn garbage_does_not_panic() {
        for v in [
            "=",
            "\"",
            "Bearer realm=\"",
            "Bearer ,,,, =x",
            "Bearer realm=\"\u{e9}\u{1F600}",
            "Basic realm=\\",
        ] {
            let _ = parse_challenges([v]);
        }
    }
}
