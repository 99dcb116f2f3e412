//! Dynamic labels: commands an agent runs on their period, whose output
//! becomes a label value of what a service announces.

use std::time::Duration;

/// Longest a dynamic label command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Run one dynamic label command: its standard output as one clean line
/// ([`resources::served::label_from_output`]: trimmed, line breaks as spaces,
/// no control characters, at most 256 characters), or `<error: ...>` as
/// Teleport shows a failed command. The output is whatever the command
/// prints, so it is cleaned here rather than refused whole by the auth
/// service, which takes no control characters in labels.
pub async fn run_command(argv: &[String]) -> String {
    let Some((prog, args)) = argv.split_first() else {
        return "<error: empty command>".into();
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Ok(Ok(out)) if out.status.success() => {
            resources::served::label_from_output(&String::from_utf8_lossy(&out.stdout))
        }
        Ok(Ok(out)) => format!("<error: exit status {}>", out.status),
        Ok(Err(e)) => resources::served::label_from_output(&format!("<error: {e}>")),
        Err(_) => "<error: timed out>".into(),
    }
}
