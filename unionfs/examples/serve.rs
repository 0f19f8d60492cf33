//! Serve layer directories (bottom first) on a mountpoint in the foreground, for experiments:
//! `serve MOUNTPOINT LAYER...` (env UPPER/WORK for --rw, NO_PASSTHROUGH=1 to disable passthrough).
fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let Some((mountpoint, layers)) = args.split_first() else {
        eprintln!("usage: serve MOUNTPOINT LAYER...");
        std::process::exit(2);
    };
    let upper = std::env::var_os("UPPER").map(Into::into);
    let work = std::env::var_os("WORK").map(Into::into);
    let config = strata_unionfs::UnionConfig {
        layers: layers.to_vec(),
        upper,
        work,
        passthrough: std::env::var_os("NO_PASSTHROUGH").is_none(),
    };
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(4);
    let options = strata_unionfs::MountOptions {
        read_only: config.upper.is_none(),
        threads,
        ..Default::default()
    };
    if let Err(e) =
        strata_unionfs::mount_and_serve(config, None, mountpoint, options, |_| eprintln!("ready"))
    {
        eprintln!("serve: {e}");
        std::process::exit(1);
    }
}
