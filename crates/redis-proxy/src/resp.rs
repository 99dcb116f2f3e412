//! RESP2 / RESP3 codec.
//!
//! Every reader of RESP here takes the same tokens (a line, a whole blob, an
//! aggregate header), validated by one lexer, and finds frame boundaries
//! with one walker, the resumable [`Scanner`]:
//!
//! * [`Scanner::scan`] forwards replies byte for byte as their tokens
//!   complete (the engine's hot path), counting replies and push frames;
//! * [`FrameCursor`] measures frames left in place (cluster node replies);
//! * [`parse`] builds a [`Frame`] from the tokens of the first frame, and
//!   [`frame_len`] only measures it (the same walk, so the two always agree);
//! * [`parse_command`] reads a client command (an array of bulk strings) and
//!   returns the byte ranges of its arguments; [`CommandParser::next`] reads
//!   what Redis reads (arrays, and inline commands, which it returns
//!   re-encoded as arrays);
//! * [`Frame::encode`] writes a frame back.
//!
//! All of them return `Ok(None)` (or consume nothing more) when the buffer
//! holds only part of a frame ("need more"), and a [`ProtocolError`] (never
//! a panic) when the input is not RESP or exceeds [`Limits`] (an aggregate,
//! empty or not, counts as a level of [`Limits::max_depth`]).

use bytes::{Buf, Bytes, BytesMut};
use std::ops::Range;

/// Bounds enforced by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string / verbatim string / blob error (Redis: 512 MiB).
    pub max_bulk_len: usize,
    /// Largest element count of an aggregate (array, map, set, push, attribute).
    pub max_aggregate_len: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
    /// Longest line (simple string, error, number, header, inline
    /// command; Redis: 64 KiB for an inline command).
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_aggregate_len: 16 * 1024 * 1024,
            max_depth: 64,
            max_line_len: 64 * 1024,
        }
    }
}

/// A protocol violation or a limit exceeded; the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid frame type byte {0:#04x}")]
    InvalidType(u8),
    #[error("Protocol error: expected '*', got '{}'", (*.0).escape_ascii())]
    ExpectedArray(u8),
    #[error("Protocol error: expected '$', got '{}'", (*.0).escape_ascii())]
    ExpectedBulk(u8),
    #[error("Protocol error: invalid {0}")]
    Invalid(&'static str),
    #[error("Protocol error: line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("Protocol error: bulk length {0} exceeds the limit of {1} bytes")]
    BulkTooLong(u64, usize),
    #[error("Protocol error: aggregate length {0} exceeds the limit of {1}")]
    AggregateTooLong(u64, usize),
    #[error("Protocol error: nesting deeper than {0}")]
    TooDeep(usize),
    #[error("Protocol error: empty command")]
    EmptyCommand,
    /// An inline command line longer than [`Limits::max_line_len`] (Redis's
    /// own text).
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    /// An inline command whose quotes do not close, or whose closing quote
    /// is followed by more than a space (Redis's own text).
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A NUL byte in an inline command line (Redis would wait for a newline
    /// it can never see).
    #[error("Protocol error: NUL byte in an inline request (send commands with NUL bytes as RESP arrays)")]
    InlineNul,
    /// A command named `POST` or `Host:` (an HTTP request; see
    /// [`CommandParser::next`]).
    #[error("Protocol error: this looks like HTTP (POST or Host:), not Redis: connection closed (cross-protocol scripting?)")]
    Http,
}

/// One RESP2 or RESP3 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-ERR text`
    Error(Bytes),
    /// `:123`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Bytes),
    /// `$-1` (RESP2 null bulk)
    NullBulk,
    /// `*N` elements
    Array(Vec<Frame>),
    /// `*-1` (RESP2 null array)
    NullArray,
    /// `_` (RESP3 null)
    Null,
    /// `,1.5` / `,inf` / `,-inf` / `,nan`
    Double(f64),
    /// `#t` / `#f`
    Boolean(bool),
    /// `(12345678901234567890` (digits with an optional sign, kept as text)
    BigNumber(Bytes),
    /// `!N\r\n...` blob error
    BlobError(Bytes),
    /// `=N\r\ntxt:data` verbatim string
    Verbatim { format: [u8; 3], data: Bytes },
    /// `%N` key/value pairs
    Map(Vec<(Frame, Frame)>),
    /// `~N` elements
    Set(Vec<Frame>),
    /// `>N` out-of-band push
    Push(Vec<Frame>),
    /// `|N` attribute pairs; Redis sends it just before the reply it annotates
    Attribute(Vec<(Frame, Frame)>),
}

type Step<T> = Result<Option<(T, usize)>, ProtocolError>;

/// Finds the `\r\n` ending the line that starts at `start`; returns the line
/// end (index of `\r`).
fn line_end(buf: &[u8], start: usize, limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    let window_end = buf
        .len()
        .min(start.saturating_add(limits.max_line_len).saturating_add(2));
    let window = buf.get(start..window_end).unwrap_or(&[]);
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || window[i - 1] != b'\r' {
                return Err(ProtocolError::Invalid("line ending"));
            }
            Ok(Some(start + i - 1))
        }
        None if window_end - start >= limits.max_line_len.saturating_add(2) => {
            Err(ProtocolError::LineTooLong(limits.max_line_len))
        }
        None => Ok(None),
    }
}

fn parse_i64(line: &[u8]) -> Result<i64, ProtocolError> {
    let s = std::str::from_utf8(line).map_err(|_| ProtocolError::Invalid("integer"))?;
    if s.is_empty() || s.starts_with('+') {
        return Err(ProtocolError::Invalid("integer"));
    }
    s.parse::<i64>()
        .map_err(|_| ProtocolError::Invalid("integer"))
}

/// Parses a length header: `-1` gives `None` (null), otherwise a bound-checked count.
fn parse_len(line: &[u8]) -> Result<Option<u64>, ProtocolError> {
    let n = parse_i64(line)?;
    match n {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError::Invalid("length")),
        n => Ok(Some(n as u64)),
    }
}

fn check_bulk(n: u64, limits: &Limits) -> Result<usize, ProtocolError> {
    if n > limits.max_bulk_len as u64 {
        return Err(ProtocolError::BulkTooLong(n, limits.max_bulk_len));
    }
    Ok(n as usize)
}

fn check_aggregate(n: u64, limits: &Limits) -> Result<usize, ProtocolError> {
    if n > limits.max_aggregate_len as u64 {
        return Err(ProtocolError::AggregateTooLong(n, limits.max_aggregate_len));
    }
    Ok(n as usize)
}

/// Reads `n` payload bytes plus `\r\n` at `start`; returns the payload range
/// and the position after it.
fn payload(
    buf: &[u8],
    start: usize,
    n: usize,
) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
    let end = start
        .checked_add(n)
        .ok_or(ProtocolError::Invalid("length"))?;
    let after = end.checked_add(2).ok_or(ProtocolError::Invalid("length"))?;
    if buf.len() < after {
        return Ok(None);
    }
    if &buf[end..after] != b"\r\n" {
        return Err(ProtocolError::Invalid("bulk terminator"));
    }
    Ok(Some((start..end, after)))
}

fn valid_double(line: &[u8]) -> Result<f64, ProtocolError> {
    let s = std::str::from_utf8(line).map_err(|_| ProtocolError::Invalid("double"))?;
    match s {
        "inf" => Ok(f64::INFINITY),
        "-inf" => Ok(f64::NEG_INFINITY),
        "nan" | "-nan" => Ok(f64::NAN),
        _ => {
            // Rust also accepts "infinity", "NaN", ...: refuse words here.
            if s.is_empty()
                || s.bytes()
                    .any(|b| !matches!(b, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'))
            {
                return Err(ProtocolError::Invalid("double"));
            }
            s.parse::<f64>()
                .map_err(|_| ProtocolError::Invalid("double"))
        }
    }
}

fn valid_big(line: &[u8]) -> Result<(), ProtocolError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::Invalid("big number"));
    }
    Ok(())
}

/// What one token is: the unit every reader of RESP here ([`Scanner`], and
/// through it [`parse`], [`frame_len`] and [`FrameCursor`]; and
/// [`CommandParser`]) takes from the buffer, validated once, by [`token`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lexeme {
    /// `+`, `-` and `(`: the line is the value.
    Text,
    Integer(i64),
    /// `_`
    Null,
    Boolean(bool),
    Double(f64),
    /// `$-1` / `*-1`.
    NullLength,
    /// `$`, `!` or `=` with its payload.
    Blob(usize, usize),
    /// An aggregate header (`* ~ > % |`) and its element count (pairs
    /// counted as two elements).
    Aggregate(usize),
}

/// One token at a known position of a buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Token {
    ty: u8,
    /// Where the line after the type byte lies (without `\r\n`).
    line: (usize, usize),
    lexeme: Lexeme,
    /// Where the token ends (after its payload, for a blob).
    end: usize,
}

/// Reads and validates the token at `pos`: a line (simple values and every
/// header), a whole blob (header and payload), or an aggregate header (its
/// elements are tokens of their own). `Ok(None)`: more bytes are needed.
#[inline]
fn token(buf: &[u8], pos: usize, limits: &Limits) -> Result<Option<Token>, ProtocolError> {
    let Some(&ty) = buf.get(pos) else {
        return Ok(None);
    };
    let start = pos + 1;
    let Some(le) = line_end(buf, start, limits)? else {
        return Ok(None);
    };
    let line = &buf[start..le];
    let mut end = le + 2;
    let lexeme = match ty {
        b'+' | b'-' => Lexeme::Text,
        b':' => Lexeme::Integer(parse_i64(line)?),
        b'_' if line.is_empty() => Lexeme::Null,
        b'_' => return Err(ProtocolError::Invalid("null")),
        b'#' => match line {
            b"t" => Lexeme::Boolean(true),
            b"f" => Lexeme::Boolean(false),
            _ => return Err(ProtocolError::Invalid("boolean")),
        },
        b',' => Lexeme::Double(valid_double(line)?),
        b'(' => {
            valid_big(line)?;
            Lexeme::Text
        }
        b'$' | b'!' | b'=' => match parse_len(line)? {
            None if ty == b'$' => Lexeme::NullLength,
            None => return Err(ProtocolError::Invalid("length")),
            Some(n) => {
                let n = check_bulk(n, limits)?;
                let Some((r, after)) = payload(buf, end, n)? else {
                    return Ok(None);
                };
                if ty == b'=' && (r.len() < 4 || buf[r.start + 3] != b':') {
                    return Err(ProtocolError::Invalid("verbatim string"));
                }
                end = after;
                Lexeme::Blob(r.start, r.end)
            }
        },
        b'*' | b'~' | b'>' | b'%' | b'|' => match parse_len(line)? {
            None if ty == b'*' => Lexeme::NullLength,
            None => return Err(ProtocolError::Invalid("length")),
            Some(n) => {
                let n = check_aggregate(n, limits)?;
                Lexeme::Aggregate(if matches!(ty, b'%' | b'|') {
                    n.checked_mul(2).ok_or(ProtocolError::Invalid("length"))?
                } else {
                    n
                })
            }
        },
        other => return Err(ProtocolError::InvalidType(other)),
    };
    Ok(Some(Token {
        ty,
        line: (start, le),
        lexeme,
        end,
    }))
}

/// Parses the first frame of `buf`: `Ok(Some((frame, consumed)))`, or
/// `Ok(None)` when more bytes are needed. The frame's bounds are the
/// [`Scanner`]'s: this only builds values from the tokens it walks.
pub fn parse(buf: &[u8], limits: &Limits) -> Step<Frame> {
    let mut scanner = Scanner::default();
    // Aggregates being built: type byte and elements so far.
    let mut open: Vec<(u8, Vec<Frame>)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(step) = scanner.step(buf, pos, limits)? else {
            return Ok(None);
        };
        let t = step.token;
        pos = t.end;
        if step.opened {
            if let Lexeme::Aggregate(n) = t.lexeme {
                open.push((t.ty, Vec::with_capacity(n.min(1024))));
            }
            continue;
        }
        let mut value = leaf(buf, &t);
        for _ in 0..step.closed {
            let Some((ty, mut items)) = open.pop() else {
                return Err(ProtocolError::Invalid("frame"));
            };
            items.push(value);
            value = aggregate(ty, items);
        }
        if step.done {
            return Ok(Some((value, pos)));
        }
        match open.last_mut() {
            Some((_, items)) => items.push(value),
            None => return Err(ProtocolError::Invalid("frame")),
        }
    }
}

/// The value of a token that is a whole element (not an aggregate header
/// with elements to come).
fn leaf(buf: &[u8], t: &Token) -> Frame {
    let bytes = |(s, e): (usize, usize)| Bytes::copy_from_slice(buf.get(s..e).unwrap_or_default());
    match (t.ty, t.lexeme) {
        (b'+', _) => Frame::Simple(bytes(t.line)),
        (b'-', _) => Frame::Error(bytes(t.line)),
        (_, Lexeme::Text) => Frame::BigNumber(bytes(t.line)),
        (_, Lexeme::Integer(n)) => Frame::Integer(n),
        (_, Lexeme::Null) => Frame::Null,
        (_, Lexeme::Boolean(b)) => Frame::Boolean(b),
        (_, Lexeme::Double(d)) => Frame::Double(d),
        (b'$', Lexeme::NullLength) => Frame::NullBulk,
        (_, Lexeme::NullLength) => Frame::NullArray,
        (b'$', Lexeme::Blob(s, e)) => Frame::Bulk(bytes((s, e))),
        (b'!', Lexeme::Blob(s, e)) => Frame::BlobError(bytes((s, e))),
        (_, Lexeme::Blob(s, e)) => {
            // `txt:data`, checked by `token`.
            let f = |i: usize| buf.get(s + i).copied().unwrap_or_default();
            Frame::Verbatim {
                format: [f(0), f(1), f(2)],
                data: bytes((s.saturating_add(4).min(e), e)),
            }
        }
        (ty, Lexeme::Aggregate(_)) => aggregate(ty, Vec::new()),
    }
}

/// The aggregate of type `ty` with these elements (pairs for `%` and `|`).
fn aggregate(ty: u8, items: Vec<Frame>) -> Frame {
    if matches!(ty, b'%' | b'|') {
        let mut kv = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            kv.push((k, v));
        }
        return if ty == b'%' {
            Frame::Map(kv)
        } else {
            Frame::Attribute(kv)
        };
    }
    match ty {
        b'*' => Frame::Array(items),
        b'~' => Frame::Set(items),
        _ => Frame::Push(items),
    }
}

/// Length in bytes of the first frame of `buf` (validated as [`parse`] would:
/// both are the [`Scanner`]'s walk), or `Ok(None)` when more bytes are
/// needed. Builds nothing.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ProtocolError> {
    Ok(FrameCursor::default().next(buf, limits)?.map(|(n, _)| n))
}

/// Parses a client command, which must be a non-empty array of bulk strings
/// (inline commands are refused here: [`CommandParser::next`] reads them).
/// Returns the argument ranges within `buf`
/// and the command's length. Stateless: see [`CommandParser`] to resume.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Step<Vec<Range<usize>>> {
    CommandParser::default().parse(buf, limits)
}

/// Resumable [`parse_command`]: arguments already parsed are not parsed
/// again when more bytes arrive, so a huge command sent slowly costs linear
/// time. The buffer's front must not move between calls until a command is
/// returned (the parser then resets).
#[derive(Debug, Default)]
pub struct CommandParser {
    expected: Option<usize>,
    args: Vec<Range<usize>>,
    pos: usize,
    /// Bytes of a partial inline command already searched for its newline.
    inline_scanned: usize,
}

/// One client command as the engine forwards, audits and answers it: an
/// array of bulk strings (an inline command is re-encoded as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The command's RESP bytes.
    pub bytes: Bytes,
    /// Where each argument (the name first) lies in `bytes`.
    pub args: Vec<Range<usize>>,
}

impl Command {
    /// The arguments, the command name first.
    pub fn args(&self) -> Vec<&[u8]> {
        self.args
            .iter()
            .filter_map(|r| self.bytes.get(r.clone()))
            .collect()
    }

    /// A command from its arguments (RESP-encoded).
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Command {
        let mut out = Vec::new();
        put_line(&mut out, b'*', args.len().to_string().as_bytes());
        let mut ranges = Vec::with_capacity(args.len());
        for a in args {
            let a = a.as_ref();
            put_line(&mut out, b'$', a.len().to_string().as_bytes());
            ranges.push(out.len()..out.len() + a.len());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        Command {
            bytes: Bytes::from(out),
            args: ranges,
        }
    }
}

impl CommandParser {
    /// True when part of a command has been parsed.
    pub fn in_progress(&self) -> bool {
        self.expected.is_some()
    }

    /// Takes the next whole client command from the front of `buf`, as
    /// Redis reads one: an array of bulk strings when the first byte is
    /// `*`, otherwise an inline command (a line split into arguments the
    /// way Redis splits it, see [`split_inline`]), returned re-encoded as
    /// an array. Empty lines are skipped. `Ok(None)`: more bytes are
    /// needed. On an error nothing of the offending command is consumed.
    /// A command named `POST` or `Host:`, in either form, is
    /// [`ProtocolError::Http`], as Redis closes the connection at it.
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Command>, ProtocolError> {
        loop {
            if !self.in_progress() && buf.first().is_some_and(|&b| b != b'*') {
                let Some((args, n)) = self.inline(buf, limits)? else {
                    return Ok(None);
                };
                if args.first().is_some_and(|name| http_command(name)) {
                    return Err(ProtocolError::Http);
                }
                buf.advance(n);
                if args.is_empty() {
                    continue;
                }
                return Ok(Some(Command::from_args(&args)));
            }
            let Some((args, len)) = self.parse(buf, limits)? else {
                return Ok(None);
            };
            if args
                .first()
                .and_then(|r| buf.get(r.clone()))
                .is_some_and(http_command)
            {
                return Err(ProtocolError::Http);
            }
            return Ok(Some(Command {
                bytes: buf.split_to(len).freeze(),
                args,
            }));
        }
    }

    /// The inline command at the front of `buf` and its length with its
    /// newline, resuming the search for the newline where the last call
    /// stopped.
    fn inline(&mut self, buf: &[u8], limits: &Limits) -> Step<Vec<Vec<u8>>> {
        let max = limits.max_line_len;
        let window = buf
            .get(..buf.len().min(max.saturating_add(1)))
            .unwrap_or(buf);
        let from = self.inline_scanned.min(window.len());
        let Some(at) = window[from..].iter().position(|&b| b == b'\n') else {
            if window[from..].contains(&0) {
                self.inline_scanned = 0;
                return Err(ProtocolError::InlineNul);
            }
            self.inline_scanned = window.len();
            if buf.len() > max {
                self.inline_scanned = 0;
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(None);
        };
        self.inline_scanned = 0;
        let end = from + at;
        let line = &buf[..end];
        if line.contains(&0) {
            return Err(ProtocolError::InlineNul);
        }
        let args = split_inline(line)?;
        if args.len() > limits.max_aggregate_len {
            return Err(ProtocolError::AggregateTooLong(
                args.len() as u64,
                limits.max_aggregate_len,
            ));
        }
        if let Some(a) = args.iter().find(|a| a.len() > limits.max_bulk_len) {
            return Err(ProtocolError::BulkTooLong(
                a.len() as u64,
                limits.max_bulk_len,
            ));
        }
        Ok(Some((args, end + 1)))
    }

    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Step<Vec<Range<usize>>> {
        let n = match self.expected {
            Some(n) => n,
            None => {
                let Some(&ty) = buf.first() else {
                    return Ok(None);
                };
                if ty != b'*' {
                    return Err(ProtocolError::ExpectedArray(ty));
                }
                let Some(t) = token(buf, 0, limits)? else {
                    return Ok(None);
                };
                let n = match t.lexeme {
                    Lexeme::Aggregate(n) if n > 0 => n,
                    _ => return Err(ProtocolError::EmptyCommand),
                };
                self.expected = Some(n);
                self.args = Vec::with_capacity(n.min(1024));
                self.pos = t.end;
                n
            }
        };
        while self.args.len() < n {
            let p = self.pos;
            let Some(&ty) = buf.get(p) else {
                return Ok(None);
            };
            if ty != b'$' {
                return Err(ProtocolError::ExpectedBulk(ty));
            }
            let Some(t) = token(buf, p, limits)? else {
                return Ok(None);
            };
            let Lexeme::Blob(start, end) = t.lexeme else {
                return Err(ProtocolError::Invalid("bulk length"));
            };
            self.args.push(start..end);
            self.pos = t.end;
        }
        let end = self.pos;
        let args = std::mem::take(&mut self.args);
        *self = CommandParser::default();
        Ok(Some((args, end)))
    }
}

/// `POST` and `Host:`: what an HTTP request to a Redis port (cross-protocol
/// scripting from a web page, e.g. to a local tunnel) sends first. Redis
/// closes the connection at either without running anything after it; the
/// engine refuses them itself, before they or anything after them reach
/// the server (whose own check, on a server or proxy that lacks it, is not
/// relied upon).
fn http_command(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"POST") || name.eq_ignore_ascii_case(b"HOST:")
}

/// `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline command line (without its newline) into arguments as
/// Redis does (`sdssplitargs`): arguments are separated by whitespace;
/// `"..."` may hold `\xHH` and `\n`, `\r`, `\t`, `\b`, `\a` escapes (a
/// backslash before any other byte stands for that byte); `'...'` holds
/// bytes as they are, `\'` a quote; a quote may open inside an argument
/// (`a"b c"` is `ab c`), but a closing quote must be followed by
/// whitespace or the end of the line. Quotes that do not close are
/// [`ProtocolError::UnbalancedQuotes`]. No arguments: an empty line, which
/// Redis ignores. As in C, the line ends at a NUL byte, if any.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    // The byte at `i`, or 0 past the end (the C string's terminator).
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && c_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        let (mut double, mut single) = (false, false);
        loop {
            let c = at(p);
            let mut done = false;
            if double {
                let hex = (c == b'\\' && at(p + 1) == b'x')
                    .then(|| Some(hex_value(at(p + 2))? * 16 + hex_value(at(p + 3))?))
                    .flatten();
                if let Some(byte) = hex {
                    arg.push(byte);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    arg.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    arg.push(c);
                }
            } else if single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    arg.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !c_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    arg.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => double = true,
                    b'\'' => single = true,
                    other => arg.push(other),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
            if done {
                break;
            }
        }
        args.push(arg);
    }
}

/// The one resumable RESP walker: takes complete tokens (lines, whole
/// blobs, aggregate headers; validated by one lexer) and follows the open
/// aggregates, never reading a token twice, so huge aggregates cost linear
/// time. [`Scanner::scan`] forwards replies with it, [`FrameCursor`]
/// measures frames in place, and [`parse`] and [`frame_len`] walk a frame
/// with it.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Elements still expected by each open aggregate.
    stack: Vec<usize>,
    /// Type byte of the top-level frame in progress.
    top: u8,
}

/// What [`Scanner::scan`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of complete tokens at the front of the buffer (may end inside a frame).
    pub consumed: usize,
    /// Top-level frames completed, push (`>`) and attribute (`|`) frames excepted.
    pub replies: u64,
    /// Top-level frames completed, all types.
    pub frames: u64,
}

/// One token taken by [`Scanner::step`].
struct Stepped {
    token: Token,
    /// An aggregate with elements to come was opened.
    opened: bool,
    /// Aggregates this element completed.
    closed: usize,
    /// A top-level frame is complete (its type byte: [`Scanner::top`]).
    done: bool,
}

impl Scanner {
    /// True between top-level frames.
    pub fn at_boundary(&self) -> bool {
        self.stack.is_empty()
    }

    /// Takes the token at `pos`; `Ok(None)` when it is not complete yet.
    #[inline]
    fn step(
        &mut self,
        buf: &[u8],
        pos: usize,
        limits: &Limits,
    ) -> Result<Option<Stepped>, ProtocolError> {
        let Some(token) = token(buf, pos, limits)? else {
            return Ok(None);
        };
        if let Lexeme::Aggregate(children) = token.lexeme {
            // An aggregate nests one level deeper, empty or not.
            if self.stack.len() >= limits.max_depth {
                return Err(ProtocolError::TooDeep(limits.max_depth));
            }
            if children > 0 {
                if self.stack.is_empty() {
                    self.top = token.ty;
                }
                self.stack.push(children);
                return Ok(Some(Stepped {
                    token,
                    opened: true,
                    closed: 0,
                    done: false,
                }));
            }
        }
        if self.stack.is_empty() {
            self.top = token.ty;
        }
        // A complete element: close the aggregates it completes.
        let mut closed = 0;
        while let Some(left) = self.stack.last_mut() {
            *left -= 1;
            if *left > 0 {
                break;
            }
            self.stack.pop();
            closed += 1;
        }
        Ok(Some(Stepped {
            token,
            opened: false,
            closed,
            done: self.stack.is_empty(),
        }))
    }

    /// Scans `buf` (the bytes after what earlier calls consumed).
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Scanned, ProtocolError> {
        self.scan_upto(buf, limits, u64::MAX)
    }

    /// Like [`Scanner::scan`], stopping after `max_replies` replies (the
    /// bytes of frames after them are left unconsumed).
    pub fn scan_upto(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        max_replies: u64,
    ) -> Result<Scanned, ProtocolError> {
        let mut out = Scanned::default();
        while out.replies < max_replies {
            let Some(step) = self.step(buf, out.consumed, limits)? else {
                break;
            };
            out.consumed = step.token.end;
            if step.done {
                out.frames += 1;
                if !matches!(self.top, b'>' | b'|') {
                    out.replies += 1;
                }
            }
        }
        Ok(out)
    }
}

/// Finds the end of one top-level frame with a [`Scanner`], for a caller
/// that keeps the frame's bytes in place until it is complete: tokens
/// already measured are not measured again when more bytes arrive (the
/// buffer's front must not move until a frame is returned).
#[derive(Debug, Default)]
pub struct FrameCursor {
    scanner: Scanner,
    /// Bytes of the frame in progress already measured.
    pos: usize,
}

impl FrameCursor {
    /// `Some((length, type byte))` when the frame at the front of `buf` is
    /// complete; the cursor then starts over.
    pub fn next(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(usize, u8)>, ProtocolError> {
        while let Some(step) = self.scanner.step(buf, self.pos, limits)? {
            self.pos = step.token.end;
            if step.done {
                let len = std::mem::take(&mut self.pos);
                return Ok(Some((len, self.scanner.top)));
            }
        }
        Ok(None)
    }
}

fn put_line(out: &mut Vec<u8>, ty: u8, text: &[u8]) {
    out.push(ty);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn put_blob(out: &mut Vec<u8>, ty: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    put_line(out, ty, len.to_string().as_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

impl Frame {
    /// Appends the wire form of the frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Simple(b) => put_line(out, b'+', b),
            Frame::Error(b) => put_line(out, b'-', b),
            Frame::Integer(n) => put_line(out, b':', n.to_string().as_bytes()),
            Frame::Bulk(b) => put_blob(out, b'$', &[b]),
            Frame::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Double(d) => {
                let text = if d.is_nan() {
                    "nan".to_string()
                } else if d.is_infinite() {
                    if *d > 0.0 { "inf" } else { "-inf" }.to_string()
                } else {
                    format!("{d:?}")
                };
                put_line(out, b',', text.as_bytes())
            }
            Frame::Boolean(v) => put_line(out, b'#', if *v { b"t" } else { b"f" }),
            Frame::BigNumber(b) => put_line(out, b'(', b),
            Frame::BlobError(b) => put_blob(out, b'!', &[b]),
            Frame::Verbatim { format, data } => put_blob(out, b'=', &[format, b":", data]),
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                let ty = match self {
                    Frame::Array(_) => b'*',
                    Frame::Set(_) => b'~',
                    _ => b'>',
                };
                put_line(out, ty, items.len().to_string().as_bytes());
                for f in items {
                    f.encode(out);
                }
            }
            Frame::Map(kv) | Frame::Attribute(kv) => {
                let ty = if matches!(self, Frame::Map(_)) {
                    b'%'
                } else {
                    b'|'
                };
                put_line(out, ty, kv.len().to_string().as_bytes());
                for (k, v) in kv {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }

    /// The frame as a RESP2 connection would have received it (what Redis
    /// sends in RESP2 for each RESP3 type): push frames and sets become
    /// arrays, maps flat arrays of keys and values, null a null bulk string,
    /// booleans 1 or 0, doubles and big numbers bulk strings, verbatim
    /// strings their text, blob errors errors. Attributes have no RESP2 form
    /// (`None`).
    pub fn into_resp2(self) -> Option<Frame> {
        let list = |items: Vec<Frame>| {
            Frame::Array(items.into_iter().filter_map(Frame::into_resp2).collect())
        };
        Some(match self {
            Frame::Push(items) | Frame::Set(items) | Frame::Array(items) => list(items),
            Frame::Map(kv) => list(kv.into_iter().flat_map(|(k, v)| [k, v]).collect()),
            Frame::Attribute(_) => return None,
            Frame::Null => Frame::NullBulk,
            Frame::Boolean(b) => Frame::Integer(i64::from(b)),
            Frame::Double(d) => {
                let mut text = Frame::Double(d).to_bytes();
                // `,<text>\r\n`
                text.truncate(text.len().saturating_sub(2));
                Frame::Bulk(Bytes::copy_from_slice(text.get(1..).unwrap_or_default()))
            }
            Frame::BigNumber(b) => Frame::Bulk(b),
            Frame::Verbatim { data, .. } => Frame::Bulk(data),
            Frame::BlobError(b) => Frame::Error(b),
            other => other,
        })
    }

    /// The wire form of the frame.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// A command: an array of bulk strings.
    pub fn command<I, A>(args: I) -> Frame
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Frame::Array(
            args.into_iter()
                .map(|a| Frame::Bulk(Bytes::copy_from_slice(a.as_ref())))
                .collect(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resp3_frames_in_resp2_form() {
        let b = |t: &str| Frame::Bulk(Bytes::copy_from_slice(t.as_bytes()));
        let push = Frame::Push(vec![b("message"), b("news"), b("hi")]);
        assert_eq!(
            push.into_resp2(),
            Some(Frame::Array(vec![b("message"), b("news"), b("hi")]))
        );
        let map = Frame::Map(vec![
            (b("a"), Frame::Boolean(true)),
            (b("b"), Frame::Set(vec![Frame::Null, Frame::Double(1.5)])),
        ]);
        assert_eq!(
            map.into_resp2(),
            Some(Frame::Array(vec![
                b("a"),
                Frame::Integer(1),
                b("b"),
                Frame::Array(vec![Frame::NullBulk, b("1.5")]),
            ]))
        );
        assert_eq!(
            Frame::Verbatim {
                format: *b"txt",
                data: Bytes::from_static(b"text")
            }
            .into_resp2(),
            Some(b("text"))
        );
        assert_eq!(
            Frame::BlobError(Bytes::from_static(b"ERR x")).into_resp2(),
            Some(Frame::Error(Bytes::from_static(b"ERR x")))
        );
        assert_eq!(Frame::Attribute(vec![]).into_resp2(), None);
        // Attributes inside an aggregate are dropped; RESP2 values stay.
        let arr = Frame::Array(vec![
            Frame::Attribute(vec![]),
            Frame::Integer(7),
            Frame::NullArray,
        ]);
        assert_eq!(
            arr.into_resp2(),
            Some(Frame::Array(vec![Frame::Integer(7), Frame::NullArray]))
        );
    }
    use proptest::prelude::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn one(input: &[u8]) -> Frame {
        let (f, n) = parse(input, &lim()).unwrap().unwrap();
        assert_eq!(
            n,
            input.len(),
            "consumed all of {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(frame_len(input, &lim()).unwrap(), Some(n));
        assert_eq!(f.to_bytes(), input, "re-encoding");
        f
    }

    #[test]
    fn every_type() {
        assert_eq!(one(b"+OK\r\n"), Frame::Simple("OK".into()));
        assert_eq!(one(b"-ERR bad\r\n"), Frame::Error("ERR bad".into()));
        assert_eq!(one(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(one(b"$3\r\nabc\r\n"), Frame::Bulk("abc".into()));
        assert_eq!(one(b"$0\r\n\r\n"), Frame::Bulk("".into()));
        assert_eq!(one(b"$-1\r\n"), Frame::NullBulk);
        assert_eq!(one(b"*-1\r\n"), Frame::NullArray);
        assert_eq!(one(b"*0\r\n"), Frame::Array(vec![]));
        assert_eq!(one(b"_\r\n"), Frame::Null);
        assert_eq!(one(b",1.5\r\n"), Frame::Double(1.5));
        assert_eq!(one(b",inf\r\n"), Frame::Double(f64::INFINITY));
        assert_eq!(one(b",-inf\r\n"), Frame::Double(f64::NEG_INFINITY));
        assert!(matches!(one(b",nan\r\n"), Frame::Double(d) if d.is_nan()));
        assert_eq!(one(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(one(b"#f\r\n"), Frame::Boolean(false));
        assert_eq!(
            one(b"(-3492890328409238509324850943850943825024385\r\n"),
            Frame::BigNumber("-3492890328409238509324850943850943825024385".into())
        );
        assert_eq!(one(b"!5\r\nERR x\r\n"), Frame::BlobError("ERR x".into()));
        assert_eq!(
            one(b"=8\r\ntxt:abcd\r\n"),
            Frame::Verbatim {
                format: *b"txt",
                data: "abcd".into()
            }
        );
        assert_eq!(
            one(b"%1\r\n+k\r\n:1\r\n"),
            Frame::Map(vec![(Frame::Simple("k".into()), Frame::Integer(1))])
        );
        assert_eq!(
            one(b"~2\r\n:1\r\n:2\r\n"),
            Frame::Set(vec![Frame::Integer(1), Frame::Integer(2)])
        );
        assert_eq!(
            one(b">2\r\n+message\r\n$1\r\nx\r\n"),
            Frame::Push(vec![
                Frame::Simple("message".into()),
                Frame::Bulk("x".into())
            ])
        );
        assert_eq!(
            one(b"|1\r\n+ttl\r\n:3\r\n"),
            Frame::Attribute(vec![(Frame::Simple("ttl".into()), Frame::Integer(3))])
        );
        assert_eq!(
            one(b"*2\r\n*1\r\n:1\r\n$-1\r\n"),
            Frame::Array(vec![Frame::Array(vec![Frame::Integer(1)]), Frame::NullBulk])
        );
    }

    #[test]
    fn partial_input_needs_more_at_every_cut() {
        let whole: &[u8] = b"*3\r\n$3\r\nSET\r\n%1\r\n+k\r\n=8\r\ntxt:abcd\r\n,1.25\r\n";
        let (_, n) = parse(whole, &lim()).unwrap().unwrap();
        for cut in 0..n {
            assert_eq!(parse(&whole[..cut], &lim()).unwrap(), None, "cut at {cut}");
            assert_eq!(
                frame_len(&whole[..cut], &lim()).unwrap(),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(
            parse_command(b"\rx", &lim()),
            Err(ProtocolError::ExpectedArray(b'\r'))
        );
        let cmd: &[u8] = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..cmd.len() {
            assert_eq!(
                parse_command(&cmd[..cut], &lim()).unwrap(),
                None,
                "cut at {cut}"
            );
        }
        let (args, n) = parse_command(cmd, &lim()).unwrap().unwrap();
        assert_eq!(n, cmd.len());
        assert_eq!(&cmd[args[0].clone()], b"GET");
        assert_eq!(&cmd[args[1].clone()], b"0123456789");
    }

    fn split(line: &str) -> Result<Vec<String>, ProtocolError> {
        split_inline(line.as_bytes()).map(|args| {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
    }

    #[test]
    fn inline_arguments_split_as_redis_splits_them() {
        let ok = |line: &str, want: &[&str]| assert_eq!(split(line).unwrap(), want, "{line:?}");
        ok("", &[]);
        ok(" \t\r\x0b\x0c ", &[]);
        ok("PING", &["PING"]);
        ok("  SET  k\tv  ", &["SET", "k", "v"]);
        ok(r#"SET k "hello world""#, &["SET", "k", "hello world"]);
        ok(
            r#"ECHO "a\nb\r\t\x41\x4a\x4A\"\\\q""#,
            &["ECHO", "a\nb\r\tAJJ\"\\q"],
        );
        // \x without two hex digits is an escaped 'x'.
        ok(r#"ECHO "\x4" "\xg1""#, &["ECHO", "x4", "xg1"]);
        ok(r#"ECHO 'it\'s \n "raw"'"#, &["ECHO", "it's \\n \"raw\""]);
        ok(r#"ECHO "" ''"#, &["ECHO", "", ""]);
        // A quote may open inside an argument.
        ok(r#"ECHO a"b c"  d'e f'"#, &["ECHO", "ab c", "de f"]);
        // \v and \f end no unquoted argument (Redis splits on space, tab, CR, LF).
        ok("ECHO a\x0bb", &["ECHO", "a\x0bb"]);
        ok("ECHO \"a\"\x0b", &["ECHO", "a"]);
        assert_eq!(
            split_inline(b"ECHO \"\\xff\\x00\" \xfe").unwrap(),
            [b"ECHO".to_vec(), vec![0xff, 0x00], vec![0xfe]]
        );
        for bad in [
            r#"ECHO "abc"#,
            r#"ECHO 'abc"#,
            r#"ECHO "abc"d"#,
            r#"ECHO 'abc'd"#,
            r#"ECHO "abc\"#,
            r#"ECHO 'abc\'"#,
            "\"",
        ] {
            assert_eq!(split(bad), Err(ProtocolError::UnbalancedQuotes), "{bad:?}");
        }
    }

    fn next_all(input: &[u8], limits: &Limits) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut p = CommandParser::default();
        let mut out = Vec::new();
        while let Some(c) = p.next(&mut buf, limits)? {
            out.push(c.args().iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    #[test]
    fn inline_commands_come_back_as_arrays() {
        let input = b"PING\r\n\r\n\n*1\r\n$4\r\nPING\r\n  \r\nSET k \"a b\"\nGET k\r\r\n";
        let mut buf = BytesMut::from(&input[..]);
        let mut p = CommandParser::default();
        let mut got = Vec::new();
        while let Some(c) = p.next(&mut buf, &lim()).unwrap() {
            got.push(c);
        }
        assert!(buf.is_empty());
        assert_eq!(
            got,
            [
                Command::from_args(&["PING"]),
                Command::from_args(&["PING"]),
                Command::from_args(&["SET", "k", "a b"]),
                Command::from_args(&["GET", "k"]),
            ]
        );
        assert_eq!(&got[0].bytes[..], b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(got[2].args(), [&b"SET"[..], b"k", b"a b"]);
        // Every cut of the input needs more, then gives the same commands.
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            let mut p = CommandParser::default();
            let mut again = Vec::new();
            while let Some(c) = p.next(&mut buf, &lim()).unwrap() {
                again.push(c);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(c) = p.next(&mut buf, &lim()).unwrap() {
                again.push(c);
            }
            assert_eq!(again, got, "cut at {cut}");
        }
    }

    #[test]
    fn http_requests_are_refused_as_redis_refuses_them() {
        for input in [
            &b"POST / HTTP/1.1\r\nHost: x\r\n\r\nFLUSHALL\r\n"[..],
            b"host: 127.0.0.1:6379\r\n",
            b"*2\r\n$4\r\npost\r\n$1\r\n/\r\n",
            b"*1\r\n$5\r\nHoSt:\r\n",
        ] {
            assert_eq!(
                next_all(input, &lim()),
                Err(ProtocolError::Http),
                "{input:?}"
            );
        }
        // The command before is taken; the refused one stays unconsumed.
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\nFLUSHALL\r\n"[..]);
        let mut p = CommandParser::default();
        let get = p.next(&mut buf, &lim()).unwrap().unwrap();
        assert_eq!(get.args(), [&b"GET"[..], b"/", b"HTTP/1.1"]);
        assert_eq!(p.next(&mut buf, &lim()), Err(ProtocolError::Http));
        assert_eq!(&buf[..], b"Host: x\r\nFLUSHALL\r\n");
        // Only as the command name.
        assert_eq!(next_all(b"ECHO POST\r\n", &lim()).unwrap().len(), 1);
        assert_eq!(next_all(b"HOST x\r\n", &lim()).unwrap().len(), 1);
    }

    #[test]
    fn inline_limits_are_redis_limits() {
        let max = lim().max_line_len;
        assert_eq!(max, 64 * 1024);
        // A line of 64 KiB is taken; one byte more without a newline is not.
        let mut line = vec![b'a'; max];
        assert_eq!(next_all(&line, &lim()), Ok(vec![]));
        line.push(b'\n');
        assert_eq!(next_all(&line, &lim()).unwrap().len(), 1);
        let long = vec![b'a'; max + 1];
        assert_eq!(next_all(&long, &lim()), Err(ProtocolError::InlineTooBig));
        // Found however it arrives (the search resumes where it stopped).
        let mut buf = BytesMut::new();
        let mut p = CommandParser::default();
        let mut result = Ok(None);
        for chunk in long.chunks(1000) {
            buf.extend_from_slice(chunk);
            result = p.next(&mut buf, &lim());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ProtocolError::InlineTooBig));
        assert_eq!(buf.len(), max + 1, "nothing consumed");
        // Redis's texts.
        assert_eq!(
            ProtocolError::InlineTooBig.to_string(),
            "Protocol error: too big inline request"
        );
        assert_eq!(
            next_all(b"ECHO \"a\r\n", &lim()).map_err(|e| e.to_string()),
            Err("Protocol error: unbalanced quotes in request".to_string())
        );
        assert_eq!(
            next_all(b"ECHO \0\r\n", &lim()),
            Err(ProtocolError::InlineNul)
        );
        assert_eq!(next_all(b"ECHO \0", &lim()), Err(ProtocolError::InlineNul));
        // Configured limits on arguments apply to inline commands too.
        let small = Limits {
            max_bulk_len: 3,
            max_aggregate_len: 2,
            ..lim()
        };
        assert_eq!(
            next_all(b"ECHO abcd\n", &small),
            Err(ProtocolError::BulkTooLong(4, 3))
        );
        assert_eq!(
            next_all(b"ECHO a b\n", &small),
            Err(ProtocolError::AggregateTooLong(3, 2))
        );
    }

    #[test]
    fn an_empty_aggregate_is_a_level_of_nesting_for_every_reader() {
        let l = Limits {
            max_depth: 2,
            ..lim()
        };
        let nested: &[u8] = b"*1\r\n*1\r\n*0\r\n";
        assert_eq!(parse(nested, &l), Err(ProtocolError::TooDeep(2)));
        assert_eq!(frame_len(nested, &l), Err(ProtocolError::TooDeep(2)));
        assert_eq!(
            Scanner::default().scan(nested, &l),
            Err(ProtocolError::TooDeep(2))
        );
        assert_eq!(
            FrameCursor::default().next(nested, &l),
            Err(ProtocolError::TooDeep(2))
        );
        assert_eq!(frame_len(b"*1\r\n*0\r\n", &l), Ok(Some(8)));
    }

    #[test]
    fn trailing_bytes_are_left() {
        let (f, n) = parse(b":1\r\n:2\r\n", &lim()).unwrap().unwrap();
        assert_eq!((f, n), (Frame::Integer(1), 4));
    }

    #[test]
    fn errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"?x\r\n",
            b":abc\r\n",
            b":\r\n",
            b":+1\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"#x\r\n",
            b",foo\r\n",
            b",infinity\r\n",
            b"(12a\r\n",
            b"=3\r\nabc\r\n",
            b"_x\r\n",
            b"%-1\r\n",
            b"+OK\n",
            b"$99999999999999999999999\r\n",
        ];
        for b in bad {
            assert!(
                parse(b, &lim()).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
            assert!(
                frame_len(b, &lim()).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert_eq!(
            parse_command(b"PING\r\n", &lim()),
            Err(ProtocolError::ExpectedArray(b'P'))
        );
        assert_eq!(
            parse_command(b"*1\r\n:1\r\n", &lim()),
            Err(ProtocolError::ExpectedBulk(b':'))
        );
        assert_eq!(
            parse_command(b"*0\r\n", &lim()),
            Err(ProtocolError::EmptyCommand)
        );
        assert_eq!(
            parse_command(b"*-1\r\n", &lim()),
            Err(ProtocolError::EmptyCommand)
        );
        assert!(parse_command(b"*1\r\n$-1\r\n", &lim()).is_err());
    }

    #[test]
    fn limits() {
        let l = Limits {
            max_bulk_len: 10,
            max_aggregate_len: 3,
            max_depth: 2,
            max_line_len: 8,
        };
        assert_eq!(
            parse(b"$11\r\n", &l),
            Err(ProtocolError::BulkTooLong(11, 10))
        );
        assert_eq!(
            parse_command(b"*1\r\n$11\r\n", &l),
            Err(ProtocolError::BulkTooLong(11, 10))
        );
        assert_eq!(
            parse(b"*4\r\n", &l),
            Err(ProtocolError::AggregateTooLong(4, 3))
        );
        assert_eq!(
            parse_command(b"*4\r\n", &l),
            Err(ProtocolError::AggregateTooLong(4, 3))
        );
        assert_eq!(
            parse(b"*1\r\n*1\r\n*1\r\n:1\r\n", &l),
            Err(ProtocolError::TooDeep(2))
        );
        assert!(parse(b"*1\r\n*1\r\n:1\r\n", &l).unwrap().is_some());
        assert_eq!(
            parse(b"+0123456789", &l),
            Err(ProtocolError::LineTooLong(8))
        );
        assert_eq!(parse(b"+01234567", &l), Ok(None));
        // A default-limit deep nest is refused, not a stack overflow.
        let deep = "*1\r\n".repeat(100_000);
        assert_eq!(
            parse(deep.as_bytes(), &lim()),
            Err(ProtocolError::TooDeep(64))
        );
        // Huge declared lengths allocate nothing up front.
        assert_eq!(parse(b"*16777216\r\n", &lim()), Ok(None));
        assert_eq!(parse(b"$536870912\r\n", &lim()), Ok(None));
        assert_eq!(
            parse(b"$536870913\r\n", &lim()),
            Err(ProtocolError::BulkTooLong(536870913, 536870912))
        );
    }

    fn line_text() -> impl Strategy<Value = Bytes> {
        "[a-zA-Z0-9 _:.-]{0,20}".prop_map(Bytes::from)
    }

    fn blob() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let leaf = prop_oneof![
            line_text().prop_map(Frame::Simple),
            line_text().prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            blob().prop_map(Frame::Bulk),
            Just(Frame::NullBulk),
            Just(Frame::NullArray),
            Just(Frame::Null),
            prop_oneof![
                any::<f64>().prop_filter("not nan", |d| !d.is_nan()),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY)
            ]
            .prop_map(Frame::Double),
            any::<bool>().prop_map(Frame::Boolean),
            "-?[1-9][0-9]{0,40}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
            blob().prop_map(Frame::BlobError),
            ("[a-z]{3}", blob()).prop_map(|(f, data)| {
                let b = f.as_bytes();
                Frame::Verbatim {
                    format: [b[0], b[1], b[2]],
                    data,
                }
            }),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4)
                    .prop_map(Frame::Map),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Attribute),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(f in frame()) {
            let bytes = f.to_bytes();
            let (parsed, n) = parse(&bytes, &lim()).unwrap().unwrap();
            prop_assert_eq!(n, bytes.len());
            prop_assert_eq!(frame_len(&bytes, &lim()).unwrap(), Some(n));
            prop_assert_eq!(parsed.to_bytes(), bytes.clone());
            prop_assert_eq!(&parsed, &f);
            // Every strict prefix needs more.
            for cut in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
                prop_assert_eq!(parse(&bytes[..cut], &lim()).unwrap(), None);
            }
        }

        #[test]
        fn scanner_matches_frame_len(frames in proptest::collection::vec(frame(), 1..6), cuts in proptest::collection::vec(1usize..50, 1..20)) {
            let mut bytes = Vec::new();
            let mut replies = 0;
            for f in &frames {
                f.encode(&mut bytes);
                if !matches!(f, Frame::Push(_) | Frame::Attribute(_)) {
                    replies += 1;
                }
            }
            // Feed in arbitrary chunks, keeping unconsumed bytes like the engine.
            let mut sc = Scanner::default();
            let (mut got_replies, mut got_frames, mut pending, mut fed) = (0, 0, Vec::new(), 0);
            let mut cuts = cuts.into_iter().cycle();
            while fed < bytes.len() {
                let step = cuts.next().unwrap().min(bytes.len() - fed);
                pending.extend_from_slice(&bytes[fed..fed + step]);
                fed += step;
                let r = sc.scan(&pending, &lim()).unwrap();
                pending.drain(..r.consumed);
                got_replies += r.replies;
                got_frames += r.frames;
            }
            prop_assert!(pending.is_empty());
            prop_assert!(sc.at_boundary());
            prop_assert_eq!(got_frames, frames.len() as u64);
            prop_assert_eq!(got_replies, replies);
        }

        #[test]
        fn scan_upto_stops_after_the_replies_asked_for(frames in proptest::collection::vec(frame(), 1..8), max in 0u64..5) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for f in &frames {
                f.encode(&mut bytes);
                if !matches!(f, Frame::Push(_) | Frame::Attribute(_)) {
                    ends.push(bytes.len());
                }
            }
            let r = Scanner::default().scan_upto(&bytes, &lim(), max).unwrap();
            prop_assert_eq!(r.replies, max.min(ends.len() as u64));
            if max > 0 && max as usize <= ends.len() {
                // Up to the end of the last reply asked for, not beyond.
                prop_assert_eq!(r.consumed, ends[max as usize - 1]);
            }
            if max == 0 {
                prop_assert_eq!(r.consumed, 0);
            }
        }

        #[test]
        fn command_parser_resumes(args in proptest::collection::vec(blob(), 1..8), cut in 0usize..200) {
            let bytes = Frame::command(args.iter()).to_bytes();
            let cut = cut.min(bytes.len());
            let mut p = CommandParser::default();
            prop_assert_eq!(p.parse(&bytes[..cut], &lim()).unwrap().is_none(), cut < bytes.len());
            if cut < bytes.len() {
                let (ranges, n) = p.parse(&bytes, &lim()).unwrap().unwrap();
                prop_assert_eq!(n, bytes.len());
                prop_assert_eq!(ranges.len(), args.len());
            }
        }

        /// One walk: the builder, the measurer, the scanner and the
        /// cursor agree on every input, RESP-shaped or not.
        #[test]
        fn every_reader_agrees(
            parts in proptest::collection::vec(prop_oneof![
                Just(b"*1\r\n".to_vec()), Just(b"*0\r\n".to_vec()), Just(b"%1\r\n".to_vec()),
                Just(b">1\r\n".to_vec()), Just(b"|1\r\n".to_vec()), Just(b"$1\r\nx\r\n".to_vec()),
                Just(b":1\r\n".to_vec()), Just(b"+OK\r\n".to_vec()), Just(b"_\r\n".to_vec()),
                Just(b"$-1\r\n".to_vec()), Just(b"=5\r\ntxt:a\r\n".to_vec()), Just(b"\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 1..4),
            ], 0..24),
            depth in 1usize..6,
        ) {
            let input = parts.concat();
            let limits = Limits { max_depth: depth, ..lim() };
            let parsed = parse(&input, &limits);
            let len = frame_len(&input, &limits);
            match (&parsed, &len) {
                (Ok(Some((_, n))), Ok(Some(m))) => prop_assert_eq!(n, m),
                (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "parse {:?} / frame_len {:?}", parsed, len),
            }
            if let Ok(Some((_, n))) = parsed {
                let mut sc = Scanner::default();
                let s = sc.scan(&input[..n], &limits).unwrap();
                prop_assert_eq!((s.consumed, s.frames), (n, 1));
                let mut cursor = FrameCursor::default();
                prop_assert_eq!(cursor.next(&input, &limits).unwrap().map(|(m, _)| m), Some(n));
            }
        }

        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&input, &lim());
            let _ = frame_len(&input, &lim());
            let _ = parse_command(&input, &lim());
            let _ = Scanner::default().scan(&input, &lim());
            let _ = split_inline(&input);
            let _ = next_all(&input, &lim());
        }

        /// Inline-shaped noise (quotes, escapes, blanks, newlines, RESP
        /// pieces) never panics, fed whole or in pieces, and every command
        /// read is a well-formed array.
        #[test]
        fn inline_noise_never_panics(
            parts in proptest::collection::vec(prop_oneof![
                Just(b"\"".to_vec()), Just(b"'".to_vec()), Just(b"\\".to_vec()),
                Just(b"\\x".to_vec()), Just(b"\\x4".to_vec()), Just(b"\\xZZ".to_vec()),
                Just(b" ".to_vec()), Just(b"\t".to_vec()), Just(b"\r".to_vec()),
                Just(b"\n".to_vec()), Just(b"\r\n".to_vec()), Just(b"\x0b".to_vec()),
                Just(b"*1\r\n$4\r\nPING\r\n".to_vec()), Just(b"*".to_vec()),
                "[a-zA-Z0-9]{1,4}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 1..4),
            ], 0..40),
            cut in 0usize..200,
        ) {
            let input = parts.concat();
            let small = Limits { max_line_len: 16, ..lim() };
            for limits in [lim(), small] {
                if let Ok(commands) = next_all(&input, &limits) {
                    for c in commands {
                        prop_assert!(!c.is_empty());
                    }
                }
                let cut = cut.min(input.len());
                let mut buf = BytesMut::from(&input[..cut]);
                let mut p = CommandParser::default();
                while let Ok(Some(c)) = p.next(&mut buf, &limits) {
                    let (args, n) = parse_command(&c.bytes, &limits).unwrap().unwrap();
                    prop_assert_eq!(n, c.bytes.len());
                    prop_assert_eq!(args, c.args);
                }
            }
        }

        /// Arguments written the way redis-cli quotes them come back as
        /// they were.
        #[test]
        fn quoted_inline_arguments_round_trip(args in proptest::collection::vec(blob(), 1..6)) {
            let mut line = Vec::new();
            for a in &args {
                line.extend_from_slice(b" \"");
                for &b in a.iter() {
                    match b {
                        b'"' | b'\\' => line.extend_from_slice(&[b'\\', b]),
                        b' '..=b'~' => line.push(b),
                        _ => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                    }
                }
                line.push(b'"');
            }
            line.extend_from_slice(b"\r\n");
            let got = next_all(&line, &lim()).unwrap();
            let want: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
            prop_assert_eq!(got, vec![want]);
        }

        #[test]
        fn commands_round_trip(args in proptest::collection::vec(blob(), 1..8)) {
            let bytes = Frame::command(args.iter()).to_bytes();
            let (ranges, n) = parse_command(&bytes, &lim()).unwrap().unwrap();
            prop_assert_eq!(n, bytes.len());
            let got: Vec<&[u8]> = ranges.iter().map(|r| &bytes[r.clone()]).collect();
            let want: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
