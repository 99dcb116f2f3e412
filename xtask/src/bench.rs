//! `cargo xtask bench`: library benchmarks (`cargo bench`) and whole-process
//! figures, each reported with a baseline measured in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_runs(cmd: &Path, args: &[&str], env: &[(&str, &Path)], runs: usize) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut c = Command::new(cmd);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let start = Instant::now();
        let status = c
            .status()
            .with_context(|| format!("running {}", cmd.display()))?;
        times.push(start.elapsed());
        if !status.success() {
            bail!("{} {:?} failed", cmd.display(), args);
        }
    }
    Ok(median(times))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

pub fn run(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // auth's `join` bench: Azure joins against token joins (the baseline), same run.
    let mut libs = vec!["-p", "rbac", "-p", "pki", "-p", "auth"];
    if root.join("crates").join("azure-mint").exists() {
        libs.extend(["-p", "azure-mint"]);
    }
    // XTASK_BENCH_WHOLE_ONLY=1 skips the library benches (quick re-runs).
    if std::env::var_os("XTASK_BENCH_WHOLE_ONLY").is_none()
        && std::env::var_os("XTASK_BENCH_ONLY").is_none()
    {
        crate::run(Command::new(&cargo).arg("bench").args(&libs))?;
    }
    crate::run(Command::new(&cargo).args(["build", "--release", "--workspace", "--bins"]))?;
    let bins = root.join("target").join("release");
    std::env::set_var("E2E_BIN_DIR", &bins);
    let dir = root
        .join("target")
        .join(format!("bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // XTASK_BENCH_ONLY=redis runs only the Redis figures (quick re-runs).
    let result = if std::env::var("XTASK_BENCH_ONLY").as_deref() == Ok("redis") {
        redis_chain(&dir)
    } else {
        whole_process(&bins, &dir)
            .and_then(|_| azure_chain(root, &dir))
            .and_then(|_| redis_chain(&dir))
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time `n` GETs of a small ARM resource through `client` with `token`.
async fn arm_gets(client: &reqwest::Client, token: &str, n: usize) -> Result<f64> {
    let url = "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000?api-version=2022-12-01";
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let resp = client.get(url).bearer_auth(token).send().await?;
        let status = resp.status();
        let _ = resp.bytes().await?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            bail!("ARM GET answered {status}");
        }
    }
    Ok(median_f(times))
}

/// Sends `token_request` (a managed-identity token endpoint), then times ARM GETs with the
/// token it answers: 10 to warm up, then the median of 200.
async fn token_then_arm_gets(
    client: &reqwest::Client,
    token_request: reqwest::RequestBuilder,
) -> Result<f64> {
    let tok: serde_json::Value = token_request.send().await?.json().await?;
    let token = tok["access_token"].as_str().unwrap_or_default().to_string();
    arm_gets(client, &token, 10).await?;
    arm_gets(client, &token, 200).await
}

fn client_via(proxy: &str, ca_file: &Path) -> Result<reqwest::Client> {
    let pem = std::fs::read(ca_file)?;
    let mut b = reqwest::Client::builder().proxy(reqwest::Proxy::all(proxy)?);
    for c in reqwest::Certificate::from_pem_bundle(&pem)? {
        b = b.add_root_certificate(c);
    }
    Ok(b.build()?)
}

/// Issue 5's figures: the whole Teleport chain against the emulator alone.
fn azure_chain(root: &Path, dir: &Path) -> Result<()> {
    let az = crate::ensure_az(root)?;
    let sc = crate::demo::start(root, &dir.join("azure"), &az, false)?;
    let env = sc.emu.env(None);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("emulator env lacks {k}"))
    };
    let (emu_proxy, emu_ca) = (get("HTTPS_PROXY")?, get("SSL_CERT_FILE")?);

    // Direct: a token from the emulator's IMDS, then ARM through its proxy.
    let direct = sc.rt.block_on(async {
        let client = client_via(&emu_proxy, Path::new(&emu_ca))?;
        let token_request = client
            .get("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&msi_res_id=/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure")
            .header("Metadata", "true");
        token_then_arm_gets(&client, token_request).await
    })?;

    // Through Teleport: tsh proxy azure, its token endpoint, then ARM.
    let mut child = Command::new(e2e::bin("tsh").map_err(|s| anyhow!(s))?)
        .env("TELEPORT_HOME", &sc.home)
        .args(["proxy", "azure", "--format=text"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?,
    ));
    let mut penv = std::collections::HashMap::new();
    for line in lines.by_ref() {
        let line = line?;
        if let Some((k, v)) = line.trim().split_once('=') {
            penv.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        if penv.contains_key("REQUESTS_CA_BUNDLE")
            && penv.contains_key("IDENTITY_HEADER")
            && penv.contains_key("AZURE_CONFIG_DIR")
        {
            break;
        }
    }
    let chain = sc.rt.block_on(async {
        let p = |k: &str| {
            penv.get(k)
                .cloned()
                .ok_or_else(|| anyhow!("tsh proxy azure printed no {k}"))
        };
        let client = client_via(&p("HTTPS_PROXY")?, Path::new(&p("REQUESTS_CA_BUNDLE")?))?;
        let token_request = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!(
                "{}?api-version=2019-08-01&resource=https://management.azure.com/",
                p("IDENTITY_ENDPOINT")?
            ))
            .header("X-IDENTITY-HEADER", p("IDENTITY_HEADER")?);
        token_then_arm_gets(&client, token_request).await
    });
    let _ = child.kill();
    let _ = child.wait();
    let chain = chain?;

    // Whole process: tsh az vm list against az vm list straight to the emulator.
    let az_dir = dir.join("az-direct");
    std::fs::create_dir_all(&az_dir)?;
    let mut login = Command::new(&az);
    login
        .args(["login", "--identity", "--resource-id", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure"])
        .env("AZURE_CONFIG_DIR", &az_dir)
        .env("AZURE_CORE_COLLECT_TELEMETRY", "0")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null());
    crate::run(&mut login)?;
    let mut direct_az = Command::new(&az);
    direct_az
        .args(["vm", "list"])
        .env("AZURE_CONFIG_DIR", &az_dir)
        .env("AZURE_CORE_COLLECT_TELEMETRY", "0")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut tsh_az = Command::new(e2e::bin("tsh").map_err(|s| anyhow!(s))?);
    tsh_az
        .env("TELEPORT_HOME", &sc.home)
        .env("TELEPORT_AZ_CLI", &az)
        .args(["az", "vm", "list"]);
    // Interleaved runs, so that drift in the machine's load hits both alike.
    let (mut d, mut t) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        for (cmd, out) in [(&mut direct_az, &mut d), (&mut tsh_az, &mut t)] {
            let start = Instant::now();
            let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
            out.push(start.elapsed().as_secs_f64());
            if !st.success() {
                bail!("{cmd:?} failed");
            }
        }
    }
    let (direct_az, tsh_az) = (median_f(d), median_f(t));

    println!("\nAzure CLI access (release build, emulator on loopback):");
    println!(
        "  ARM GET via Teleport   median {chain:>7.2} ms   direct to the emulator {direct:>6.2} ms   added {:>6.2} ms   ratio {:.2}   target: added <= 2 ms",
        chain - direct,
        chain / direct
    );
    println!(
        "  tsh az vm list         median {:>7.2} s    az vm list direct      {:>6.2} s                 ratio {:.2}   target <= 1.15",
        tsh_az,
        direct_az,
        tsh_az / direct_az
    );
    drop(sc);
    Ok(())
}

fn whole_process(bins: &Path, dir: &Path) -> Result<()> {
    let e = |s: String| anyhow!(s);
    let node = e2e::Node::start(
        &dir.join("cluster"),
        "bench.example.com",
        &e2e::Storage::Sqlite,
    )
    .map_err(e)?;
    // Idle memory of auth + proxy: sample after readiness, take the largest.
    let pid = node
        .pid()
        .ok_or_else(|| anyhow!("teleport is not running"))?;
    let mut rss = 0;
    for _ in 0..20 {
        rss = rss.max(rss_kib(pid)?);
        std::thread::sleep(Duration::from_millis(50));
    }
    e2e::add_user(&node, "bench", "access", "bench password 1234").map_err(e)?;
    let home = dir.join("tsh");
    e2e::ok(
        e2e::tsh(
            &home,
            &[
                "login",
                &format!("--proxy={}", node.web_addr),
                "--user=bench",
                "--insecure",
            ],
            Some("bench password 1234\n"),
        )
        .map_err(e)?,
    )
    .map_err(e)?;
    let tsh = bins.join("tsh");
    let env = [("TELEPORT_HOME", home.as_path())];
    let base = time_runs(&tsh, &["version"], &env, 50)?;
    let status = time_runs(&tsh, &["status"], &env, 50)?;
    // Baseline for memory: an idle `sleep` process.
    let baseline_rss = {
        let mut c = Command::new("sleep").arg("2").spawn()?;
        std::thread::sleep(Duration::from_millis(200));
        let r = rss_kib(c.id()).unwrap_or(1);
        let _ = c.kill();
        let _ = c.wait();
        r
    };
    println!("\nwhole-process figures (release build):");
    println!(
        "  tsh status        median {:>8.2} ms   baseline `tsh version` {:>6.2} ms   ratio {:.2}   target <= 10 ms",
        status.as_secs_f64() * 1e3,
        base.as_secs_f64() * 1e3,
        status.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "  teleport idle RSS {:>8.1} MB   baseline `sleep` {:>6.1} MB        ratio {:.1}   target <= 40 MB",
        rss as f64 / 1024.0,
        baseline_rss as f64 / 1024.0,
        rss as f64 / baseline_rss as f64
    );
    Ok(())
}

/// One redis-benchmark run: (requests per second, p50 latency in ms) of
/// SET and GET, averaged over the two.
fn redis_benchmark(
    target: &[&str],
    pipeline: usize,
    clients: usize,
    n: usize,
) -> Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(target)
        .args(["-t", "set,get", "--csv", "--precision", "3"])
        .args(["-n", &n.to_string(), "-c", &clients.to_string()])
        .args(["-P", &pipeline.to_string()])
        .output()
        .context("running redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark {target:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = Vec::new();
    let mut p50 = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<f64> = line
            .split(',')
            .skip(1)
            .filter_map(|c| c.trim_matches('"').parse().ok())
            .collect();
        // "test","rps","avg","min","p50","p95","p99","max"
        if cols.len() >= 4 {
            rps.push(cols[0]);
            p50.push(cols[3]);
        }
    }
    if rps.len() != 2 {
        bail!("unexpected redis-benchmark output for {target:?}:\n{text}");
    }
    Ok((rps.iter().sum::<f64>() / 2.0, p50.iter().sum::<f64>() / 2.0))
}

/// Issue 6's figures: redis-benchmark direct to the TLS redis-server, direct
/// plaintext, through twemproxy (plaintext, one hop) and through the whole
/// Teleport chain (`tsh proxy db --tunnel` -> proxy -> reverse tunnel ->
/// agent -> TLS redis-server), all in this run.
fn redis_chain(dir: &Path) -> Result<()> {
    let e = |s: String| anyhow!(s);
    if Command::new("nutcracker")
        .arg("--version")
        .output()
        .is_err()
        && !Path::new("/usr/sbin/nutcracker").exists()
    {
        crate::apt_install(&["nutcracker"])?;
    }
    let w = e2e::redis::AzureRedis::start(&dir.join("redis"), true).map_err(e)?;
    let home = w
        .login("bench", "access", &["--db-users=*", "--db-names=*"])
        .map_err(e)?;
    w.wait_listed(&home).map_err(e)?;
    let pw = e2e::redis::MY_REDIS_PRIMARY;
    let plain = w.redis.plain_port.ok_or_else(|| anyhow!("no plain port"))?;
    // twemproxy in front of the plain port, and, as the floor of any
    // three-hop chain on this machine, three twemproxies in series (each
    // checks the password and authenticates to the next): the Teleport
    // chain has three processes in the path too (tsh, proxy, agent).
    let twem_port = e2e::free_port();
    let _twem = twemproxy(dir, "twem", twem_port, plain, pw)?;
    let series: Vec<u16> = (0..3).map(|_| e2e::free_port()).collect();
    let _series = [
        twemproxy(dir, "series3", series[2], plain, pw)?,
        twemproxy(dir, "series2", series[1], series[2], pw)?,
        twemproxy(dir, "series1", series[0], series[1], pw)?,
    ];
    let mut tunnel = Killed(
        Command::new(e2e::bin("tsh").map_err(e)?)
            .env("TELEPORT_HOME", &home)
            .args(["proxy", "db", "--tunnel", "my-azure-redis"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut first = String::new();
    // Held open until the end: tsh prints more after its first line.
    let mut tunnel_out =
        std::io::BufReader::new(tunnel.0.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
    std::io::BufRead::read_line(&mut tunnel_out, &mut first)?;
    let tport: u16 = first
        .trim()
        .trim_end_matches('.')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("tsh proxy db printed {first:?}"))?;
    for (port, log) in [(twem_port, "twem"), (series[0], "series1")] {
        e2e::poll(Duration::from_secs(10), "twemproxy", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .map_err(|err| {
            anyhow!(
                "{err}\n{}",
                std::fs::read_to_string(dir.join(format!("{log}.log"))).unwrap_or_default()
            )
        })?;
    }
    let (tls_port, plain_s, twem_s, series_s, tun_s) = (
        w.redis.port.to_string(),
        plain.to_string(),
        twem_port.to_string(),
        series[0].to_string(),
        tport.to_string(),
    );
    let ca = w.redis.ca_path.display().to_string();
    let direct_tls: Vec<&str> = vec![
        "--tls",
        "--cacert",
        &ca,
        "-h",
        "localhost",
        "-p",
        &tls_port,
        "-a",
        pw,
    ];
    let direct_plain: Vec<&str> = vec!["-h", "127.0.0.1", "-p", &plain_s, "-a", pw];
    // twemproxy checks clients against redis_auth and authenticates to the server itself.
    let via_twem: Vec<&str> = vec!["-h", "127.0.0.1", "-p", &twem_s, "-a", pw];
    let via_series: Vec<&str> = vec!["-h", "127.0.0.1", "-p", &series_s, "-a", pw];
    let via_chain: Vec<&str> = vec!["-h", "127.0.0.1", "-p", &tun_s];
    let targets = [
        ("direct TLS", &direct_tls),
        ("direct plaintext", &direct_plain),
        ("twemproxy (plaintext)", &via_twem),
        ("3 twemproxies, series", &via_series),
        ("Teleport chain", &via_chain),
    ];
    // Warm-up: connections, the agent's key fetch, caches.
    for (_, t) in &targets {
        redis_benchmark(t, 1, 50, 20_000)?;
    }
    // The chain's processes, for CPU time per request.
    let procs: Vec<(&str, u32)> = vec![
        ("tsh", tunnel.0.id()),
        (
            "auth+proxy",
            w.node.pid().ok_or_else(|| anyhow!("node not running"))?,
        ),
        (
            "db agent",
            w.agent.pid().ok_or_else(|| anyhow!("agent not running"))?,
        ),
        ("redis-server", w.redis.pid()),
    ];
    // The processes serving each target, for CPU time per request beside
    // the chain's.
    let redis_only: Vec<(&str, u32)> = vec![("redis-server", w.redis.pid())];
    let twem_procs: Vec<(&str, u32)> =
        vec![("twemproxy", _twem.0.id()), ("redis-server", w.redis.pid())];
    let series_procs: Vec<(&str, u32)> = vec![
        ("twemproxy 1", _series[2].0.id()),
        ("twemproxy 2", _series[1].0.id()),
        ("twemproxy 3", _series[0].0.id()),
        ("redis-server", w.redis.pid()),
    ];
    let served_by = [&redis_only, &redis_only, &twem_procs, &series_procs, &procs];
    // XTASK_BENCH_HOLD=<file>: print the chain's ports and processes and
    // wait while <file> exists (time for a profiler), then measure.
    if let Some(hold) = std::env::var_os("XTASK_BENCH_HOLD") {
        println!("chain on 127.0.0.1:{tport}, direct TLS on {tls_port}; processes {procs:?}; remove {hold:?} to go on");
        while Path::new(&hold).exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let tick_hz = ticks_per_sec();
    let n = 200_000;
    let mut results = Vec::new();
    // Three rounds, the targets interleaved in each, medians reported: single
    // runs on two shared cores vary by a third.
    for (p, c) in [(1, 50), (16, 50), (1, 1)] {
        let n = if c == 1 { 20_000 } else { n };
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
        // CPU ticks each target's processes spent in its runs.
        let mut ticks: Vec<Vec<u64>> = served_by.iter().map(|ps| vec![0; ps.len()]).collect();
        for _ in 0..3 {
            for (i, (_, t)) in targets.iter().enumerate() {
                let before = cpu_ticks(served_by[i])?;
                runs[i].push(redis_benchmark(t, p, c, n)?);
                for (k, (b, a)) in before.iter().zip(cpu_ticks(served_by[i])?).enumerate() {
                    ticks[i][k] += a.saturating_sub(*b);
                }
            }
        }
        // Two commands (SET and GET) of n requests each, three rounds.
        let requests = (3 * 2 * n) as f64;
        let cpu: Vec<Vec<(&str, f64)>> = served_by
            .iter()
            .zip(&ticks)
            .map(|(ps, ts)| {
                ps.iter()
                    .zip(ts)
                    .map(|((name, _), t)| (*name, *t as f64 * 1e6 / tick_hz / requests))
                    .collect()
            })
            .collect();
        let row = targets
            .iter()
            .zip(runs)
            .map(|((name, _), r)| {
                let mid = |mut v: Vec<f64>| {
                    v.sort_by(|a, b| a.total_cmp(b));
                    v[v.len() / 2]
                };
                (
                    *name,
                    (
                        mid(r.iter().map(|x| x.0).collect()),
                        mid(r.iter().map(|x| x.1).collect()),
                    ),
                )
            })
            .collect::<Vec<_>>();
        results.push(((p, c), row, cpu));
    }
    drop(tunnel);
    drop(tunnel_out);
    drop(_twem);
    drop(_series);
    println!("\nAzure Redis through Teleport (release build; redis-benchmark -t set,get; medians of 3 interleaved rounds; all on this machine, same run; every command through the chain is audited):");
    for ((p, c), row, cpu) in &results {
        let (tls_rps, tls_p50) = row[0].1;
        let (plain_rps, plain_p50) = row[1].1;
        println!("  -P {p} -c {c}:");
        for (name, (rps, p50)) in row {
            println!(
                "    {name:<22} {rps:>10.0} req/s  ({:.2} of direct TLS, {:.2} of plaintext)   p50 {p50:.3} ms  (added vs TLS {:+.0} us, vs plaintext {:+.0} us)",
                rps / tls_rps,
                rps / plain_rps,
                (p50 - tls_p50) * 1e3,
                (p50 - plain_p50) * 1e3
            );
        }
        for ((name, _), parts) in targets.iter().zip(cpu) {
            let total: f64 = parts.iter().map(|(_, us)| us).sum();
            let parts: Vec<String> = parts
                .iter()
                .map(|(name, us)| format!("{name} {us:.1}"))
                .collect();
            println!(
                "    CPU per request, {name:<22} {total:>5.1} us ({})",
                parts.join(", ")
            );
        }
    }
    println!(
        "  targets: -P 16 -c 50 chain >= 0.35 of direct TLS; -P 1 median latency added <= 150 us"
    );
    drop(w);
    Ok(())
}

/// utime + stime of each process, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(procs: &[(&str, u32)]) -> Result<Vec<u64>> {
    procs
        .iter()
        .map(|(name, pid)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .with_context(|| format!("reading the stat of {name} ({pid})"))?;
            // Fields after the parenthesised command name; utime and stime
            // are the 14th and 15th fields of the whole line.
            let rest = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| -> Result<u64> {
                f.get(i)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))
            };
            Ok(field(11)? + field(12)?)
        })
        .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A child process killed and reaped when dropped (also on early returns).
/// A twemproxy (Debian's nutcracker) on 127.0.0.1:`port` in front of the
/// Redis server (or twemproxy) on `upstream`, with one connection to it;
/// it checks clients' `AUTH` against `pw` and sends `AUTH pw` upstream. Its
/// log is `<name>.log` in `dir`.
fn twemproxy(dir: &Path, name: &str, port: u16, upstream: u16, pw: &str) -> Result<Killed> {
    let conf = dir.join(format!("{name}.yml"));
    std::fs::write(
        &conf,
        format!(
            "{name}:\n  listen: 127.0.0.1:{port}\n  redis: true\n  redis_auth: {pw}\n  hash: fnv1a_64\n  distribution: ketama\n  auto_eject_hosts: false\n  server_connections: 1\n  servers:\n   - 127.0.0.1:{upstream}:1\n"
        ),
    )?;
    let nut = if Path::new("/usr/sbin/nutcracker").exists() {
        "/usr/sbin/nutcracker"
    } else {
        "nutcracker"
    };
    // Its own stats port (the default 22222 may be taken) and a log.
    let stats_port = e2e::free_port();
    Ok(Killed(
        Command::new(nut)
            .arg("-c")
            .arg(&conf)
            .args(["-s", &stats_port.to_string()])
            .arg("-o")
            .arg(dir.join(format!("{name}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nutcracker")?,
    ))
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
