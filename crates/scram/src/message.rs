//! The four SCRAM messages of RFC 5802 §7: parsing and the user-name
//! escapes. Parsers never panic and borrow from the input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::ScramError;

/// `=` → `=3D`, `,` → `=2C` (RFC 5802 §5.1 saslname).
pub(crate) fn escape_username(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The inverse of [`escape_username`]; any other `=` sequence is an error,
/// as the RFC requires.
pub(crate) fn unescape_username(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return Err(ScramError::Malformed("bad '=' escape in a user name"));
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// RFC 5802 `printable`: ASCII 0x21..0x7E except ','.
pub(crate) fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn unb64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok()
}

/// `key=value` with the expected one-letter key.
fn attr(field: &str, key: char) -> Option<&str> {
    let mut chars = field.chars();
    (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &field[2..])
}

/// `gs2-header client-first-message-bare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    /// `n,,` or `y,,` or `n,a=<authzid>,`, as sent (channel binding input).
    pub gs2_header: &'a str,
    pub bare: &'a str,
    pub user: String,
    pub nonce: &'a str,
}

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(ScramError::Malformed("client-first: no gs2 header"))?;
    if flag.starts_with("p=") {
        return Err(ScramError::ChannelBindingNotSupported);
    }
    if flag != "n" && flag != "y" {
        return Err(ScramError::Malformed(
            "client-first: bad gs2 channel-binding flag",
        ));
    }
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed(
        "client-first: gs2 header not terminated",
    ))?;
    let authzid = match authzid {
        "" => None,
        a => Some(unescape_username(
            attr(a, 'a').ok_or(ScramError::Malformed("client-first: bad authzid"))?,
        )?),
    };
    let gs2_header = &msg[..msg.len() - bare.len()];
    if bare.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| attr(f, 'n'))
        .filter(|u| !u.is_empty())
        .ok_or(ScramError::Malformed("client-first: no user name"))?;
    let user = unescape_username(user)?;
    let nonce = fields
        .next()
        .and_then(|f| attr(f, 'r'))
        .filter(|n| valid_nonce(n))
        .ok_or(ScramError::Malformed("client-first: no valid nonce"))?;
    // Optional extensions after the nonce are ignored, as RFC 5802 says.
    if authzid.as_ref().is_some_and(|a| *a != user) {
        return Err(ScramError::AuthzidMismatch);
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        user,
        nonce,
    })
}

/// `r=<nonce>,s=<salt>,i=<iterations>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>, ScramError> {
    if msg.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let mut fields = msg.split(',');
    let nonce = fields
        .next()
        .and_then(|f| attr(f, 'r'))
        .filter(|n| valid_nonce(n))
        .ok_or(ScramError::Malformed("server-first: no valid nonce"))?;
    let salt = fields
        .next()
        .and_then(|f| attr(f, 's'))
        .and_then(unb64)
        .filter(|s| !s.is_empty())
        .ok_or(ScramError::Malformed("server-first: no valid salt"))?;
    let iterations = fields
        .next()
        .and_then(|f| attr(f, 'i'))
        .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|i| i.parse::<u32>().ok())
        .ok_or(ScramError::Malformed(
            "server-first: no valid iteration count",
        ))?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// `c=<channel binding>,r=<nonce>[,extensions],p=<proof>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    /// Everything before `,p=` (part of the AuthMessage).
    pub without_proof: &'a str,
    /// The decoded `c=` value.
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    pub proof: Vec<u8>,
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, ScramError> {
    let (without_proof, proof) = msg
        .rsplit_once(',')
        .ok_or(ScramError::Malformed("client-final: no proof"))?;
    let proof = attr(proof, 'p')
        .and_then(unb64)
        .filter(|p| !p.is_empty())
        .ok_or(ScramError::Malformed("client-final: no valid proof"))?;
    let mut fields = without_proof.split(',');
    let channel_binding = fields
        .next()
        .and_then(|f| attr(f, 'c'))
        .and_then(unb64)
        .ok_or(ScramError::Malformed(
            "client-final: no valid channel binding",
        ))?;
    let nonce = fields
        .next()
        .and_then(|f| attr(f, 'r'))
        .filter(|n| valid_nonce(n))
        .ok_or(ScramError::Malformed("client-final: no valid nonce"))?;
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// `v=<signature>` or `e=<error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerFinalMsg {
    Verifier(Vec<u8>),
    Error(String),
}

pub(crate) fn parse_server_final(msg: &str) -> Result<ServerFinalMsg, ScramError> {
    let first = msg.split(',').next().unwrap_or("");
    if let Some(e) = attr(first, 'e') {
        return Ok(ServerFinalMsg::Error(e.to_string()));
    }
    attr(first, 'v')
        .and_then(unb64)
        .filter(|v| !v.is_empty())
        .map(ServerFinalMsg::Verifier)
        .ok_or(ScramError::Malformed("server-final: no valid verifier"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_escape_and_unescape() {
        assert_eq!(escape_username("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_username("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(unescape_username("=3D=2C").unwrap(), "=,");
        assert_eq!(unescape_username("plain").unwrap(), "plain");
        for bad in ["a=", "a=2", "a=2D", "=XY", "=3d"] {
            assert!(unescape_username(bad).is_err(), "{bad}");
        }
        for u in ["", "x", "=,=,", "ü=,", "CN=client,OU=apps,O=holdfast"] {
            assert_eq!(unescape_username(&escape_username(u)).unwrap(), u);
        }
    }

    #[test]
    fn client_first_fields() {
        let m = parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(m.user, "user");
        assert_eq!(m.nonce, "fyko+d2lbbFgONRv9qkxdawL");
        let m = parse_client_first("y,a=a=2Cb,n=a=2Cb,r=abcd,x=ext").unwrap();
        assert_eq!(m.gs2_header, "y,a=a=2Cb,");
        assert_eq!(m.user, "a,b");
    }

    #[test]
    fn client_first_rejections() {
        use ScramError::*;
        let cases: &[(&str, ScramError)] = &[
            ("p=tls-unique,,n=u,r=abcd", ChannelBindingNotSupported),
            ("n,,m=ext,n=u,r=abcd", MandatoryExtension),
            ("n,a=other,n=u,r=abcd", AuthzidMismatch),
        ];
        for (msg, want) in cases {
            assert_eq!(parse_client_first(msg).unwrap_err(), *want, "{msg}");
        }
        for msg in [
            "",
            "n",
            "n,",
            "x,,n=u,r=abcd",
            "n,b=u,n=u,r=abcd",
            "n,,n=,r=abcd",
            "n,,r=abcd,n=u",
            "n,,n=u",
            "n,,n=u,r=",
            "n,,n=u,r=a b",
            "n,,n=u=,r=abcd",
        ] {
            assert!(
                matches!(parse_client_first(msg), Err(Malformed(_))),
                "{msg}: {:?}",
                parse_client_first(msg)
            );
        }
    }

    #[test]
    fn server_first_fields_and_rejections() {
        let m = parse_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
        assert_eq!(m.nonce, "abcdef");
        assert_eq!(m.iterations, 4096);
        assert_eq!(m.salt.len(), 12);
        assert_eq!(
            parse_server_first("m=x,r=a,s=QQ==,i=1").unwrap_err(),
            ScramError::MandatoryExtension
        );
        for msg in [
            "",
            "r=abc",
            "r=abc,s=!!!,i=4096",
            "r=abc,s=,i=4096",
            "r=abc,s=QQ==,i=",
            "r=abc,s=QQ==,i=-1",
            "r=abc,s=QQ==,i=+5",
            "r=abc,s=QQ==,i=99999999999",
            "s=QQ==,r=abc,i=4096",
        ] {
            assert!(parse_server_first(msg).is_err(), "{msg}");
        }
    }

    #[test]
    fn client_final_fields_and_rejections() {
        let m = parse_client_final("c=biws,r=abcd,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(m.without_proof, "c=biws,r=abcd");
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(m.nonce, "abcd");
        assert_eq!(m.proof.len(), 32);
        for msg in [
            "",
            "c=biws,r=abcd",
            "c=biws,r=abcd,p=",
            "c=biws,r=abcd,p=***",
            "r=abcd,c=biws,p=QQ==",
            "c=biws,p=QQ==",
            "c=@@,r=abcd,p=QQ==",
        ] {
            assert!(parse_client_final(msg).is_err(), "{msg}");
        }
    }

    #[test]
    fn server_final_forms() {
        assert_eq!(
            parse_server_final("v=QQ==").unwrap(),
            ServerFinalMsg::Verifier(vec![b'A'])
        );
        assert_eq!(
            parse_server_final("e=invalid-proof").unwrap(),
            ServerFinalMsg::Error("invalid-proof".into())
        );
        for msg in ["", "v=", "x=QQ==", "v=!!"] {
            assert!(parse_server_final(msg).is_err(), "{msg}");
        }
    }
}
