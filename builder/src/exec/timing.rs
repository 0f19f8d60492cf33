//! `STRATA_TIMING=1`: where a build's time goes, phase by phase, printed on stderr when the
//! build ends (`bench/realworld.sh` and `bench/realworld/PROFILE.md` read it).
//!
//! Each phase sums the wall time of its spans and counts them. Stages that run concurrently
//! add their spans up, so the phases can sum to more than the build's wall time. Without the
//! variable nothing is measured beyond one `Instant::now()` per span.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A phase of a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resolving a base image and unpacking its layers into the unpacked-layer cache.
    BaseUnpack,
    /// Cache keys of steps whose inputs are files (hashing the COPY sources of the context).
    CacheKeys,
    /// A RUN's mounts (cache, bind, secret) made ready.
    RunMounts,
    /// The RUN sandbox started: namespaces, the kernel overlay mount, pivot_root, exec.
    RunSetup,
    /// The RUN command itself, from exec to its exit.
    RunCommand,
    /// The RUN snapshot: the upperdir diffed and written as a layer (tar, compression and
    /// hashing happen in one streaming pass), then adopted as the layer's unpacked tree.
    Snapshot,
    /// A COPY/ADD step: selecting, staging and writing its layer.
    Copy,
    /// Writing the image: config, manifest and the tags.
    Export,
}

impl Phase {
    const ALL: [Phase; 8] = [
        Phase::BaseUnpack,
        Phase::CacheKeys,
        Phase::RunMounts,
        Phase::RunSetup,
        Phase::RunCommand,
        Phase::Snapshot,
        Phase::Copy,
        Phase::Export,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::BaseUnpack => "base resolve + unpack",
            Phase::CacheKeys => "cache keys (context hashing)",
            Phase::RunMounts => "RUN mounts (cache/bind/secret)",
            Phase::RunSetup => "RUN sandbox + overlay mount",
            Phase::RunCommand => "RUN command",
            Phase::Snapshot => "RUN snapshot (diff+tar+compress+hash)",
            Phase::Copy => "COPY/ADD (select+stage+layer)",
            Phase::Export => "export (config, manifest, tag)",
        }
    }
}

/// Whether `STRATA_TIMING` is set (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("STRATA_TIMING").is_some_and(|v| v != "0"))
}

type Totals = [(Duration, u32); Phase::ALL.len()];

fn totals() -> &'static Mutex<Totals> {
    static TOTALS: OnceLock<Mutex<Totals>> = OnceLock::new();
    TOTALS.get_or_init(|| Mutex::new([(Duration::ZERO, 0); Phase::ALL.len()]))
}

/// Adds the time since `started` to `phase` (when timing is on).
pub fn record(phase: Phase, started: Instant) {
    if !enabled() {
        return;
    }
    let took = started.elapsed();
    let i = Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
    let mut t = totals().lock().unwrap_or_else(|e| e.into_inner());
    t[i].0 += took;
    t[i].1 += 1;
}

/// The breakdown so far, one line per phase that ran, then the build's wall time.
fn render(t: &Totals, wall: Duration) -> String {
    let mut out = String::from("timing: phase                                   total ms  count\n");
    for (phase, (d, n)) in Phase::ALL.iter().zip(t.iter()) {
        if *n > 0 {
            out.push_str(&format!(
                "timing: {:<40} {:>9.1} {:>6}\n",
                phase.name(),
                d.as_secs_f64() * 1000.0,
                n
            ));
        }
    }
    out.push_str(&format!(
        "timing: {:<40} {:>9.1}\n",
        "build wall time",
        wall.as_secs_f64() * 1000.0
    ));
    out
}

/// Prints the breakdown on stderr (when timing is on) for a build that started at `started`.
pub fn report(started: Instant) {
    if !enabled() {
        return;
    }
    let t = *totals().lock().unwrap_or_else(|e| e.into_inner());
    eprint!("{}", render(&t, started.elapsed()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_the_phases_that_ran_and_the_wall_time() {
        let mut t: Totals = [(Duration::ZERO, 0); Phase::ALL.len()];
        t[4] = (Duration::from_millis(1500), 2);
        t[5] = (Duration::from_millis(250), 2);
        let text = render(&t, Duration::from_secs(2));
        assert!(text.contains("RUN command"), "{text}");
        assert!(text.contains("1500.0      2"), "{text}");
        assert!(text.contains("RUN snapshot"), "{text}");
        assert!(
            !text.contains("COPY/ADD"),
            "phases that never ran are left out: {text}"
        );
        assert!(text.contains("build wall time"), "{text}");
        assert!(text.contains("2000.0"), "{text}");
    }
}
