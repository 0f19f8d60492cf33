//! BuildKit conformance: the parser corpus and the shell-expansion tables from
//! moby/buildkit (copied read-only into `<repo>/../shared/conformance/buildkit`, see its README).
//! The corpus is read at test time and never copied into this repository. When it is absent, a
//! developer's run prints why and passes without checking anything; under CI (`CI` set) a
//! missing corpus fails, so a green CI always means the corpus was checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use strata_dockerfile::dump::dump;
use strata_dockerfile::lexer::Lexer;
use strata_dockerfile::{lines, parse_dockerfile, Span};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/buildkit");
    if dir.join("README.md").is_file() {
        Some(dir)
    } else if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "BuildKit conformance corpus not found at {} (expected <repo>/../shared/conformance/buildkit); CI must run with it",
            dir.display()
        );
    } else {
        eprintln!(
            "SKIPPED: BuildKit conformance corpus not found at {} (expected <repo>/../shared/conformance/buildkit)",
            dir.display()
        );
        None
    }
}

fn read(p: &std::path::Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn all_33_parser_cases_dump_byte_for_byte() {
    let Some(dir) = corpus() else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("parser/testfiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 33, "the corpus should hold 33 positive cases");
    let mut failures = Vec::new();
    for case in &cases {
        let source = read(&case.join("Dockerfile"));
        let expected = read(&case.join("result"));
        match lines::parse(&source) {
            Ok(ast) => {
                let got = dump(&ast);
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 33 cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn all_4_negative_cases_fail() {
    let Some(dir) = corpus() else { return };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("parser/testfiles-negative"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let source = read(&case.join("Dockerfile"));
        let r = parse_dockerfile(&source);
        assert!(
            r.is_err(),
            "{} must fail to parse, got {:?}",
            case.display(),
            r.map(|d| d.ast.nodes.len())
        );
    }
}

#[test]
fn line_numbers_match() {
    let Some(dir) = corpus() else { return };
    let ast = lines::parse(&read(&dir.join("parser/testfile-line/Dockerfile"))).unwrap();
    assert_eq!(ast.span(), Span::new(5, 31));
    let spans: Vec<Span> = ast.nodes.iter().map(|n| n.span).collect();
    assert_eq!(
        spans,
        vec![Span::new(5, 5), Span::new(11, 12), Span::new(17, 31)]
    );
}

#[test]
fn env_var_table_a_and_u_rows() {
    let Some(dir) = corpus() else { return };
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lexer::new('\\');
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in read(&dir.join("shell/envVarTest")).lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(parts.len(), 3, "line {}: {line}", n + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        checked += 1;
        let got = lex.process_word(source, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => e != "error" && v == e,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?} expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    assert!(checked > 200, "only {checked} rows checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_table_rows() {
    let Some(dir) = corpus() else { return };
    let lex = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in read(&dir.join("shell/wordsTest")).lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}: {line}", n + 1);
        let input = parts[0].trim();
        let expected: Vec<String> = parts[1]
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        let got = match lex.process_words(input, &env) {
            Ok(w) => w,
            Err(_) => vec!["error".to_string()],
        };
        checked += 1;
        if got != expected {
            failures.push(format!(
                "line {}: {input:?} expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    assert_eq!(checked, 24, "wordsTest has 24 rows");
    assert!(
        failures.is_empty(),
        "{} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
