//! Standard output of the command-line tools (`tsh`, `tctl`, `teleport`).
//!
//! `println!` panics when standard output is a pipe whose reader has gone
//! (`tctl get roles | head -1`). Each bin shadows `println!` and `print!` at
//! its root with macros that write through [`println`] and [`print`], which
//! end the process quietly instead: the reader has what it wanted, and
//! nothing is left to say.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes `args` and a newline to standard output, as [`print`] does.
pub fn println(args: fmt::Arguments<'_>) {
    print(format_args!("{args}\n"));
}

/// Writes `args` to standard output. When the reader has closed its end,
/// exits with status 0 without a word; any other write error is reported
/// on standard error and exits with status 1.
pub fn print(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        exit_on_write_error(&e);
    }
}

/// What [`print`] does when writing failed: exit 0 on a closed pipe, 1
/// (with the error on standard error) otherwise.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    // Standard error may be closed too; nothing more can be done then.
    let _ = writeln!(
        std::io::stderr(),
        "error: cannot write to standard output: {e}"
    );
    std::process::exit(1);
}
