//! The two SCRAM mechanisms MongoDB speaks and their primitives: H, HMAC,
//! Hi (PBKDF2) and MongoDB's password preparation.

use std::fmt;
use std::str::FromStr;

use hmac::digest::{Digest, KeyInit};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;

use crate::ScramError;

/// SCRAM-SHA-1 or SCRAM-SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    ScramSha1,
    ScramSha256,
}

impl Mechanism {
    /// Both mechanisms, in the order MongoDB lists them.
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha1, Mechanism::ScramSha256];

    /// The lowest iteration count drivers and servers accept.
    pub const MIN_ITERATIONS: u32 = 4096;

    /// `"SCRAM-SHA-1"` or `"SCRAM-SHA-256"`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// The mechanism with this exact (case-sensitive, as MongoDB) name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-1" => Some(Mechanism::ScramSha1),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            _ => None,
        }
    }

    /// The server's default iteration count (`scramIterationCount` 10,000,
    /// `scramSHA256IterationCount` 15,000).
    pub fn default_iterations(self) -> u32 {
        match self {
            Mechanism::ScramSha1 => 10_000,
            Mechanism::ScramSha256 => 15_000,
        }
    }

    /// Length of the salts the server generates (16 and 28 bytes). Salts
    /// of other lengths are valid and accepted everywhere.
    pub fn salt_len(self) -> usize {
        match self {
            Mechanism::ScramSha1 => 16,
            Mechanism::ScramSha256 => 28,
        }
    }

    /// Length of the hash output and of every key (20 and 32 bytes).
    pub fn key_len(self) -> usize {
        match self {
            Mechanism::ScramSha1 => 20,
            Mechanism::ScramSha256 => 32,
        }
    }

    /// The string MongoDB feeds to Hi(): for SCRAM-SHA-1 the hex MD5 of
    /// `user:mongo:password` (no SASLprep), for SCRAM-SHA-256
    /// SASLprep(password).
    pub fn prepare_password(self, user: &str, password: &str) -> Result<String, ScramError> {
        match self {
            Mechanism::ScramSha1 => {
                let mut md5 = Md5::new();
                md5.update(user.as_bytes());
                md5.update(b":mongo:");
                md5.update(password.as_bytes());
                Ok(hex(&md5.finalize()))
            }
            Mechanism::ScramSha256 => stringprep::saslprep(password)
                .map(|p| p.into_owned())
                .map_err(|_| ScramError::SaslPrep),
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => Sha1::digest(data).to_vec(),
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Mechanism::ScramSha1 => run::<Hmac<Sha1>>(key, data),
            Mechanism::ScramSha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi(prepared, salt, iterations) of RFC 5802: PBKDF2 with this
    /// mechanism's HMAC, one block. `prepared` is the output of
    /// [`Mechanism::prepare_password`] (or, for RFC test vectors, the raw
    /// password).
    pub fn salted_password(self, prepared: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        let ok = match self {
            Mechanism::ScramSha1 => {
                pbkdf2::pbkdf2::<Hmac<Sha1>>(prepared.as_bytes(), salt, iterations, &mut out)
            }
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(prepared.as_bytes(), salt, iterations, &mut out)
            }
        };
        ok.expect("HMAC accepts any key length");
        out
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = ScramError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::from_name(s).ok_or(ScramError::UnknownMechanism)
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// `a XOR b` (equal lengths).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<Mechanism>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(Mechanism::from_name("scram-sha-256"), None);
        assert_eq!(Mechanism::from_name("PLAIN"), None);
        assert!("MONGODB-X509".parse::<Mechanism>().is_err());
    }

    #[test]
    fn server_defaults() {
        assert_eq!(Mechanism::ScramSha1.default_iterations(), 10_000);
        assert_eq!(Mechanism::ScramSha256.default_iterations(), 15_000);
        assert_eq!(Mechanism::ScramSha1.salt_len(), 16);
        assert_eq!(Mechanism::ScramSha256.salt_len(), 28);
        assert_eq!(Mechanism::MIN_ITERATIONS, 4096);
        assert_eq!(Mechanism::ScramSha1.hash(b"").len(), 20);
        assert_eq!(Mechanism::ScramSha256.hash(b"").len(), 32);
    }

    #[test]
    fn hash_and_hmac_known_values() {
        // FIPS 180 "abc" and RFC 4231 test case 2 / RFC 2202 test case 2.
        assert_eq!(
            hex(&Mechanism::ScramSha1.hash(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&Mechanism::ScramSha256.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&Mechanism::ScramSha1.hmac(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(&Mechanism::ScramSha256.hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// MongoDB's SCRAM-SHA-1 prehash, cross-checked with pymongo 4.20.1:
    /// `pymongo.auth_shared._password_digest("user", "pencil")` (the same
    /// value as `hashlib.md5(b"user:mongo:pencil").hexdigest()`).
    #[test]
    fn sha1_password_is_the_mongodb_md5_digest() {
        assert_eq!(
            Mechanism::ScramSha1
                .prepare_password("user", "pencil")
                .unwrap(),
            "1c33006ec1ffd90f9cadcbcc0e118200"
        );
        // No SASLprep for SHA-1: the password is hashed as given.
        assert_eq!(
            Mechanism::ScramSha1
                .prepare_password("user", "I\u{00AD}X")
                .unwrap(),
            {
                let mut md5 = Md5::new();
                md5.update("user:mongo:I\u{00AD}X".as_bytes());
                hex(&md5.finalize())
            }
        );
    }

    #[test]
    fn sha256_password_is_saslprepped() {
        let m = Mechanism::ScramSha256;
        // RFC 4013 examples: soft hyphen mapped to nothing, NBSP to space,
        // compatibility forms normalised (NFKC), prohibited characters fail.
        assert_eq!(m.prepare_password("u", "I\u{00AD}X").unwrap(), "IX");
        assert_eq!(m.prepare_password("u", "user").unwrap(), "user");
        assert_eq!(m.prepare_password("u", "\u{00AA}").unwrap(), "a");
        assert_eq!(m.prepare_password("u", "\u{2168}").unwrap(), "IX");
        assert_eq!(m.prepare_password("u", "a\u{00A0}b").unwrap(), "a b");
        assert_eq!(
            m.prepare_password("u", "\u{0007}"),
            Err(ScramError::SaslPrep)
        );
        assert_eq!(
            m.prepare_password("u", "\u{0627}\u{0031}"),
            Err(ScramError::SaslPrep)
        );
    }

    #[test]
    fn ct_eq_compares_lengths_and_bytes() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert_eq!(xor(&[1, 2, 3], &[3, 2, 1]), vec![2, 0, 2]);
    }
}
