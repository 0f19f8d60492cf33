//! Line parser + instruction parser (+ dump, planner and error snippets) on arbitrary bytes:
//! whatever the input, the front end returns Ok or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::dump::dump;
use strata_dockerfile::plan::{plan, CacheKey, ChainKey, NoBaseImages, PlanOptions};
use strata_dockerfile::{lines, parse_dockerfile, render_snippet};

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    if let Ok(ast) = lines::parse(&source) {
        let _ = dump(&ast);
    }
    match parse_dockerfile(&source) {
        Ok(df) => {
            let mut options = PlanOptions {
                all_stages: true,
                ..PlanOptions::default()
            };
            options.build_args.insert("A".into(), "x y".into());
            match plan(&df, &options, &NoBaseImages) {
                Ok(g) => {
                    let _ = g.waves();
                    for s in &g.stages {
                        for step in &s.steps {
                            let _ = step.cache_key(&ChainKey::Key(CacheKey::from_bytes([0; 32])), &[]);
                        }
                    }
                    for w in &g.warnings {
                        let _ = render_snippet(&source, "Dockerfile", w.span);
                    }
                }
                Err(e) => {
                    let _ = render_snippet(&source, "Dockerfile", e.span);
                }
            }
        }
        Err(e) => {
            let _ = render_snippet(&source, "Dockerfile", e.span);
        }
    }
});
