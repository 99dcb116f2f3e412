//! The `teleport` binary as a Teleport user drives it: the agent command
//! `tctl tokens add` prints, pasted as it is; flags over a config file;
//! `teleport db configure create` with labels and the proxy's CA pin;
//! `--version`; logs without colour codes off a terminal.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::*;

/// A `teleport` process with its stderr in `log`, killed on drop.
struct Teleport {
    child: Child,
    log: PathBuf,
}

impl Teleport {
    fn start(args: &[String], log: &Path) -> Teleport {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(bin("teleport").unwrap())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Teleport {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Teleport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags of the `> teleport start \` command in `tctl tokens add`'s
/// output, one per continuation line.
fn printed_start_flags(out: &str) -> Vec<String> {
    let mut lines = out.lines().skip_while(|l| *l != "> teleport start \\");
    assert!(lines.next().is_some(), "no teleport start command in {out}");
    lines
        .map(str::trim)
        .take_while(|l| l.starts_with("--"))
        .map(|l| l.trim_end_matches('\\').trim().to_string())
        .collect()
}

/// Polls `tctl ls_args` on `node` until its output holds `want`.
fn listed(node: &Node, ls_args: &[&str], want: &str, agent: &Teleport) -> String {
    poll(Duration::from_secs(60), want, || {
        let out = ok(node.tctl(ls_args).unwrap()).ok()?;
        out.contains(want).then_some(out)
    })
    .map_err(|e| format!("{e}\nagent log:\n{}", agent.log()))
    .unwrap()
}

fn assert_no_colour(log: &str) {
    assert!(!log.is_empty(), "the log is empty");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

#[test]
fn the_printed_agent_command_runs_without_a_config_file() {
    let (tmp, node) = sqlite_node("flags.example").unwrap();
    let out = ok(node
        .tctl(&["tokens", "add", "--type=app", "--ttl=1h"])
        .unwrap())
    .unwrap();
    let mut args = vec!["start".to_string()];
    let printed = printed_start_flags(&out);
    assert_eq!(printed.len(), 4, "{out}");
    assert!(printed[0] == "--roles=app", "{printed:?}");
    args.extend(printed);
    let data = tmp.path().join("agent-data");
    args.extend([
        "--app-name=grafana".to_string(),
        "--app-uri=http://localhost:3000".to_string(),
        "--labels=env=dev,team=x".to_string(),
        "--nodename=flag-agent".to_string(),
        format!("--data-dir={}", data.display()),
    ]);
    let agent = Teleport::start(&args, &tmp.path().join("agent.log"));
    let apps = listed(&node, &["apps", "ls"], "grafana", &agent);
    assert!(apps.contains("http://localhost:3000"), "{apps}");
    assert!(
        apps.contains("env=dev") && apps.contains("team=x"),
        "{apps}"
    );
    // The agent's state is in --data-dir; it trusted the cluster by the
    // printed pin (no --insecure), and its log, a file, has no colour codes.
    assert!(data.join("host_uuid").exists());
    let log = agent.log();
    assert!(!log.contains("no teleport.ca_pin configured"), "{log}");
    assert_no_colour(&log);

    // A wrong flag says what is wrong, before anything starts.
    let bad: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "--roles=app" => "--roles=app,kube".to_string(),
            _ => a.clone(),
        })
        .collect();
    let mut cmd = Command::new(bin("teleport").unwrap());
    cmd.args(&bad);
    let err = fails(output(cmd, None).unwrap()).unwrap();
    assert!(
        err.contains("the kube service is not available in this build"),
        "{err}"
    );
    // A missing flag is named as the flag.
    let no_token: Vec<String> = args
        .iter()
        .filter(|a| !a.starts_with("--token="))
        .map(|a| a.replace("agent-data", "other-data"))
        .collect();
    let mut cmd = Command::new(bin("teleport").unwrap());
    cmd.args(&no_token);
    let err = fails(output(cmd, None).unwrap()).unwrap();
    assert!(
        err.contains("(teleport start --token) must be set"),
        "{err}"
    );
}

#[test]
fn flags_override_the_file_and_logs_go_to_its_log_file() {
    let (tmp, node) = sqlite_node("override.example").unwrap();
    let token = join_token(&node, "app,node").unwrap();
    let pin = ca_pin(&node).unwrap();
    let log_file = tmp.path().join("teleport-agent.log");
    // Every value the flags give is wrong in the file: the agent can only
    // join if the flags win. db_service is on in the file and off by --roles
    // (the token does not allow Db).
    let config = tmp.path().join("teleport.yaml");
    std::fs::write(
        &config,
        format!(
            r#"version: v3
teleport:
  nodename: file-agent
  data_dir: "{data}"
  proxy_server: "127.0.0.1:1"
  ca_pin: "sha256:{zeros}"
  join_params:
    token_name: /nonexistent/token
    method: token
  log:
    output: "{log}"
    severity: DEBUG
app_service:
  enabled: yes
  apps:
  - name: from-file
    uri: "http://localhost:3001"
db_service:
  enabled: yes
"#,
            data = tmp.path().join("agent-data").display(),
            zeros = "0".repeat(64),
            log = log_file.display(),
        ),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "start".into(),
        "-c".into(),
        config.display().to_string(),
        "--roles=app,node".into(),
        format!("--token={}", token.trim()),
        format!("--ca-pin={pin}"),
        format!("--auth-server={}", node.web_addr),
    ];
    let agent = Teleport::start(&args, &tmp.path().join("stderr.log"));
    let apps = listed(&node, &["apps", "ls"], "from-file", &agent);
    assert!(apps.contains("http://localhost:3001"), "{apps}");
    // teleport.log.output: the log is in the file, without colour codes;
    // the node role is accepted with a word about SSH.
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains("the SSH service is not available in this build (role node, ssh_service)"),
        "{log}"
    );
    assert!(log.contains("joined the cluster"), "{log}");
    assert_no_colour(&log);
    assert!(
        !agent.log().contains("joined the cluster"),
        "{}",
        agent.log()
    );
}

/// `teleport db configure create args...` in `dir`.
fn db_configure(args: &[String]) -> std::process::Output {
    let mut cmd = Command::new(bin("teleport").unwrap());
    cmd.args(["db", "configure", "create"]).args(args);
    output(cmd, None).unwrap()
}

#[test]
fn db_configure_sets_labels_and_the_proxys_ca_pin() {
    let (tmp, node) = sqlite_node("dbconf.example").unwrap();
    let token = join_token(&node, "db").unwrap();
    let pin = ca_pin(&node).unwrap();
    let file = tmp.path().join("db.yaml");
    let flags = |proxy: &str, file: &Path| -> Vec<String> {
        vec![
            format!("--proxy={proxy}"),
            format!("--token={}", token.trim()),
            "--name=cache".into(),
            "--uri=cache.example.com:6380".into(),
            "--labels=env=dev,team=x".into(),
            "--node-name=db-agent".into(),
            format!("--data-dir={}", tmp.path().join("db-data").display()),
            format!("--output=file://{}", file.display()),
        ]
    };
    let out = db_configure(&flags(&node.web_addr, &file));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out).unwrap();
    // The proxy's certificate is self-signed: the pin is taken on first use,
    // and the user is told to compare it.
    assert!(
        stderr.contains(&pin) && stderr.contains("compare it with the CA pin `tctl status` prints"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("ca_pin: [\"{pin}\"]")), "{text}");

    // The file runs as it is (no --insecure): the database carries the labels.
    let args = vec!["start".into(), "-c".into(), file.display().to_string()];
    let agent = Teleport::start(&args, &tmp.path().join("db-agent.log"));
    listed(&node, &["db", "ls"], "cache", &agent);
    let json: serde_json::Value = serde_json::from_str(
        &ok(node
            .tctl(&["get", "db_server/cache", "--format=json"])
            .unwrap())
        .unwrap(),
    )
    .unwrap();
    let server = if json.is_array() { &json[0] } else { &json };
    let labels = &server["spec"]["database"]["metadata"]["labels"];
    assert_eq!(labels["env"], "dev", "{json}");
    assert_eq!(labels["team"], "x", "{json}");
    assert_no_colour(&agent.log());

    // An unreachable proxy: the file is written without a pin, and stderr says so.
    let closed = format!("127.0.0.1:{}", free_port());
    let unpinned = tmp.path().join("unpinned.yaml");
    let out = db_configure(&flags(&closed, &unpinned));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out).unwrap();
    assert!(
        stderr.contains("could not be reached") && stderr.contains("add --ca-pin"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&unpinned).unwrap();
    assert!(!text.contains("ca_pin"), "{text}");
    assert!(
        text.contains(&format!("proxy_server: \"{closed}\"")),
        "{text}"
    );

    // --labels label the database of --name; discovery filters by --azure-tags.
    let err = fails(db_configure(&[
        format!("--proxy={closed}"),
        "--azure-redis-discovery=eastus".into(),
        "--labels=env=dev".into(),
    ]))
    .unwrap();
    assert!(
        err.contains("--labels sets the static labels of the database given with --name"),
        "{err}"
    );
    let out = ok(db_configure(&[
        format!("--proxy={closed}"),
        format!("--ca-pin={pin}"),
        "--azure-redis-discovery=eastus".into(),
        "--azure-tags=env=dev".into(),
    ]))
    .unwrap();
    assert!(out.contains("tags:\n      \"env\": \"dev\"\n"), "{out}");
}

#[test]
fn db_configure_says_the_pin_came_over_a_trusted_certificate() {
    // The proxy's certificate is signed by a CA that SSL_CERT_FILE makes
    // this host trust.
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki::CertAuthority::generate("web-ca.example", pki::CaType::Host).unwrap();
    let (cert_pem, key_pem) = ca.issue_server_cert(&["127.0.0.1".into()]).unwrap();
    let (cert, key, roots) = (
        tmp.path().join("web.pem"),
        tmp.path().join("web.key"),
        tmp.path().join("roots.pem"),
    );
    for (path, text) in [(&cert, &cert_pem), (&key, &key_pem)] {
        std::fs::write(path, text).unwrap();
    }
    std::fs::write(&roots, ca.cert_pem()).unwrap();
    let node = Node::start_with_keypair(
        &tmp.path().join("node"),
        "trusted.example",
        &Storage::Sqlite,
        Some((&cert, &key)),
    )
    .unwrap();
    let pin = ca_pin(&node).unwrap();
    let mut cmd = Command::new(bin("teleport").unwrap());
    cmd.args([
        "db",
        "configure",
        "create",
        "--azure-redis-discovery=eastus",
    ])
    .arg(format!("--proxy={}", node.web_addr))
    .env("SSL_CERT_FILE", &roots);
    let out = output(cmd, None).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let text = ok(out).unwrap();
    assert!(text.contains(&format!("ca_pin: [\"{pin}\"]")), "{text}");
    assert!(
        stderr.contains(&format!(
            "The CA pin {pin} of the cluster behind {}",
            node.web_addr
        )) && !stderr.contains("compare it"),
        "{stderr}"
    );
}

#[test]
fn version_flag_prints_the_version_command_line() {
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bin("teleport").unwrap());
        cmd.args(args);
        ok(output(cmd, None).unwrap()).unwrap()
    };
    let version = run(&["version"]);
    assert!(version.starts_with("Teleport v"), "{version}");
    assert_eq!(run(&["--version"]), version);
}
