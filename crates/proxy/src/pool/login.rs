//! Backend authentication: every backend connection logs in upstream as
//! holdfast's upstream identity (the connection string's user) with
//! SCRAM-SHA-256 or SCRAM-SHA-1, right after its hello, before it serves
//! any request.

use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use holdfast_scram::{ClientConversation, Credential, Mechanism};
use holdfast_wire::{reply, Frame, Limits, Message, MsgFlags};

/// Who backend connections log in as. The password never appears in
/// `Debug` output, logs or errors.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    /// The authentication database (`authSource`, default `admin`).
    pub db: String,
    pub password: String,
    /// `authMechanism` from the connection string; `None`: SCRAM-SHA-256
    /// when the member lists it in `saslSupportedMechs`, else SCRAM-SHA-1.
    pub mechanism: Option<Mechanism>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("db", &self.db)
            .field("password", &"<redacted>")
            .field("mechanism", &self.mechanism.map(Mechanism::name))
            .finish()
    }
}

impl Login {
    /// `db.user`, as `saslSupportedMechs` and error messages name it.
    pub fn principal(&self) -> String {
        format!("{}.{}", self.db, self.user)
    }

    /// The mechanism to use with a member whose hello listed `offered`.
    pub fn mechanism_for(&self, offered: &[String]) -> Mechanism {
        if let Some(m) = self.mechanism {
            return m;
        }
        if offered.is_empty() || offered.iter().any(|m| m == "SCRAM-SHA-256") {
            Mechanism::ScramSha256
        } else {
            Mechanism::ScramSha1
        }
    }
}

/// One step of the conversation: what to send, and what to do with the
/// answer. Kept free of I/O so the whole exchange is unit-tested.
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
        Conversation {
            scram: ClientConversation::new(
                mechanism,
                &login.user,
                Credential::Password(login.password.clone()),
            ),
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

    /// Reads a `saslStart`/`saslContinue` reply. Errors carry the server's
    /// message (never the password).
    pub fn on_reply(&mut self, reply: &Document) -> Result<Step, String> {
        if !reply_ok(reply) {
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
        Login {
            user: "svc".into(),
            db: "admin".into(),
            password: "pa55word".into(),
            mechanism: None,
        }
    }

    fn payload(d: &Document) -> Vec<u8> {
        match d.get("payload") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => panic!("no payload in {d}"),
        }
    }

    #[test]
    fn mechanism_follows_the_connection_string_then_the_members_offer() {
        let mut l = login();
        assert_eq!(l.mechanism_for(&[]), Mechanism::ScramSha256);
        assert_eq!(
            l.mechanism_for(&["SCRAM-SHA-1".into()]),
            Mechanism::ScramSha1
        );
        l.mechanism = Some(Mechanism::ScramSha1);
        assert_eq!(
            l.mechanism_for(&["SCRAM-SHA-256".into()]),
            Mechanism::ScramSha1
        );
        assert!(!format!("{l:?}").contains("pa55word"));
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
