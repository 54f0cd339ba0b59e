//! Both sides of SCRAM: published test vectors, round trips, ClientKey
//! recovery and every rejection rule.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use holdfast_scram::{
    ClientConversation, Credential, Mechanism, ScramError, ScramKeys, ScramSecret,
    ServerConversation,
};

const SHA1: Mechanism = Mechanism::ScramSha1;
const SHA256: Mechanism = Mechanism::ScramSha256;

fn run_client_vector(
    mechanism: Mechanism,
    user: &str,
    credential: Credential,
    nonce: &str,
    server_first: &str,
    client_final: &str,
    server_final: &str,
) -> ClientConversation {
    let mut c = ClientConversation::with_nonce(mechanism, user, credential, nonce.to_string());
    assert_eq!(
        c.client_first(),
        format!(
            "n,,n={},r={nonce}",
            user.replace('=', "=3D").replace(',', "=2C")
        )
    );
    assert_eq!(
        c.server_first(server_first.as_bytes()).unwrap(),
        client_final
    );
    c.server_final(server_final.as_bytes()).unwrap();
    assert!(c.is_complete());
    c
}

/// RFC 5802 §5 (SCRAM-SHA-1, user "user", password "pencil"). The RFC
/// hashes the raw password, so this runs on keys from the raw Hi()
/// primitive, not MongoDB's MD5 prehash.
#[test]
fn rfc5802_sha1_vector_with_the_raw_primitive() {
    let salt = STANDARD.decode("QSXCR+Q6sek8bf92").unwrap();
    let salted = SHA1.salted_password("pencil", &salt, 4096);
    let keys = ScramKeys::from_salted_password(SHA1, &salted);
    assert_eq!(
        STANDARD.encode(keys.client_key()),
        "4jTEe/bDZpbdbYUrmaqiuiZVVyg="
    );
    let c = run_client_vector(
        SHA1,
        "user",
        Credential::Keys(keys.clone()),
        "fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    );
    assert_eq!(c.keys(), Some(&keys));
    assert_eq!(c.salt(), Some(&salt[..]));
    assert_eq!(c.iterations(), Some(4096));
}

/// The SCRAM-SHA-1 example of MongoDB's driver authentication
/// specification (password prehashed as `hex(md5("user:mongo:pencil"))`);
/// the same values come out of pymongo 4.20.1's `_password_digest` and
/// `hashlib.pbkdf2_hmac`.
#[test]
fn mongodb_sha1_vector_with_the_md5_prehash() {
    run_client_vector(
        SHA1,
        "user",
        Credential::Password("pencil".into()),
        "fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,p=MC2T8BvbmWRckDw8oWl5IVghwCY=",
        "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=",
    );
}

/// RFC 7677 §3 (SCRAM-SHA-256; SASLprep("pencil") is "pencil").
#[test]
fn rfc7677_sha256_vector() {
    run_client_vector(
        SHA256,
        "user",
        Credential::Password("pencil".into()),
        "rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// Escaped user names and a password SASLprep changes, with values
/// computed by pymongo 4.20.1 (`pymongo.saslprep.saslprep`,
/// `pymongo.auth_shared._password_digest`, `hashlib`).
#[test]
fn pymongo_vectors_with_escapes_and_saslprep() {
    let sf = "r=clientNONCEserverNONCE,s=c2FsdHNhbHRzYWx0c2FsdA==,i=4096";
    run_client_vector(
        SHA256,
        "a,b=c",
        Credential::Password("I\u{00AD}X\u{2168}".into()),
        "clientNONCE",
        sf,
        "c=biws,r=clientNONCEserverNONCE,p=2DH79PBUGyeim1P2Xa8aoGWQc6a/4v5IeELpPkTikMY=",
        "v=gCFPi0R2VPl93FKGnQR/ert/nfrYqrh93uqiPBClEh8=",
    );
    // SHA-1 does not SASLprep: the soft hyphen stays in the MD5 input.
    run_client_vector(
        SHA1,
        "a,b=c",
        Credential::Password("I\u{00AD}X".into()),
        "clientNONCE",
        sf,
        "c=biws,r=clientNONCEserverNONCE,p=BZIjynLt1tg5WSQcT6KLG3wO1eM=",
        "v=4ylaVw4phMIPxntGA5oZSXgEP4E=",
    );
}

/// Runs a whole conversation; returns the server's result or error.
fn login(
    mechanism: Mechanism,
    secret: Option<&ScramSecret>,
    user: &str,
    credential: Credential,
) -> Result<(holdfast_scram::ServerFinal, ClientConversation), ScramError> {
    let mut client = ClientConversation::new(mechanism, user, credential);
    let mut server = ServerConversation::new(mechanism);
    let sf = server.client_first(client.client_first().as_bytes(), |_| secret.cloned())?;
    let cf = client.server_first(sf.as_bytes())?;
    let done = server.client_final(cf.as_bytes())?;
    client.server_final(done.message.as_bytes())?;
    assert!(client.is_complete());
    assert!(server.is_done());
    Ok((done, client))
}

#[test]
fn round_trips_and_client_key_recovery() {
    for m in Mechanism::ALL {
        for user in ["alice", "a,b=c", "ünï"] {
            let secret = ScramSecret::generate(m, user, "correct horse").unwrap();
            let (done, client) = login(
                m,
                Some(&secret),
                user,
                Credential::Password("correct horse".into()),
            )
            .unwrap();
            assert_eq!(done.user, user);
            // The recovered ClientKey is the client's own, and H(it) is the StoredKey.
            assert_eq!(done.client_key(), client.keys().unwrap().client_key());
            assert_eq!(m.hash(done.client_key()), secret.stored_key());
            assert!(secret.matches_keys(&done.keys));
            // Keys alone log in (no password), against the same secret.
            let (again, _) =
                login(m, Some(&secret), user, Credential::Keys(done.keys.clone())).unwrap();
            assert_eq!(again.client_key(), done.client_key());
        }
    }
}

#[test]
fn recovered_keys_fail_against_another_salt() {
    let a = ScramSecret::generate(SHA256, "bob", "pw").unwrap();
    let b = ScramSecret::generate(SHA256, "bob", "pw").unwrap();
    let (done, _) = login(SHA256, Some(&a), "bob", Credential::Password("pw".into())).unwrap();
    assert_eq!(
        login(SHA256, Some(&b), "bob", Credential::Keys(done.keys)).unwrap_err(),
        ScramError::AuthenticationFailed
    );
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    for m in Mechanism::ALL {
        let secret = ScramSecret::generate(m, "carol", "right").unwrap();
        let wrong = login(
            m,
            Some(&secret),
            "carol",
            Credential::Password("wrong".into()),
        );
        let unknown = login(m, None, "nobody", Credential::Password("right".into()));
        assert_eq!(wrong.unwrap_err(), ScramError::AuthenticationFailed);
        assert_eq!(unknown.unwrap_err(), ScramError::AuthenticationFailed);
        // Even the right keys of another mechanism's secret count as unknown.
        let other =
            ScramSecret::generate(if m == SHA1 { SHA256 } else { SHA1 }, "carol", "right").unwrap();
        assert_eq!(
            login(
                m,
                Some(&other),
                "carol",
                Credential::Password("right".into())
            )
            .unwrap_err(),
            ScramError::AuthenticationFailed
        );
    }
}

fn server_first_fields(sf: &str) -> (String, Vec<u8>, u32) {
    let mut it = sf.split(',');
    let r = it.next().unwrap().strip_prefix("r=").unwrap().to_string();
    let s = STANDARD
        .decode(it.next().unwrap().strip_prefix("s=").unwrap())
        .unwrap();
    let i = it
        .next()
        .unwrap()
        .strip_prefix("i=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(it.next().is_none());
    (r, s, i)
}

#[test]
fn unknown_users_get_a_plausible_server_first() {
    for m in Mechanism::ALL {
        let first = |user: &str| {
            let mut s = ServerConversation::new(m);
            let msg = format!("n,,n={user},r=abcdefgh");
            s.client_first(msg.as_bytes(), |_| None).unwrap()
        };
        let (r, salt, i) = server_first_fields(&first("ghost"));
        assert!(r.starts_with("abcdefgh") && r.len() == 8 + 32, "{r}");
        assert_eq!(salt.len(), m.salt_len());
        assert_eq!(i, m.default_iterations());
        // Stable per user (asking twice reveals nothing), different per user.
        assert_eq!(server_first_fields(&first("ghost")).1, salt);
        assert_ne!(server_first_fields(&first("spook")).1, salt);
        // A known user's reply has the same shape.
        let secret = ScramSecret::generate(m, "real", "pw").unwrap();
        let mut s = ServerConversation::new(m);
        let (r2, salt2, i2) = server_first_fields(
            &s.client_first(b"n,,n=real,r=abcdefgh", |_| Some(secret.clone()))
                .unwrap(),
        );
        assert_eq!((r2.len(), salt2.len(), i2), (r.len(), salt.len(), i));
    }
}

/// A server conversation after a valid client-first (user "dave"), and a
/// valid client-final for it. The secret is derived once (Hi is slow in
/// debug builds) and the client logs in with its keys.
fn started() -> (ServerConversation, String) {
    use std::sync::OnceLock;
    static SECRET: OnceLock<(ScramSecret, ScramKeys)> = OnceLock::new();
    let (secret, keys) = SECRET.get_or_init(|| {
        let salt = b"a fixed salt of test".to_vec();
        let keys = ScramKeys::derive(SHA256, "dave", "pw", &salt, 4096).unwrap();
        let secret = ScramSecret::from_keys(SHA256, salt, 4096, &keys).unwrap();
        (secret, keys)
    });
    let mut client = ClientConversation::new(SHA256, "dave", Credential::Keys(keys.clone()));
    let mut server = ServerConversation::new(SHA256);
    let sf = server
        .client_first(client.client_first().as_bytes(), |_| Some(secret.clone()))
        .unwrap();
    let cf = client.server_first(sf.as_bytes()).unwrap();
    (server, cf)
}

#[test]
fn server_rejects_bad_client_first() {
    let secret = ScramSecret::generate(SHA256, "u", "p").unwrap();
    let cases: &[(&str, ScramError)] = &[
        (
            "p=tls-server-end-point,,n=u,r=abcdef",
            ScramError::ChannelBindingNotSupported,
        ),
        ("n,,m=must,n=u,r=abcdef", ScramError::MandatoryExtension),
        ("n,a=admin,n=u,r=abcdef", ScramError::AuthzidMismatch),
        (
            "n,,n=u=2X,r=abcdef",
            ScramError::Malformed("bad '=' escape in a user name"),
        ),
    ];
    for (msg, want) in cases {
        let mut s = ServerConversation::new(SHA256);
        assert_eq!(
            s.client_first(msg.as_bytes(), |_| Some(secret.clone()))
                .unwrap_err(),
            *want,
            "{msg}"
        );
        assert!(s.is_done());
        // A failed conversation stays failed.
        assert_eq!(
            s.client_final(b"c=biws,r=abcdef,p=QQ==").unwrap_err(),
            ScramError::OutOfOrder
        );
    }
    let mut s = ServerConversation::new(SHA256);
    assert!(matches!(
        s.client_first(&[0xff, 0xfe], |_| None),
        Err(ScramError::Malformed(_))
    ));
}

#[test]
fn server_decodes_escapes_and_accepts_a_matching_authzid() {
    let mut seen = None;
    let mut s = ServerConversation::new(SHA1);
    s.client_first(b"n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abcdef", |u| {
        seen = Some(u.to_string());
        None
    })
    .unwrap();
    assert_eq!(seen.as_deref(), Some("a,b=c"));
    assert_eq!(s.user(), Some("a,b=c"));

    // With an authzid, the channel binding is the whole gs2 header.
    let secret = ScramSecret::generate(SHA1, "zed", "pw").unwrap();
    let mut server = ServerConversation::new(SHA1);
    let sf = server
        .client_first(b"n,a=zed,n=zed,r=nonce123", |_| Some(secret.clone()))
        .unwrap();
    let keys = ScramKeys::derive(SHA1, "zed", "pw", secret.salt(), secret.iterations()).unwrap();
    let nonce = server_first_fields(&sf).0;
    let without_proof = format!("c={},r={nonce}", STANDARD.encode("n,a=zed,"));
    let auth = format!("n=zed,r=nonce123,{sf},{without_proof}");
    let sig = SHA1.hmac(&keys.stored_key(SHA1), auth.as_bytes());
    let proof: Vec<u8> = keys
        .client_key()
        .iter()
        .zip(&sig)
        .map(|(a, b)| a ^ b)
        .collect();
    let done = server
        .client_final(format!("{without_proof},p={}", STANDARD.encode(proof)).as_bytes())
        .unwrap();
    assert_eq!(done.user, "zed");
}

#[test]
fn server_rejects_bad_client_final() {
    let swap_last = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        let i = b.len() - 3;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(Edit, ScramError)> = vec![
        // A nonce other than the conversation's.
        (
            Box::new(|cf: &str| cf.replacen(",r=", ",r=X", 1)),
            ScramError::NonceMismatch,
        ),
        // Channel binding other than the gs2 header ("y,,").
        (
            Box::new(|cf: &str| cf.replacen("c=biws", "c=eSws", 1)),
            ScramError::Malformed("client-final: channel binding differs from the gs2 header"),
        ),
        // A tampered proof.
        (
            Box::new(move |cf: &str| swap_last(cf)),
            ScramError::AuthenticationFailed,
        ),
        // A proof of the wrong length.
        (
            Box::new(|cf: &str| format!("{},p=QUJD", cf.rsplit_once(',').unwrap().0)),
            ScramError::AuthenticationFailed,
        ),
        // No proof at all.
        (
            Box::new(|cf: &str| cf.rsplit_once(',').unwrap().0.to_string()),
            ScramError::Malformed("client-final: no valid proof"),
        ),
    ];
    for (edit, want) in cases {
        let (mut server, cf) = started();
        let bad = edit(&cf);
        assert_ne!(bad, cf);
        assert_eq!(
            server.client_final(bad.as_bytes()).unwrap_err(),
            want,
            "{bad}"
        );
        // The conversation is over: the right message no longer helps.
        assert_eq!(
            server.client_final(cf.as_bytes()).unwrap_err(),
            ScramError::OutOfOrder
        );
    }
    // And the untouched message does work.
    let (mut server, cf) = started();
    assert_eq!(server.client_final(cf.as_bytes()).unwrap().user, "dave");
}

#[test]
fn steps_out_of_order() {
    let mut s = ServerConversation::new(SHA256);
    assert_eq!(
        s.client_final(b"c=biws,r=abc,p=QQ==").unwrap_err(),
        ScramError::OutOfOrder
    );
    s.client_first(b"n,,n=u,r=abcdef", |_| None).unwrap();
    assert_eq!(
        s.client_first(b"n,,n=u,r=abcdef", |_| None).unwrap_err(),
        ScramError::OutOfOrder
    );
    let mut c = ClientConversation::new(SHA256, "u", Credential::Password("p".into()));
    assert_eq!(
        c.server_first(b"r=x,s=QQ==,i=4096").unwrap_err(),
        ScramError::OutOfOrder
    );
    assert_eq!(
        c.server_final(b"v=QQ==").unwrap_err(),
        ScramError::OutOfOrder
    );
}

fn client_after_first(m: Mechanism) -> (ClientConversation, String) {
    let mut c =
        ClientConversation::with_nonce(m, "u", Credential::Password("p".into()), "cnonce".into());
    let first = c.client_first();
    (c, first)
}

#[test]
fn client_rejects_bad_server_first() {
    let cases: &[(&str, ScramError)] = &[
        ("r=othernonce,s=c2FsdA==,i=4096", ScramError::NonceMismatch),
        // The server must add to the nonce, not just echo it.
        ("r=cnonce,s=c2FsdA==,i=4096", ScramError::NonceMismatch),
        (
            "r=cnonceXYZ,s=c2FsdA==,i=4095",
            ScramError::IterationCountTooLow(4095),
        ),
        (
            "r=cnonceXYZ,s=c2FsdA==,i=1",
            ScramError::IterationCountTooLow(1),
        ),
        (
            "m=ext,r=cnonceXYZ,s=c2FsdA==,i=4096",
            ScramError::MandatoryExtension,
        ),
        (
            "r=cnonceXYZ,s=,i=4096",
            ScramError::Malformed("server-first: no valid salt"),
        ),
    ];
    for (msg, want) in cases {
        let (mut c, _) = client_after_first(SHA256);
        assert_eq!(c.server_first(msg.as_bytes()).unwrap_err(), *want, "{msg}");
        assert!(c.keys().is_none());
    }
    // Keys of the other mechanism's length cannot be used.
    let mut c = ClientConversation::with_nonce(
        SHA256,
        "u",
        Credential::Keys(ScramKeys::new(vec![0; 20], vec![0; 20])),
        "cnonce".into(),
    );
    c.client_first();
    assert!(matches!(
        c.server_first(b"r=cnonceXYZ,s=c2FsdA==,i=4096"),
        Err(ScramError::InvalidSecret(_))
    ));
    // SASLprep failures surface as such.
    let mut c = ClientConversation::with_nonce(
        SHA256,
        "u",
        Credential::Password("\u{0007}".into()),
        "cnonce".into(),
    );
    c.client_first();
    assert_eq!(
        c.server_first(b"r=cnonceXYZ,s=c2FsdA==,i=4096")
            .unwrap_err(),
        ScramError::SaslPrep
    );
}

#[test]
fn client_rejects_a_server_without_the_server_key() {
    // A server that knows the StoredKey but not the real ServerKey (an
    // impostor) passes the proof check yet signs wrongly.
    let real = ScramSecret::generate(SHA256, "erin", "pw").unwrap();
    let impostor = ScramSecret::new(
        SHA256,
        real.iterations(),
        real.salt().to_vec(),
        real.stored_key().to_vec(),
        vec![9; 32],
    )
    .unwrap();
    let mut client = ClientConversation::new(SHA256, "erin", Credential::Password("pw".into()));
    let mut server = ServerConversation::new(SHA256);
    let sf = server
        .client_first(client.client_first().as_bytes(), |_| Some(impostor.clone()))
        .unwrap();
    let cf = client.server_first(sf.as_bytes()).unwrap();
    let done = server.client_final(cf.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(done.message.as_bytes()).unwrap_err(),
        ScramError::ServerSignatureMismatch
    );
    assert!(!client.is_complete());

    let (mut c, _) = client_after_first(SHA1);
    c.server_first(b"r=cnonceXYZ,s=c2FsdA==,i=4096").unwrap();
    assert_eq!(
        c.server_final(b"e=invalid-proof").unwrap_err(),
        ScramError::ServerError("invalid-proof".into())
    );
    let (mut c, _) = client_after_first(SHA1);
    c.server_first(b"r=cnonceXYZ,s=c2FsdA==,i=4096").unwrap();
    assert!(matches!(
        c.server_final(b"v="),
        Err(ScramError::Malformed(_))
    ));
}

#[test]
fn debug_output_has_no_secrets() {
    let secret = ScramSecret::generate(SHA256, "frank", "hunter2hunter2").unwrap();
    let (done, client) = login(
        SHA256,
        Some(&secret),
        "frank",
        Credential::Password("hunter2hunter2".into()),
    )
    .unwrap();
    let key_b64 = STANDARD.encode(done.client_key());
    let key_dbg = format!("{:?}", done.client_key());
    for text in [
        format!("{done:?}"),
        format!("{client:?}"),
        format!("{:?}", Credential::Password("hunter2hunter2".into())),
        format!("{:?}", Credential::Keys(done.keys.clone())),
        format!("{secret:?}"),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&key_b64), "{text}");
        assert!(!text.contains(&key_dbg), "{text}");
    }
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn secret_parse(s in ".{0,200}") {
            let _ = ScramSecret::parse(&s);
        }

        #[test]
        fn secret_parse_near_valid(iter in "[0-9+-]{0,12}", salt in "[A-Za-z0-9+/=]{0,12}",
                                   k1 in "[A-Za-z0-9+/=]{0,50}", k2 in "[A-Za-z0-9+/=]{0,50}") {
            let _ = ScramSecret::parse(&format!("SCRAM-SHA-256${iter}:{salt}${k1}:{k2}"));
            let _ = ScramSecret::parse(&format!("SCRAM-SHA-1${iter}:{salt}${k1}:{k2}"));
        }

        #[test]
        fn server_client_first(msg in proptest::collection::vec(any::<u8>(), 0..120), text in "[nypam=,a-z0-9=]{0,60}") {
            let secret = ScramSecret::derive(SHA1, "u", "p", b"salt", 4096).unwrap();
            let _ = ServerConversation::new(SHA1).client_first(&msg, |_| Some(secret.clone()));
            let _ = ServerConversation::new(SHA256).client_first(text.as_bytes(), |_| None);
        }

        #[test]
        fn server_client_final(msg in proptest::collection::vec(any::<u8>(), 0..160), text in "[cprb=,A-Za-z0-9+/]{0,120}") {
            let (mut s, _) = started();
            let _ = s.client_final(&msg);
            let (mut s, cf) = started();
            let _ = s.client_final(format!("{text}{cf}").as_bytes());
            let (mut s, _) = started();
            let _ = s.client_final(text.as_bytes());
        }

        #[test]
        fn client_server_messages(first in ".{0,120}", last in ".{0,80}") {
            let (mut c, _) = client_after_first(SHA1);
            let _ = c.server_first(first.as_bytes());
            let _ = c.server_final(last.as_bytes());
            let (mut c, _) = client_after_first(SHA256);
            if c.server_first(format!("r=cnonce{first}").as_bytes()).is_ok() {
                let _ = c.server_final(last.as_bytes());
            }
        }

        #[test]
        fn x509_subject(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = holdfast_scram::x509::subject_name(&bytes);
            let _ = holdfast_scram::x509::format_name(&bytes);
        }
    }
}

/// One login against `secret`'s server with `credential` (and, if given,
/// keys offered for reuse); whether the server accepted it.
fn login_with_reuse(
    secret: &ScramSecret,
    credential: Credential,
    reuse: Option<(Vec<u8>, u32, ScramKeys)>,
) -> Result<ClientConversation, ScramError> {
    let m = secret.mechanism();
    let mut server = ServerConversation::new(m);
    let mut c = ClientConversation::new(m, "svc", credential);
    if let Some((salt, n, keys)) = reuse {
        c.reuse_keys(salt, n, keys);
    }
    let first = server.client_first(c.client_first().as_bytes(), |_| Some(secret.clone()))?;
    let fin = c.server_first(first.as_bytes())?;
    let done = server.client_final(fin.as_bytes())?;
    c.server_final(done.message.as_bytes())?;
    Ok(c)
}

#[test]
fn keys_derived_once_are_reused_for_the_same_salt_only() {
    for m in [SHA1, SHA256] {
        let secret = ScramSecret::generate(m, "svc", "right").unwrap();
        let first = login_with_reuse(&secret, Credential::Password("right".into()), None).unwrap();
        let (salt, n) = (first.salt().unwrap().to_vec(), first.iterations().unwrap());
        let keys = first.keys().unwrap().clone();
        // The cached keys are used: right ones log in...
        let reuse = Some((salt.clone(), n, keys));
        login_with_reuse(&secret, Credential::Password("right".into()), reuse).unwrap();
        // ...and wrong ones fail although the password is right, which
        // proves nothing was derived.
        let other = ScramSecret::generate(m, "svc", "wrong").unwrap();
        let wrong = login_with_reuse(&other, Credential::Password("wrong".into()), None).unwrap();
        let wrong_keys = wrong.keys().unwrap().clone();
        let e = login_with_reuse(
            &secret,
            Credential::Password("right".into()),
            Some((salt.clone(), n, wrong_keys.clone())),
        );
        assert!(e.is_err());
        // Another salt: the cache does not apply and the password is used.
        let mut other_salt = salt.clone();
        other_salt[0] ^= 1;
        login_with_reuse(
            &secret,
            Credential::Password("right".into()),
            Some((other_salt, n, wrong_keys)),
        )
        .unwrap();
    }
}
