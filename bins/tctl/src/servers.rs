//! Registered servers: `tctl apps ls`, `tctl db ls`, and the `app_server` /
//! `db_server` resources of `tctl get`, from every agent's heartbeat.

use anyhow::Result;
use api::inventory::ServerEntry;
use client::term::cell;
use client::ApiClient;

/// Kind of registered server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Application servers.
    App,
    /// Database servers.
    Db,
}

impl ServerKind {
    /// The `tctl get` kind (`app_server`, `db_server`) for `text`, if it is one.
    pub fn from_get_kind(text: &str) -> Option<ServerKind> {
        match text.to_ascii_lowercase().as_str() {
            "app_server" | "app_servers" => Some(ServerKind::App),
            "db_server" | "db_servers" => Some(ServerKind::Db),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            ServerKind::App => "/v1/auth/servers/app",
            ServerKind::Db => "/v1/auth/servers/db",
        }
    }

    fn resource_kind(self) -> &'static str {
        match self {
            ServerKind::App => "app_server",
            ServerKind::Db => "db_server",
        }
    }
}

/// Every agent's registered server of `kind`, ordered by name then host.
pub async fn list(api: &ApiClient, kind: ServerKind) -> Result<Vec<ServerEntry>> {
    let mut list: Vec<ServerEntry> = api.get(kind.path()).await?;
    list.sort_by(|a, b| {
        (name_of(a), a.hostname.as_str(), a.host_id.as_str()).cmp(&(
            name_of(b),
            b.hostname.as_str(),
            b.host_id.as_str(),
        ))
    });
    Ok(list)
}

fn name_of(e: &ServerEntry) -> &str {
    if let Some(app) = &e.app {
        &app.metadata.name
    } else if let Some(db) = &e.db {
        &db.metadata.name
    } else {
        ""
    }
}

/// The entries as Teleport's `app_server` / `db_server` resources
/// (`kind`, `version`, `metadata.name`, `spec.{host_id,hostname,app|database}`).
pub fn as_resources(kind: ServerKind, list: &[ServerEntry]) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let mut spec = serde_json::Map::new();
        spec.insert("host_id".into(), e.host_id.clone().into());
        spec.insert("hostname".into(), e.hostname.clone().into());
        match kind {
            ServerKind::App => {
                spec.insert("app".into(), serde_json::to_value(&e.app)?);
            }
            ServerKind::Db => {
                spec.insert("database".into(), serde_json::to_value(&e.db)?);
            }
        }
        out.push(serde_json::json!({
            "kind": kind.resource_kind(),
            "version": "v3",
            "metadata": {"name": name_of(e)},
            "spec": spec,
        }));
    }
    Ok(out)
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Rows of a text table, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                let pad = w.saturating_sub(c.chars().count());
                s.push_str(&c);
                s.push_str(&" ".repeat(pad + 1));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    out.push_str(&line(
        header
            .iter()
            .map(|h| "-".repeat(h.chars().count()))
            .collect(),
    ));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// `tctl apps ls` / `tctl db ls` as text (Teleport's columns, without
/// Version, which heartbeats do not carry).
pub fn text(kind: ServerKind, list: &[ServerEntry]) -> String {
    match kind {
        ServerKind::App => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .filter_map(|e| {
                    let app = e.app.as_ref()?;
                    Some(vec![
                        cell(&e.hostname).to_string(),
                        cell(&app.metadata.name).to_string(),
                        cell(&app.spec.public_addr).to_string(),
                        cell(&app.spec.uri).to_string(),
                        cell(&labels_text(&app.all_labels())).to_string(),
                    ])
                })
                .collect();
            table(&["Host", "Name", "Public Address", "URI", "Labels"], &rows)
        }
        ServerKind::Db => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .filter_map(|e| {
                    let db = e.db.as_ref()?;
                    Some(vec![
                        cell(&e.hostname).to_string(),
                        cell(&db.metadata.name).to_string(),
                        cell(&db.spec.protocol).to_string(),
                        cell(&db.spec.uri).to_string(),
                        cell(&labels_text(&db.all_labels())).to_string(),
                    ])
                })
                .collect();
            table(&["Host", "Name", "Protocol", "URI", "Labels"], &rows)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let t = table(
            &["Host", "Name"],
            &[
                vec!["a-long-host".into(), "x".into()],
                vec!["b".into(), "y".into()],
            ],
        );
        assert_eq!(
            t,
            "Host        Name\n----        ----\na-long-host x\nb           y\n"
        );
    }

    #[test]
    fn get_kinds() {
        assert_eq!(
            ServerKind::from_get_kind("app_server"),
            Some(ServerKind::App)
        );
        assert_eq!(
            ServerKind::from_get_kind("DB_SERVERS"),
            Some(ServerKind::Db)
        );
        assert_eq!(ServerKind::from_get_kind("app"), None);
    }
}
