//! `strata ps`: list containers (Docker's columns, `--filter`, `--format`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use strata_runner::container::{self, Container, Filter};
use strata_runner::timefmt;

use crate::Cli;

/// Arguments of `strata ps`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default: only running ones).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only print container ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate ids and commands.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: `status=`, `name=`, `id=`, `ancestor=`, `label=KEY[=VALUE]`.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// `json` (one object per line) or a template such as `{{.ID}} {{.Names}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let filters = a
        .filter
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = super::containers_dir(cli)?;
    let list = container::ps(&dir, a.all, &filters);
    let now = strata_runner::state::now_nanos();
    let rows: Vec<Row> = list.iter().map(|c| Row::of(c, now, a.no_trunc)).collect();
    let mut out = String::new();
    if a.quiet {
        for r in &rows {
            out.push_str(&r.id);
            out.push('\n');
        }
    } else if let Some(f) = &a.format {
        for r in &rows {
            out.push_str(&r.format(f)?);
            out.push('\n');
        }
    } else {
        out = table(&rows);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// One container's columns.
struct Row {
    id: String,
    image: String,
    command: String,
    created: String,
    created_at: String,
    status: String,
    state: String,
    names: String,
    ports: String,
    labels: String,
}

impl Row {
    fn of(c: &Container, now: u64, no_trunc: bool) -> Row {
        let id = if no_trunc {
            c.state.id.clone()
        } else {
            c.state.id.chars().take(12).collect()
        };
        let mut command = format!("\"{}\"", c.command());
        if !no_trunc && command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        let created_ns = c.state.created.saturating_mul(1_000_000_000);
        let labels = c
            .config
            .as_ref()
            .map(|cfg| {
                cfg.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        Row {
            id,
            // As the user named it at `run`, as Docker shows it.
            image: c
                .config
                .as_ref()
                .map(|cfg| cfg.image.clone())
                .unwrap_or_else(|| c.state.image.clone()),
            command,
            created: format!(
                "{} ago",
                timefmt::human_duration(now.saturating_sub(created_ns) / 1_000_000_000)
            ),
            created_at: timefmt::rfc3339(created_ns),
            status: c.status_text(now),
            state: c.state.status.as_str().to_string(),
            names: c.display_name(),
            ports: container::published_ports(c)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            labels,
        }
    }

    fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            "ID" => &self.id,
            "Image" => &self.image,
            "Command" => &self.command,
            "RunningFor" => &self.created,
            "CreatedAt" => &self.created_at,
            "Status" => &self.status,
            "State" => &self.state,
            "Names" => &self.names,
            "Labels" => &self.labels,
            "Ports" => &self.ports,
            "Mounts" | "Networks" | "Size" | "LocalVolumes" => "",
            _ => return None,
        })
    }

    /// `json`, or a template of `{{.Field}}` placeholders (Go's `\t` and `\n` escapes too).
    fn format(&self, f: &str) -> Result<String> {
        if f == "json" || f == "{{json .}}" {
            let keys = [
                "Command",
                "CreatedAt",
                "ID",
                "Image",
                "Labels",
                "LocalVolumes",
                "Mounts",
                "Names",
                "Networks",
                "Ports",
                "RunningFor",
                "Size",
                "State",
                "Status",
            ];
            let mut m = serde_json::Map::new();
            for k in keys {
                m.insert(k.into(), self.field(k).unwrap_or("").into());
            }
            return Ok(serde_json::Value::Object(m).to_string());
        }
        let f = f.strip_prefix("table ").unwrap_or(f);
        let mut out = String::new();
        let mut rest = f;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find("}}") else {
                bail!("invalid --format {f:?}: unclosed {{{{");
            };
            let inner = rest[start + 2..start + end].trim();
            let Some(name) = inner.strip_prefix('.') else {
                bail!("invalid --format {f:?}: {{{{{inner}}}}} is not a field (use {{{{.Names}}}}, {{{{.ID}}}}, …)");
            };
            match self.field(name) {
                Some(v) => out.push_str(v),
                None => bail!("invalid --format {f:?}: container has no field {name:?}"),
            }
            rest = &rest[start + end + 2..];
        }
        out.push_str(rest);
        Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
    }
}

/// Docker's table: columns padded to the widest cell plus 3 spaces, the last unpadded.
fn table(rows: &[Row]) -> String {
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.as_str(),
                &r.image,
                &r.command,
                &r.created,
                &r.status,
                &r.ports,
                &r.names,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for c in &cells {
        for (w, cell) in widths.iter_mut().zip(c) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(header).chain(cells) {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}
