//! What `tctl tokens add` prints without `--format`: the token, its expiry
//! in words, and a ready-to-run command for the agent, as Teleport prints.

use std::time::Duration;

use resources::SystemRole;

/// `1 hour`, `30 minutes`, `1 hour 30 minutes`, `2 days`, `45 seconds`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0 seconds".to_string();
    }
    let units = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
        }
    }
    parts.join(" ")
}

/// The message for a new join token `token` granting `roles`, valid for
/// `ttl`, to be used through the proxy at `proxy` whose host CA pin is
/// `ca_pin`.
pub fn join_message(
    token: &str,
    roles: &[SystemRole],
    ttl: Duration,
    ca_pin: &str,
    proxy: &str,
) -> String {
    let expiry = human_duration(ttl);
    let mut out = format!("The invite token: {token}\nThis token will expire in {expiry}.\n\n");
    if roles == [SystemRole::Db] {
        // As Teleport for database tokens: write the agent's configuration,
        // then start it.
        out.push_str(&format!(
            "Generate the configuration and start a Teleport agent using it:\n\n\
             > teleport db configure create \\\n   \
             --token={token} \\\n   \
             --ca-pin={ca_pin} \\\n   \
             --proxy={proxy} \\\n   \
             --azure-redis-discovery=<region> \\\n   \
             --output file:///etc/teleport.yaml\n\n\
             > teleport start -c /etc/teleport.yaml\n\n\
             Please note:\n\n  \
             - This invitation token will expire in {expiry}.\n  \
             - {proxy} must be reachable from the new database service.\n"
        ));
    } else {
        let names: Vec<String> = roles
            .iter()
            .map(|r| r.as_str().to_ascii_lowercase())
            .collect();
        out.push_str(&format!(
            "Run this on the new node to join the cluster:\n\n\
             > teleport start \\\n   \
             --roles={} \\\n   \
             --token={token} \\\n   \
             --ca-pin={ca_pin} \\\n   \
             --auth-server={proxy}\n\n\
             Please note:\n\n  \
             - This invitation token will expire in {expiry}.\n  \
             - {proxy} must be reachable from the new node.\n",
            names.join(",")
        ));
    }
    out
}

/// The error for an invalid `--type`, listing the valid roles.
pub fn bad_type(given: &str, err: &dyn std::fmt::Display) -> String {
    let valid: Vec<String> = SystemRole::ALL
        .iter()
        .map(|r| r.as_str().to_ascii_lowercase())
        .collect();
    format!(
        "invalid --type {given:?}: {err}; valid types: {} (comma separated for several)",
        valid.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 minutes");
        assert_eq!(
            human_duration(Duration::from_secs(5400)),
            "1 hour 30 minutes"
        );
        assert_eq!(human_duration(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(human_duration(Duration::from_secs(61)), "1 minute 1 second");
        assert_eq!(human_duration(Duration::ZERO), "0 seconds");
    }

    #[test]
    fn app_token_message_is_a_teleport_start_command() {
        let m = join_message(
            "abc",
            &[SystemRole::App, SystemRole::Node],
            Duration::from_secs(3600),
            "sha256:00",
            "proxy.example.com:443",
        );
        assert!(
            m.starts_with("The invite token: abc\nThis token will expire in 1 hour.\n"),
            "{m}"
        );
        assert!(m.contains("> teleport start \\\n   --roles=app,node \\\n   --token=abc \\\n   --ca-pin=sha256:00 \\\n   --auth-server=proxy.example.com:443\n"), "{m}");
        assert!(
            m.contains("  - This invitation token will expire in 1 hour.\n"),
            "{m}"
        );
    }

    #[test]
    fn db_token_message_configures_the_agent() {
        let m = join_message(
            "t",
            &[SystemRole::Db],
            Duration::from_secs(1800),
            "sha256:1",
            "p:3080",
        );
        assert!(m.contains("> teleport db configure create \\\n   --token=t \\\n   --ca-pin=sha256:1 \\\n   --proxy=p:3080"), "{m}");
        assert!(m.contains("> teleport start -c /etc/teleport.yaml"), "{m}");
        assert!(m.contains("expire in 30 minutes."), "{m}");
    }

    #[test]
    fn bad_type_lists_the_valid_ones() {
        let m = bad_type("ap", &"\"ap\" is not a valid role");
        assert!(m.contains("node, app, db"), "{m}");
    }
}
