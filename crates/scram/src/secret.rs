//! What a SCRAM server stores for a user, and the key pair a client logs in
//! with.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bson::{doc, Bson, Document};
use rand::RngCore;

use crate::mechanism::ct_eq;
use crate::{Mechanism, ScramError};

/// Base64 that accepts input with or without `=` padding (secrets are
/// written by hand and by other tools).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// ClientKey and ServerKey: enough to log in as a user (and to check the
/// server) without the password, for as long as the server keeps the salt
/// and iteration count they were derived with. `Debug` prints no key.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramKeys {
    pub fn new(client_key: Vec<u8>, server_key: Vec<u8>) -> ScramKeys {
        ScramKeys {
            client_key,
            server_key,
        }
    }

    /// ClientKey = HMAC(SaltedPassword, "Client Key"), ServerKey =
    /// HMAC(SaltedPassword, "Server Key").
    pub fn from_salted_password(mechanism: Mechanism, salted_password: &[u8]) -> ScramKeys {
        ScramKeys {
            client_key: mechanism.hmac(salted_password, b"Client Key"),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// SaltedPassword = Hi(prepared password, salt, iterations), then the keys.
    pub fn derive(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramKeys, ScramError> {
        let prepared = mechanism.prepare_password(user, password)?;
        let salted = mechanism.salted_password(&prepared, salt, iterations);
        Ok(ScramKeys::from_salted_password(mechanism, &salted))
    }

    pub fn client_key(&self) -> &[u8] {
        &self.client_key
    }

    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }

    /// StoredKey = H(ClientKey).
    pub fn stored_key(&self, mechanism: Mechanism) -> Vec<u8> {
        mechanism.hash(&self.client_key)
    }

    pub(crate) fn fits(&self, mechanism: Mechanism) -> bool {
        self.client_key.len() == mechanism.key_len() && self.server_key.len() == mechanism.key_len()
    }
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("client_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// A user's stored SCRAM credential for one mechanism: iteration count,
/// salt, StoredKey = H(ClientKey) and ServerKey. It lets a server verify a
/// client and prove itself, but not log in (that needs the ClientKey).
/// `Debug` prints the mechanism, iterations and salt length only.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    mechanism: Mechanism,
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramSecret {
    /// Checks that the keys have the mechanism's length, the salt is not
    /// empty and there are at least 4,096 iterations.
    pub fn new(
        mechanism: Mechanism,
        iterations: u32,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    ) -> Result<ScramSecret, ScramError> {
        if iterations < Mechanism::MIN_ITERATIONS {
            return Err(ScramError::IterationCountTooLow(iterations));
        }
        if salt.is_empty() {
            return Err(ScramError::InvalidSecret("empty salt"));
        }
        if stored_key.len() != mechanism.key_len() || server_key.len() != mechanism.key_len() {
            return Err(ScramError::InvalidSecret(
                "key length does not match the mechanism",
            ));
        }
        Ok(ScramSecret {
            mechanism,
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The secret for `password` with this salt and iteration count.
    pub fn derive(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<ScramSecret, ScramError> {
        if iterations < Mechanism::MIN_ITERATIONS {
            return Err(ScramError::IterationCountTooLow(iterations));
        }
        let keys = ScramKeys::derive(mechanism, user, password, salt, iterations)?;
        ScramSecret::from_keys(mechanism, salt.to_vec(), iterations, &keys)
    }

    /// A new secret as a MongoDB server makes one: a random salt of
    /// [`Mechanism::salt_len`] bytes and [`Mechanism::default_iterations`].
    pub fn generate(
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<ScramSecret, ScramError> {
        let mut salt = vec![0u8; mechanism.salt_len()];
        rand::thread_rng().fill_bytes(&mut salt);
        ScramSecret::derive(
            mechanism,
            user,
            password,
            &salt,
            mechanism.default_iterations(),
        )
    }

    /// The secret matching keys derived with this salt and iteration count.
    pub fn from_keys(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        keys: &ScramKeys,
    ) -> Result<ScramSecret, ScramError> {
        if !keys.fits(mechanism) {
            return Err(ScramError::InvalidSecret(
                "key length does not match the mechanism",
            ));
        }
        ScramSecret::new(
            mechanism,
            iterations,
            salt,
            keys.stored_key(mechanism),
            keys.server_key.clone(),
        )
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }

    /// Whether `keys` are this secret's (H(ClientKey) is the StoredKey and
    /// the ServerKeys agree), compared in constant time.
    pub fn matches_keys(&self, keys: &ScramKeys) -> bool {
        keys.fits(self.mechanism)
            & ct_eq(&keys.stored_key(self.mechanism), &self.stored_key)
            & ct_eq(keys.server_key(), &self.server_key)
    }

    /// Whether `password` is this secret's password (runs Hi once).
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        ScramKeys::derive(self.mechanism, user, password, &self.salt, self.iterations)
            .is_ok_and(|k| self.matches_keys(&k))
    }

    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (or `SCRAM-SHA-1$…`), base64 with or without padding. The salt may
    /// have any non-empty length.
    pub fn parse(text: &str) -> Result<ScramSecret, ScramError> {
        let text = text.trim();
        let mut parts = text.split('$');
        let (Some(mech), Some(params), Some(keys), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ScramError::InvalidSecret(
                "expected <mechanism>$<iterations>:<salt>$<StoredKey>:<ServerKey>",
            ));
        };
        let mechanism = Mechanism::from_name(mech).ok_or(ScramError::UnknownMechanism)?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(ScramError::InvalidSecret("expected <iterations>:<salt>"))?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramError::InvalidSecret("iterations is not a number"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::InvalidSecret("iterations is not a number"))?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::InvalidSecret(
            "expected <StoredKey>:<ServerKey>",
        ))?;
        let decode = |s: &str, what: &'static str| {
            LENIENT
                .decode(s)
                .map_err(|_| ScramError::InvalidSecret(what))
        };
        ScramSecret::new(
            mechanism,
            iterations,
            decode(salt, "salt is not base64")?,
            decode(stored, "StoredKey is not base64")?,
            decode(server, "ServerKey is not base64")?,
        )
    }

    /// The text form [`ScramSecret::parse`] reads (padded base64).
    pub fn to_text(&self) -> String {
        format!(
            "{}${}:{}${}:{}",
            self.mechanism.name(),
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    /// MongoDB's stored form, as `usersInfo` shows it under
    /// `credentials.<mechanism>`: `{iterationCount, salt, storedKey,
    /// serverKey}` with base64 strings.
    pub fn to_credential_document(&self) -> Document {
        doc! {
            "iterationCount": self.iterations as i32,
            "salt": STANDARD.encode(&self.salt),
            "storedKey": STANDARD.encode(&self.stored_key),
            "serverKey": STANDARD.encode(&self.server_key),
        }
    }

    /// Reads [`ScramSecret::to_credential_document`]'s form
    /// (`iterationCount` may be any BSON integer or a whole double).
    pub fn from_credential_document(
        mechanism: Mechanism,
        doc: &Document,
    ) -> Result<ScramSecret, ScramError> {
        let iterations = match doc.get("iterationCount") {
            Some(Bson::Int32(i)) => i64::from(*i),
            Some(Bson::Int64(i)) => *i,
            Some(Bson::Double(d)) if d.fract() == 0.0 && d.is_finite() => *d as i64,
            _ => return Err(ScramError::InvalidSecret("iterationCount missing")),
        };
        let iterations = u32::try_from(iterations)
            .map_err(|_| ScramError::InvalidSecret("iterationCount out of range"))?;
        let field = |name: &str, what: &'static str| match doc.get(name) {
            Some(Bson::String(s)) => STANDARD
                .decode(s)
                .map_err(|_| ScramError::InvalidSecret(what)),
            _ => Err(ScramError::InvalidSecret(what)),
        };
        ScramSecret::new(
            mechanism,
            iterations,
            field("salt", "salt missing or not base64")?,
            field("storedKey", "storedKey missing or not base64")?,
            field("serverKey", "serverKey missing or not base64")?,
        )
    }
}

impl FromStr for ScramSecret {
    type Err = ScramError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScramSecret::parse(s)
    }
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil", salt
    /// "W22ZaJ0SNY7soEsUEjb6gQ==", 4096 iterations. (SCRAM-SHA-256 has no
    /// MongoDB prehash, so the RFC's keys are MongoDB's keys.)
    fn rfc7677() -> ScramSecret {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramSecret::derive(Mechanism::ScramSha256, "user", "pencil", &salt, 4096).unwrap()
    }

    #[test]
    fn rfc7677_secret_text_round_trip() {
        let s = rfc7677();
        let text = s.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        let back = ScramSecret::parse(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(text.parse::<ScramSecret>().unwrap(), s);
        // Unpadded base64 and surrounding whitespace are accepted.
        let unpadded = text.replace('=', "");
        assert_eq!(ScramSecret::parse(&format!("  {unpadded}\n")).unwrap(), s);
    }

    #[test]
    fn derive_checks_and_keys() {
        let s = rfc7677();
        assert!(s.verify_password("user", "pencil"));
        assert!(!s.verify_password("user", "pencil2"));
        let keys = ScramKeys::derive(
            Mechanism::ScramSha256,
            "user",
            "pencil",
            s.salt(),
            s.iterations(),
        )
        .unwrap();
        assert!(s.matches_keys(&keys));
        assert!(!s.matches_keys(&ScramKeys::new(keys.client_key().to_vec(), vec![0; 32])));
        assert!(!s.matches_keys(&ScramKeys::new(vec![1; 20], vec![1; 20])));
        assert_eq!(
            ScramSecret::from_keys(Mechanism::ScramSha256, s.salt().to_vec(), 4096, &keys).unwrap(),
            s
        );
        assert_eq!(
            ScramSecret::derive(Mechanism::ScramSha256, "u", "p", b"salt", 4095),
            Err(ScramError::IterationCountTooLow(4095))
        );
    }

    #[test]
    fn generate_uses_server_defaults() {
        for m in Mechanism::ALL {
            let a = ScramSecret::generate(m, "u", "pw").unwrap();
            let b = ScramSecret::generate(m, "u", "pw").unwrap();
            assert_eq!(a.iterations(), m.default_iterations());
            assert_eq!(a.salt().len(), m.salt_len());
            assert_ne!(a.salt(), b.salt(), "random salts");
            assert_eq!(a.stored_key().len(), m.key_len());
            assert!(a.verify_password("u", "pw"));
        }
        // SHA-1's prehash includes the user name.
        let s = ScramSecret::generate(Mechanism::ScramSha1, "u", "pw").unwrap();
        assert!(!s.verify_password("v", "pw"));
    }

    #[test]
    fn salts_of_any_length_parse() {
        for len in [1usize, 16, 28, 32, 64] {
            let salt = vec![7u8; len];
            let s = ScramSecret::derive(Mechanism::ScramSha1, "u", "p", &salt, 4096).unwrap();
            let back = ScramSecret::parse(&s.to_text()).unwrap();
            assert_eq!(back.salt().len(), len);
            assert_eq!(back.mechanism(), Mechanism::ScramSha1);
            assert!(back.to_text().starts_with("SCRAM-SHA-1$4096:"));
        }
    }

    #[test]
    fn bad_text_forms() {
        let good = rfc7677().to_text();
        let stored_and_server = good.rsplit_once('$').unwrap().1;
        let bad = [
            "".to_string(),
            "SCRAM-SHA-256".to_string(),
            "SCRAM-SHA-256$4096:c2FsdA==".to_string(),
            format!("SCRAM-SHA-512$4096:c2FsdA==${stored_and_server}"),
            format!("scram-sha-256$4096:c2FsdA==${stored_and_server}"),
            format!("SCRAM-SHA-256$4095:c2FsdA==${stored_and_server}"),
            format!("SCRAM-SHA-256$:c2FsdA==${stored_and_server}"),
            format!("SCRAM-SHA-256$+4096:c2FsdA==${stored_and_server}"),
            format!("SCRAM-SHA-256$99999999999:c2FsdA==${stored_and_server}"),
            format!("SCRAM-SHA-256$4096:${stored_and_server}"),
            format!("SCRAM-SHA-256$4096:!!!${stored_and_server}"),
            format!("SCRAM-SHA-256$4096c2FsdA==${stored_and_server}"),
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA".to_string(),
            format!("SCRAM-SHA-1$4096:c2FsdA==${stored_and_server}"),
            format!("{good}$extra"),
            good.replace(':', ";"),
        ];
        for b in &bad {
            assert!(ScramSecret::parse(b).is_err(), "{b}");
        }
    }

    #[test]
    fn credential_document_round_trip() {
        let s = rfc7677();
        let d = s.to_credential_document();
        assert_eq!(d.get_i32("iterationCount").unwrap(), 4096);
        assert_eq!(d.get_str("salt").unwrap(), "W22ZaJ0SNY7soEsUEjb6gQ==");
        assert_eq!(
            ScramSecret::from_credential_document(Mechanism::ScramSha256, &d).unwrap(),
            s
        );
        let mut long = d.clone();
        long.insert("iterationCount", 4096i64);
        assert!(ScramSecret::from_credential_document(Mechanism::ScramSha256, &long).is_ok());
        // The mechanism decides the key length.
        assert!(ScramSecret::from_credential_document(Mechanism::ScramSha1, &d).is_err());
        for key in ["iterationCount", "salt", "storedKey", "serverKey"] {
            let mut missing = d.clone();
            missing.remove(key);
            assert!(
                ScramSecret::from_credential_document(Mechanism::ScramSha256, &missing).is_err(),
                "{key}"
            );
        }
        let mut neg = d.clone();
        neg.insert("iterationCount", -1);
        assert!(ScramSecret::from_credential_document(Mechanism::ScramSha256, &neg).is_err());
    }

    #[test]
    fn debug_prints_no_keys() {
        let s = rfc7677();
        let dbg = format!("{s:?}");
        for secret_part in [
            STANDARD.encode(s.stored_key()),
            STANDARD.encode(s.server_key()),
            format!("{:?}", s.stored_key()),
        ] {
            assert!(!dbg.contains(&secret_part), "{dbg}");
        }
        assert!(dbg.contains("ScramSha256") && dbg.contains("4096"), "{dbg}");
        let keys =
            ScramKeys::derive(Mechanism::ScramSha256, "user", "pencil", s.salt(), 4096).unwrap();
        let dbg = format!("{keys:?}");
        assert!(!dbg.contains(&format!("{:?}", keys.client_key())), "{dbg}");
        assert!(!dbg.contains(&STANDARD.encode(keys.client_key())), "{dbg}");
    }
}
