//! tsh's listings as a Teleport user expects them, through the binaries:
//! `tsh apps ls` and `tsh db ls` with Teleport's columns, Teleport's and the
//! cloud's labels only with `-v`, a table that fits `COLUMNS`, label
//! selectors, `--search` and `--query`; `--format text|json|yaml` on every
//! listing (`tsh status` included) with the same fields in JSON and YAML;
//! and `tsh login --ttl` saying when the cluster capped it.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

/// An agent serving the Azure CLI app, a web app and three databases: one
/// as discovery registers an Azure cache (cloud-detail and `teleport.dev/`
/// labels), two with labels of one's own.
const SERVICES: &str = r#"app_service:
  enabled: yes
  apps:
  - name: azure-cli
    cloud: Azure
    labels:
      env: dev
  - name: grafana
    description: Dashboards
    uri: "http://localhost:3000"
    labels:
      env: prod
      team: metrics
db_service:
  enabled: yes
  databases:
  - name: my-azure-redis
    description: Azure Redis server in East US
    protocol: redis
    uri: my-azure-redis.redis.cache.windows.net:6380
    static_labels:
      env: dev
      team: payments
      region: eastus
      resource-group: my-resource-group
      subscription-id: 00000000-0000-0000-0000-000000000000
      engine: Microsoft.Cache/Redis
      engine-version: "6.0"
      teleport.dev/origin: cloud
  - name: web-cache
    description: Sessions of the web tier
    protocol: redis
    uri: web-cache.redis.cache.windows.net:6380
    static_labels:
      env: dev
      team: web
  - name: prod-redis
    protocol: redis
    uri: prod.redis.cache.windows.net:6380
    static_labels:
      env: prod
      team: payments
"#;

/// A cluster with the agent above joined and alice (every database user)
/// logged in once both listings show everything.
struct Cluster {
    _tmp: tempfile::TempDir,
    _node: Node,
    agent: Agent,
    home: std::path::PathBuf,
}

fn cluster() -> Cluster {
    let (tmp, node) = sqlite_node("listings.example").unwrap();
    let agent = start_token_agent(&node, tmp.path(), "app,db", "listings-agent", SERVICES).unwrap();
    add_user_with(&node, "alice", "access", ALL_DATABASE_USERS, PASSWORD).unwrap();
    let home = tmp.path().join("alice");
    ok(tsh_login(&node, &home, "alice", PASSWORD).unwrap()).unwrap();
    let c = Cluster {
        _tmp: tmp,
        _node: node,
        agent,
        home,
    };
    poll(
        Duration::from_secs(60),
        "the agent's apps and databases",
        || {
            let apps = c.tsh(&["apps", "ls"]).ok()?;
            let dbs = c.tsh(&["db", "ls"]).ok()?;
            (apps.contains("grafana") && apps.contains("azure-cli") && dbs.contains("prod-redis"))
                .then_some(())
        },
    )
    .map_err(|e| format!("{e}\nagent log:\n{}", c.agent.log()))
    .unwrap();
    c
}

impl Cluster {
    /// `tsh args` as alice with no `COLUMNS` (standard output is a pipe:
    /// no width limit); its stdout.
    fn tsh(&self, args: &[&str]) -> Result<String> {
        ok(self.run(args, None)?)
    }

    /// `tsh args` as alice, which must fail; its stderr.
    fn refused(&self, args: &[&str]) -> String {
        fails(self.run(args, None).unwrap()).unwrap()
    }

    /// `tsh args` as alice, with `COLUMNS=columns` when given.
    fn run(&self, args: &[&str], columns: Option<usize>) -> Result<std::process::Output> {
        let mut cmd = Command::new(bin("tsh")?);
        cmd.env("TELEPORT_HOME", &self.home)
            .env_remove("COLUMNS")
            .args(args);
        if let Some(c) = columns {
            cmd.env("COLUMNS", c.to_string());
        }
        output(cmd, None)
    }
}

/// `line` with its runs of spaces collapsed to one.
fn collapsed(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The row of `name` in a table (the line starting with it), collapsed.
fn row(table: &str, name: &str) -> String {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(collapsed)
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

/// The first column of each data row (after the header and the rule), sorted.
fn names(table: &str) -> Vec<String> {
    let mut names: Vec<String> = table
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn tables_as_teleport_prints_them() {
    let c = cluster();

    let apps = c.tsh(&["apps", "ls"]).unwrap();
    let mut lines = apps.lines();
    assert_eq!(
        collapsed(lines.next().unwrap()),
        "Application Description Type Public Address Labels",
        "{apps}"
    );
    assert!(
        lines.next().unwrap().starts_with("----------- -----------"),
        "{apps}"
    );
    // The Azure CLI app is a web app to Teleport: HTTP, not Cloud.
    assert!(row(&apps, "azure-cli").contains(" HTTP "), "{apps}");
    assert!(row(&apps, "azure-cli").ends_with(" env=dev"), "{apps}");
    assert!(!apps.contains("Cloud"), "{apps}");
    assert!(
        row(&apps, "grafana").starts_with("grafana Dashboards HTTP "),
        "{apps}"
    );
    assert!(
        row(&apps, "grafana").ends_with(" env=prod,team=metrics"),
        "{apps}"
    );

    let dbs = c.tsh(&["db", "ls"]).unwrap();
    assert_eq!(
        collapsed(dbs.lines().next().unwrap()),
        "Name Description Allowed Users Labels Connect",
        "{dbs}"
    );
    // Without -v: no teleport.dev/ label, no cloud details.
    assert_eq!(
        row(&dbs, "my-azure-redis"),
        "my-azure-redis Azure Redis server in East US [*] env=dev,team=payments",
        "{dbs}"
    );
    for hidden in [
        "teleport.dev/origin",
        "region=",
        "resource-group",
        "subscription-id",
        "engine",
    ] {
        assert!(!dbs.contains(hidden), "{hidden} shown without -v:\n{dbs}");
    }
    // With -v: every label.
    let verbose = c.tsh(&["db", "ls", "-v"]).unwrap();
    let cache = row(&verbose, "my-azure-redis");
    for shown in [
        "teleport.dev/origin=cloud",
        "region=eastus",
        "resource-group=my-resource-group",
        "subscription-id=00000000-0000-0000-0000-000000000000",
        "engine-version=6.0",
    ] {
        assert!(cache.contains(shown), "{shown} missing with -v:\n{verbose}");
    }

    // COLUMNS narrower than the table: the Labels column is cut with ...
    // so that no line is wider; the rows stay.
    for listing in [&["apps", "ls"][..], &["db", "ls"]] {
        let full = c.tsh(listing).unwrap();
        let width = widest(&full) - 5;
        let out = ok(c.run(listing, Some(width)).unwrap()).unwrap();
        assert!(
            out.lines().all(|l| l.chars().count() <= width),
            "COLUMNS={width}\n{out}"
        );
        assert!(out.contains("..."), "{out}");
        assert_eq!(names(&out), names(&full));
        // Wide enough: nothing cut.
        let wide = ok(c.run(listing, Some(widest(&full))).unwrap()).unwrap();
        assert_eq!(wide, full);
    }
    // -v never cuts.
    let out = ok(c.run(&["db", "ls", "-v"], Some(80)).unwrap()).unwrap();
    assert_eq!(out, verbose);
    assert!(widest(&out) > 80, "{out}");
}

#[test]
fn every_listing_in_every_format() {
    let c = cluster();

    for listing in [&["apps", "ls"][..], &["db", "ls"], &["status"]] {
        // Other values are refused with the valid ones listed.
        let mut args = listing.to_vec();
        args.push("--format=bogus");
        let err = c.refused(&args);
        assert!(
            err.contains("bogus") && err.contains("text, json, yaml"),
            "{err}"
        );

        let mut json_args = listing.to_vec();
        json_args.extend(["--format", "json"]);
        let json = c.tsh(&json_args).unwrap();
        let mut yaml_args = listing.to_vec();
        yaml_args.extend(["-f", "yaml"]);
        let yaml = c.tsh(&yaml_args).unwrap();
        let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let from_yaml: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        // The same document, the same fields in the same order.
        assert_eq!(from_json, from_yaml, "{listing:?}\n{json}\n{yaml}");
        let keys = |text: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| {
                    let l = l.trim_start().trim_start_matches("- ");
                    let (k, _) = l.split_once(':')?;
                    let k = k.trim().trim_matches(['"', '\'']);
                    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
                })
                .collect()
        };
        assert_eq!(keys(&json), keys(&yaml), "{json}\n{yaml}");
        // No storage leftovers.
        for text in [&json, &yaml] {
            assert!(!text.contains("null"), "{listing:?}: {text}");
            assert!(!text.contains("revision"), "{listing:?}: {text}");
        }
        // And -f text is the table (or the profile).
        let mut text_args = listing.to_vec();
        text_args.extend(["-f", "text"]);
        let text = c.tsh(&text_args).unwrap();
        assert_eq!(text, c.tsh(listing).unwrap());
    }

    // The guide's scripts: tsh status -f json | jq .active.roles; yaml alike.
    let status: serde_json::Value =
        serde_yaml_ng::from_str(&c.tsh(&["status", "-f", "yaml"]).unwrap()).unwrap();
    assert_eq!(status["active"]["username"], "alice");
    assert_eq!(status["active"]["cluster"], "listings.example");
    assert!(status["active"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "access"));

    // The listings carry the resources: names, descriptions, labels.
    let dbs: serde_json::Value =
        serde_json::from_str(&c.tsh(&["db", "ls", "-f", "json"]).unwrap()).unwrap();
    let cache = dbs
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metadata"]["name"] == "my-azure-redis")
        .unwrap();
    assert_eq!(cache["kind"], "db");
    assert_eq!(
        cache["metadata"]["description"],
        "Azure Redis server in East US"
    );
    assert_eq!(cache["metadata"]["labels"]["teleport.dev/origin"], "cloud");
    let apps: serde_json::Value =
        serde_yaml_ng::from_str(&c.tsh(&["apps", "ls", "-f", "yaml"]).unwrap()).unwrap();
    assert!(apps
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["metadata"]["name"] == "azure-cli" && a["spec"]["cloud"] == "Azure"));
}

#[test]
fn selectors_search_and_query_filter_both_listings() {
    let c = cluster();
    // The names `tsh KIND ls args...` lists.
    let listed = |kind: &str, args: &[&str]| -> Vec<String> {
        let mut all = vec![kind, "ls"];
        all.extend_from_slice(args);
        names(&c.tsh(&all).unwrap())
    };
    let dbs = |args: &[&str]| listed("db", args);
    let apps = |args: &[&str]| listed("apps", args);
    assert_eq!(dbs(&[]), ["my-azure-redis", "prod-redis", "web-cache"]);
    // Label selectors: all must match.
    assert_eq!(dbs(&["env=dev"]), ["my-azure-redis", "web-cache"]);
    assert_eq!(dbs(&["env=dev,team=payments"]), ["my-azure-redis"]);
    assert_eq!(dbs(&["env=dev,team=nobody"]), Vec::<String>::new());
    assert_eq!(apps(&["env=prod"]), ["grafana"]);
    // --search: every keyword, any case, in name, description or labels.
    assert_eq!(dbs(&["--search", "EAST"]), ["my-azure-redis"]);
    assert_eq!(dbs(&["--search", "payments,prod"]), ["prod-redis"]);
    assert_eq!(
        dbs(&["--search", "payments,nothing-like-it"]),
        Vec::<String>::new()
    );
    assert_eq!(apps(&["--search", "dashboards"]), ["grafana"]);
    // --query: Teleport's predicates.
    assert_eq!(
        dbs(&["--query", r#"labels["env"] == "dev""#]),
        ["my-azure-redis", "web-cache"]
    );
    assert_eq!(
        dbs(&[
            "--query",
            r#"labels.team == "payments" && !(labels.env == "prod")"#
        ]),
        ["my-azure-redis"]
    );
    assert_eq!(
        dbs(&[
            "--query",
            r#"hasPrefix(name, "web") || name == "prod-redis""#
        ]),
        ["prod-redis", "web-cache"]
    );
    assert_eq!(
        dbs(&["--query", r#"exists(labels["teleport.dev/origin"])"#]),
        ["my-azure-redis"]
    );
    assert_eq!(apps(&["--query", r#"labels.env != "prod""#]), ["azure-cli"]);
    // All three together, and in the JSON too.
    let json: serde_json::Value = serde_json::from_str(
        &c.tsh(&[
            "db",
            "ls",
            "env=dev",
            "--search",
            "web",
            "--query",
            r#"hasPrefix(name, "web")"#,
            "-f",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["metadata"]["name"], "web-cache");

    // Mistakes say what is supported.
    let err = c.refused(&["db", "ls", "--query", r#"contains(name, "x")"#]);
    assert!(
        err.contains("unknown function \"contains\"") && err.contains("hasPrefix"),
        "{err}"
    );
    let err = c.refused(&["db", "ls", "--query", r#"kind == "db""#]);
    assert!(
        err.contains("unknown field \"kind\"") && err.contains("labels.KEY"),
        "{err}"
    );
    let err = c.refused(&["db", "ls", "--query", "labels.env = \"dev\""]);
    assert!(err.contains("=="), "{err}");
    let err = c.refused(&["apps", "ls", "env"]);
    assert!(err.contains("key=value"), "{err}");
    let hostile = format!("{}\u{1b}[2J", "(".repeat(10_000));
    let err = c.refused(&["db", "ls", "--query", &hostile]);
    assert!(err.starts_with("ERROR: invalid --query"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn a_ttl_capped_by_the_cluster_says_so() {
    let (tmp, node) = sqlite_node("ttl.example").unwrap();
    ok(create_from(
        &node,
        &tmp.path().join("short.yaml"),
        "kind: role\nversion: v7\nmetadata:\n  name: short\nspec:\n  options:\n    max_session_ttl: 1h\n  allow:\n    app_labels:\n      '*': '*'\n",
    )
    .unwrap())
    .unwrap();
    add_user(&node, "bob", "short", PASSWORD).unwrap();
    let home = tmp.path().join("bob");
    let login = |ttl: &str| {
        let proxy = format!("--proxy={}", node.web_addr);
        let ttl = format!("--ttl={ttl}");
        tsh(
            &home,
            &["login", &proxy, "--user=bob", "--insecure", &ttl],
            Some(&format!("{PASSWORD}\n")),
        )
        .unwrap()
    };
    let out = login("3h");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Requested TTL of 3h0m0s was capped to 1h0m0s by the cluster's max_session_ttl"
        ),
        "{err}"
    );
    // Within the cap: nothing to say.
    let out = login("30m");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("capped"),
        "{out:?}"
    );
}
