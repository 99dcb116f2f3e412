//! `teleport install systemd`: the unit file, with every path checked
//! before it is written into it.

/// A path that can be written into the unit as it is: absolute, of letters, digits and
/// `/ . _ - + @ ,` only. Whitespace, quotes, `$`, `%` (systemd specifiers), `;`, backquotes and
/// newlines would otherwise split `ExecStart`, add directives, or run in `ExecReload`'s shell.
fn unit_path<'a>(flag: &str, path: &'a str) -> Result<&'a str, String> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && path.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@' | b',')
        });
    if ok {
        Ok(path)
    } else {
        Err(format!(
            "--{flag} {path:?} cannot be written into a systemd unit: give an absolute path of \
             letters, digits and / . _ - + @ , only"
        ))
    }
}

/// The unit for `teleport start` with these paths and file limit, or why a
/// path cannot be written into it.
pub fn unit(
    pid_file: &str,
    teleport_path: &str,
    env_file: &str,
    fd_limit: u64,
) -> Result<String, String> {
    let pid_file = unit_path("pid-file", pid_file)?;
    let teleport_path = unit_path("teleport-path", teleport_path)?;
    let env_file = unit_path("env-file", env_file)?;
    Ok(format!(
        "[Unit]\n\
         Description=Teleport Service\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Restart=always\n\
         RestartSec=5\n\
         EnvironmentFile=-{env_file}\n\
         ExecStart={teleport_path} start --config /etc/teleport.yaml --pid-file={pid_file}\n\
         ExecReload=/bin/sh -c \"exec pkill -HUP -L -F {pid_file}\"\n\
         PIDFile={pid_file}\n\
         LimitNOFILE={fd_limit}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Flags become unit lines and part of `ExecReload`'s shell command: text that could add a
    /// directive or run a command is refused, never written.
    #[test]
    fn unit_paths_cannot_add_directives_or_commands() {
        let text = unit(
            "/run/teleport.pid",
            "/usr/local/bin/teleport",
            "/etc/default/teleport",
            1024,
        )
        .unwrap();
        assert!(text.contains("PIDFile=/run/teleport.pid\n"), "{text}");
        for bad in [
            "/run/t.pid\nExecStartPre=/bin/touch /tmp/pwned",
            "/run/t.pid; touch /tmp/pwned",
            "/run/$(touch /tmp/pwned)",
            "/run/`id`",
            "/run/\"x\"",
            "/run/with space",
            "/run/%h",
            "relative/t.pid",
            "",
        ] {
            for which in 0..3 {
                let mut args = [
                    "/run/teleport.pid",
                    "/usr/local/bin/teleport",
                    "/etc/default/teleport",
                ];
                args[which] = bad;
                let err = unit(args[0], args[1], args[2], 1024).unwrap_err();
                assert!(
                    err.contains("cannot be written into a systemd unit"),
                    "{err}"
                );
            }
        }
    }
}
