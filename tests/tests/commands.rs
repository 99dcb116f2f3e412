//! The commands a Teleport user reaches for, end to end through the binaries:
//! `--version`, shell completion scripts, Teleport's subcommands this build
//! lacks, `tsh env`, `tsh clusters`, `tsh apps config`, `--proxy` without a
//! port (443 first, then 3080), `tsh login` at the auth service's port, and
//! logs without colour codes when they go to a pipe.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::*;

const PASSWORD: &str = "correct horse battery staple";

fn tctl(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin("tctl").unwrap());
    cmd.env_remove("TELEPORT_CONFIG_FILE").args(args);
    output(cmd, None).unwrap()
}

#[test]
fn version_flags_print_the_version_line() {
    let home = tempfile::tempdir().unwrap();
    let line = ok(tsh(home.path(), &["version"], None).unwrap()).unwrap();
    assert!(line.starts_with("Teleport v"), "{line}");
    assert_eq!(
        ok(tsh(home.path(), &["--version"], None).unwrap()).unwrap(),
        line
    );
    // tctl's own line (built with the same sources, it says the same).
    let tctl_line = ok(tctl(&["version"])).unwrap();
    assert!(tctl_line.starts_with("Teleport v"), "{tctl_line}");
    assert_eq!(ok(tctl(&["--version"])).unwrap(), tctl_line);
    // After a subcommand the flag is not tsh's: `tsh az --version` is az's.
    let err = fails(tsh(home.path(), &["status", "--version"], None).unwrap()).unwrap();
    assert!(!err.contains("Teleport v"), "{err}");
}

#[test]
fn completion_scripts_cover_the_commands() {
    let home = tempfile::tempdir().unwrap();
    for (name, out, words) in [
        (
            "tsh",
            tsh(home.path(), &["--completion-script-bash"], None).unwrap(),
            &[
                "login", "status", "apps", "config", "env", "clusters", "proxy",
            ][..],
        ),
        (
            "tctl",
            tctl(&["--completion-script-bash"]),
            &["users", "tokens", "status", "create"][..],
        ),
    ] {
        let script = ok(out).unwrap();
        for w in words {
            assert!(script.contains(w), "{name}: {w} missing from the script");
        }
        let path = home.path().join(format!("{name}.bash"));
        std::fs::write(&path, &script).unwrap();
        let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            check.status.success(),
            "{name}'s bash script: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        // Sourced, it registers a completion function for the binary.
        let sourced = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {name}", path.display()))
            .output()
            .unwrap();
        let registered = String::from_utf8_lossy(&sourced.stdout);
        assert!(registered.contains(name), "{name}: {registered}");
    }
    let zsh = ok(tsh(home.path(), &["--completion-script-zsh"], None).unwrap()).unwrap();
    assert!(zsh.starts_with("#compdef tsh"), "{zsh}");
    let zsh = ok(tctl(&["--completion-script-zsh"])).unwrap();
    assert!(zsh.starts_with("#compdef tctl"), "{zsh}");
}

#[test]
fn teleport_subcommands_this_build_lacks_say_so_in_one_line() {
    let home = tempfile::tempdir().unwrap();
    let ssh = "not available in this build (the SSH service has not landed yet; see README)";
    for word in [
        "ls",
        "ssh",
        "scp",
        "kube",
        "request",
        "play",
        "recordings",
        "join",
        "mfa",
        "sessions",
        "puttyconfig",
        "headless",
        "fido2",
        "config",
    ] {
        let out = tsh(home.path(), &[word, "arg"], None).unwrap();
        assert_eq!(out.status.code(), Some(1), "tsh {word}");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.lines().count(), 1, "tsh {word}: {err}");
        assert!(
            err.contains(&format!("tsh {word}: not available in this build (")),
            "{err}"
        );
        assert!(err.trim_end().ends_with("see README)"), "{err}");
        assert!(!err.contains("unrecognized"), "{err}");
    }
    let err = fails(tsh(home.path(), &["-d", "ls"], None).unwrap()).unwrap();
    assert!(err.contains(ssh), "{err}");
    // Words Teleport does not have keep clap's error and exit code.
    let out = tsh(home.path(), &["lss"], None).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'lss'"));
}

/// A `teleport start` with auth and proxy on the addresses given, for the
/// proxy-discovery test: the harness' nodes listen on 127.0.0.1 with free
/// ports, and this one must take ports 443 and 3080.
struct NodeAt {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    web_addr: String,
}

impl NodeAt {
    /// Started on `ip:port`, with the user alice (role access).
    fn start(dir: &Path, cluster: &str, ip: &str, port: u16) -> NodeAt {
        let web_addr = &format!("{ip}:{port}");
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("teleport.yaml");
        std::fs::write(
            &config,
            format!(
                "version: v3\nteleport:\n  nodename: {cluster}\n  data_dir: {data}\n\
                 auth_service:\n  enabled: yes\n  cluster_name: {cluster}\n  \
                 listen_addr: 127.0.0.1:{auth}\n\
                 proxy_service:\n  enabled: yes\n  web_listen_addr: {web_addr}\n  \
                 public_addr: {web_addr}\nssh_service:\n  enabled: no\n",
                data = dir.join("data").display(),
                auth = free_port(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("teleport.log")).unwrap();
        let child = Command::new(bin("teleport").unwrap())
            .args(["start", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut node = NodeAt {
            child,
            dir: dir.to_path_buf(),
            config,
            web_addr: web_addr.to_string(),
        };
        let rt = runtime().unwrap();
        let admin = node.dir.join("data").join("admin-identity.pem");
        poll(Duration::from_secs(60), "the node to answer", || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("teleport exited with {status}:\n{}", node.log());
            }
            let up = rt.block_on(async {
                let c = client::ApiClient::new(&node.web_addr, None, true).ok()?;
                c.ping().await.ok()
            });
            (up.is_some() && admin.exists()).then_some(())
        })
        .map_err(|e| format!("{e}\n{}", node.log()))
        .unwrap();
        node.add_user("alice");
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("teleport.log")).unwrap_or_default()
    }

    fn add_user(&self, name: &str) {
        let mut cmd = Command::new(bin("tctl").unwrap());
        cmd.arg("-c")
            .arg(&self.config)
            .args(["users", "add", name, "--roles=access"]);
        let out = ok(output(cmd, None).unwrap()).unwrap();
        set_password(&self.web_addr, &invite_token(&out).unwrap(), PASSWORD).unwrap();
    }
}

impl Drop for NodeAt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address of this test's own (127.x.y.z), so ports 443 and 3080
/// on it are free whatever else runs on the machine.
fn own_loopback() -> String {
    let seed = std::process::id() ^ free_port() as u32;
    let addr = format!(
        "127.{}.{}.{}",
        (seed >> 16) % 200 + 20,
        (seed >> 8) % 250 + 1,
        seed % 250 + 1
    );
    for port in [443, 3080] {
        std::net::TcpListener::bind(format!("{addr}:{port}"))
            .unwrap_or_else(|e| panic!("{addr}:{port} cannot be bound ({e}): the test needs ports 443 and 3080 on a loopback address (run as root, as CI does)"));
    }
    addr
}

fn login(home: &Path, proxy: &str) -> std::process::Output {
    let proxy = format!("--proxy={proxy}");
    let args = ["login", proxy.as_str(), "--user=alice", "--insecure"];
    tsh(home, &args, Some(&format!("{PASSWORD}\n"))).unwrap()
}

/// `tsh clusters` in each format: the logged-in root cluster, selected.
fn assert_clusters(home: &Path, cluster: &str) {
    let text = ok(tsh(home, &["clusters"], None).unwrap()).unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["Cluster", "Name", "Status", "Cluster", "Type", "Labels", "Selected"],
        "{text}"
    );
    assert_eq!(lines[2], [cluster, "online", "root", "*"], "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    let want = serde_json::json!([{
        "cluster_name": cluster,
        "status": "online",
        "cluster_type": "root",
        "labels": {},
        "selected": true,
    }]);
    let json = ok(tsh(home, &["clusters", "--format", "json"], None).unwrap()).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        want
    );
    let yaml = ok(tsh(home, &["clusters", "-f", "yaml"], None).unwrap()).unwrap();
    assert_eq!(
        serde_yaml_ng::from_str::<serde_json::Value>(&yaml).unwrap(),
        want
    );
    let err = fails(tsh(home, &["clusters", "--format", "bogus"], None).unwrap()).unwrap();
    assert!(err.contains("text, json, yaml"), "{err}");
}

/// `tsh login --proxy=ip` (no port) as alice in `home`, which must find the
/// proxy on `port`; `home`.
fn logged_in(home: &Path, ip: &str, port: u16) -> PathBuf {
    ok(login(home, ip)).unwrap();
    assert_eq!(profile_addr(home), format!("{ip}:{port}"));
    home.to_path_buf()
}

fn profile_addr(home: &Path) -> String {
    client::ProfileStore::at(home)
        .current()
        .unwrap()
        .0
        .web_proxy_addr
}

/// `--proxy=host`: port 443 when it answers, else 3080; the profile keeps the
/// one that answered, and `tsh env` / `tsh clusters` show it.
#[test]
fn a_proxy_without_a_port_is_found_on_443_then_3080() {
    let tmp = tempfile::tempdir().unwrap();
    let ip = own_loopback();
    let _on_3080 = NodeAt::start(&tmp.path().join("n3080"), "fallback.example", &ip, 3080);

    // Nothing on 443: the proxy on 3080.
    let home = logged_in(&tmp.path().join("home1"), &ip, 3080);
    let env = ok(tsh(&home, &["env"], None).unwrap()).unwrap();
    assert_eq!(
        env,
        format!("export TELEPORT_PROXY={ip}:3080\nexport TELEPORT_CLUSTER=fallback.example\n")
    );
    assert_clusters(&home, "fallback.example");
    let unset = ok(tsh(&home, &["env", "--unset"], None).unwrap()).unwrap();
    assert_eq!(unset, "unset TELEPORT_PROXY\nunset TELEPORT_CLUSTER\n");
    // `eval $(tsh env)` sets both in the shell.
    let script = format!(
        "eval \"$({} env)\" && echo \"$TELEPORT_PROXY $TELEPORT_CLUSTER\"",
        bin("tsh").unwrap().display()
    );
    let mut cmd = Command::new("bash");
    cmd.env("TELEPORT_HOME", &home).args(["-c", &script]);
    let vars = ok(output(cmd, None).unwrap()).unwrap();
    assert_eq!(vars, format!("{ip}:3080 fallback.example\n"));

    // A proxy on 443 is preferred: the guides give the host alone.
    let on_443 = NodeAt::start(&tmp.path().join("n443"), "public.example", &ip, 443);
    let home = logged_in(&tmp.path().join("home2"), &ip, 443);
    // An identity file with `--proxy=host` finds the same proxy (on 3080 the
    // other cluster would refuse its certificate).
    let id = tmp.path().join("alice.pem");
    let mut sign = Command::new(bin("tctl").unwrap());
    sign.arg("-c")
        .arg(&on_443.config)
        .args(["auth", "sign", "--user=alice", "--ttl=1h", "--out"])
        .arg(&id);
    ok(output(sign, None).unwrap()).unwrap();
    let apps_ls = |proxy: &str| {
        let proxy = format!("--proxy={proxy}");
        let args = [
            "-i",
            id.to_str().unwrap(),
            &proxy,
            "--insecure",
            "apps",
            "ls",
        ];
        tsh(&tmp.path().join("nohome"), &args, None).unwrap()
    };
    ok(apps_ls(&ip)).unwrap();
    fails(apps_ls(&format!("{ip}:3080"))).unwrap();
    let env = ok(tsh(&home, &["env"], None).unwrap()).unwrap();
    assert!(
        env.contains("export TELEPORT_CLUSTER=public.example\n"),
        "{env}"
    );
    // Logging in again by host alone finds the same profile (and its --insecure).
    let relogin = tsh(
        &home,
        &["login", &format!("--proxy={ip}"), "--user=alice"],
        Some(&format!("{PASSWORD}\n")),
    )
    .unwrap();
    ok(relogin).unwrap();
    assert_eq!(profile_addr(&home), format!("{ip}:443"));

    // An explicit port is used as given.
    let home = tmp.path().join("home3");
    ok(login(&home, &format!("{ip}:3080"))).unwrap();
    assert_eq!(profile_addr(&home), format!("{ip}:3080"));
}

#[test]
fn login_at_the_auth_port_names_the_proxy() {
    let (tmp, node) = sqlite_node("authport.example").unwrap();
    add_user(&node, "alice", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    let want = format!(
        "{} is the auth service; tsh logs in through the proxy \
         (proxy_service.web_listen_addr, usually port 3080 or 443)",
        node.auth_addr
    );
    for extra in [&[][..], &["--insecure"]] {
        let proxy = format!("--proxy={}", node.auth_addr);
        let mut args = vec!["login", proxy.as_str(), "--user=alice"];
        args.extend_from_slice(extra);
        let err = fails(tsh(&home, &args, Some(&format!("{PASSWORD}\n"))).unwrap()).unwrap();
        assert!(err.contains(&want), "{extra:?}: {err}");
        assert!(!err.contains("--insecure"), "{extra:?}: {err}");
        assert!(!err.contains("Enter password"), "{extra:?}: {err}");
    }
    assert!(!home.join("127.0.0.1.yaml").exists());
    // The proxy's own port still works.
    ok(tsh_login(&node, &home, "alice", PASSWORD).unwrap()).unwrap();
}

/// Debug logs written to a pipe (a file, `2>&1 | less`) carry no ANSI colour.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let (tmp, node) = sqlite_node("plainlogs.example").unwrap();
    add_user(&node, "alice", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    let proxy = format!("--proxy={}", node.web_addr);
    let out = tsh(
        &home,
        &["-d", "login", &proxy, "--user=alice", "--insecure"],
        Some(&format!("{PASSWORD}\n")),
    )
    .unwrap();
    let tctl = node.tctl(&["-d", "status"]).unwrap();
    for (name, out) in [("tsh", out), ("tctl", tctl)] {
        assert!(out.status.success(), "{name}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("DEBUG"), "{name} wrote no debug log: {err}");
        assert!(!err.contains('\u{1b}'), "{name}: {err}");
    }
}

/// The two web apps of `apps_config_prints_the_session_as_teleport`.
const APPS: &str = r#"app_service:
  enabled: yes
  apps:
  - name: grafana
    uri: "http://localhost:3000"
    public_addr: "grafana.example.com"
  - name: prometheus
    uri: "http://localhost:9090"
"#;

#[test]
fn apps_config_prints_the_session_as_teleport() {
    let (tmp, node) = sqlite_node("appconfig.example").unwrap();
    let agent = start_token_agent(&node, tmp.path(), "app", "apps-agent", APPS).unwrap();
    add_user(&node, "alice", "access", PASSWORD).unwrap();
    let home = tmp.path().join("home");
    ok(tsh_login(&node, &home, "alice", PASSWORD).unwrap()).unwrap();

    // No app session yet.
    let err = fails(tsh(&home, &["apps", "config"], None).unwrap()).unwrap();
    assert!(err.contains("tsh apps login APP"), "{err}");

    poll(Duration::from_secs(60), "tsh apps login grafana", || {
        ok(tsh(&home, &["apps", "login", "grafana"], None).unwrap()).ok()
    })
    .map_err(|e| format!("{e}\n{}", agent.log()))
    .unwrap();

    let port = node.web_addr.rsplit_once(':').unwrap().1;
    let uri = format!("https://grafana.example.com:{port}");
    let get = |args: &[&str]| {
        let mut all = vec!["apps", "config"];
        all.extend_from_slice(args);
        ok(tsh(&home, &all, None).unwrap()).unwrap()
    };
    // One session: the app may be left out.
    let text = get(&[]);
    assert_eq!(text, get(&["grafana"]));
    let rows: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k, v.trim())
        })
        .collect();
    let keys: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["Name", "URI", "CA", "Cert", "Key"], "{text}");
    assert_eq!(rows[0].1, "grafana");
    assert_eq!(rows[1].1, uri);

    assert_eq!(get(&["--format", "uri"]), format!("{uri}\n"));
    for (format, row) in [("ca", 2), ("cert", 3), ("key", 4)] {
        let path = get(&["-f", format]);
        assert_eq!(path.trim_end(), rows[row].1, "{format}");
        assert!(Path::new(path.trim_end()).is_file(), "{format}: {path}");
    }
    let cert = std::fs::read_to_string(rows[3].1).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
    let key = std::fs::read_to_string(rows[4].1).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let ca = std::fs::read_to_string(rows[2].1).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));

    let curl = get(&["--format", "curl"]);
    assert_eq!(
        curl,
        format!(
            "curl --insecure \\\n  --cert {} \\\n  --key {} \\\n  {uri}\n",
            rows[3].1, rows[4].1
        )
    );

    let json: serde_json::Value = serde_json::from_str(&get(&["--format", "json"])).unwrap();
    let yaml: serde_json::Value = serde_yaml_ng::from_str(&get(&["--format", "yaml"])).unwrap();
    assert_eq!(json, yaml);
    assert_eq!(json["name"], "grafana");
    assert_eq!(json["uri"], uri.as_str());
    assert_eq!(json["cert"], rows[3].1);
    assert_eq!(json["key"], rows[4].1);
    assert_eq!(json["ca"], rows[2].1);
    assert_eq!(json["curl"], curl.trim_end());

    let err = fails(tsh(&home, &["apps", "config", "-f", "bogus"], None).unwrap()).unwrap();
    assert!(
        err.contains("uri, ca, cert, key, curl, json, yaml"),
        "{err}"
    );
    // An app without a session names the login that makes one.
    let err = fails(tsh(&home, &["apps", "config", "prometheus"], None).unwrap()).unwrap();
    assert!(err.contains("tsh apps login prometheus"), "{err}");

    // Two sessions: the app must be named.
    ok(tsh(&home, &["apps", "login", "prometheus"], None).unwrap()).unwrap();
    let err = fails(tsh(&home, &["apps", "config"], None).unwrap()).unwrap();
    assert!(err.contains("(grafana, prometheus)"), "{err}");
    assert!(get(&["prometheus", "-f", "uri"]).starts_with("https://prometheus.127.0.0.1:"));

    // After logout the session is gone, and config says how to get it back.
    ok(tsh(&home, &["apps", "logout", "grafana"], None).unwrap()).unwrap();
    let err = fails(tsh(&home, &["apps", "config", "grafana"], None).unwrap()).unwrap();
    assert!(err.contains("tsh apps login grafana"), "{err}");
}
