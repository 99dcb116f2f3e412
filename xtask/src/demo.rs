//! `cargo xtask demo`: the guides' scenario on the embedded default (sqlite)
//! against the Azure emulator: a cluster, an app service agent on the
//! emulator's VM that joins with the Azure method, the RBAC guide's role and
//! a user, `tsh login`, `tsh status`, `tsh apps ls`, `tsh apps login
//! azure-cli --azure-identity teleport-azure` and `tsh az vm list`; then
//! the Redis guide: `teleport db configure create`, `tsh db ls`, `tsh db
//! connect my-azure-redis` (real redis-cli to a TLS redis-server standing in
//! for the emulated cache) and `tsh db logout`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

fn show(title: &str, out: &str) {
    println!("\n$ {title}\n{}", out.trim_end());
}

pub fn run(root: &Path) -> Result<()> {
    let az = crate::ensure_az(root)?;
    crate::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "build",
            "--workspace",
            "--bins",
        ]),
    )?;
    let dir = root
        .join("target")
        .join(format!("demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = demo(root, &dir, &az);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The emulator's environment for the default VM, keeping loopback direct.
fn azure_env(emu: &azure_emulator::EmulatorHandle) -> Vec<(String, String)> {
    e2e::loopback_direct(emu.env(None))
}

/// A running scenario: emulator, cluster, app service agent, a logged-in
/// user with an Azure app session.
pub struct Scenario {
    /// tsh home of the user.
    pub home: std::path::PathBuf,
    /// The cluster (held for its Drop, which stops it).
    #[allow(dead_code)]
    pub node: e2e::Node,
    /// The app service (held for its Drop).
    #[allow(dead_code)]
    pub agent: e2e::Agent,
    /// The emulator.
    pub emu: azure_emulator::EmulatorHandle,
    /// Runtime of the emulator (kept alive).
    pub rt: tokio::runtime::Runtime,
}

fn demo(root: &Path, dir: &Path, az: &Path) -> Result<()> {
    let sc = start(root, dir, az, true)?;
    let mut cmd = Command::new(e2e::bin("tsh").map_err(|s| anyhow!(s))?);
    cmd.env("TELEPORT_HOME", &sc.home)
        .env("TELEPORT_AZ_CLI", az)
        .args(["az", "vm", "list"]);
    let out = e2e::ok(e2e::output(cmd, None).map_err(|s| anyhow!(s))?).map_err(|s| anyhow!(s))?;
    show("tsh az vm list", &out);
    drop(sc);
    redis_demo(&dir.join("redis"))?;
    println!("\nDemo finished; the clusters, the agents, redis-server and the emulator are stopped and their files removed.");
    Ok(())
}

/// The Redis guide: a Database Service configured by `teleport db configure
/// create` discovers the emulated Azure Cache for Redis (backed by a local
/// TLS redis-server that requires the cache's access key), and alice uses it
/// with `tsh db ls` and `tsh db connect` without knowing the key.
fn redis_demo(dir: &Path) -> Result<()> {
    let e = |s: String| anyhow!(s);
    println!("\n== Database access with Azure Cache for Redis ==");
    let w = e2e::redis::AzureRedis::start(dir, false).map_err(e)?;
    let config = std::fs::read_to_string(dir.join("agent").join("generated.yaml"))?.replace(
        "{data_dir}",
        &dir.join("agent").join("data").display().to_string(),
    );
    show(
        "teleport db configure create -o file --proxy=... --token=/tmp/token --azure-redis-discovery=eastus",
        &config,
    );
    let home = w
        .login("alice", "access", &["--db-users=*", "--db-names=*"])
        .map_err(e)?;
    println!("\n$ tctl users add --roles=access --db-users=* --db-names=* alice   (and tsh login --user=alice)");
    let listed = w.wait_listed(&home).map_err(e)?;
    show("tsh db ls", &listed);
    let tsh = |args: &[&str], input: Option<&str>| -> Result<String> {
        let out = e2e::tsh(&home, args, input).map_err(e)?;
        e2e::ok(out).map_err(e)
    };
    let out = tsh(
        &["db", "connect", "my-azure-redis"],
        Some("SET greeting \"hello from Azure Redis\"\nGET greeting\nDBSIZE\n"),
    )?;
    show(
        "tsh db connect my-azure-redis   (redis-cli; typed: SET greeting ..., GET greeting, DBSIZE)",
        &out,
    );
    if !out.contains("hello from Azure Redis") {
        anyhow::bail!("tsh db connect did not reach the cache: {out}");
    }
    show(
        "tsh db logout my-azure-redis",
        &tsh(&["db", "logout", "my-azure-redis"], None)?,
    );
    drop(w);
    Ok(())
}

/// Start the whole scenario up to `tsh apps login azure-cli`; with
/// `verbose`, print each command and its output as the guides show them.
pub fn start(root: &Path, dir: &Path, az: &Path, verbose: bool) -> Result<Scenario> {
    let show = |title: &str, out: &str| {
        if verbose {
            show(title, out)
        }
    };
    let e = |s: String| anyhow!(s);
    std::fs::create_dir_all(dir)?;
    let fixture = root.join("examples").join("azure-emulator.yaml");
    let (rt, emu) = e2e::start_emulator().map_err(e)?;
    if verbose {
        println!(
            "Azure emulator running (the guides' world: {}).",
            fixture.display()
        );
    }
    let bundle = dir.join("azure-attestation-root.pem");
    std::fs::write(
        &bundle,
        emu.attestation_root_pem()
            .map_err(|err| anyhow!("emulator root: {err}"))?,
    )?;
    let node = e2e::Node::start_with_env(
        &dir.join("cluster"),
        "teleport.example.com",
        &e2e::Storage::Sqlite,
        None,
        &azure_env(&emu),
        &format!(
            "  azure_join:\n    trust_bundle_path: {}\n",
            bundle.display()
        ),
    )
    .map_err(e)?;
    if verbose {
        println!(
            "Cluster started: proxy https://{} (auth {})",
            node.web_addr, node.auth_addr
        );
    }
    let tctl =
        |args: &[&str]| -> Result<String> { e2e::ok(node.tctl(args).map_err(e)?).map_err(e) };
    let status = tctl(&["status"])?;
    show("tctl status", &status);
    let pin = e2e::ca_pin(&node).map_err(e)?;

    // The Azure join guide's token, for an app service on the VM.
    let token = root.join("examples").join("token.yaml");
    show(
        "tctl create -f examples/token.yaml",
        &tctl(&["create", "-f", &token.to_string_lossy()])?,
    );
    let agent_config = format!(
        "version: v3\nteleport:\n  nodename: teleport-vm\n  data_dir: \"{{data_dir}}\"\n  proxy_server: \"{}\"\n  ca_pin: \"{pin}\"\n  join_params:\n    token_name: azure-app-token\n    method: azure\n    azure:\n      client_id: 6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01\nauth_service:\n  enabled: off\nproxy_service:\n  enabled: off\nssh_service:\n  enabled: off\napp_service:\n  enabled: true\n  apps:\n  - name: azure-cli\n    cloud: Azure\n",
        node.web_addr
    );
    let agent = e2e::Agent::start_with_env(&dir.join("agent"), &agent_config, &azure_env(&emu))
        .map_err(e)?;
    if verbose {
        println!("\nApp service started on the emulator's VM teleport-vm (join method: azure).");
    }

    let role = root.join("examples").join("azure-cli-access.yaml");
    show(
        "tctl create -f examples/azure-cli-access.yaml",
        &tctl(&["create", "-f", &role.to_string_lossy()])?,
    );
    let add = tctl(&[
        "users",
        "add",
        "teleport-user",
        "--roles=access,azure-cli-access",
    ])?;
    show(
        "tctl users add teleport-user --roles=access,azure-cli-access",
        &add,
    );
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
    show(
        "tctl users update teleport-user --set-azure-identities <teleport-azure>",
        &tctl(&[
            "users",
            "update",
            "teleport-user",
            "--set-azure-identities",
            id,
        ])?,
    );
    let password = "demo password 1234";
    e2e::set_password(
        &node.web_addr,
        &e2e::invite_token(&add).map_err(e)?,
        password,
    )
    .map_err(e)?;
    if verbose {
        println!("\n(the invite link was opened and the password set)");
    }

    let home = dir.join("tsh");
    let tsh = |args: &[&str], stdin: Option<&str>| -> Result<String> {
        let mut cmd = Command::new(e2e::bin("tsh").map_err(e)?);
        cmd.env("TELEPORT_HOME", &home)
            .env("TELEPORT_AZ_CLI", az)
            .args(args);
        e2e::ok(e2e::output(cmd, stdin).map_err(e)?).map_err(e)
    };
    let proxy_flag = format!("--proxy={}", node.web_addr);
    show(
        &format!("tsh login {proxy_flag} --user=teleport-user --insecure"),
        &tsh(
            &["login", &proxy_flag, "--user=teleport-user", "--insecure"],
            Some(&format!("{password}\n")),
        )?,
    );
    show("tsh status", &tsh(&["status"], None)?);
    let apps = e2e::poll(
        Duration::from_secs(60),
        "the app service to register",
        || {
            tsh(&["apps", "ls"], None)
                .ok()
                .filter(|o| o.contains("azure-cli"))
        },
    )
    .map_err(|err| anyhow!("{err}\n{}", agent.log()))?;
    show("tsh apps ls", &apps);
    e2e::poll(Duration::from_secs(30), "the agent's tunnel", || {
        tctl(&["inventory", "ls", "--format=json"])
            .ok()
            .filter(|o| o.trim() != "[]")
    })
    .map_err(e)?;
    show(
        "tsh apps login azure-cli --azure-identity teleport-azure",
        &tsh(
            &[
                "apps",
                "login",
                "azure-cli",
                "--azure-identity",
                "teleport-azure",
            ],
            None,
        )
        .context("tsh apps login")?,
    );
    Ok(Scenario {
        home,
        node,
        agent,
        emu,
        rt,
    })
}
