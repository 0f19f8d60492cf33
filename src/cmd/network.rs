//! `strata network create|ls|inspect|rm|prune|connect|disconnect`: user-defined networks (runner::network).

use std::process::ExitCode;

use anyhow::Result;
use strata_runner::network;

use crate::Cli;

/// Arguments of `strata network`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

/// The `network` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Sub {
    /// Create a network (a bridge made when its first container starts).
    Create {
        /// `ADDRESS/PREFIX` (default: a free private subnet).
        #[arg(long)]
        subnet: Option<network::Ipv4Net>,
        /// No route out of the network.
        #[arg(long)]
        internal: bool,
        /// Driver option `KEY=VALUE`: `mtu=N` (or Docker's `com.docker.network.driver.mtu=N`)
        /// sets every link's MTU (default 65520, the way out keeps the host's).
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        /// The network's name.
        name: String,
    },
    /// Connect a running container to a network (one more interface, `ethN`).
    Connect {
        /// Another name for the container on this network.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show networks as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks no container is on.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every user network no container is on.
    Prune {
        /// Don't ask for confirmation.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

pub fn run(cli: &Cli, a: &Args) -> Result<ExitCode> {
    let store = super::open_store(cli)?;
    let root = store.root();
    // Leases of containers whose strata process died: before anything counts members.
    network::repair(root);
    match &a.command {
        Sub::Create {
            subnet,
            internal,
            opts,
            name,
        } => {
            let (mtu, ignored) = network::driver_options(opts)?;
            for key in ignored {
                eprintln!("strata: network option {key} ignored (strata takes mtu)");
            }
            println!(
                "{}",
                network::create(root, name, *subnet, *internal, mtu)?.id
            );
        }
        Sub::Connect {
            aliases,
            network: net,
            container,
        } => {
            let c = strata_runner::container::resolve(&root.join("containers"), container)?;
            network::connect(root, &c.dir, net, aliases)?;
        }
        Sub::Disconnect {
            network: net,
            container,
        } => {
            let c = strata_runner::container::resolve(&root.join("containers"), container)?;
            network::disconnect(root, &c.state.id, net)?;
        }
        Sub::Ls => print!("{}", network::table(root)),
        Sub::Inspect { names } => {
            let all = names
                .iter()
                .map(|n| network::inspect(root, n))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        Sub::Rm { names } => {
            let mut failed = false;
            for n in names {
                match network::remove(root, n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("strata: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        Sub::Prune { .. } => {
            let removed = network::prune(root);
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
