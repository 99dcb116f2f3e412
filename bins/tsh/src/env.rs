//! `tsh env`: the shell commands that point later commands at the current
//! profile's proxy and cluster (`eval $(tsh env)`), or remove them
//! (`--unset`), as Teleport prints them.

use anyhow::{bail, Result};

use crate::{load_active, Cli};

/// The variables `tsh env` sets.
pub const PROXY_VAR: &str = "TELEPORT_PROXY";
/// The cluster variable.
pub const CLUSTER_VAR: &str = "TELEPORT_CLUSTER";

/// `tsh env [--unset]`.
pub fn run(cli: &Cli, unset: bool) -> Result<()> {
    print!("{}", text(cli, unset)?);
    Ok(())
}

fn text(cli: &Cli, unset: bool) -> Result<String> {
    if unset {
        return Ok(format!("unset {PROXY_VAR}\nunset {CLUSTER_VAR}\n"));
    }
    let (profile, _) = load_active(cli)?;
    if profile.web_proxy_addr.is_empty() {
        bail!("--proxy must be set when using an identity file");
    }
    Ok(format!(
        "export {PROXY_VAR}={}\nexport {CLUSTER_VAR}={}\n",
        shell_word(&profile.web_proxy_addr),
        shell_word(&profile.cluster)
    ))
}

/// `value` as one POSIX shell word: as it is when it holds only characters
/// a shell leaves alone (what host names, ports and cluster names are), else
/// single-quoted. The cluster name came from the proxy: a hostile one must
/// not run commands in the shell that evaluates `tsh env`.
pub fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/' | '@'));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_single_shell_words() {
        assert_eq!(shell_word("proxy.example.com:443"), "proxy.example.com:443");
        assert_eq!(shell_word("[::1]:3080"), "'[::1]:3080'");
        assert_eq!(shell_word("a; rm -rf ~"), "'a; rm -rf ~'");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
