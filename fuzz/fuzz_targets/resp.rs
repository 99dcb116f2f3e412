//! RESP2/RESP3 from a peer (clients' commands, servers' replies): the frame parser, the
//! measuring parser, the command parser (whole and resumed at every split), and the reply
//! scanner must agree, never panic, and a parsed frame must encode back to what parses to it.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redis_proxy::resp::{self, CommandParser, Frame, Limits, Scanner};

/// Small limits, so the fuzzer reaches every bound quickly.
const LIMITS: Limits = Limits {
    max_bulk_len: 64,
    max_aggregate_len: 16,
    max_depth: 8,
    max_line_len: 64,
};

fn has_nan(f: &Frame) -> bool {
    match f {
        Frame::Double(d) => d.is_nan(),
        Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => v.iter().any(has_nan),
        Frame::Map(kv) | Frame::Attribute(kv) => kv.iter().any(|(k, v)| has_nan(k) || has_nan(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    for limits in [LIMITS, Limits::default()] {
        let parsed = resp::parse(data, &limits);
        let len = resp::frame_len(data, &limits);
        match (&parsed, &len) {
            (Ok(Some((_, n))), Ok(Some(m))) => assert_eq!(n, m, "parse and frame_len disagree"),
            (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
            _ => panic!("parse {parsed:?} and frame_len {len:?} disagree"),
        }
        if let Ok(Some((frame, n))) = &parsed {
            assert!(*n <= data.len());
            // What we send back (an encoded frame) reads as the same frame.
            let bytes = frame.to_bytes();
            match resp::parse(&bytes, &Limits::default()) {
                Ok(Some((again, m))) => {
                    assert_eq!(m, bytes.len(), "re-encoded frame has trailing bytes");
                    if !has_nan(frame) {
                        assert_eq!(&again, frame, "frame changed through encode/parse");
                    }
                }
                other => panic!("re-encoded {frame:?} does not parse: {other:?}"),
            }
            let _ = frame.clone().into_resp2().map(|f| f.to_bytes());
            // The scanner counts exactly one frame in exactly these bytes.
            let mut sc = Scanner::default();
            match sc.scan(&data[..*n], &limits) {
                Ok(s) => {
                    assert_eq!(s.consumed, *n, "scanner stopped inside a parsed frame");
                    assert_eq!(s.frames, 1, "scanner counts another number of frames");
                    assert!(sc.at_boundary());
                }
                Err(e) => panic!("scanner refuses a frame the parser accepts: {e:?}"),
            }
        }
        // The scanner, fed in two pieces at any split, consumes what it consumes in one.
        let mut whole = Scanner::default();
        let one = whole.scan(data, &limits);
        let split = data.first().map_or(0, |b| usize::from(*b)) % (data.len() + 1);
        let mut sc = Scanner::default();
        if let Ok(first) = sc.scan(&data[..split], &limits) {
            let second = sc.scan(&data[first.consumed..], &limits);
            match (&one, &second) {
                (Ok(one), Ok(second)) => {
                    assert_eq!(first.consumed + second.consumed, one.consumed);
                    assert_eq!(first.frames + second.frames, one.frames);
                }
                (Err(_), Err(_)) => {}
                _ => panic!("scanner in one piece {one:?}, in two at {split}: {second:?}"),
            }
        }

        // Commands: whole, and resumed after every prefix.
        let whole = resp::parse_command(data, &limits);
        if let Ok(Some((args, end))) = &whole {
            assert!(*end <= data.len());
            for r in args {
                assert!(r.start <= r.end && r.end <= *end);
            }
            let mut p = CommandParser::default();
            for cut in 0..*end {
                match p.parse(&data[..cut], &limits) {
                    Ok(None) => {}
                    other => panic!("prefix {cut} of a command gave {other:?}"),
                }
            }
            match p.parse(data, &limits) {
                Ok(Some((a, e))) => assert_eq!((&a, e), (args, *end)),
                other => panic!("resumed command parse gave {other:?}"),
            }
            assert!(!p.in_progress());
        }
        commands(data, &limits);
    }
    for line in data.split(|b| *b == b'\n') {
        let _ = resp::split_inline(line);
    }
});

/// Takes every command from `buf` as the engine does (arrays and inline commands).
fn take_all(
    chunks: &mut dyn Iterator<Item = &[u8]>,
    limits: &Limits,
) -> (Vec<resp::Command>, Option<resp::ProtocolError>) {
    let mut p = CommandParser::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match p.next(&mut buf, limits) {
                Ok(Some(c)) => out.push(c),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// What Redis reads, in one piece and in chunks of every size from 1 to 16 bytes: the same
/// commands, the same error; each command is an array that parses back to its arguments.
fn commands(data: &[u8], limits: &Limits) {
    let (whole, err) = take_all(&mut std::iter::once(data), limits);
    for c in &whole {
        let args = c.args();
        assert_eq!(
            args.len(),
            c.args.len(),
            "an argument range is outside the command"
        );
        assert!(!args.is_empty(), "empty command");
        match resp::parse_command(&c.bytes, &Limits::default()) {
            Ok(Some((ranges, n))) => {
                assert_eq!(n, c.bytes.len(), "command bytes hold more than the command");
                assert_eq!(ranges, c.args, "command arguments moved");
            }
            other => panic!("command {c:?} does not parse back: {other:?}"),
        }
    }
    let size = data.last().map_or(1, |b| usize::from(*b % 16) + 1);
    let (chunked, chunked_err) = take_all(&mut data.chunks(size), limits);
    assert_eq!(
        chunked, whole,
        "commands differ when read {size} bytes at a time"
    );
    assert_eq!(
        chunked_err, err,
        "errors differ when read {size} bytes at a time"
    );
}
