//! A minimal DER writer, just enough to build X.509 `TBSCertificate`s.
//!
//! rcgen's `DistinguishedName` keeps one value per attribute type, but Teleport's
//! subject layout repeats attributes (one `O` per role, one `L` per login, one
//! 1.3.9999.1.17 per Azure identity). Leaf certificates are therefore encoded here
//! and signed with the CA's rcgen key.

use time::OffsetDateTime;

/// ASN.1 universal tags used by this crate.
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
}

/// Appends DER values to a byte buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with some capacity reserved.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
        }
    }

    /// The encoded bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Appends already-encoded DER verbatim.
    pub(crate) fn raw(&mut self, der: &[u8]) {
        self.buf.extend_from_slice(der);
    }

    /// Appends a primitive TLV.
    pub(crate) fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.buf.push(tag);
        push_len(&mut self.buf, content.len());
        self.buf.extend_from_slice(content);
    }

    /// Appends a constructed TLV whose content is produced by `f`.
    pub(crate) fn nested(&mut self, tag: u8, f: impl FnOnce(&mut Self)) {
        self.buf.push(tag);
        let len_at = self.buf.len();
        self.buf.push(0);
        f(self);
        let len = self.buf.len() - len_at - 1;
        if len < 0x80 {
            // Short form: the placeholder byte is the length.
            self.buf[len_at] = len as u8;
        } else {
            let mut enc = Vec::with_capacity(5);
            push_len(&mut enc, len);
            self.buf.splice(len_at..=len_at, enc);
        }
    }

    /// SEQUENCE { f }.
    pub(crate) fn sequence(&mut self, f: impl FnOnce(&mut Self)) {
        self.nested(tag::SEQUENCE, f);
    }

    /// OBJECT IDENTIFIER from already-encoded content bytes.
    pub(crate) fn oid(&mut self, encoded: &[u8]) {
        self.primitive(tag::OID, encoded);
    }

    /// UTF8String.
    pub(crate) fn utf8(&mut self, s: &str) {
        self.primitive(tag::UTF8_STRING, s.as_bytes());
    }

    /// INTEGER from unsigned big-endian bytes (minimal encoding is produced).
    pub(crate) fn unsigned_integer(&mut self, be: &[u8]) {
        let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
        let trimmed = &be[start..];
        self.buf.push(tag::INTEGER);
        match trimmed.first() {
            None => {
                self.buf.extend_from_slice(&[1, 0]);
            }
            Some(first) if first & 0x80 != 0 => {
                push_len(&mut self.buf, trimmed.len() + 1);
                self.buf.push(0);
                self.buf.extend_from_slice(trimmed);
            }
            Some(_) => {
                push_len(&mut self.buf, trimmed.len());
                self.buf.extend_from_slice(trimmed);
            }
        }
    }

    /// BOOLEAN.
    pub(crate) fn boolean(&mut self, v: bool) {
        self.primitive(tag::BOOLEAN, &[if v { 0xff } else { 0 }]);
    }

    /// BIT STRING with no unused bits.
    pub(crate) fn bit_string(&mut self, bytes: &[u8]) {
        self.buf.push(tag::BIT_STRING);
        push_len(&mut self.buf, bytes.len() + 1);
        self.buf.push(0);
        self.buf.extend_from_slice(bytes);
    }

    /// X.509 `Time`: UTCTime for 1950..=2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5).
    pub(crate) fn time(&mut self, t: OffsetDateTime) {
        let t = t.to_offset(time::UtcOffset::UTC);
        let year = t.year();
        let (m, d, h, mi, s) = (
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        );
        if (1950..2050).contains(&year) {
            let s = format!(
                "{:02}{m:02}{d:02}{h:02}{mi:02}{s:02}Z",
                year.rem_euclid(100)
            );
            self.primitive(tag::UTC_TIME, s.as_bytes());
        } else {
            let s = format!("{year:04}{m:02}{d:02}{h:02}{mi:02}{s:02}Z");
            self.primitive(tag::GENERALIZED_TIME, s.as_bytes());
        }
    }
}

fn push_len(buf: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        buf.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        buf.push(0x80 | (bytes.len() - skip) as u8);
        buf.extend_from_slice(&bytes[skip..]);
    }
}

/// Encodes OID components into the content octets of an OBJECT IDENTIFIER.
///
/// Returns `None` for OIDs that cannot be encoded (fewer than two arcs, bad first arcs).
/// Used by tests to check the hand-written OID tables.
#[cfg(test)]
pub(crate) fn encode_oid(components: &[u64]) -> Option<Vec<u8>> {
    let (first, second) = match components {
        [a, b, ..] if *a <= 2 && (*a == 2 || *b < 40) => (*a, *b),
        _ => return None,
    };
    let mut out = Vec::with_capacity(components.len() + 2);
    push_base128(&mut out, first.checked_mul(40)?.checked_add(second)?);
    for c in &components[2..] {
        push_base128(&mut out, *c);
    }
    Some(out)
}

#[cfg(test)]
fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let last = tmp.len() - 1;
    for (j, b) in tmp.iter().enumerate().skip(i) {
        out.push(if j == last { *b } else { *b | 0x80 });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let mut w = Writer::default();
            w.nested(tag::OCTET_STRING, |w| w.raw(&vec![7u8; n]));
            let out = w.finish();
            let (rest, obj) = x509_parser::der_parser::der::parse_der(&out).unwrap();
            assert!(rest.is_empty());
            assert_eq!(obj.as_slice().unwrap().len(), n);
        }
    }

    #[test]
    fn integers_are_minimal() {
        let enc = |b: &[u8]| {
            let mut w = Writer::default();
            w.unsigned_integer(b);
            w.finish()
        };
        assert_eq!(enc(&[]), [2, 1, 0]);
        assert_eq!(enc(&[0, 0, 5]), [2, 1, 5]);
        assert_eq!(enc(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(enc(&[0, 0x7f, 1]), [2, 2, 0x7f, 1]);
    }

    #[test]
    fn oids() {
        assert_eq!(
            encode_oid(&[1, 3, 9999, 1, 16]).unwrap(),
            [0x2b, 0xce, 0x0f, 0x01, 0x10]
        );
        assert_eq!(encode_oid(&[2, 5, 4, 3]).unwrap(), [0x55, 4, 3]);
        assert_eq!(encode_oid(&[2, 999]).unwrap(), [0x88, 0x37]);
        assert!(encode_oid(&[1]).is_none());
        assert!(encode_oid(&[1, 40]).is_none());
    }
}
