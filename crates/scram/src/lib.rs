//! holdfast-scram: SCRAM-SHA-1 and SCRAM-SHA-256 exactly as MongoDB runs
//! them, for both sides of a conversation.
//!
//! - [`Mechanism`]: names, server defaults (iterations 10,000 / 15,000,
//!   salts of 16 / 28 bytes, at least 4,096 iterations) and the primitives.
//!   MongoDB prepares passwords its own way: SCRAM-SHA-1 hashes
//!   `hex(md5(user + ":mongo:" + password))` (no SASLprep), SCRAM-SHA-256
//!   hashes SASLprep(password).
//! - [`ScramSecret`]: what a server stores (iterations, salt, StoredKey,
//!   ServerKey), derived from a password or parsed from the pgbouncer-style
//!   text `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
//!   (base64) or from MongoDB's credential document
//!   `{iterationCount, salt, storedKey, serverKey}`.
//! - [`ServerConversation`]: client-first → server-first, client-final →
//!   server-final. On success it hands back the user and the **ClientKey
//!   recovered from the client's proof** (`ClientProof XOR HMAC(StoredKey,
//!   AuthMessage)`, checked by `H(ClientKey) == StoredKey`): with it and the
//!   ServerKey, a proxy holding only the secret can log in to a server that
//!   stores the same secret, as that user.
//! - [`ClientConversation`]: the other side, from a password or from keys
//!   ([`Credential::Keys`]), checking the server's signature.
//! - [`x509`]: the RFC 2253 subject name of a certificate, as MongoDB names
//!   MONGODB-X509 users.
//!
//! ```
//! use holdfast_scram::{ClientConversation, Credential, Mechanism, ScramSecret, ServerConversation};
//!
//! let m = Mechanism::ScramSha256;
//! let secret = ScramSecret::generate(m, "alice", "s3cret").unwrap();
//! let mut client = ClientConversation::new(m, "alice", Credential::Password("s3cret".into()));
//! let mut server = ServerConversation::new(m);
//!
//! let server_first = server
//!     .client_first(client.client_first().as_bytes(), |user| (user == "alice").then(|| secret.clone()))
//!     .unwrap();
//! let client_final = client.server_first(server_first.as_bytes()).unwrap();
//! let done = server.client_final(client_final.as_bytes()).unwrap();
//! client.server_final(done.message.as_bytes()).unwrap();
//! assert_eq!(done.user, "alice");
//! assert_eq!(done.keys.client_key(), client.keys().unwrap().client_key());
//! ```
//!
//! Nothing here logs, and the `Debug` forms of secrets, keys and
//! credentials print no key material.
#![forbid(unsafe_code)]

mod client;
mod mechanism;
mod message;
mod secret;
mod server;
pub mod x509;

pub use client::{ClientConversation, Credential};
pub use mechanism::Mechanism;
pub use secret::{ScramKeys, ScramSecret};
pub use server::{ServerConversation, ServerFinal};

/// Why a SCRAM step or a secret was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// Unknown user or wrong proof (deliberately one kind: the caller
    /// cannot tell them apart).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// A message that does not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=` gs2 flag).
    #[error("channel binding is not supported")]
    ChannelBindingNotSupported,
    /// A mandatory extension (`m=`).
    #[error("SCRAM mandatory extensions are not supported")]
    MandatoryExtension,
    /// An `a=` authorization identity other than the user.
    #[error("the authorization identity differs from the user name")]
    AuthzidMismatch,
    /// The nonce does not continue the conversation's nonce.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// The server offered fewer than 4,096 iterations.
    #[error("iteration count {0} is below the minimum of 4096")]
    IterationCountTooLow(u32),
    /// The server-final signature is wrong: the server does not hold the
    /// user's ServerKey.
    #[error("the server's signature is wrong: the server is not who it claims to be")]
    ServerSignatureMismatch,
    /// The server ended the conversation with `e=<message>`.
    #[error("the server reported an error: {0}")]
    ServerError(String),
    /// SASLprep rejected the password (SCRAM-SHA-256).
    #[error("SASLprep rejected the password")]
    SaslPrep,
    /// A secret (text form, credential document or keys) that cannot be used.
    #[error("invalid SCRAM secret: {0}")]
    InvalidSecret(&'static str),
    /// Not "SCRAM-SHA-1" or "SCRAM-SHA-256".
    #[error("unknown SCRAM mechanism")]
    UnknownMechanism,
    /// A step called out of order, or after the conversation ended.
    #[error("SCRAM step out of order")]
    OutOfOrder,
}
