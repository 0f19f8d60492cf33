//! `strata load`: a docker-archive or OCI archive (plain or compressed) → the store, each image's
//! layers unpacked (as `pull` does and `docker load` does), so the first `run` or build FROM it
//! starts without extracting.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::Cli;

/// Arguments of `strata load`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The archive (`-` for standard input).
    #[arg(short, long, default_value = "-")]
    pub input: String,
    /// Print only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Only store the layer blobs; unpack them later, when first used.
    #[arg(long)]
    pub no_unpack: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let (reader, what): (Box<dyn Read + Send>, String) = if args.input == "-" {
        (Box::new(std::io::stdin()), "<stdin>".into())
    } else {
        let f = File::open(&args.input)
            .with_context(|| format!("cannot open archive {}", args.input))?;
        (Box::new(f), args.input.clone())
    };
    let loaded = store.load(reader, &what)?;
    if !args.no_unpack {
        for (img, names) in &loaded.images {
            // The same extraction (verified, in parallel, once per layer) as pull's and a first
            // run's: the layer directories are ready as overlay lowerdirs.
            store.unpacked_layers(img).with_context(|| {
                let name = names
                    .first()
                    .map_or_else(|| img.config_digest.to_string(), |n| n.familiar());
                format!("image {name} is loaded, but unpacking its layers failed")
            })?;
        }
    }
    for (img, names) in &loaded.images {
        if names.is_empty() || args.quiet {
            outln!("Loaded image ID: {}", img.config_digest);
        }
        if !args.quiet {
            for n in names {
                outln!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
