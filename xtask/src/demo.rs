//! `cargo xtask demo`: a cluster on the embedded default (sqlite), a role and
//! a user, a login, and `tsh status`.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, Result};

fn show(title: &str, out: &str) {
    println!("\n$ {title}\n{}", out.trim_end());
}

pub fn run(root: &Path) -> Result<()> {
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
    let result = demo(root, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn demo(root: &Path, dir: &Path) -> Result<()> {
    let e = |s: String| anyhow!(s);
    let node = e2e::Node::start(
        &dir.join("cluster"),
        "demo.example.com",
        &e2e::Storage::Sqlite,
    )
    .map_err(e)?;
    println!(
        "Cluster started: proxy https://{} (auth {})",
        node.web_addr, node.auth_addr
    );
    show(
        "tctl status",
        &e2e::ok(node.tctl(&["status"]).map_err(e)?).map_err(e)?,
    );
    let role = root.join("examples").join("azure-cli-access.yaml");
    let role = role.to_string_lossy().to_string();
    show(
        "tctl create -f examples/azure-cli-access.yaml",
        &e2e::ok(node.tctl(&["create", "-f", &role]).map_err(e)?).map_err(e)?,
    );
    let add = e2e::ok(
        node.tctl(&[
            "users",
            "add",
            "alice",
            "--roles=access,editor,azure-cli-access",
        ])
        .map_err(e)?,
    )
    .map_err(e)?;
    show(
        "tctl users add alice --roles=access,editor,azure-cli-access",
        &add,
    );
    let id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
    show(
        "tctl users update alice --set-azure-identities ...teleport-azure",
        &e2e::ok(
            node.tctl(&["users", "update", "alice", "--set-azure-identities", id])
                .map_err(e)?,
        )
        .map_err(e)?,
    );
    let password = "demo password 1234";
    e2e::set_password(
        &node.web_addr,
        &e2e::invite_token(&add).map_err(e)?,
        password,
    )
    .map_err(e)?;
    println!("\n(the invite link was opened and the password set)");
    let home = dir.join("tsh");
    let login = e2e::ok(
        e2e::tsh(
            &home,
            &[
                "login",
                &format!("--proxy={}", node.web_addr),
                "--user=alice",
                "--insecure",
            ],
            Some(&format!("{password}\n")),
        )
        .map_err(e)?,
    )
    .map_err(e)?;
    show(
        &format!(
            "tsh login --proxy={} --user=alice --insecure",
            node.web_addr
        ),
        &login,
    );
    show(
        "tsh status",
        &e2e::ok(e2e::tsh(&home, &["status"], None).map_err(e)?).map_err(e)?,
    );
    println!("\nDemo finished; the cluster is stopped and its files removed.");
    Ok(())
}
