//! `cargo xtask demo | test | bench`: the project's two entry points and its
//! whole-path benchmarks.
//!
//! `test` installs what the tests need on a fresh machine (PostgreSQL when it
//! is not running, the `az` CLI in a cached virtualenv, the Azure SDK for
//! JavaScript in a cached npm folder) and runs everything CI
//! checks: fmt, clippy with `-D warnings`, unit, integration and end-to-end
//! tests.

mod bench;
mod demo;
mod fuzz;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo::run(&root),
        Some("bench") => bench::run(&root),
        Some("deps") => ensure_deps(&root).map(|_| ()),
        Some("fuzz") => fuzz::run(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|bench|deps|fuzz [TARGET] [--seconds N]>");
            bail!("unknown or missing task")
        }
    }
}

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.parent().map(Path::to_path_buf).unwrap_or(dir)
}

/// Run a command, failing with its name when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn port_open(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).ok())
        .is_some()
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let sudo = if have("sudo") && !is_root() {
        "sudo "
    } else {
        ""
    };
    run(Command::new("sh").args([
        "-c",
        &format!(
            "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq {}",
            packages.join(" ")
        ),
    ]))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL on 127.0.0.1:5432 with trust auth, installed and started if missing.
fn ensure_postgres() -> Result<()> {
    if port_open("127.0.0.1:5432") {
        return Ok(());
    }
    if !have("pg_ctlcluster") {
        apt_install(&["postgresql"])?;
    }
    // Start the installed cluster (the machine image's own command).
    let _ = run(Command::new("sh").args([
        "-c",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -n1) main start",
    ]));
    for _ in 0..50 {
        if port_open("127.0.0.1:5432") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("PostgreSQL is not reachable on 127.0.0.1:5432 after installing and starting it")
}

/// The az CLI in a cached virtualenv under target/.
fn ensure_az(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("az-venv");
    let az = venv.join("bin").join("az");
    let python = venv.join("bin").join("python");
    // The Azure SDK for Python is the tests' second Azure client; redis-py
    // a Redis client library as applications use it.
    let has_sdk = || {
        Command::new(&python)
            .args(["-c", "import azure.identity, azure.mgmt.compute, redis"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if az.exists() {
        if !has_sdk() {
            run(Command::new(venv.join("bin").join("pip")).args([
                "install",
                "-q",
                "azure-identity",
                "redis",
            ]))?;
        }
        return Ok(az);
    }
    std::fs::create_dir_all(root.join("target"))?;
    if !venv.join("bin").join("pip").exists()
        && run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).is_err()
    {
        apt_install(&["python3-venv"])?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "-q",
        "azure-cli",
        "azure-identity",
        "redis",
    ]))?;
    if !az.exists() {
        bail!("pip installed azure-cli but {} is missing", az.display());
    }
    Ok(az)
}

/// The Azure SDK for JavaScript (`@azure/identity`, `@azure/core-rest-pipeline`) in a cached
/// folder under target/, for the tests' Node client; returns its `node_modules`.
fn ensure_js_sdk(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target").join("azure-js");
    let modules = dir.join("node_modules");
    let packages = ["@azure/identity", "@azure/core-rest-pipeline"];
    if packages
        .iter()
        .all(|p| modules.join(p).join("package.json").exists())
    {
        return Ok(modules);
    }
    if !have("node") || !have("npm") {
        apt_install(&["nodejs", "npm"])?;
    }
    std::fs::create_dir_all(&dir)?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .args(["@azure/identity@4", "@azure/core-rest-pipeline@1"]))?;
    if let Some(missing) = packages
        .iter()
        .find(|p| !modules.join(p).join("package.json").exists())
    {
        bail!(
            "npm install succeeded but {missing} is missing from {}",
            modules.display()
        );
    }
    Ok(modules)
}

/// Everything the tests need; returns the environment to give them.
fn ensure_deps(root: &Path) -> Result<Vec<(String, String)>> {
    ensure_postgres()?;
    // Tools the end-to-end tests run as a user would.
    let mut missing = Vec::new();
    for (cmd, pkg) in [
        ("curl", "curl"),
        ("systemd-analyze", "systemd"),
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
    ] {
        if !have(cmd) {
            missing.push(pkg);
        }
    }
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let mut env = Vec::new();
    if root.join("crates").join("azure-emulator").exists() {
        let az = ensure_az(root)?;
        env.push(("AZ_CLI".to_string(), az.display().to_string()));
        let js = ensure_js_sdk(root)?;
        env.push(("AZURE_JS_SDK".to_string(), js.display().to_string()));
    }
    Ok(env)
}

fn test(root: &Path) -> Result<()> {
    let env = ensure_deps(root)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The fuzz targets are a workspace of their own (fuzzing needs nightly):
    // type-check them on stable so that a change of API cannot leave them
    // broken until the next fuzzing run.
    run(cargo()
        .args(["check", "--bins", "--manifest-path"])
        .arg(root.join("fuzz").join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target").join("fuzz-check")))?;
    // The end-to-end tests drive the real binaries: build them first.
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)?;
    eprintln!("xtask test: everything passed");
    Ok(())
}
