//! Timing of parse + plan on a large Dockerfile (run by bench/parse.sh in release mode):
//! `cargo test --release -p strata-builder --test bench_parse -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use strata_builder::dockerfile::parse_dockerfile;
use strata_builder::plan::{plan, PlanOptions};

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

#[test]
#[ignore = "timing; run in release mode via bench/parse.sh"]
fn parse_and_plan_5000_lines() {
    let source = match std::env::var("STRATA_BENCH_DOCKERFILE") {
        Ok(p) => std::fs::read_to_string(p).expect("reading the generated Dockerfile"),
        Err(_) => generated(),
    };
    let lines = source.lines().count();
    assert!(lines >= 5000, "only {lines} lines");
    let options = PlanOptions::default();
    let mut times: Vec<Duration> = Vec::new();
    let mut steps = 0;
    for _ in 0..30 {
        let t = Instant::now();
        let df = parse_dockerfile(&source).expect("parses");
        let g = plan(&df, &options).expect("plans");
        times.push(t.elapsed());
        steps = g.stages.iter().map(|s| s.steps.len()).sum();
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "parse+plan of {lines} lines ({steps} steps): median {median:?}, min {:?}, max {:?}",
        times[0],
        times[times.len() - 1]
    );
    if !cfg!(debug_assertions) {
        assert!(
            median < Duration::from_millis(50),
            "median {median:?} is over the 50 ms budget"
        );
    }
}
