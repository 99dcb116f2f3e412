//! The listings: `tsh status`, `tsh apps ls`, `tsh db ls`.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use client::{Credentials, Profile};
use time::OffsetDateTime;

use crate::{api_client, load_active, login_command, Cli};

/// Print rows as Teleport's tables: a header, a dashed rule, columns padded.
/// Names, descriptions and labels come from agents and Azure tags: every cell
/// is shown with its control characters escaped ([`client::term::cell`]).
fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| client::term::cell(c).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        println!("{}", parts.join(" ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        line(r.clone());
    }
}

fn go_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().max(0);
    format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
}

fn valid_until_text(expires: OffsetDateTime) -> String {
    let now = OffsetDateTime::now_utc();
    let when = expires
        .to_offset(time::UtcOffset::UTC)
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] +0000 UTC"
        ))
        .unwrap_or_default();
    if expires <= now {
        format!("{when} [EXPIRED]")
    } else {
        format!("{when} [valid for {}]", go_duration(expires - now))
    }
}

pub(crate) fn print_profile(profile: &Profile, creds: &Credentials, active: bool) -> Result<()> {
    use std::fmt::Write as _;
    let id = client::identity_of(creds)?;
    let mut out = String::new();
    let url = if profile.web_proxy_addr.is_empty() {
        "(identity file)".to_string()
    } else {
        format!("https://{}", profile.web_proxy_addr)
    };
    let marker = if active { ">" } else { " " };
    let logins = if id.logins.is_empty() {
        "-".to_string()
    } else {
        id.logins.join(", ")
    };
    // Every field came from the cluster (the certificate, the proxy's ping):
    // one line each, control characters escaped.
    use client::term::cell;
    writeln!(out, "{marker} Profile URL:        {}", cell(&url))?;
    writeln!(out, "  Logged in as:       {}", cell(&id.username))?;
    writeln!(out, "  Cluster:            {}", cell(&profile.cluster))?;
    writeln!(out, "  Roles:              {}", cell(&id.groups.join(", ")))?;
    writeln!(out, "  Logins:             {}", cell(&logins))?;
    writeln!(out, "  Kubernetes:         disabled")?;
    if !id.azure_identities.is_empty() {
        writeln!(
            out,
            "  Azure Identities:   {}",
            cell(&id.azure_identities.join(", "))
        )?;
    }
    writeln!(
        out,
        "  Valid until:        {}",
        valid_until_text(id.expires)
    )?;
    writeln!(out, "  Extensions:         -")?;
    println!("{}", client::term::printable(&out));
    Ok(())
}

fn profile_json(profile: &Profile, creds: &Credentials) -> Result<serde_json::Value> {
    let id = client::identity_of(creds)?;
    Ok(serde_json::json!({
        "profile_url": if profile.web_proxy_addr.is_empty() { String::new() } else { format!("https://{}", profile.web_proxy_addr) },
        "username": id.username,
        "cluster": profile.cluster,
        "roles": id.groups,
        "traits": id.traits,
        "logins": id.logins,
        "kubernetes_enabled": false,
        "azure_identities": id.azure_identities,
        "databases": [],
        "valid_until": id.expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "extensions": [],
    }))
}

pub(crate) fn status(cli: &Cli, format: &str) -> Result<()> {
    if !matches!(format, "text" | "json") {
        bail!("unsupported format {format:?}: use text or json");
    }
    let (profile, creds) = match load_active(cli) {
        Ok(x) => x,
        Err(e) => {
            if format == "json" && e.to_string() == "Not logged in." {
                println!("{}", serde_json::json!({"active": null, "profiles": []}));
                return Err(e);
            }
            return Err(e);
        }
    };
    let id = client::identity_of(&creds)?;
    if format == "json" {
        let doc = serde_json::json!({
            "active": profile_json(&profile, &creds)?,
            "profiles": [],
        });
        println!(
            "{}",
            client::term::json(serde_json::to_string_pretty(&doc)?)
        );
    } else {
        print_profile(&profile, &creds, true)?;
    }
    if id.expires <= OffsetDateTime::now_utc() {
        let e = client::check_session(&creds, &login_command(cli, &profile), Duration::ZERO)
            .err()
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow!("your session has expired"));
        return Err(e.context("Active profile expired"));
    }
    Ok(())
}

pub(crate) async fn apps_ls(cli: &Cli, format: &str) -> Result<()> {
    let api = api_client(cli)?;
    let apps: Vec<resources::App> = api.get("/v1/auth/apps").await?;
    if format == "json" {
        println!(
            "{}",
            client::term::json(serde_json::to_string_pretty(&apps)?)
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            let labels = app
                .all_labels()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let kind = if app.spec.cloud.is_some() {
                "Cloud"
            } else {
                "HTTP"
            };
            vec![
                app.metadata.name.clone(),
                app.metadata.description.clone(),
                kind.to_string(),
                app.spec.public_addr.clone(),
                labels,
            ]
        })
        .collect();
    print_table(
        &[
            "Application",
            "Description",
            "Type",
            "Public Address",
            "Labels",
        ],
        &rows,
    );
    Ok(())
}

pub(crate) async fn db_ls(cli: &Cli, format: &str) -> Result<()> {
    let api = api_client(cli)?;
    let (_, creds) = load_active(cli)?;
    let id = client::identity_of(&creds)?;
    let dbs: Vec<resources::Database> = api.get("/v1/auth/dbs").await?;
    if format == "json" {
        println!(
            "{}",
            client::term::json(serde_json::to_string_pretty(&dbs)?)
        );
        return Ok(());
    }
    let users = if id.db_users.is_empty() {
        "[]".to_string()
    } else {
        format!("[{}]", id.db_users.join(" "))
    };
    let rows: Vec<Vec<String>> = dbs
        .iter()
        .map(|db| {
            let labels = db
                .all_labels()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                db.metadata.name.clone(),
                db.metadata.description.clone(),
                users.clone(),
                labels,
                String::new(),
            ]
        })
        .collect();
    print_table(
        &["Name", "Description", "Allowed Users", "Labels", "Connect"],
        &rows,
    );
    Ok(())
}
