//! `cargo xtask bench`: library benchmarks (`cargo bench`) and whole-process
//! figures, each reported with a baseline measured in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(cmd: &Path, args: &[&str], env: &[(&str, &Path)], runs: usize) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = Command::new(cmd);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let start = Instant::now();
        let status = c
            .status()
            .with_context(|| format!("running {}", cmd.display()))?;
        times.push(start.elapsed());
        if !status.success() {
            bail!("{} {:?} failed", cmd.display(), args);
        }
    }
    Ok(median(times))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

pub fn run(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // auth's `join` bench: Azure joins against token joins (the baseline), same run.
    let mut libs = vec!["-p", "rbac", "-p", "pki", "-p", "auth"];
    if root.join("crates").join("azure-mint").exists() {
        libs.extend(["-p", "azure-mint"]);
    }
    crate::run(Command::new(&cargo).arg("bench").args(&libs))?;
    crate::run(Command::new(&cargo).args(["build", "--release", "--workspace", "--bins"]))?;
    let bins = root.join("target").join("release");
    std::env::set_var("E2E_BIN_DIR", &bins);
    let dir = root
        .join("target")
        .join(format!("bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = whole_process(&bins, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn whole_process(bins: &Path, dir: &Path) -> Result<()> {
    let e = |s: String| anyhow!(s);
    let node = e2e::Node::start(
        &dir.join("cluster"),
        "bench.example.com",
        &e2e::Storage::Sqlite,
    )
    .map_err(e)?;
    // Idle memory of auth + proxy: sample after readiness, take the largest.
    let pid = node
        .pid()
        .ok_or_else(|| anyhow!("teleport is not running"))?;
    let mut rss = 0;
    for _ in 0..20 {
        rss = rss.max(rss_kib(pid)?);
        std::thread::sleep(Duration::from_millis(50));
    }
    e2e::add_user(&node, "bench", "access", "bench password 1234").map_err(e)?;
    let home = dir.join("tsh");
    e2e::ok(
        e2e::tsh(
            &home,
            &[
                "login",
                &format!("--proxy={}", node.web_addr),
                "--user=bench",
                "--insecure",
            ],
            Some("bench password 1234\n"),
        )
        .map_err(e)?,
    )
    .map_err(e)?;
    let tsh = bins.join("tsh");
    let env = [("TELEPORT_HOME", home.as_path())];
    let base = time_runs(&tsh, &["version"], &env, 50)?;
    let status = time_runs(&tsh, &["status"], &env, 50)?;
    // Baseline for memory: an idle `sleep` process.
    let baseline_rss = {
        let mut c = Command::new("sleep").arg("2").spawn()?;
        std::thread::sleep(Duration::from_millis(200));
        let r = rss_kib(c.id()).unwrap_or(1);
        let _ = c.kill();
        let _ = c.wait();
        r
    };
    println!("\nwhole-process figures (release build):");
    println!(
        "  tsh status        median {:>8.2} ms   baseline `tsh version` {:>6.2} ms   ratio {:.2}   target <= 10 ms",
        status.as_secs_f64() * 1e3,
        base.as_secs_f64() * 1e3,
        status.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "  teleport idle RSS {:>8.1} MB   baseline `sleep` {:>6.1} MB        ratio {:.1}   target <= 40 MB",
        rss as f64 / 1024.0,
        baseline_rss as f64 / 1024.0,
        rss as f64 / baseline_rss as f64
    );
    Ok(())
}
