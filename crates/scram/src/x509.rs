//! MONGODB-X509 names its user after the client certificate's subject,
//! printed as MongoDB prints it: RFC 2253 order (the most specific RDN
//! first, e.g. `CN=client,OU=apps,O=holdfast`), OpenSSL's short attribute
//! names (`CN`, `OU`, `O`, `L`, `ST`, `C`, `DC`, `UID`, `emailAddress`, …,
//! else the dotted OID), `,+"\<>;` and a leading `#`/space or trailing
//! space escaped with `\`, and bytes outside ASCII as `\XX`.
//!
//! A small DER reader: only the path to the subject is parsed, and no input
//! makes it panic.

/// Why a certificate's subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("not a DER-encoded X.509 certificate: {0}")]
    Malformed(&'static str),
}

type Result<T> = std::result::Result<T, X509Error>;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;

/// One TLV read from `input`; returns (tag, value, rest).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(X509Error::Malformed("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(X509Error::Malformed("multi-byte tags are not used here"));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(X509Error::Malformed("truncated length"))?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(X509Error::Malformed("bad length"));
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(X509Error::Malformed("truncated value"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(input: &'a [u8], want: u8, what: &'static str) -> Result<(&'a [u8], &'a [u8])> {
    let (tag, value, rest) = tlv(input)?;
    if tag != want {
        return Err(X509Error::Malformed(what));
    }
    Ok((value, rest))
}

/// The subject of a DER certificate, as MongoDB names the X.509 user.
pub fn subject_name(cert_der: &[u8]) -> Result<String> {
    let (cert, _) = expect(cert_der, SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = expect(cert, SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == VERSION {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER, "no serial number")?;
    let (_signature, rest) = expect(rest, SEQUENCE, "no signature algorithm")?;
    let (_issuer, rest) = expect(rest, SEQUENCE, "no issuer")?;
    let (_validity, rest) = expect(rest, SEQUENCE, "no validity")?;
    let (subject, _) = expect(rest, SEQUENCE, "no subject")?;
    format_name(subject)
}

/// Formats the contents of a DER `Name` (the SEQUENCE's value).
pub fn format_name(name: &[u8]) -> Result<String> {
    let mut rdns = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let (set, after) = expect(rest, SET, "RDN is not a SET")?;
        rest = after;
        let mut avas = Vec::new();
        let mut inner = set;
        while !inner.is_empty() {
            let (ava, after) = expect(inner, SEQUENCE, "attribute is not a SEQUENCE")?;
            inner = after;
            let (oid, value) = expect(ava, OID, "attribute type is not an OID")?;
            let name = short_name(&dotted_oid(oid)?);
            let value = attribute_value(value)?;
            avas.push(format!("{name}={value}"));
        }
        avas.reverse();
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn dotted_oid(bytes: &[u8]) -> Result<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    let mut in_arc = false;
    for &b in bytes {
        if acc > (u64::MAX >> 7) {
            return Err(X509Error::Malformed("OID arc too large"));
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        in_arc = true;
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
            in_arc = false;
        }
    }
    if in_arc || arcs.is_empty() {
        return Err(X509Error::Malformed("bad OID"));
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in &arcs[1..] {
        s.push('.');
        s.push_str(&arc.to_string());
    }
    Ok(s)
}

/// OpenSSL's short names for the attributes certificates use.
fn short_name(oid: &str) -> String {
    let name = match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => return other.to_string(),
    };
    name.to_string()
}

/// A string attribute as UTF-8, escaped; anything else as `#<hex DER>`.
fn attribute_value(tlv_bytes: &[u8]) -> Result<String> {
    let (tag, value, _) = tlv(tlv_bytes)?;
    let text = match tag {
        // UTF8String, PrintableString, IA5String, VisibleString, NumericString
        0x0c | 0x13 | 0x16 | 0x1a | 0x12 => String::from_utf8_lossy(value).into_owned(),
        // T61String: read as Latin-1, as OpenSSL does.
        0x14 => value.iter().map(|&b| b as char).collect(),
        // BMPString (UTF-16BE)
        0x1e => {
            if value.len() % 2 != 0 {
                return Err(X509Error::Malformed("odd BMPString"));
            }
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // UniversalString (UTF-32BE)
        0x1c => {
            if value.len() % 4 != 0 {
                return Err(X509Error::Malformed("bad UniversalString"));
            }
            value
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or('\u{fffd}')
                })
                .collect()
        }
        _ => {
            let len = tlv_bytes.len() - tlv(tlv_bytes)?.2.len();
            return Ok(format!("#{}", crate::mechanism::hex(&tlv_bytes[..len])));
        }
    };
    Ok(escape_rfc2253(&text))
}

/// MongoDB's `escapeRfc2253`.
pub fn escape_rfc2253(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut start = 0;
    match bytes.first() {
        Some(b' ') => {
            out.push_str("\\ ");
            start = 1;
        }
        Some(b'#') => {
            out.push_str("\\#");
            start = 1;
        }
        _ => {}
    }
    for &b in &bytes[start..] {
        if b >= 0x80 {
            out.push_str(&format!("\\{b:02X}"));
        } else {
            if matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';') {
                out.push('\\');
            }
            out.push(b as char);
        }
    }
    // MongoDB's rule, including its quirk: a value of two bytes keeps
    // its trailing space unescaped.
    if out.len() > 2 && out.ends_with(' ') {
        out.pop();
        out.push_str("\\ ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let n = content.len();
        if n < 0x80 {
            v.push(n as u8);
        } else if n < 0x100 {
            v.extend([0x81, n as u8]);
        } else {
            v.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut c = der(OID, oid);
        c.extend(der(tag, value));
        der(SEQUENCE, &c)
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];

    fn name(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut c = Vec::new();
        for rdn in rdns {
            c.extend(der(SET, &rdn.concat()));
        }
        c
    }

    fn cert_with_subject(subject: &[u8]) -> Vec<u8> {
        let mut tbs = der(VERSION, &der(INTEGER, &[2]));
        tbs.extend(der(INTEGER, &[0x01, 0x02]));
        tbs.extend(der(
            SEQUENCE,
            &der(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        ));
        tbs.extend(der(SEQUENCE, &name(&[vec![ava(CN, 0x0c, b"ca")]])));
        tbs.extend(der(SEQUENCE, &[]));
        tbs.extend(der(SEQUENCE, subject));
        tbs.extend(der(SEQUENCE, &[]));
        let mut cert = der(SEQUENCE, &tbs);
        cert.extend(der(SEQUENCE, &[]));
        cert.extend(der(0x03, &[0]));
        der(SEQUENCE, &cert)
    }

    #[test]
    fn subject_in_rfc2253_order() {
        let subject = name(&[
            vec![ava(C, 0x13, b"US")],
            vec![ava(O, 0x0c, b"holdfast")],
            vec![ava(OU, 0x0c, b"apps")],
            vec![ava(CN, 0x0c, b"client")],
        ]);
        let cert = cert_with_subject(&subject);
        assert_eq!(
            subject_name(&cert).unwrap(),
            "CN=client,OU=apps,O=holdfast,C=US"
        );
    }

    #[test]
    fn multi_valued_rdns_escapes_and_unknown_oids() {
        let subject = name(&[
            vec![ava(O, 0x13, b"a,b")],
            vec![ava(CN, 0x0c, b"x"), ava(OU, 0x0c, b"y")],
            vec![ava(&[0x2a, 0x03], 0x0c, b" #lead")],
            vec![ava(CN, 0x0c, "ü".as_bytes())],
            vec![ava(CN, 0x1e, &[0, b'b', 0, b'm'])],
            vec![ava(OU, 0x02, &[5])],
        ]);
        assert_eq!(
            format_name(&subject).unwrap(),
            "OU=#020105,CN=bm,CN=\\C3\\BC,1.2.3=\\ #lead,OU=y+CN=x,O=a\\,b"
        );
    }

    #[test]
    fn escaping_matches_mongodb() {
        assert_eq!(escape_rfc2253("plain"), "plain");
        assert_eq!(escape_rfc2253("#x"), "\\#x");
        assert_eq!(escape_rfc2253(" x"), "\\ x");
        assert_eq!(escape_rfc2253("ab "), "ab\\ ");
        assert_eq!(escape_rfc2253("x "), "x ");
        assert_eq!(escape_rfc2253("a\\ "), "a\\\\\\ ");
        assert_eq!(
            escape_rfc2253("a+b;c<d>e\"f\\g"),
            "a\\+b\\;c\\<d\\>e\\\"f\\\\g"
        );
        assert_eq!(escape_rfc2253("k=v"), "k=v");
        assert_eq!(escape_rfc2253(""), "");
    }

    #[test]
    fn oids() {
        assert_eq!(dotted_oid(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
        assert_eq!(
            dotted_oid(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]).unwrap(),
            "0.9.2342.19200300.100.1.25"
        );
        assert!(dotted_oid(&[]).is_err());
        assert!(dotted_oid(&[0x81]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cert = cert_with_subject(&name(&[vec![ava(CN, 0x0c, b"client")]]));
        for cut in 0..cert.len() {
            let _ = subject_name(&cert[..cut]);
        }
        for i in 0..cert.len() {
            let mut c = cert.clone();
            c[i] ^= 0xff;
            let _ = subject_name(&c);
        }
        assert!(subject_name(b"").is_err());
        assert!(subject_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
