//! `strata history`: an image's history, newest first.

use std::process::ExitCode;

use anyhow::Result;

use super::images::{human_size, print_table};
use crate::Cli;

/// Arguments of `strata history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image.
    pub image: String,
    /// Don't truncate CREATED BY.
    #[arg(long)]
    pub no_trunc: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let img = store.image(&args.image)?;
    let layers = img.manifest.layers();
    let mut li = 0;
    let mut rows = Vec::new();
    for h in &img.config.history {
        let size = if h.empty_layer {
            0
        } else {
            let s = layers.get(li).map(|l| l.size()).unwrap_or(0);
            li += 1;
            s
        };
        let mut by = h.created_by.clone().unwrap_or_default();
        if !args.no_trunc && by.chars().count() > 60 {
            by = by.chars().take(57).collect::<String>() + "...";
        }
        rows.push(vec![
            h.created.clone().unwrap_or_else(|| "N/A".into()),
            by,
            human_size(size),
            h.comment.clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    rows.insert(
        0,
        vec![
            "CREATED".into(),
            "CREATED BY".into(),
            "SIZE".into(),
            "COMMENT".into(),
        ],
    );
    print_table(&rows);
    Ok(ExitCode::SUCCESS)
}
