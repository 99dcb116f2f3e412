//! Go-style durations (`30h`, `1m0s`, `300ms`), as Teleport writes them.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ResourceError;

/// A non-negative duration that reads and writes Go's `time.Duration` text form.
///
/// Deserializes from a Go duration string (`30h`, `1h30m`, `300ms`, `0s`) or from an
/// integer number of nanoseconds; serializes and displays as Go prints it (`30h0m0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Builds a duration from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Builds a duration from whole hours.
    pub const fn from_hours(hours: u64) -> Self {
        Self(std::time::Duration::from_secs(hours * 3600))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl std::str::FromStr for Duration {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s).map(Self)
    }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a Go duration string such as `30h`, `1h30m`, `1.5s`, `300ms` or `0`.
///
/// Negative durations are rejected (nothing in the resources needs them).
pub fn parse_go_duration(input: &str) -> Result<std::time::Duration, ResourceError> {
    let err = |reason| ResourceError::InvalidDuration {
        input: input.to_string(),
        reason,
    };
    let mut s = input.trim();
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if let Some(rest) = s.strip_prefix('-') {
        if rest == "0" {
            return Ok(std::time::Duration::ZERO);
        }
        return Err(err("negative durations are not allowed"));
    }
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty duration"));
    }
    let mut total: u128 = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Number: digits with an optional fraction.
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[start..i];
        let mut frac_part = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let fstart = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[fstart..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err("expected a number"));
        }
        // Unit: everything up to the next digit or dot.
        let ustart = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(err("missing unit (use ns, us, ms, s, m or h)"));
        }
        let scale =
            unit_nanos(unit).ok_or_else(|| err("unknown unit (use ns, us, ms, s, m or h)"))?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err("number out of range"))?
        };
        let mut value = whole
            .checked_mul(scale)
            .ok_or_else(|| err("duration out of range"))?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits; the rest cannot change whole nanoseconds
            // of any supported unit.
            let digits = &frac_part[..frac_part.len().min(18)];
            let numer: u128 = digits.parse().map_err(|_| err("number out of range"))?;
            let denom = 10u128.pow(digits.len() as u32);
            value = value
                .checked_add(numer * scale / denom)
                .ok_or_else(|| err("duration out of range"))?;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| err("duration out of range"))?;
    }
    if total > u64::MAX as u128 * 1_000_000_000 {
        return Err(err("duration out of range"));
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(std::time::Duration::new(secs, nanos))
}

/// Writes `v` with a fraction of `prec` digits, trimming trailing zeros (Go's `fmtFrac`).
fn write_frac(out: &mut String, int: u128, frac: u128, prec: u32) {
    out.push_str(&int.to_string());
    if frac != 0 {
        let mut digits = format!("{:0width$}", frac, width = prec as usize);
        while digits.ends_with('0') {
            digits.pop();
        }
        out.push('.');
        out.push_str(&digits);
    }
}

/// Formats a duration exactly as Go's `time.Duration.String` does.
pub fn format_go_duration(d: std::time::Duration) -> String {
    let total = d.as_nanos();
    if total == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    if total < 1_000_000_000 {
        let (scale, prec, unit) = if total < 1_000 {
            (1, 0, "ns")
        } else if total < 1_000_000 {
            (1_000, 3, "µs")
        } else {
            (1_000_000, 6, "ms")
        };
        write_frac(&mut out, total / scale, total % scale, prec);
        out.push_str(unit);
        return out;
    }
    let secs_total = total / 1_000_000_000;
    let frac = total % 1_000_000_000;
    let hours = secs_total / 3600;
    let minutes = (secs_total % 3600) / 60;
    let secs = secs_total % 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    write_frac(&mut out, secs, frac, 9);
    out.push('s');
    out
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30h\", \"1h30m\" or \"300ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_go_duration(v).map(Duration).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration(std::time::Duration::from_nanos(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(|n| Duration(std::time::Duration::from_nanos(n)))
            .map_err(|_| E::custom("negative durations are not allowed"))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_go_forms() {
        let cases = [
            ("30h", Std::from_secs(30 * 3600)),
            ("1m0s", Std::from_secs(60)),
            ("8h0m0s", Std::from_secs(8 * 3600)),
            ("1h30m", Std::from_secs(5400)),
            ("300ms", Std::from_millis(300)),
            ("0s", Std::ZERO),
            ("0", Std::ZERO),
            ("1.5h", Std::from_secs(5400)),
            ("2us", Std::from_micros(2)),
            ("2µs", Std::from_micros(2)),
            ("7ns", Std::from_nanos(7)),
            (".5s", Std::from_millis(500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_forms() {
        for text in ["", "h", "10", "10x", "-1h", "1h-", ".s", "1..5s"] {
            assert!(parse_go_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (Std::from_secs(30 * 3600), "30h0m0s"),
            (Std::from_secs(60), "1m0s"),
            (Std::from_secs(5400), "1h30m0s"),
            (Std::from_millis(300), "300ms"),
            (Std::ZERO, "0s"),
            (Std::from_millis(1500), "1.5s"),
            (Std::from_nanos(1500), "1.5µs"),
            (Std::from_nanos(42), "42ns"),
            (Std::from_secs(5), "5s"),
        ];
        for (d, want) in cases {
            assert_eq!(Duration(d).to_string(), want);
        }
    }

    #[test]
    fn serde_round_trip_and_integer_nanos() {
        let d: Duration = serde_yaml_ng::from_str("1h30m").unwrap();
        assert_eq!(d.0, Std::from_secs(5400));
        assert_eq!(serde_yaml_ng::to_string(&d).unwrap().trim(), "1h30m0s");
        let d: Duration = serde_json::from_str("1000000000").unwrap();
        assert_eq!(d.0, Std::from_secs(1));
        assert!(serde_json::from_str::<Duration>("-5").is_err());
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(nanos in 0u64..u64::MAX / 2) {
            let d = Std::from_nanos(nanos);
            let text = format_go_duration(d);
            proptest::prop_assert_eq!(parse_go_duration(&text).unwrap(), d);
        }
    }
}
