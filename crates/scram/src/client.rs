//! The client side: logs in with a password or with keys, and checks that
//! the server holds the user's ServerKey.

use std::fmt;

use rand::RngCore;

use crate::mechanism::{ct_eq, xor};
use crate::message::{
    b64, escape_username, parse_server_final, parse_server_first, utf8, ServerFinalMsg,
};
use crate::{Mechanism, ScramError, ScramKeys};

/// What the client proves itself with. `Debug` prints neither.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password (prepared per mechanism as MongoDB does).
    Password(String),
    /// ClientKey and ServerKey, for example cached from an earlier login
    /// ([`ClientConversation::keys`]) or recovered by a
    /// [`ServerConversation`](crate::ServerConversation). They only work
    /// against a server whose salt and iteration count are the ones they
    /// were derived with.
    Keys(ScramKeys),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(<redacted>)"),
            Credential::Keys(_) => f.write_str("Keys(<redacted>)"),
        }
    }
}

/// One client-side SCRAM conversation:
/// [`client_first`](Self::client_first),
/// [`server_first`](Self::server_first) (returns client-final),
/// [`server_final`](Self::server_final).
pub struct ClientConversation {
    mechanism: Mechanism,
    user: String,
    credential: Credential,
    nonce: String,
    state: State,
    keys: Option<ScramKeys>,
    salt: Option<Vec<u8>>,
    iterations: Option<u32>,
    /// Keys derived from the password earlier, for one (salt, iterations).
    cached: Option<(Vec<u8>, u32, ScramKeys)>,
}

enum State {
    Start,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Complete,
    Failed,
}

impl ClientConversation {
    /// A conversation with a fresh random nonce (24 bytes, base64).
    pub fn new(mechanism: Mechanism, user: &str, credential: Credential) -> ClientConversation {
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        ClientConversation::with_nonce(mechanism, user, credential, b64(&raw))
    }

    /// A conversation with a given client nonce (printable ASCII without
    /// ','), for reproducible test vectors. Use [`ClientConversation::new`]
    /// otherwise.
    pub fn with_nonce(
        mechanism: Mechanism,
        user: &str,
        credential: Credential,
        nonce: String,
    ) -> ClientConversation {
        ClientConversation {
            mechanism,
            user: user.to_string(),
            credential,
            nonce,
            state: State::Start,
            keys: None,
            salt: None,
            iterations: None,
            cached: None,
        }
    }

    /// Keys this password gave with `salt` and `iterations` before (see
    /// [`keys`](Self::keys)): used instead of deriving them again (Hi is
    /// thousands of HMACs) when the server sends the same salt and count.
    pub fn reuse_keys(&mut self, salt: Vec<u8>, iterations: u32, keys: ScramKeys) {
        self.cached = Some((salt, iterations, keys));
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    fn bare(&self) -> String {
        format!("n={},r={}", escape_username(&self.user), self.nonce)
    }

    /// `n,,n=<user>,r=<nonce>` (`=` and `,` in the user name escaped).
    pub fn client_first(&mut self) -> String {
        if matches!(self.state, State::Start) {
            self.state = State::SentFirst;
        }
        format!("n,,{}", self.bare())
    }

    /// Reads the server-first message and returns the client-final message.
    /// The server's nonce must extend ours, and it must ask for at least
    /// 4,096 iterations.
    pub fn server_first(&mut self, message: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::SentFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Failed;
        let text = utf8(message)?;
        let parsed = parse_server_first(text)?;
        if parsed.nonce.len() <= self.nonce.len() || !parsed.nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        if parsed.iterations < Mechanism::MIN_ITERATIONS {
            return Err(ScramError::IterationCountTooLow(parsed.iterations));
        }
        let m = self.mechanism;
        let cached = self
            .cached
            .take()
            .filter(|(salt, n, k)| *salt == parsed.salt && *n == parsed.iterations && k.fits(m));
        let keys = match (&self.credential, cached) {
            (Credential::Password(_), Some((_, _, keys))) => keys,
            (Credential::Password(pw), None) => {
                ScramKeys::derive(m, &self.user, pw, &parsed.salt, parsed.iterations)?
            }
            (Credential::Keys(k), _) if k.fits(m) => k.clone(),
            (Credential::Keys(_), _) => {
                return Err(ScramError::InvalidSecret(
                    "key length does not match the mechanism",
                ))
            }
        };
        let without_proof = format!("c=biws,r={}", parsed.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.bare());
        let client_signature = m.hmac(&keys.stored_key(m), auth_message.as_bytes());
        let proof = xor(keys.client_key(), &client_signature);
        let server_signature = m.hmac(keys.server_key(), auth_message.as_bytes());
        self.salt = Some(parsed.salt);
        self.iterations = Some(parsed.iterations);
        self.keys = Some(keys);
        self.state = State::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", b64(&proof)))
    }

    /// Checks the server-final message: `v=` must carry the signature only
    /// the holder of the ServerKey can make; `e=` is the server's refusal.
    pub fn server_final(&mut self, message: &[u8]) -> Result<(), ScramError> {
        let expected = match std::mem::replace(&mut self.state, State::Failed) {
            State::SentFinal { server_signature } => server_signature,
            other => {
                self.state = other;
                return Err(ScramError::OutOfOrder);
            }
        };
        match parse_server_final(utf8(message)?)? {
            ServerFinalMsg::Error(e) => Err(ScramError::ServerError(e)),
            ServerFinalMsg::Verifier(v) if ct_eq(&v, &expected) => {
                self.state = State::Complete;
                Ok(())
            }
            ServerFinalMsg::Verifier(_) => Err(ScramError::ServerSignatureMismatch),
        }
    }

    /// The server verified us and we verified the server.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// ClientKey and ServerKey used (derived from the password after
    /// server-first): cache them per (salt, iterations) to skip Hi next
    /// time with [`Credential::Keys`].
    pub fn keys(&self) -> Option<&ScramKeys> {
        self.keys.as_ref()
    }

    /// The salt the server sent.
    pub fn salt(&self) -> Option<&[u8]> {
        self.salt.as_deref()
    }

    /// The iteration count the server sent.
    pub fn iterations(&self) -> Option<u32> {
        self.iterations
    }
}

impl fmt::Debug for ClientConversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.state {
            State::Start => "start",
            State::SentFirst => "sent client-first",
            State::SentFinal { .. } => "sent client-final",
            State::Complete => "complete",
            State::Failed => "failed",
        };
        f.debug_struct("ClientConversation")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user)
            .field("credential", &self.credential)
            .field("step", &step)
            .finish()
    }
}
