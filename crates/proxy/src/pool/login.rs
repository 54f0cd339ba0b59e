//! Backend authentication: every backend connection logs in upstream right
//! after its hello, before it serves any request — as holdfast's upstream
//! identity (the connection string's user), or as the client's own user
//! when holdfast keeps per-user backend connections.
//!
//! - SCRAM-SHA-256 or SCRAM-SHA-1 with a password: the mechanism from the
//!   connection string, else by the member's `saslSupportedMechs`. The
//!   first step rides in the hello (speculative authentication, one round
//!   trip less); keys derived from the password are cached per salt and
//!   iteration count, so Hi runs once, not per connection.
//! - SCRAM with the ClientKey and ServerKey recovered from a client's login
//!   to holdfast (the user's password is never known).
//! - MONGODB-X509 with holdfast's TLS client certificate.
//!
//! The conversation is kept free of I/O so it is unit-tested whole.

use std::sync::Mutex;

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use holdfast_scram::{ClientConversation, Credential, Mechanism, ScramKeys};
use holdfast_wire::{reply, Frame, Limits, Message, MsgFlags};

/// How a backend connection proves who it is.
pub enum Method {
    /// SCRAM with a password; `mechanism`: `authMechanism`, or `None` to
    /// take SCRAM-SHA-256 when the member offers it, else SCRAM-SHA-1.
    Password {
        password: String,
        mechanism: Option<Mechanism>,
        /// Keys derived before.
        cache: Mutex<Option<CachedKeys>>,
    },
    /// SCRAM with the keys recovered from the user's own login.
    Keys {
        mechanism: Mechanism,
        keys: ScramKeys,
    },
    /// MONGODB-X509 with the TLS client certificate.
    X509,
}

/// Keys a password gave: (mechanism, salt, iterations, keys).
pub type CachedKeys = (Mechanism, Vec<u8>, u32, ScramKeys);

/// Who backend connections log in as. Secrets never appear in `Debug`
/// output, logs or errors.
pub struct Login {
    pub user: String,
    /// The authentication database (`authSource`; `$external` for X.509).
    pub db: String,
    pub method: Method,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match &self.method {
            Method::Password { mechanism, .. } => {
                format!(
                    "password, {}",
                    mechanism.map_or("negotiated", Mechanism::name)
                )
            }
            Method::Keys { mechanism, .. } => format!("recovered keys, {}", mechanism.name()),
            Method::X509 => "MONGODB-X509".to_string(),
        };
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("db", &self.db)
            .field("method", &method)
            .finish()
    }
}

impl Login {
    /// SCRAM with a password.
    pub fn password(user: &str, db: &str, password: &str, mechanism: Option<Mechanism>) -> Login {
        Login {
            user: user.to_string(),
            db: db.to_string(),
            method: Method::Password {
                password: password.to_string(),
                mechanism,
                cache: Mutex::new(None),
            },
        }
    }

    /// `db.user`, as `saslSupportedMechs` and error messages name it.
    pub fn principal(&self) -> String {
        format!("{}.{}", self.db, self.user)
    }

    /// The mechanism to use with a member whose hello listed `offered`
    /// (`None` for MONGODB-X509).
    pub fn mechanism_for(&self, offered: &[String]) -> Option<Mechanism> {
        match &self.method {
            Method::Password {
                mechanism: Some(m), ..
            }
            | Method::Keys { mechanism: m, .. } => Some(*m),
            Method::Password {
                mechanism: None, ..
            } => {
                if offered.is_empty() || offered.iter().any(|m| m == "SCRAM-SHA-256") {
                    Some(Mechanism::ScramSha256)
                } else {
                    Some(Mechanism::ScramSha1)
                }
            }
            Method::X509 => None,
        }
    }

    /// Whether hello should ask for the user's mechanisms.
    pub fn negotiates(&self) -> bool {
        matches!(
            self.method,
            Method::Password {
                mechanism: None,
                ..
            }
        )
    }

    /// The mechanism's name, for logs and metrics.
    pub fn mechanism_name(&self, mechanism: Option<Mechanism>) -> &'static str {
        mechanism.map_or("MONGODB-X509", Mechanism::name)
    }

    fn credential(&self) -> Credential {
        match &self.method {
            Method::Password { password, .. } => Credential::Password(password.clone()),
            Method::Keys { keys, .. } => Credential::Keys(keys.clone()),
            Method::X509 => Credential::Password(String::new()),
        }
    }

    /// The first step of a login, for hello's `speculativeAuthenticate`
    /// (with `db` instead of `$db`), and the conversation it starts.
    pub fn speculative(&self) -> (Document, Option<Conversation>) {
        match self.mechanism_for(&[]) {
            None => (self.x509_command(false), None),
            Some(m) => {
                let mut c = Conversation::new(self, m);
                let mut first = c.start();
                first.remove("$db");
                first.insert("db", self.db.clone());
                (first, Some(c))
            }
        }
    }

    /// `authenticate` for MONGODB-X509 (the user is the certificate's
    /// subject; the server takes it from the certificate when absent).
    pub fn x509_command(&self, with_db: bool) -> Document {
        let mut d = doc! {"authenticate": 1, "mechanism": "MONGODB-X509"};
        if !self.user.is_empty() {
            d.insert("user", self.user.clone());
        }
        if with_db {
            d.insert("$db", "$external");
        } else {
            d.insert("db", "$external");
        }
        d
    }
}

/// One SCRAM conversation: what to send, and what to do with the answer.
pub struct Conversation {
    scram: ClientConversation,
    db: String,
    conversation_id: Option<Bson>,
}

/// The server's answer to a step.
pub enum Step {
    /// Send this command next.
    Send(Document),
    /// Logged in.
    Done,
}

impl Conversation {
    pub fn new(login: &Login, mechanism: Mechanism) -> Conversation {
        let mut scram = ClientConversation::new(mechanism, &login.user, login.credential());
        if let Method::Password { cache, .. } = &login.method {
            if let Some((m, salt, n, keys)) = cache.lock().unwrap().clone() {
                if m == mechanism {
                    scram.reuse_keys(salt, n, keys);
                }
            }
        }
        Conversation {
            scram,
            db: login.db.clone(),
            conversation_id: None,
        }
    }

    /// `saslStart` with the client-first message.
    pub fn start(&mut self) -> Document {
        let first = self.scram.client_first();
        doc! {
            "saslStart": 1,
            "mechanism": self.scram.mechanism().name(),
            "payload": binary(first.into_bytes()),
            "autoAuthorize": 1,
            "options": {"skipEmptyExchange": true},
            "$db": self.db.clone(),
        }
    }

    /// Reads a `saslStart`/`saslContinue` reply (or hello's
    /// `speculativeAuthenticate`, which has no `ok`). Errors carry the
    /// server's message (never a secret).
    pub fn on_reply(&mut self, reply: &Document) -> Result<Step, String> {
        if reply.contains_key("ok") && !reply_ok(reply) {
            let code = reply.get_i32("code").unwrap_or(0);
            let msg = reply.get_str("errmsg").unwrap_or("no message");
            return Err(format!("{msg} (code {code})"));
        }
        if let Some(id) = reply.get("conversationId") {
            self.conversation_id = Some(id.clone());
        }
        let payload = match reply.get("payload") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => Vec::new(),
        };
        let done = reply.get_bool("done").unwrap_or(false);
        let next = if self.scram.is_complete() {
            None
        } else if self.conversation_has_final(&payload) {
            self.scram
                .server_final(&payload)
                .map_err(|e| format!("the server's proof is wrong: {e}"))?;
            None
        } else {
            Some(
                self.scram
                    .server_first(&payload)
                    .map_err(|e| format!("bad server-first message: {e}"))?,
            )
        };
        match (next, done) {
            (Some(final_msg), _) => Ok(Step::Send(self.continue_with(final_msg.into_bytes()))),
            (None, true) => Ok(Step::Done),
            // Without skipEmptyExchange the server wants one empty step more.
            (None, false) => Ok(Step::Send(self.continue_with(Vec::new()))),
        }
    }

    /// After a successful login: the keys the password gave, for the next
    /// connection of `login`.
    pub fn remember(&self, login: &Login) {
        if let (Method::Password { cache, .. }, Some(keys), Some(salt), Some(n)) = (
            &login.method,
            self.scram.keys(),
            self.scram.salt(),
            self.scram.iterations(),
        ) {
            *cache.lock().unwrap() = Some((self.scram.mechanism(), salt.to_vec(), n, keys.clone()));
        }
    }

    fn conversation_has_final(&self, payload: &[u8]) -> bool {
        payload.starts_with(b"v=") || payload.starts_with(b"e=")
    }

    fn continue_with(&self, payload: Vec<u8>) -> Document {
        doc! {
            "saslContinue": 1,
            "conversationId": self.conversation_id.clone().unwrap_or(Bson::Int32(1)),
            "payload": binary(payload),
            "$db": self.db.clone(),
        }
    }
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn reply_ok(d: &Document) -> bool {
    match d.get("ok") {
        Some(Bson::Double(v)) => *v == 1.0,
        Some(Bson::Int32(v)) => *v == 1,
        Some(Bson::Int64(v)) => *v == 1,
        _ => false,
    }
}

/// A command as an OP_MSG request frame.
pub fn request(d: &Document) -> Frame {
    reply::msg_reply_bytes(0, 0, MsgFlags::empty(), reply::document_bytes(d))
}

/// The body of a reply frame.
pub fn body(f: &Frame) -> Option<Document> {
    let limits = Limits {
        verify_checksum: false,
        ..Default::default()
    };
    match f.parse(&limits).ok()? {
        Message::Msg(m) => Document::from_reader(&m.body[..]).ok(),
        _ => None,
    }
}

/// The error of a failed command reply (`errmsg (code N)`), if it failed.
pub fn error_of(reply: &Document) -> Option<String> {
    if reply_ok(reply) {
        return None;
    }
    let code = reply.get_i32("code").unwrap_or(0);
    let msg = reply.get_str("errmsg").unwrap_or("no message");
    Some(format!("{msg} (code {code})"))
}

/// `saslSupportedMechs` of a hello reply.
pub fn offered(hello: &Document) -> Vec<String> {
    hello
        .get_array("saslSupportedMechs")
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_scram::{ScramSecret, ServerConversation};

    fn login() -> Login {
        Login::password("svc", "admin", "pa55word", None)
    }

    fn payload(d: &Document) -> Vec<u8> {
        match d.get("payload") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => panic!("no payload in {d}"),
        }
    }

    #[test]
    fn mechanism_follows_the_connection_string_then_the_members_offer() {
        let l = login();
        assert_eq!(l.mechanism_for(&[]), Some(Mechanism::ScramSha256));
        assert_eq!(
            l.mechanism_for(&["SCRAM-SHA-1".into()]),
            Some(Mechanism::ScramSha1)
        );
        assert!(l.negotiates());
        let l = Login::password("svc", "admin", "pa55word", Some(Mechanism::ScramSha1));
        assert_eq!(
            l.mechanism_for(&["SCRAM-SHA-256".into()]),
            Some(Mechanism::ScramSha1)
        );
        assert!(!l.negotiates());
        assert!(!format!("{l:?}").contains("pa55word"));
        let x = Login {
            user: "CN=holdfast".into(),
            db: "$external".into(),
            method: Method::X509,
        };
        assert_eq!(x.mechanism_for(&[]), None);
        assert_eq!(
            x.speculative().0,
            doc! {"authenticate": 1, "mechanism": "MONGODB-X509", "user": "CN=holdfast", "db": "$external"}
        );
    }

    #[test]
    fn a_whole_conversation_against_the_scram_server() {
        for mech in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
            let secret = ScramSecret::generate(mech, "svc", "pa55word").unwrap();
            let mut server = ServerConversation::new(mech);
            let mut c = Conversation::new(&login(), mech);
            let start = c.start();
            assert_eq!(start.get_str("mechanism").unwrap(), mech.name());
            let first = server
                .client_first(&payload(&start), |_| Some(secret))
                .unwrap();
            let reply = doc! {"ok": 1.0, "conversationId": 1, "done": false,
            "payload": binary(first.into_bytes())};
            let Step::Send(cont) = c.on_reply(&reply).unwrap() else {
                panic!("client-final expected")
            };
            let fin = server.client_final(&payload(&cont)).unwrap();
            let reply = doc! {"ok": 1.0, "conversationId": 1, "done": true,
            "payload": binary(fin.message.into_bytes())};
            assert!(matches!(c.on_reply(&reply).unwrap(), Step::Done));
        }
    }

    #[test]
    fn a_speculative_login_continues_from_hellos_answer_and_caches_its_keys() {
        let mech = Mechanism::ScramSha256;
        let secret = ScramSecret::generate(mech, "svc", "pa55word").unwrap();
        let l = login();
        let (first, c) = l.speculative();
        let mut c = c.unwrap();
        assert_eq!(first.get_str("db").unwrap(), "admin");
        assert!(!first.contains_key("$db"));
        let mut server = ServerConversation::new(mech);
        let sf = server
            .client_first(&payload(&first), |_| Some(secret.clone()))
            .unwrap();
        // hello's speculativeAuthenticate: no `ok` field.
        let spec = doc! {"conversationId": 1, "done": false, "payload": binary(sf.into_bytes())};
        let Step::Send(cont) = c.on_reply(&spec).unwrap() else {
            panic!("client-final expected")
        };
        assert!(cont.contains_key("saslContinue"));
        let fin = server.client_final(&payload(&cont)).unwrap();
        let reply = doc! {"ok": 1.0, "conversationId": 1, "done": true,
        "payload": binary(fin.message.into_bytes())};
        assert!(matches!(c.on_reply(&reply).unwrap(), Step::Done));
        c.remember(&l);
        let Method::Password { cache, .. } = &l.method else {
            panic!()
        };
        let (m, salt, n, _) = cache.lock().unwrap().clone().unwrap();
        assert_eq!(
            (m, salt.as_slice(), n),
            (mech, secret.salt(), secret.iterations())
        );
        // The next conversation reuses the keys and still logs in.
        let mut server = ServerConversation::new(mech);
        let mut c = Conversation::new(&l, mech);
        let sf = server
            .client_first(&payload(&c.start()), |_| Some(secret.clone()))
            .unwrap();
        let reply = doc! {"ok": 1.0, "conversationId": 1, "done": false, "payload": binary(sf.into_bytes())};
        let Step::Send(cont) = c.on_reply(&reply).unwrap() else {
            panic!()
        };
        assert!(server.client_final(&payload(&cont)).is_ok());
    }

    #[test]
    fn a_refusal_is_an_error_with_the_servers_message() {
        let mut c = Conversation::new(&login(), Mechanism::ScramSha256);
        c.start();
        let e = c
            .on_reply(&doc! {"ok": 0.0, "code": 18, "errmsg": "Authentication failed."})
            .err()
            .unwrap();
        assert_eq!(e, "Authentication failed. (code 18)");
    }

    #[test]
    fn a_forged_server_signature_is_refused() {
        let mech = Mechanism::ScramSha256;
        let secret = ScramSecret::generate(mech, "svc", "other password").unwrap();
        let mut server = ServerConversation::new(mech);
        let mut c = Conversation::new(&login(), mech);
        let first = server
            .client_first(&payload(&c.start()), |_| Some(secret))
            .unwrap();
        let reply = doc! {"ok": 1.0, "conversationId": 1, "done": false,
        "payload": binary(first.into_bytes())};
        let Step::Send(_) = c.on_reply(&reply).unwrap() else {
            panic!()
        };
        // A server that does not know the password cannot prove itself.
        let forged = doc! {"ok": 1.0, "conversationId": 1, "done": true,
        "payload": binary(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec())};
        assert!(c.on_reply(&forged).is_err());
    }
}
