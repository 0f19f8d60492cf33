//! Timing of parse + plan on a large Dockerfile (run by bench/parse.sh in release mode):
//! `cargo test --release -p strata-builder --test bench_parse -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use strata_dockerfile::parse_dockerfile;

use strata_dockerfile::plan::{plan, NoBaseImages, PlanOptions};

fn generated() -> String {
    let mut out = vec!["ARG BASE=debian".to_string(), "ARG TAG=12".to_string()];
    for s in 0..50 {
        let base = if s % 5 == 0 {
            "${BASE}:${TAG}".to_string()
        } else {
            format!("s{}", s - 1)
        };
        out.push(format!("FROM {base} AS s{s}"));
        out.push(format!("ARG V{s}=value-{s}"));
        let mut i = 0;
        while out.len() < (s + 1) * 100 + 2 {
            match i % 4 {
                0 => out.push(format!("ENV K{s}_{i}=\"${{V{s}}}-{i}\"")),
                1 => out.extend([format!("RUN echo {i} \\"), "    && true".to_string()]),
                2 => out.push(format!("WORKDIR /src/${{V{s}}}/{i}")),
                _ => out.push(format!("LABEL k{i}=v{i}")),
            }
            i += 1;
        }
    }
    out.join("\n") + "\n"
}

/// Nanoseconds this thread has spent on a CPU (from /proc/thread-self/schedstat): unlike wall
/// time, it does not count time the thread waited for a core on a loaded machine.
fn on_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[test]
#[ignore = "timing; run in release mode via bench/parse.sh"]
fn parse_and_plan_5000_lines() {
    let source = match std::env::var("STRATA_BENCH_DOCKERFILE") {
        Ok(p) => std::fs::read_to_string(p).expect("reading the generated Dockerfile"),
        Err(_) => generated(),
    };
    let lines = source.lines().count();
    assert!(lines >= 5000, "only {lines} lines");
    // Every stage is planned, as `strata build --check` does.
    let options = PlanOptions {
        all_stages: true,
        ..PlanOptions::default()
    };
    let mut times: Vec<Duration> = Vec::new();
    let mut parse_times: Vec<Duration> = Vec::new();
    let mut cpu_times: Vec<Duration> = Vec::new();
    let mut steps = 0;
    for _ in 0..30 {
        let cpu = on_cpu_ns();
        let t = Instant::now();
        let df = parse_dockerfile(&source).expect("parses");
        parse_times.push(t.elapsed());
        let g = plan(&df, &options, &NoBaseImages).expect("plans");
        times.push(t.elapsed());
        if let (Some(a), Some(b)) = (cpu, on_cpu_ns()) {
            cpu_times.push(Duration::from_nanos(b.saturating_sub(a)));
        }
        steps = g.stages.iter().map(|s| s.steps.len()).sum();
    }
    times.sort();
    parse_times.sort();
    cpu_times.sort();
    let median = times[times.len() / 2];
    let cpu_median = cpu_times
        .get(cpu_times.len() / 2)
        .copied()
        .unwrap_or(median);
    println!("on-CPU time per parse+plan: median {cpu_median:?}");
    println!(
        "parse+plan of {lines} lines ({steps} steps): median {median:?} (parse alone {:?}), min {:?}, max {:?}",
        parse_times[parse_times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    if !cfg!(debug_assertions) {
        // On-CPU time: the budget is about our cost, not about other processes' load.
        assert!(
            cpu_median < Duration::from_millis(50),
            "median on-CPU time {cpu_median:?} is over the 50 ms budget"
        );
    }
}
