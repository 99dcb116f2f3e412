//! What tsh and tctl answer before parsing their command line, as Teleport's
//! do: `--version` (the same line as the `version` subcommand) and the shell
//! completion scripts of `--completion-script-bash` / `--completion-script-zsh`.
//! These flags stand alone: the binaries' command lines otherwise require a
//! subcommand.

use std::ffi::OsString;

/// The flags answered before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyFlag {
    /// `--version`.
    Version,
    /// `--completion-script-bash`.
    CompletionBash,
    /// `--completion-script-zsh`.
    CompletionZsh,
}

/// The early flags as the binaries' `Cli` lists them (flattened into it), so
/// `--help` and the completion scripts show them. They are acted on before
/// parsing ([`early_flag`]): the fields are never read.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EarlyFlags {
    /// Print the version (as the `version` subcommand).
    #[arg(long)]
    pub version: bool,
    /// Print a bash completion script (source its output from ~/.bashrc).
    #[arg(long = "completion-script-bash")]
    pub completion_script_bash: bool,
    /// Print a zsh completion script (a #compdef file for $fpath).
    #[arg(long = "completion-script-zsh")]
    pub completion_script_zsh: bool,
}

/// The early flag among the leading flags of `args` (the program name
/// first), if any. Only the flags before the first word count: in
/// `tsh az --version` the flag is az's.
pub fn early_flag(args: &[OsString]) -> Option<EarlyFlag> {
    args.iter()
        .skip(1)
        .map_while(|a| a.to_str().filter(|s| s.starts_with('-') && *s != "--"))
        .find_map(|flag| match flag {
            "--version" => Some(EarlyFlag::Version),
            "--completion-script-bash" => Some(EarlyFlag::CompletionBash),
            "--completion-script-zsh" => Some(EarlyFlag::CompletionZsh),
            _ => None,
        })
}

/// The text to print for `flag`: `version_line` for `--version`, else the
/// completion script of `cmd` (the binary's whole command tree, named `bin`)
/// for the shell.
pub fn early_output(flag: EarlyFlag, mut cmd: clap::Command, bin: &str) -> String {
    let shell = match flag {
        EarlyFlag::Version => return format!("{}\n", api::version_line()),
        EarlyFlag::CompletionBash => clap_complete::Shell::Bash,
        EarlyFlag::CompletionZsh => clap_complete::Shell::Zsh,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_leading_flags_count() {
        assert_eq!(
            early_flag(&args(&["tsh", "--version"])),
            Some(EarlyFlag::Version)
        );
        assert_eq!(
            early_flag(&args(&["tsh", "-d", "--completion-script-zsh"])),
            Some(EarlyFlag::CompletionZsh)
        );
        assert_eq!(early_flag(&args(&["tsh", "az", "--version"])), None);
        assert_eq!(early_flag(&args(&["tsh", "--", "--version"])), None);
        assert_eq!(early_flag(&args(&["tsh"])), None);
        assert_eq!(early_flag(&args(&["tsh", "--versions"])), None);
    }

    #[test]
    fn scripts_cover_the_command_tree() {
        let cmd = clap::Command::new("demo")
            .subcommand(clap::Command::new("login"))
            .subcommand(clap::Command::new("apps").subcommand(clap::Command::new("config")));
        let bash = early_output(EarlyFlag::CompletionBash, cmd.clone(), "demo");
        assert!(bash.contains("complete -F"), "{bash}");
        assert!(bash.contains("login") && bash.contains("config"), "{bash}");
        let zsh = early_output(EarlyFlag::CompletionZsh, cmd.clone(), "demo");
        assert!(zsh.starts_with("#compdef demo"), "{zsh}");
        let version = early_output(EarlyFlag::Version, cmd, "demo");
        assert_eq!(version, format!("{}\n", api::version_line()));
    }
}
