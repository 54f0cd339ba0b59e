//! The server side: verifies a client's proof against a stored secret and
//! recovers the client's ClientKey.

use std::fmt;
use std::sync::OnceLock;

use rand::RngCore;

use crate::mechanism::{ct_eq, xor};
use crate::message::{b64, parse_client_final, parse_client_first, utf8};
use crate::{Mechanism, ScramError, ScramKeys, ScramSecret};

/// One server-side SCRAM conversation:
/// [`client_first`](Self::client_first) then
/// [`client_final`](Self::client_final). Any error ends it.
///
/// A user the lookup does not know gets a plausible server-first (a salt
/// derived from the user name and a per-process key, the default iteration
/// count), and the conversation fails at the proof exactly like a wrong
/// password, so neither the reply's shape nor the work done reveals whether
/// the user exists.
pub struct ServerConversation {
    mechanism: Mechanism,
    state: State,
}

enum State {
    Start,
    SentFirst(Box<Pending>),
    Done { user: Option<String> },
}

struct Pending {
    user: String,
    gs2_header: String,
    /// client-first-message-bare "," server-first-message
    auth_prefix: String,
    nonce: String,
    secret: ScramSecret,
    known: bool,
}

/// A successful conversation's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFinal {
    /// `v=<ServerSignature>`, to send to the client.
    pub message: String,
    /// The authenticated user (escapes decoded).
    pub user: String,
    /// The ClientKey recovered from the proof and the secret's ServerKey:
    /// what a client needs to log in as this user wherever the same secret
    /// (salt and iterations) is stored.
    pub keys: ScramKeys,
}

impl ServerFinal {
    pub fn client_key(&self) -> &[u8] {
        self.keys.client_key()
    }
}

impl ServerConversation {
    pub fn new(mechanism: Mechanism) -> ServerConversation {
        ServerConversation {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The user named in the client-first message, once it was read.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Start => None,
            State::SentFirst(p) => Some(&p.user),
            State::Done { user } => user.as_deref(),
        }
    }

    /// Whether the conversation ended (successfully or not).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// Reads `n,,n=<user>,r=<client nonce>` and answers
    /// `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`. `lookup`
    /// gets the decoded user name; a secret of another mechanism counts as
    /// no secret.
    ///
    /// Rejected: channel binding (`p=`), mandatory extensions (`m=`), an
    /// authzid (`a=`) other than the user, bad `=` escapes, malformed
    /// messages.
    pub fn client_first<F>(&mut self, message: &[u8], lookup: F) -> Result<String, ScramError>
    where
        F: FnOnce(&str) -> Option<ScramSecret>,
    {
        if !matches!(self.state, State::Start) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Done { user: None };
        let parsed = parse_client_first(utf8(message)?)?;
        let found = lookup(&parsed.user).filter(|s| s.mechanism() == self.mechanism);
        let known = found.is_some();
        let secret = match found {
            Some(s) => s,
            None => fake_secret(self.mechanism, &parsed.user),
        };
        let mut snonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut snonce);
        let nonce = format!("{}{}", parsed.nonce, b64(&snonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64(secret.salt()),
            secret.iterations()
        );
        self.state = State::SentFirst(Box::new(Pending {
            auth_prefix: format!("{},{server_first}", parsed.bare),
            user: parsed.user,
            gs2_header: parsed.gs2_header.to_string(),
            nonce,
            secret,
            known,
        }));
        Ok(server_first)
    }

    /// Reads `c=<gs2 header>,r=<nonce>,p=<proof>`, verifies the proof and
    /// answers `v=<ServerSignature>`. An unknown user and a wrong proof both
    /// give [`ScramError::AuthenticationFailed`].
    pub fn client_final(&mut self, message: &[u8]) -> Result<ServerFinal, ScramError> {
        let pending = match std::mem::replace(&mut self.state, State::Done { user: None }) {
            State::SentFirst(p) => p,
            other => {
                self.state = other;
                return Err(ScramError::OutOfOrder);
            }
        };
        self.state = State::Done {
            user: Some(pending.user.clone()),
        };
        let parsed = parse_client_final(utf8(message)?)?;
        if parsed.channel_binding != pending.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "client-final: channel binding differs from the gs2 header",
            ));
        }
        if parsed.nonce != pending.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let m = self.mechanism;
        let secret = &pending.secret;
        let auth_message = format!("{},{}", pending.auth_prefix, parsed.without_proof);
        let client_signature = m.hmac(secret.stored_key(), auth_message.as_bytes());
        if parsed.proof.len() != client_signature.len() {
            return Err(ScramError::AuthenticationFailed);
        }
        let client_key = xor(&parsed.proof, &client_signature);
        let proof_ok = ct_eq(&m.hash(&client_key), secret.stored_key());
        if !(proof_ok && pending.known) {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature = m.hmac(secret.server_key(), auth_message.as_bytes());
        Ok(ServerFinal {
            message: format!("v={}", b64(&server_signature)),
            user: pending.user.clone(),
            keys: ScramKeys::new(client_key, secret.server_key().to_vec()),
        })
    }
}

impl fmt::Debug for ServerConversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = match self.state {
            State::Start => "start",
            State::SentFirst(_) => "sent server-first",
            State::Done { .. } => "done",
        };
        f.debug_struct("ServerConversation")
            .field("mechanism", &self.mechanism)
            .field("user", &self.user())
            .field("step", &step)
            .finish()
    }
}

/// A stand-in secret for an unknown user: the same salt for the same name
/// within a process (so asking twice does not reveal anything), keys no
/// password produces.
fn fake_secret(mechanism: Mechanism, user: &str) -> ScramSecret {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        k
    });
    let mut input = mechanism.name().as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(user.as_bytes());
    let mut salt = Mechanism::ScramSha256.hmac(key, &input);
    salt.truncate(mechanism.salt_len());
    let mut stored = vec![0u8; mechanism.key_len()];
    let mut server = vec![0u8; mechanism.key_len()];
    rand::thread_rng().fill_bytes(&mut stored);
    rand::thread_rng().fill_bytes(&mut server);
    ScramSecret::new(
        mechanism,
        mechanism.default_iterations(),
        salt,
        stored,
        server,
    )
    .expect("a well-formed stand-in secret")
}
