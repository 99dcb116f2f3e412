//! `azure-emulator --fixture FILE [--addr HOST:PORT] [--vm NAME] [--attestation-root FILE]`: serves a
//! fake Azure and prints the environment a client needs as `export K="V"` lines, then
//! `AZURE_EMULATOR_ATTESTATION_ROOT`: the file holding the root (PEM) that its attested documents
//! chain to (for the auth service's `azure_join.trust_bundle_path`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "azure-emulator",
    about = "A fake Azure (IMDS, Entra ID, ARM) behind a forward proxy"
)]
struct Args {
    /// Fixture file describing the world (see examples/azure-emulator.yaml).
    #[arg(long)]
    fixture: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    /// Print the environment of this VM instead of the fixture's default VM.
    #[arg(long)]
    vm: Option<String>,
    /// Write the attestation root (PEM) to this file instead of the emulator's state directory.
    #[arg(long, value_name = "FILE")]
    attestation_root: Option<PathBuf>,
    /// Debug logging.
    #[arg(long)]
    debug: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = if args.debug {
        "azure_emulator=debug"
    } else {
        "azure_emulator=info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let world = azure_emulator::World::load(&args.fixture)?;
    let handle = azure_emulator::Emulator::start_on(world, &args.addr)
        .await
        .context("starting the emulator")?;
    // Handlers first: a client may stop the emulator as soon as it has read the exports.
    let stopped = stop_signal()?;
    let env = handle.try_env(args.vm.as_deref())?;
    let root = handle
        .write_attestation_root(args.attestation_root.as_deref())
        .context("writing the attestation root")?;
    for (k, v) in env {
        println!("export {k}=\"{v}\"");
    }
    println!(
        "export AZURE_EMULATOR_ATTESTATION_ROOT=\"{}\"",
        root.display()
    );
    eprintln!(
        "azure-emulator listening on {} (VM {}); Ctrl-C to stop",
        handle.addr(),
        args.vm.as_deref().unwrap_or(handle.default_vm())
    );
    stopped.await?;
    handle.shutdown().await;
    Ok(())
}

/// SIGTERM or SIGINT, with the handlers installed at once (not when first awaited).
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}

/// Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>>> {
    Ok(async { tokio::signal::ctrl_c().await.context("Ctrl-C handler") })
}
