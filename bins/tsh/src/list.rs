//! The listings: `tsh status`, `tsh apps ls`, `tsh db ls`.

use std::time::Duration;

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::{anyhow, Result};
use client::format::{self, Format};
use client::{Credentials, Profile};
use time::OffsetDateTime;

use crate::{api_client, load_active, login_command, Cli};

/// The flags every `ls` of tsh takes: filters, verbosity and format.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct LsArgs {
    /// Label selectors, `key=value[,key=value...]`: all must match.
    #[arg(value_name = "LABELS")]
    labels: Option<String>,
    /// Keywords, comma-separated: each must appear (case-insensitively) in
    /// the name, description or a label key or value.
    #[arg(long)]
    search: Option<String>,
    /// A predicate, as in Teleport: `labels["env"] == "dev" && hasPrefix(name, "web")`.
    #[arg(long)]
    query: Option<String>,
    /// Show every label (teleport.dev/* and the cloud details discovery adds)
    /// and never cut the table to the terminal's width.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// What `LsArgs`' filters keep: all of them must match.
struct Filter {
    labels: Vec<(String, String)>,
    search: Vec<String>,
    query: Option<client::query::Expr>,
}

impl Filter {
    fn new(args: &LsArgs) -> Result<Filter> {
        let labels = match &args.labels {
            None => Vec::new(),
            Some(text) => parse_selectors(text)?,
        };
        let search = args
            .search
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let query = args
            .query
            .as_deref()
            .map(client::query::Expr::parse)
            .transpose()?;
        Ok(Filter {
            labels,
            search,
            query,
        })
    }

    fn keeps(&self, name: &str, description: &str, labels: &BTreeMap<String, String>) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
            && client::query::matches_search(&self.search, name, description, labels)
            && self.query.as_ref().is_none_or(|q| {
                q.eval(&client::query::Resource {
                    name,
                    description,
                    labels,
                })
            })
    }
}

/// `env=dev,team=x` as pairs; a selector without `=` or with an empty key
/// is refused with the expected form.
fn parse_selectors(text: &str) -> Result<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(anyhow!(
                "invalid label selector {:?}: give key=value pairs separated by commas (env=dev,team=x)",
                client::term::cell(s)
            )),
        })
        .collect()
}

/// Label keys discovery adds to a cloud database (origin `cloud`): shown with `-v` only.
const CLOUD_DETAIL_LABELS: [&str; 5] = [
    "region",
    "resource-group",
    "subscription-id",
    "engine",
    "engine-version",
];

/// The Labels cell: `k=v` joined by commas, in key order. Without
/// `verbose`, Teleport's own labels (`teleport.dev/...`,
/// `teleport.internal/...`) and, on a resource discovered in the cloud, the
/// details discovery adds (region, resource group, ...) are left out.
fn labels_cell(labels: &BTreeMap<String, String>, verbose: bool) -> String {
    let from_cloud = labels
        .get("teleport.dev/origin")
        .is_some_and(|o| o == "cloud");
    labels
        .iter()
        .filter(|(k, _)| {
            verbose
                || !(k.starts_with("teleport.dev/")
                    || k.starts_with("teleport.internal/")
                    || (from_cloud && CLOUD_DETAIL_LABELS.contains(&k.as_str())))
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The width a table must fit: `COLUMNS` when set to a number, else, when
/// standard output is a terminal, its width (`stty size` on it, 80 when that
/// fails); `None` (no limit) for a pipe or file.
fn table_width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS").ok().as_deref().and_then(positive) {
        return Some(cols);
    }
    std::io::stdout()
        .is_terminal()
        .then(|| terminal_columns().unwrap_or(80))
}

fn positive(text: &str) -> Option<usize> {
    text.trim().parse::<usize>().ok().filter(|c| *c > 0)
}

/// The terminal's columns from `stty size` ("ROWS COLS") run on /dev/tty.
fn terminal_columns() -> Option<usize> {
    let tty = std::fs::File::open("/dev/tty").ok()?;
    let out = std::process::Command::new("stty")
        .arg("size")
        .stdin(tty)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status
        .success()
        .then(|| text.split_whitespace().nth(1).and_then(positive))
        .flatten()
}

/// Rows as Teleport's tables: a header, a dashed rule, columns padded.
/// Names, descriptions and labels come from agents and Azure tags: every cell
/// is shown with its control characters escaped ([`client::term::cell`]).
/// With `fit = Some((column, width))`, that column is cut with `...` so that
/// no line is longer than `width` (when the other columns leave room).
fn table(headers: &[&str], rows: &[Vec<String>], fit: Option<(usize, usize)>) -> String {
    let mut rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| client::term::cell(c).into_owned())
                .collect()
        })
        .collect();
    let count = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| count(h)).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(count(c));
            }
        }
    }
    if let Some((col, width)) = fit {
        // Room left for `col`: the width less the other columns and one
        // space between each two; at least the header and `...`.
        let others: usize = widths
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != col)
            .map(|(_, w)| w + 1)
            .sum();
        let header = headers.get(col).map_or(0, |h| count(h));
        let room = width.saturating_sub(others).max(header).max(3);
        if widths.get(col).is_some_and(|w| *w > room) {
            for r in &mut rows {
                if let Some(c) = r.get_mut(col) {
                    if count(c) > room {
                        *c = c.chars().take(room - 3).chain("...".chars()).collect();
                    }
                }
            }
            widths[col] = room;
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        out.push_str(parts.join(" ").trim_end());
        out.push('\n');
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in &rows {
        line(r);
    }
    out
}

/// Prints a listing's table, its Labels column (`labels`) cut to the
/// terminal's width unless `verbose`.
fn print_table(headers: &[&str], rows: &[Vec<String>], labels: usize, verbose: bool) {
    let fit = if verbose {
        None
    } else {
        table_width().map(|w| (labels, w))
    };
    print!("{}", table(headers, rows, fit));
}

/// Prints `items` as JSON or YAML (`Some`), or returns `false` for text.
fn print_structured<T: serde::Serialize>(items: &T, format: Format) -> Result<bool> {
    match format::document(items, format)? {
        Some(doc) => {
            print!("{doc}");
            Ok(true)
        }
        None => Ok(false),
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

pub(crate) fn status(cli: &Cli, format: Format) -> Result<()> {
    let (profile, creds) = match load_active(cli) {
        Ok(x) => x,
        Err(e) => {
            if format != Format::Text && e.to_string() == "Not logged in." {
                let empty: [(); 0] = [];
                print_structured(&serde_json::json!({"profiles": empty}), format)?;
            }
            return Err(e);
        }
    };
    let id = client::identity_of(&creds)?;
    let doc = serde_json::json!({
        "active": profile_json(&profile, &creds)?,
        "profiles": [],
    });
    if !print_structured(&doc, format)? {
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

/// What the filters look at in a listed resource.
trait Listed {
    fn metadata(&self) -> &resources::Metadata;
    fn all_labels(&self) -> BTreeMap<String, String>;
}

impl Listed for resources::App {
    fn metadata(&self) -> &resources::Metadata {
        &self.metadata
    }
    fn all_labels(&self) -> BTreeMap<String, String> {
        resources::App::all_labels(self)
    }
}

impl Listed for resources::Database {
    fn metadata(&self) -> &resources::Metadata {
        &self.metadata
    }
    fn all_labels(&self) -> BTreeMap<String, String> {
        resources::Database::all_labels(self)
    }
}

/// The resources at `path` that `args`' filters keep (the filters are
/// checked before anything is asked of the cluster); `None` when they were
/// printed as JSON or YAML, leaving the table to the caller.
async fn fetch<T>(cli: &Cli, path: &str, args: &LsArgs) -> Result<Option<Vec<T>>>
where
    T: Listed + serde::Serialize + serde::de::DeserializeOwned,
{
    let filter = Filter::new(args)?;
    let api = api_client(cli)?;
    let all: Vec<T> = api.get(path).await?;
    let kept: Vec<T> = all
        .into_iter()
        .filter(|r| {
            let m = r.metadata();
            filter.keeps(&m.name, &m.description, &r.all_labels())
        })
        .collect();
    Ok((!print_structured(&kept, args.format)?).then_some(kept))
}

/// `tsh apps ls`: Teleport's columns; Type is the protocol (`HTTP`, or
/// `TCP` for a `tcp://` app), the Azure CLI app included.
pub(crate) async fn apps_ls(cli: &Cli, args: &LsArgs) -> Result<()> {
    let Some(apps) = fetch::<resources::App>(cli, "/v1/auth/apps", args).await? else {
        return Ok(());
    };
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|app| {
            let kind = if app.spec.uri.starts_with("tcp://") {
                "TCP"
            } else {
                "HTTP"
            };
            vec![
                app.metadata.name.clone(),
                app.metadata.description.clone(),
                kind.to_string(),
                app.spec.public_addr.clone(),
                labels_cell(&app.all_labels(), args.verbose),
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
        4,
        args.verbose,
    );
    Ok(())
}

/// `tsh db ls`: Teleport's columns; Connect names the command for the
/// databases one is logged in to.
pub(crate) async fn db_ls(cli: &Cli, args: &LsArgs) -> Result<()> {
    let Some(dbs) = fetch::<resources::Database>(cli, "/v1/auth/dbs", args).await? else {
        return Ok(());
    };
    let (profile, creds) = load_active(cli)?;
    let id = client::identity_of(&creds)?;
    let users = format!("[{}]", id.db_users.join(" "));
    let active = if cli.identity.is_some() {
        Vec::new()
    } else {
        client::ProfileStore::from_env()
            .map(|s| s.db_sessions(&profile))
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = dbs
        .iter()
        .map(|db| {
            let name = &db.metadata.name;
            let connect = if active.contains(name) {
                format!("tsh db connect {name}")
            } else {
                String::new()
            };
            vec![
                name.clone(),
                db.metadata.description.clone(),
                users.clone(),
                labels_cell(&db.all_labels(), args.verbose),
                connect,
            ]
        })
        .collect();
    print_table(
        &["Name", "Description", "Allowed Users", "Labels", "Connect"],
        &rows,
        3,
        args.verbose,
    );
    Ok(())
}

/// A duration as Go prints it (`1h30m0s`, `5m0s`, `45s`), as Teleport's
/// messages show them.
fn go_short(secs: u64) -> String {
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// After `tsh login --ttl=requested`: the line saying the cluster gave a
/// shorter certificate than asked (its roles' `max_session_ttl`), or `None`
/// when it did not (a minute's slack for the time the login took).
pub(crate) fn capped_ttl_note(requested: Duration, creds: &Credentials) -> Option<String> {
    if requested.is_zero() {
        return None;
    }
    let expires = client::identity_of(creds).ok()?.expires;
    let left = (expires - OffsetDateTime::now_utc()).whole_seconds().max(0);
    let left = u64::try_from(left).ok()?;
    if left + 60 >= requested.as_secs() {
        return None;
    }
    // The certificate was issued a moment ago: round to the minute it was.
    let granted = left.div_ceil(60) * 60;
    Some(format!(
        "Requested TTL of {} was capped to {} by the cluster's max_session_ttl",
        go_short(requested.as_secs()),
        go_short(granted)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A label map from pairs (for query's tests too).
    pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn teleport_and_cloud_labels_only_when_verbose() {
        let cloud = labels(&[
            ("env", "dev"),
            ("region", "eastus"),
            ("resource-group", "rg"),
            ("subscription-id", "sub"),
            ("engine", "Microsoft.Cache/Redis"),
            ("engine-version", "6.0"),
            ("teleport.dev/origin", "cloud"),
        ]);
        assert_eq!(labels_cell(&cloud, false), "env=dev");
        assert!(labels_cell(&cloud, true).contains("teleport.dev/origin=cloud"));
        assert!(labels_cell(&cloud, true).contains("region=eastus"));
        // A region label one wrote oneself stays.
        let own = labels(&[("region", "eu"), ("teleport.dev/origin", "config-file")]);
        assert_eq!(labels_cell(&own, false), "region=eu");
    }

    #[test]
    fn the_labels_column_is_cut_to_the_width() {
        let rows = vec![
            vec![
                "db".to_string(),
                "a=1,b=2,c=3,d=4,e=5,f=6".to_string(),
                "x".into(),
            ],
            vec!["longer-name".to_string(), "k=v".to_string(), String::new()],
        ];
        let t = table(&["Name", "Labels", "Connect"], &rows, Some((1, 30)));
        for l in t.lines() {
            assert!(l.chars().count() <= 30, "{l:?}\n{t}");
        }
        assert!(t.contains("db          a=1,b=2... x\n"), "{t}");
        assert!(t.contains("k=v"), "{t}");
        // Without a width, nothing is cut.
        let t = table(&["Name", "Labels", "Connect"], &rows, None);
        assert!(t.contains("a=1,b=2,c=3,d=4,e=5,f=6 x"), "{t}");
        // Hostile cells are escaped before they are measured.
        let rows = vec![vec!["\u{1b}[2J".to_string(), "a".repeat(50), String::new()]];
        let t = table(&["Name", "Labels", "Connect"], &rows, Some((1, 30)));
        assert!(
            !t.contains('\u{1b}') && t.lines().all(|l| l.chars().count() <= 30),
            "{t}"
        );
    }

    #[test]
    fn selectors_search_and_query_all_filter() {
        let l = labels(&[("env", "dev"), ("team", "x")]);
        let args = |labels: Option<&str>, search: Option<&str>, query: Option<&str>| LsArgs {
            labels: labels.map(str::to_string),
            search: search.map(str::to_string),
            query: query.map(str::to_string),
            verbose: false,
            format: Format::Text,
        };
        let keeps = |a: LsArgs| Filter::new(&a).unwrap().keeps("web-1", "East US cache", &l);
        assert!(keeps(args(Some("env=dev,team=x"), None, None)));
        assert!(!keeps(args(Some("env=dev,team=y"), None, None)));
        assert!(keeps(args(None, Some("EAST,team"), None)));
        assert!(!keeps(args(None, Some("east,west"), None)));
        assert!(keeps(args(None, None, Some(r#"hasPrefix(name, "web")"#))));
        assert!(!keeps(args(
            Some("env=dev"),
            None,
            Some(r#"name == "other""#)
        )));
        for bad in ["env", "=dev", "env=dev,,=x"] {
            let e = Filter::new(&args(Some(bad), None, None)).err().unwrap();
            assert!(e.to_string().contains("key=value"), "{e}");
        }
    }

    /// Generated from clap's command tree: every listing (`... ls`,
    /// `status`, `clusters`) takes `--format` with exactly text, json and yaml.
    #[test]
    fn every_listing_takes_text_json_yaml() {
        use clap::CommandFactory;
        let mut checked = Vec::new();
        for (path, cmd) in client::format::leaf_commands(&crate::Cli::command()) {
            if path.ends_with(" ls") || ["ls", "status", "clusters"].contains(&path.as_str()) {
                let values = client::format::format_values(&cmd);
                assert_eq!(
                    values.as_deref(),
                    Some(&["text", "json", "yaml"].map(String::from)[..]),
                    "{path}"
                );
                checked.push(path);
            }
        }
        for listing in ["apps ls", "db ls", "status"] {
            assert!(
                checked.iter().any(|p| p == listing),
                "{listing} not found: {checked:?}"
            );
        }
    }

    #[test]
    fn a_capped_ttl_is_named_as_go_prints_durations() {
        assert_eq!(go_short(3 * 3600), "3h0m0s");
        assert_eq!(go_short(90 * 60), "1h30m0s");
        assert_eq!(go_short(300), "5m0s");
        assert_eq!(go_short(45), "45s");
    }
}
