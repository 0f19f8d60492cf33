//! `strata images`: list the store's images.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use strata_store::{Digest, Image, Store};

use crate::Cli;

/// Arguments of `strata images`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Draw images as a tree of shared layer ancestry.
    #[arg(long)]
    pub tree: bool,
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Show only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// List this platform's image of each multi-platform image (default: the host's, with the
    /// index's platforms in a PLATFORMS column).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

/// One row: a name (or none) and the image.
pub struct Row {
    pub repository: String,
    pub tag: String,
    pub image: Image,
    pub size: u64,
    /// A multi-platform image's platforms and their images, in index order (empty otherwise).
    pub platforms: Vec<(strata_store::Platform, Image)>,
}

/// Lists every entry of the store with its image; a multi-platform image shown as `platform`'s image (`None`: the host's); a
/// multi-platform image without that platform is left out.
pub fn rows_for(store: &Store, platform: Option<&strata_store::Platform>) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for e in store.entries()? {
        let d = e.digest()?;
        let mut platforms = Vec::new();
        if let Ok(multi) = store.load_index(&d, e.reference.clone()) {
            for (p, child) in multi.children() {
                let Ok(cd) = Digest::from_oci(child.digest()) else {
                    continue;
                };
                if let Ok(img) = store.load_manifest(&cd, e.reference.clone()) {
                    platforms.push((p, img));
                }
            }
            if let Some(want) = platform {
                if !platforms.iter().any(|(p, _)| want.matches(p)) {
                    continue;
                }
            }
        }
        let image = match store.load_manifest_for(&d, e.reference.clone(), platform) {
            Err(strata_store::StoreError::WrongPlatform { .. }) => continue,
            Ok(i) => i,
            Err(err) => {
                errln!("strata: warning: skipping {d}: {err}");
                continue;
            }
        };
        let size = image
            .manifest
            .layers()
            .iter()
            .map(|l| l.size())
            .sum::<u64>()
            + image.manifest_bytes.len() as u64;
        let (repository, tag) = match &e.reference {
            Some(r) => (
                r.familiar_name(),
                r.tag.clone().unwrap_or_else(|| "<none>".into()),
            ),
            None => ("<none>".into(), "<none>".into()),
        };
        out.push(Row {
            repository,
            tag,
            image,
            size,
            platforms,
        });
    }
    out.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    Ok(out)
}

/// Human-readable size, as Docker prints it (decimal units).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let platform = args
        .platform
        .as_deref()
        .map(strata_store::Platform::parse)
        .transpose()?;
    let rows = rows_for(&store, platform.as_ref())?;
    let multi = rows.iter().any(|r| !r.platforms.is_empty());
    if args.quiet {
        for r in &rows {
            outln!("{}", r.image.config_digest.short());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == "json" {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = json!({
                    "Repository": r.repository,
                    "Tag": r.tag,
                    "ID": r.image.config_digest.to_string(),
                    "Digest": r.image.manifest_digest.to_string(),
                    "Created": r.image.config.created,
                    "Size": r.size,
                    "Layers": r.image.config.rootfs.diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>(),
                });
                if !r.platforms.is_empty() {
                    v["Platforms"] = json!(r
                        .platforms
                        .iter()
                        .map(|(p, i)| json!({
                            "Platform": p.to_string(),
                            "ID": i.config_digest.to_string(),
                            "Digest": i.manifest_digest.to_string(),
                        }))
                        .collect::<Vec<_>>());
                }
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.format != "table" {
        anyhow::bail!("unknown --format {:?}: use table or json", args.format);
    }
    if args.tree {
        print_tree(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![{
        let mut h = vec!["REPOSITORY", "TAG"];
        if args.digests {
            h.push("DIGEST");
        }
        h.extend(["IMAGE ID", "CREATED", "SIZE"]);
        if multi {
            h.push("PLATFORMS");
        }
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for r in &rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if args.digests {
            line.push(r.image.manifest_digest.to_string());
        }
        line.push(r.image.config_digest.short().to_string());
        line.push(
            r.image
                .config
                .created
                .clone()
                .unwrap_or_else(|| "N/A".into()),
        );
        line.push(human_size(r.size));
        if multi {
            let names: Vec<String> = r.platforms.iter().map(|(p, _)| p.to_string()).collect();
            line.push(names.join(","));
        }
        table.push(line);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// Prints rows as aligned columns.
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{:<w$}   ", cell, w = widths[i]));
            }
        }
        outln!("{}", line.trim_end());
    }
}

/// A trie of layer chains: each node is a layer diff ID; images hang off the node of their top
/// layer.
#[derive(Default)]
struct Node {
    children: BTreeMap<String, Node>,
    images: Vec<String>,
    size: u64,
}

fn print_tree(rows: &[Row]) {
    let mut root = Node::default();
    for r in rows {
        // A multi-platform image hangs each platform's image where its layers end.
        let single = [(None, &r.image)];
        let per_platform: Vec<(Option<String>, &Image)> = if r.platforms.is_empty() {
            single.to_vec()
        } else {
            r.platforms
                .iter()
                .map(|(p, i)| (Some(p.to_string()), i))
                .collect()
        };
        for (platform, image) in per_platform {
            let mut node = &mut root;
            let layers = image.manifest.layers();
            for (i, d) in image.config.rootfs.diff_ids.iter().enumerate() {
                let size = layers.get(i).map(|l| l.size()).unwrap_or(0);
                node = node.children.entry(d.to_string()).or_default();
                node.size = size;
            }
            let on = platform.map(|p| format!(" {p}")).unwrap_or_default();
            node.images.push(format!(
                "{}:{} ({}){on}",
                r.repository,
                r.tag,
                image.config_digest.short()
            ));
        }
    }
    fn walk(n: &Node, prefix: &str) {
        let total = n.children.len() + n.images.len();
        let mut i = 0;
        for img in &n.images {
            i += 1;
            let last = i == total;
            outln!("{prefix}{}{img}", if last { "└─ " } else { "├─ " });
        }
        for (d, child) in &n.children {
            i += 1;
            let last = i == total;
            let short = d.strip_prefix("sha256:").unwrap_or(d);
            outln!(
                "{prefix}{}layer {} {}",
                if last { "└─ " } else { "├─ " },
                &short[..12.min(short.len())],
                human_size(child.size)
            );
            walk(
                child,
                &format!("{prefix}{}", if last { "   " } else { "│  " }),
            );
        }
    }
    walk(&root, "");
}
