//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the coverage-guided fuzz
//! targets of `fuzz/` (cargo fuzz, libFuzzer, nightly) one after the other,
//! each for N seconds (default 60), starting from the committed seeds, and
//! prints executions, coverage and findings per target.
//!
//! The corpus a run grows is kept in `fuzz/corpus/<target>/` (ignored by git,
//! so later runs go on from it); crashes land in `fuzz/artifacts/<target>/`.
//! One fuzzer runs at a time, in one process, at the lowest priority: the
//! machine is shared. CI never runs this (it keeps to `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The target triple cargo fuzz builds for (its default).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// What one run of one target did.
#[derive(Debug, Default)]
struct Outcome {
    target: String,
    runs: u64,
    seconds: u64,
    cov: u64,
    ft: u64,
    corpus: u64,
    findings: Vec<PathBuf>,
    failed: Option<String>,
}

/// Parsed command line: the targets to run and for how long.
#[derive(Debug, PartialEq)]
struct Args {
    target: Option<String>,
    seconds: u64,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let mut out = Args {
        target: None,
        seconds: 60,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it
                    .next()
                    .context("--seconds needs a number, e.g. --seconds 600")?;
                out.seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("--seconds {v:?}: expected a whole number > 0"))?;
            }
            s if s.starts_with('-') => {
                bail!("unknown option {s:?}: usage: cargo xtask fuzz [TARGET] [--seconds N]")
            }
            t if out.target.is_none() => out.target = Some(t.to_string()),
            t => bail!("one target at most (got {t:?} too): run without TARGET for all"),
        }
    }
    Ok(out)
}

/// The targets: `fuzz/fuzz_targets/*.rs`, sorted.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    Ok(names)
}

/// `cargo +nightly`, free of the variables the outer (stable) cargo set,
/// which would otherwise pin the toolchain.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly");
    for var in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

fn ensure_tools() -> Result<()> {
    // Whether a command runs and succeeds (its output dropped).
    let succeeds = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !succeeds(nightly_cargo().arg("--version")) {
        bail!("the nightly toolchain is missing: cargo fuzz needs it (rustup toolchain install nightly)");
    }
    if !succeeds(nightly_cargo().args(["fuzz", "--version"])) {
        crate::run(
            Command::new("nice")
                .args(["-n", "19", "cargo", "install", "cargo-fuzz", "--locked"])
                .env_remove("CARGO")
                .env_remove("RUSTUP_TOOLCHAIN"),
        )?;
    }
    Ok(())
}

/// Copies the committed seeds into the corpus directory (existing files kept).
fn seed_corpus(fuzz_dir: &Path, target: &str) -> Result<PathBuf> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let seeds = fuzz_dir.join("seeds").join(target);
    if let Ok(entries) = std::fs::read_dir(&seeds) {
        for e in entries.flatten() {
            let to = corpus.join(e.file_name());
            if e.path().is_file() && !to.exists() {
                std::fs::copy(e.path(), &to)
                    .with_context(|| format!("copying seed {}", e.path().display()))?;
            }
        }
    }
    Ok(corpus)
}

fn artifacts(fuzz_dir: &Path, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir.join("artifacts").join(target);
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The number after `key` in a libFuzzer status line (`cov: 123`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Reads libFuzzer's output: the last status line (`#N ... cov: ... ft: ...
/// corp: C/...`) and `Done N runs in S second(s)`.
fn read_log(log: &str, o: &mut Outcome) {
    for line in log.lines() {
        if line.starts_with('#') {
            if let Some(n) = field(line, "#") {
                o.runs = o.runs.max(n);
            }
            if let Some(c) = field(line, "cov: ") {
                o.cov = c;
            }
            if let Some(f) = field(line, "ft: ") {
                o.ft = f;
            }
            if let Some(c) = field(line, "corp: ") {
                o.corpus = c;
            }
        } else if let Some(rest) = line.strip_prefix("Done ") {
            o.runs = field(rest, "").unwrap_or(o.runs);
            o.seconds = field(rest, " in ").unwrap_or(o.seconds);
        }
    }
}

fn run_target(fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = seed_corpus(fuzz_dir, target)?;
    let before = artifacts(fuzz_dir, target);
    let log_path = fuzz_dir.join("artifacts").join(format!("{target}.log"));
    std::fs::create_dir_all(fuzz_dir.join("artifacts"))?;
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "+ fuzz {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let started = std::time::Instant::now();
    // The binary `cargo fuzz build` made, run directly (so a source changed
    // since is not rebuilt between targets): one process (no -jobs, which
    // forks workers), lowest priority.
    let bin = fuzz_dir
        .join("target")
        .join(TRIPLE)
        .join("release")
        .join(target);
    let artifact_dir = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifact_dir)?;
    let status = Command::new("nice")
        .args(["-n", "19"])
        .arg(&bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=20", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .arg(format!("-artifact_prefix={}/", artifact_dir.display()))
        .current_dir(fuzz_dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut o = Outcome {
        target: target.to_string(),
        ..Outcome::default()
    };
    read_log(&text, &mut o);
    if o.seconds == 0 {
        o.seconds = started.elapsed().as_secs();
    }
    o.findings = artifacts(fuzz_dir, target)
        .into_iter()
        .filter(|a| !before.contains(a))
        .collect();
    if !status.success() && o.findings.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        o.failed = Some(format!("{status}\n{}", tail.join("\n")));
    }
    Ok(o)
}

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let fuzz_dir = root.join("fuzz");
    let all = targets(&fuzz_dir)?;
    let chosen: Vec<String> = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target {t:?}; the targets are: {}", all.join(", ")),
        None => all,
    };
    ensure_tools()?;
    // Build every chosen target once, at the lowest priority.
    let mut build = nightly_cargo();
    build.current_dir(&fuzz_dir).args(["fuzz", "build"]);
    if let Some(t) = &args.target {
        build.arg(t);
    }
    let mut nice = Command::new("nice");
    nice.args(["-n", "19"])
        .arg(build.get_program())
        .args(build.get_args())
        .current_dir(&fuzz_dir)
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    crate::run(&mut nice)?;

    let mut outcomes = Vec::new();
    for t in &chosen {
        outcomes.push(run_target(&fuzz_dir, t, args.seconds)?);
    }
    println!(
        "{:<20} {:>12} {:>8} {:>7} {:>7} {:>7}  findings",
        "target", "executions", "seconds", "cov", "ft", "corpus"
    );
    let mut bad = 0;
    for o in &outcomes {
        let findings = if let Some(f) = &o.failed {
            bad += 1;
            format!("run failed: {f}")
        } else if o.findings.is_empty() {
            "none".to_string()
        } else {
            bad += 1;
            o.findings
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<20} {:>12} {:>8} {:>7} {:>7} {:>7}  {findings}",
            o.target, o.runs, o.seconds, o.cov, o.ft, o.corpus
        );
    }
    if bad > 0 {
        bail!(
            "{bad} target(s) found something: reproduce with `cd fuzz && cargo +nightly fuzz run TARGET ARTIFACT`, minimize with `cargo +nightly fuzz tmin TARGET ARTIFACT`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&[]).ok(),
            Some(Args {
                target: None,
                seconds: 60
            })
        );
        assert_eq!(
            a(&["resp", "--seconds", "600"]).ok(),
            Some(Args {
                target: Some("resp".into()),
                seconds: 600
            })
        );
        assert!(a(&["--seconds"]).is_err());
        assert!(a(&["--seconds", "0"]).is_err());
        assert!(a(&["a", "b"]).is_err());
        assert!(a(&["--jobs", "2"]).is_err());
    }

    #[test]
    fn reads_libfuzzer_output() {
        let log = "INFO: seed corpus: files: 12\n\
                   #2\tINITED cov: 310 ft: 402 corp: 12/1024b exec/s: 0 rss: 40Mb\n\
                   #65536\tpulse  cov: 700 ft: 1500 corp: 80/9Kb lim: 4096 exec/s: 21845 rss: 60Mb\n\
                   #131072\tDONE   cov: 733 ft: 1601 corp: 91/10Kb lim: 4096 exec/s: 2184 rss: 61Mb\n\
                   Done 131072 runs in 60 second(s)\n";
        let mut o = Outcome::default();
        read_log(log, &mut o);
        assert_eq!(
            (o.runs, o.seconds, o.cov, o.ft, o.corpus),
            (131072, 60, 733, 1601, 91)
        );
    }
}
