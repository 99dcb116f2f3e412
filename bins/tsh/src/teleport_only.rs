//! Teleport's tsh subcommands this build does not have: a user who types
//! `tsh ls` or `tsh ssh` out of habit is told in one line why they are
//! missing, instead of clap's "unrecognized subcommand". Other unknown words
//! keep clap's error (and its suggestions).

use std::ffi::OsString;
use std::process::ExitCode;

/// Why a family of Teleport subcommands is missing here.
const SSH: &str = "the SSH service has not landed yet; see README";
const RECORDINGS: &str =
    "session recordings come with the SSH service, which has not landed yet; see README";
const KUBE: &str = "Kubernetes access is not part of this build; see README";
const REQUESTS: &str = "access requests are not part of this build; see README";
const MFA: &str =
    "this build logs in with a password only, without MFA devices or headless login; see README";

/// Teleport's top-level tsh subcommands that this build lacks, with the reason.
pub const MISSING: &[(&str, &str)] = &[
    ("ls", SSH),
    ("ssh", SSH),
    ("scp", SSH),
    ("join", SSH),
    ("sessions", SSH),
    ("puttyconfig", SSH),
    ("config", SSH),
    ("play", RECORDINGS),
    ("recordings", RECORDINGS),
    ("kube", KUBE),
    ("request", REQUESTS),
    ("mfa", MFA),
    ("fido2", MFA),
    ("headless", MFA),
];

/// Global flags of tsh that take a value (`--proxy HOST`), so the word after
/// them is not the subcommand.
const FLAGS_WITH_VALUES: &[&str] = &["--proxy", "--identity", "-i"];

/// The first word of `args` (program name first) that is not a flag or a
/// flag's value: the subcommand the user typed.
fn subcommand(args: &[OsString]) -> Option<&str> {
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(word) = words.next() {
        if FLAGS_WITH_VALUES.contains(&word) {
            words.next();
        } else if !word.starts_with('-') {
            return Some(word);
        }
    }
    None
}

/// The line for a parse error that is a Teleport subcommand this build lacks.
pub fn refusal(err: &clap::Error, args: &[OsString]) -> Option<String> {
    if err.kind() != clap::error::ErrorKind::InvalidSubcommand {
        return None;
    }
    let word = subcommand(args)?;
    let (_, why) = MISSING.iter().find(|(name, _)| *name == word)?;
    Some(format!("tsh {word}: not available in this build ({why})"))
}

/// Print the refusal of `err` and give the exit code, if it is one.
pub fn refuse(err: &clap::Error, args: &[OsString]) -> Option<ExitCode> {
    let line = refusal(err, args)?;
    eprintln!("{}", client::term::error_line(&line));
    Some(ExitCode::FAILURE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(list: &[&str]) -> (clap::Error, Vec<OsString>) {
        let args: Vec<OsString> = list.iter().map(OsString::from).collect();
        let err = <crate::Cli as clap::Parser>::try_parse_from(&args)
            .err()
            .unwrap();
        (err, args)
    }

    #[test]
    fn teleport_words_are_refused_with_a_reason() {
        let (e, a) = parse(&["tsh", "ls"]);
        assert_eq!(
            refusal(&e, &a).unwrap(),
            "tsh ls: not available in this build (the SSH service has not landed yet; see README)"
        );
        let (e, a) = parse(&["tsh", "--proxy", "p:3080", "-d", "kube", "ls"]);
        assert!(refusal(&e, &a).unwrap().starts_with("tsh kube: "));
        // Unknown words keep clap's error, and so do nested ones.
        for args in [
            &["tsh", "bogus"][..],
            &["tsh", "apps", "ls2"],
            &["tsh", "db", "ssh"],
        ] {
            let (e, a) = parse(args);
            assert_eq!(refusal(&e, &a), None, "{args:?}");
        }
    }

    /// A word this build has is never refused as missing.
    #[test]
    fn missing_words_are_not_subcommands_here() {
        let cmd = crate::Cli::command();
        for (name, _) in MISSING {
            assert!(
                cmd.find_subcommand(name).is_none(),
                "tsh {name} exists now: remove it from MISSING"
            );
        }
    }
}
