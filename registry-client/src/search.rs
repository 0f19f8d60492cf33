//! `search`: the distribution API has no search endpoint, so this lists the catalog
//! (`GET /v2/_catalog`, paginated with `Link: <...>; rel="next"`) where the registry allows it, keeps the
//! repositories whose name contains the term, and lists each one's tags.

use crate::error::{RegistryError, Result};
use crate::transport::{header, pull_scope, read_limited, resolve_location, status_error, Req};
use crate::RegistryClient;

/// Catalog pages followed at most (100 names each).
const MAX_PAGES: usize = 100;

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SearchResult {
    /// Repository path on the registry.
    pub repository: String,
    /// Its tags (as the registry lists them).
    pub tags: Vec<String>,
}

impl RegistryClient {
    /// Repositories on `registry` whose name contains `term` (all when empty), at most `limit`,
    /// with their tags.
    pub fn search(&self, registry: &str, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
        let ep = self.config.origin(registry);
        let catalog_scope = vec!["registry:catalog:*".to_string()];
        let mut url = format!("{}/v2/_catalog?n=100", ep.base_url());
        let mut names = Vec::new();
        for _ in 0..MAX_PAGES {
            let resp = self
                .client
                .send(&ep, &Req::new("GET", url.clone(), &catalog_scope))?;
            match resp.status().as_u16() {
                200 => {}
                401 | 403 | 404 => {
                    return Err(RegistryError::Protocol {
                        what: format!("search on {registry}"),
                        message: format!(
                            "the registry does not let this account list its catalog (HTTP {})",
                            resp.status().as_u16()
                        ),
                    })
                }
                _ => return Err(status_error(&ep, "GET", &url, resp, "the catalog")),
            }
            let next = header(&resp, "link")
                .and_then(next_link)
                .map(|l| resolve_location(&ep, &l));
            #[derive(serde::Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let body = read_limited(resp, 16 << 20, &url)?;
            let page: Catalog =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                    what: url.clone(),
                    message: e.to_string(),
                })?;
            names.extend(page.repositories.into_iter().filter(|r| r.contains(term)));
            match next {
                Some(n) if names.len() < limit => url = n,
                _ => break,
            }
        }
        names.truncate(limit);
        let mut out = Vec::new();
        for repository in names {
            let scopes = vec![pull_scope(&repository)];
            let tags_url = format!("{}/v2/{repository}/tags/list", ep.base_url());
            let resp = self
                .client
                .send(&ep, &Req::new("GET", tags_url.clone(), &scopes))?;
            let tags = if resp.status().as_u16() == 200 {
                #[derive(serde::Deserialize)]
                struct Tags {
                    #[serde(default)]
                    tags: Option<Vec<String>>,
                }
                let body = read_limited(resp, 16 << 20, &tags_url)?;
                serde_json::from_slice::<Tags>(&body)
                    .ok()
                    .and_then(|t| t.tags)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            out.push(SearchResult { repository, tags });
        }
        Ok(out)
    }
}

/// The target of `rel="next"` in a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part[start..].find('>')? + start;
            Some(part[start..end].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=100>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=100")
        );
        assert_eq!(
            next_link(r#"<a>; rel="prev", <b>; rel="next""#).as_deref(),
            Some("b")
        );
        assert_eq!(next_link("<a>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage <"), None);
    }
}
