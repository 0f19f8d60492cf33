//! Every step → a history entry, the way BuildKit's `dockerfile2llb` writes them
//! (`commitToHistory`): `created_by` is the instruction in BuildKit's text form (Go's `%q`/`%v`
//! renderings included, so `docker history` reads the same), layer steps end in ` # buildkit`,
//! the comment is `buildkit.dockerfile.v0`, and steps without a layer are `empty_layer`.

use strata_store::{History, ImageConfig};

use super::config::argv;
use strata_dockerfile::dump::go_quote;
use strata_dockerfile::instructions::Healthcheck;
use strata_dockerfile::plan::{ConfigInstruction, CopyOp, CopyStep, RunStep, Step, StepKind};

/// The comment BuildKit gives every history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// `created` for configs and history: `SOURCE_DATE_EPOCH` when set, else now.
pub fn created_string(source_date_epoch: Option<i64>) -> String {
    let secs = source_date_epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    });
    strata_store::ops::rfc3339(secs)
}

/// Appends a history entry. An empty `created_by` means the instruction has none: BuildKit
/// writes no history entry for ONBUILD (`dispatchOnbuild` in dockerfile2llb/convert.go only
/// appends the trigger to the config).
pub fn push_history(config: &mut ImageConfig, created: &str, created_by: String, empty: bool) {
    if created_by.is_empty() {
        return;
    }
    config.history.push(History {
        created: Some(created.to_string()),
        created_by: Some(created_by),
        author: None,
        comment: Some(HISTORY_COMMENT.to_string()),
        empty_layer: empty,
    });
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_list_q(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", q.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
fn go_list_v(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Go's `time.Duration.String()` (`30s`, `1m30s`, `1h0m0s`, `1.5s`, `500ms`, `0s`), which is
/// how BuildKit's `%+v` of a health check renders its durations.
fn go_duration(d: Option<std::time::Duration>) -> String {
    let Some(d) = d else { return "0s".into() };
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    // Below one second Go switches unit: ns, µs, ms, with a trimmed fraction.
    if ns < 1_000_000_000 {
        let (unit, scale) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        let whole = ns / scale;
        let frac = ns % scale;
        if frac == 0 {
            return format!("{whole}{unit}");
        }
        let digits = match scale {
            1_000 => 3,
            _ => 6,
        };
        let f = format!("{frac:0digits$}");
        return format!("{whole}.{}{unit}", f.trim_end_matches('0'));
    }
    let total_s = d.as_secs();
    let frac = d.subsec_nanos();
    let (h, m, s) = (total_s / 3600, (total_s % 3600) / 60, total_s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// COPY/ADD history text (`dispatchCopy`): flags BuildKit records (`--parents`, `--chown`,
/// `--chmod`; not `--from`, `--link` or `--exclude`), the sources as written, `<<NAME` for each
/// heredoc source, the destination as written.
fn copy_created_by(
    name: &str,
    parents: bool,
    chown: Option<&str>,
    chmod: Option<&str>,
    sources: &[String],
    inline: &[strata_dockerfile::instructions::InlineSource],
    dest: &str,
) -> String {
    let mut s = String::from(name);
    if parents {
        s.push_str(" --parents");
    }
    if let Some(ch) = chown {
        s.push_str(&format!(" --chown={ch}"));
    }
    if let Some(m) = chmod {
        s.push_str(&format!(" --chmod={m}"));
    }
    for src in sources {
        s.push_str(&format!(" {src}"));
    }
    for doc in inline {
        s.push_str(&format!(" <<{}", doc.path));
    }
    format!("{s} {dest} # buildkit")
}

/// The history `created_by` of a step, as BuildKit writes it.
pub fn created_by(step: &Step) -> String {
    match &step.kind {
        StepKind::Run(RunStep { run: r, .. }) => {
            let mut s = String::from("RUN ");
            // BuildKit lists the stage's ARGs in declaration order (runCommandString over
            // d.buildArgs), which is the order of the cache inputs.
            let args = &step.cache.build_args;
            if !args.is_empty() {
                s.push_str(&format!("|{} ", args.len()));
                for (k, v) in args {
                    s.push_str(&format!("{k}={v} "));
                }
            }
            // Heredocs: the argv BuildKit actually runs (body as the script, or /dev/pipes/…).
            let run_argv = super::run::buildkit_argv(&r.command, &step.shell)
                .map(|(a, _)| a)
                .unwrap_or_else(|_| argv(&r.command, &step.shell));
            s.push_str(&run_argv.join(" "));
            s.push_str(" # buildkit");
            s
        }
        StepKind::Copy(CopyStep {
            op: CopyOp::Copy(c),
            ..
        }) => copy_created_by(
            "COPY",
            c.parents,
            c.chown.as_deref(),
            c.chmod.as_deref(),
            &c.sources,
            &c.inline,
            &c.dest,
        ),
        StepKind::Copy(CopyStep {
            op: CopyOp::Add(a), ..
        }) => copy_created_by(
            "ADD",
            false,
            a.chown.as_deref(),
            a.chmod.as_deref(),
            &a.sources,
            &a.inline,
            &a.dest,
        ),
        StepKind::Config(ConfigInstruction::Cmd(c)) => {
            format!("CMD {}", go_list_q(&argv(c, &step.shell)))
        }
        StepKind::Config(ConfigInstruction::Entrypoint(c)) => {
            format!("ENTRYPOINT {}", go_list_q(&argv(c, &step.shell)))
        }
        StepKind::Config(ConfigInstruction::Shell(v)) => format!("SHELL {}", go_list_v(v)),
        StepKind::Config(ConfigInstruction::Env(kv)) => {
            let parts: Vec<String> = kv
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            format!("ENV {}", parts.join(" "))
        }
        StepKind::Config(ConfigInstruction::Label(kv)) => {
            let parts: Vec<String> = kv
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            format!("LABEL {}", parts.join(" "))
        }
        StepKind::Config(ConfigInstruction::Arg(decls)) => {
            let parts: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.key),
                    None => d.key.clone(),
                })
                .collect();
            format!("ARG {}", parts.join(" "))
        }
        // Today's BuildKit: `fmt.Sprintf("EXPOSE %v", ps)` of the expanded port list, in the
        // order written (convert_expose.go `dispatchExpose`).
        StepKind::Config(ConfigInstruction::Expose(ports)) => {
            format!("EXPOSE [{}]", ports.join(" "))
        }
        StepKind::Config(ConfigInstruction::Volume(v)) => format!("VOLUME {}", go_list_v(v)),
        StepKind::Config(ConfigInstruction::User(u)) => format!("USER {u}"),
        // BuildKit records the resolved absolute path ("WORKDIR " + wd), not the argument.
        StepKind::Config(ConfigInstruction::Workdir(_)) => format!("WORKDIR {}", step.workdir),
        StepKind::Config(ConfigInstruction::StopSignal(s)) => format!("STOPSIGNAL {s}"),
        // BuildKit: `fmt.Sprintf("HEALTHCHECK %+v", healthcheckConfig)`, Go's field-named
        // struct rendering with durations as `time.Duration` strings.
        StepKind::Config(ConfigInstruction::Healthcheck(h)) => {
            let none = vec!["NONE".to_string()];
            let (test, interval, timeout, start_period, start_interval, retries) = match h {
                Healthcheck::None => (&none, None, None, None, None, None),
                Healthcheck::Check {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => (
                    test,
                    *interval,
                    *timeout,
                    *start_period,
                    *start_interval,
                    *retries,
                ),
            };
            format!(
                "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                go_list_v(test),
                go_duration(interval),
                go_duration(timeout),
                go_duration(start_period),
                go_duration(start_interval),
                retries.unwrap_or(0)
            )
        }
        // No history entry (see `push_history`).
        StepKind::Config(ConfigInstruction::Onbuild(_)) => String::new(),
        StepKind::Config(ConfigInstruction::Maintainer(m)) => format!("MAINTAINER {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(None), "0s");
        assert_eq!(go_duration(Some(Duration::from_secs(30))), "30s");
        assert_eq!(go_duration(Some(Duration::from_secs(90))), "1m30s");
        assert_eq!(go_duration(Some(Duration::from_secs(3600))), "1h0m0s");
        assert_eq!(go_duration(Some(Duration::from_millis(1500))), "1.5s");
        assert_eq!(go_duration(Some(Duration::from_millis(500))), "500ms");
        assert_eq!(go_duration(Some(Duration::from_micros(1500))), "1.5ms");
        assert_eq!(go_duration(Some(Duration::from_nanos(1500))), "1.5\u{b5}s");
        assert_eq!(go_duration(Some(Duration::from_nanos(7))), "7ns");
    }

    #[test]
    fn go_lists() {
        let v = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "echo \"hi\"".to_string(),
        ];
        assert_eq!(go_list_q(&v), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        assert_eq!(go_list_v(&v[..2]), "[/bin/sh -c]");
    }
}
