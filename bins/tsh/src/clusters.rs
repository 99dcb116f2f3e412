//! `tsh clusters`: the clusters of the current login, as Teleport lists them.
//! This build has no trusted (leaf) clusters, so the list is the root
//! cluster the profile is logged into, `online` when its proxy answers with
//! the session's certificate, and selected.

use std::collections::BTreeMap;

use anyhow::Result;
use client::format::Format;
use serde::Serialize;

use crate::{api_client, load_active, Cli};

/// One row of `tsh clusters`, with Teleport's JSON/YAML field names.
#[derive(Debug, Serialize)]
pub struct ClusterInfo {
    /// Cluster name.
    pub cluster_name: String,
    /// `online` when reachable.
    pub status: String,
    /// `root` (or `leaf` for trusted clusters, which this build lacks).
    pub cluster_type: String,
    /// The cluster's labels (a root cluster has none).
    pub labels: BTreeMap<String, String>,
    /// Whether the profile is logged into it.
    pub selected: bool,
}

/// `tsh clusters [--format F]`.
pub async fn run(cli: &Cli, format: Format) -> Result<()> {
    // The proxy, reached with the session's certificate (an expired session
    // is refused with how to log in again), names the root cluster.
    let api = api_client(cli)?;
    let ping = api.ping().await?;
    let (profile, _) = load_active(cli)?;
    let root = ClusterInfo {
        selected: ping.cluster_name == profile.cluster,
        cluster_name: ping.cluster_name,
        status: "online".into(),
        cluster_type: "root".into(),
        labels: BTreeMap::new(),
    };
    print!("{}", render(&[root], format)?);
    Ok(())
}

/// The clusters as a table, or a JSON/YAML list.
pub fn render(clusters: &[ClusterInfo], format: Format) -> Result<String> {
    if let Some(doc) = client::format::document(&clusters, format)? {
        return Ok(doc);
    }
    let header = [
        "Cluster Name",
        "Status",
        "Cluster Type",
        "Labels",
        "Selected",
    ];
    let rows: Vec<[String; 5]> = clusters
        .iter()
        .map(|c| {
            let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            [
                client::term::cell(&c.cluster_name).into_owned(),
                c.status.clone(),
                c.cluster_type.clone(),
                client::term::cell(&labels.join(",")).into_owned(),
                if c.selected { "*" } else { "" }.to_string(),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" ").trim_end())
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    for r in rows {
        out.push_str(&line(r.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root() -> ClusterInfo {
        ClusterInfo {
            cluster_name: "example.com".into(),
            status: "online".into(),
            cluster_type: "root".into(),
            labels: BTreeMap::new(),
            selected: true,
        }
    }

    #[test]
    fn the_root_cluster_as_teleport_lists_it() {
        let text = render(&[root()], Format::Text).unwrap();
        assert_eq!(
            text,
            "Cluster Name Status Cluster Type Labels Selected\n\
             ------------ ------ ------------ ------ --------\n\
             example.com  online root                *\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&[root()], Format::Json).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "cluster_name": "example.com",
                "status": "online",
                "cluster_type": "root",
                "labels": {},
                "selected": true,
            }])
        );
        let yaml = render(&[root()], Format::Yaml).unwrap();
        assert!(yaml.starts_with("- cluster_name: example.com\n"), "{yaml}");
    }
}
