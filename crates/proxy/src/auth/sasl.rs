//! One client connection's authentication: the SASL conversation over
//! `saslStart`/`saslContinue` (or speculatively in hello), X.509 over
//! `authenticate`, and who the connection is once logged in — as MongoDB
//! runs them: conversation id 1, `skipEmptyExchange`, the same
//! "Authentication failed." for every failure, one user per connection.

use std::sync::Arc;

use base64::Engine;
use bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use holdfast_scram::{Mechanism, ScramKeys, ServerConversation};
use holdfast_wire::codes;

use super::{Principal, Principals, User, Users};

/// MechanismUnavailable.
const MECHANISM_UNAVAILABLE: i32 = 334;
/// "Each client connection may only be authenticated once".
const ONE_USER_PER_CONNECTION: i32 = 5626701;

fn error(code: i32, msg: impl Into<String>) -> Document {
    doc! {"ok": 0.0, "errmsg": msg.into(), "code": code, "codeName": codes::name(code)}
}

fn failed() -> Document {
    error(codes::AUTHENTICATION_FAILED, "Authentication failed.")
}

/// A conversation in progress.
struct Login {
    conv: ServerConversation,
    db: String,
    user: Option<Arc<User>>,
    skip_empty: bool,
    /// The client sent its payload as a base64 string, not binary.
    base64: bool,
    /// Done on our side; one empty step left (no skipEmptyExchange).
    awaiting_empty: bool,
}

/// The authentication state of one client connection.
#[derive(Default)]
pub struct ClientAuth {
    login: Option<Login>,
    /// The logged-in user (`db`, `name`) and who it is upstream.
    user: Option<(String, String)>,
    principal: Option<Arc<Principal>>,
    /// The subject of the client's TLS certificate, if it presented one.
    pub peer_subject: Option<String>,
    /// The mechanism of the last saslStart (for metrics).
    pub mechanism: Option<&'static str>,
}

fn payload_of(cmd: &Document) -> Option<(Vec<u8>, bool)> {
    match cmd.get("payload")? {
        Bson::Binary(b) => Some((b.bytes.clone(), false)),
        Bson::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .ok()
            .map(|b| (b, true)),
        _ => None,
    }
}

fn payload(bytes: &[u8], base64: bool) -> Bson {
    if base64 {
        Bson::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        })
    }
}

/// What a SASL step led to.
pub enum Step {
    /// Reply with this; nothing changed.
    Reply(Document),
    /// The client logged in: reply with this.
    LoggedIn(Document),
}

impl Step {
    pub fn reply(self) -> Document {
        match self {
            Step::Reply(d) | Step::LoggedIn(d) => d,
        }
    }
}

impl ClientAuth {
    /// Who this connection runs as upstream: its user's principal, or
    /// `None` while it has not logged in.
    pub fn principal(&self) -> Option<Arc<Principal>> {
        self.principal.clone()
    }

    pub fn logged_in(&self) -> bool {
        self.user.is_some()
    }

    /// `saslStart` (also the speculative one in hello).
    pub fn sasl_start(&mut self, users: &Users, cmd: &Document, db: &str) -> Step {
        if !users.is_configured() {
            return Step::Reply(error(
                codes::AUTHENTICATION_FAILED,
                "holdfast has no users configured (users_file is not set): connect without credentials; holdfast reaches the replica set with its own upstream identity",
            ));
        }
        let Some(m) = cmd.get_str("mechanism").ok().and_then(Mechanism::from_name) else {
            let name = cmd.get_str("mechanism").unwrap_or("none");
            return Step::Reply(error(
                MECHANISM_UNAVAILABLE,
                format!("Received authentication for mechanism {name} which is not enabled"),
            ));
        };
        let Some((client_first, base64)) = payload_of(cmd) else {
            return Step::Reply(error(codes::PROTOCOL_ERROR, "saslStart needs a payload"));
        };
        let skip_empty = cmd
            .get_document("options")
            .ok()
            .and_then(|o| o.get_bool("skipEmptyExchange").ok())
            .unwrap_or(false);
        self.mechanism = Some(m.name());
        let mut conv = ServerConversation::new(m);
        let mut found = None;
        let first = conv.client_first(&client_first, |name| {
            let u = users.get(db, name)?;
            let s = u.secret(m).cloned();
            found = Some(u);
            s
        });
        let Ok(server_first) = first else {
            return Step::Reply(failed());
        };
        self.login = Some(Login {
            conv,
            db: db.to_string(),
            user: found.filter(|u| u.secret(m).is_some()),
            skip_empty,
            base64,
            awaiting_empty: false,
        });
        Step::Reply(
            doc! {"conversationId": 1, "done": false, "payload": payload(server_first.as_bytes(), base64), "ok": 1.0},
        )
    }

    /// `saslContinue`.
    pub fn sasl_continue(&mut self, principals: &Principals, cmd: &Document) -> Step {
        let id = cmd
            .get("conversationId")
            .and_then(holdfast_wire::values::bson_as_i64);
        let Some(mut login) = self.login.take().filter(|_| id == Some(1)) else {
            return Step::Reply(error(codes::PROTOCOL_ERROR, "No SASL session state found"));
        };
        if login.awaiting_empty {
            return Step::Reply(
                doc! {"conversationId": 1, "done": true, "payload": payload(b"", login.base64), "ok": 1.0},
            );
        }
        let Some((client_final, _)) = payload_of(cmd) else {
            return Step::Reply(failed());
        };
        let (Ok(done), Some(user)) = (login.conv.client_final(&client_final), login.user.clone())
        else {
            return Step::Reply(failed());
        };
        if let Err(e) = self.become_user(&user, &login.db) {
            return Step::Reply(e);
        }
        let mechanism = login.conv.mechanism();
        self.principal = Some(principals.of(&user, mechanism, done.keys.clone()));
        let finished = login.skip_empty;
        let reply = doc! {"conversationId": 1, "done": finished, "payload": payload(done.message.as_bytes(), login.base64), "ok": 1.0};
        if !finished {
            login.awaiting_empty = true;
            self.login = Some(login);
        }
        Step::LoggedIn(reply)
    }

    /// One user per connection: the same user again is fine.
    fn become_user(&mut self, user: &User, db: &str) -> Result<(), Document> {
        let who = (db.to_string(), user.name.clone());
        match &self.user {
            Some(u) if *u != who => Err(error(
                ONE_USER_PER_CONNECTION,
                "Each client connection may only be authenticated once",
            )),
            _ => {
                self.user = Some(who);
                Ok(())
            }
        }
    }

    /// `authenticate`: MONGODB-X509 with the connection's client
    /// certificate; MONGODB-CR is gone (use SCRAM-SHA-1).
    pub fn authenticate(
        &mut self,
        users: &Users,
        principals: &Principals,
        cmd: &Document,
        db: &str,
    ) -> Step {
        match cmd.get_str("mechanism").unwrap_or("MONGODB-CR") {
            "MONGODB-X509" => {}
            "MONGODB-CR" => {
                return Step::Reply(error(MECHANISM_UNAVAILABLE, "MONGODB-CR is not supported (removed from MongoDB 4.0); use SCRAM-SHA-1, which every driver that speaks MONGODB-CR also speaks"))
            }
            other => return Step::Reply(error(MECHANISM_UNAVAILABLE, format!("Received authentication for mechanism {other} which is not enabled"))),
        }
        if db != "$external" {
            return Step::Reply(error(
                codes::PROTOCOL_ERROR,
                "X.509 authentication must always use the $external database.",
            ));
        }
        let Some(subject) = self.peer_subject.clone() else {
            return Step::Reply(error(
                codes::PROTOCOL_ERROR,
                "No verified subject name available from client",
            ));
        };
        if cmd.get_str("user").is_ok_and(|u| u != subject) {
            return Step::Reply(failed());
        }
        let Some(user) = users.get("$external", &subject) else {
            return Step::Reply(error(
                codes::USER_NOT_FOUND,
                format!("Could not find user \"{subject}\" for db \"$external\""),
            ));
        };
        if let Err(e) = self.become_user(&user, "$external") {
            return Step::Reply(e);
        }
        let keys = ScramKeys::new(Vec::new(), Vec::new());
        self.principal = Some(principals.of(&user, Mechanism::ScramSha256, keys));
        Step::LoggedIn(doc! {"dbname": "$external", "user": subject, "ok": 1.0})
    }

    /// The fields a hello reply gets: `saslSupportedMechs` for a known
    /// user, `speculativeAuthenticate` (the saslStart reply without `ok`)
    /// when the speculative step went through.
    pub fn hello(
        &mut self,
        users: &Users,
        principals: &Principals,
        hello: &Document,
        reply: &mut Document,
    ) {
        if let Ok(who) = hello.get_str("saslSupportedMechs") {
            if let Some((db, name)) = who.split_once('.') {
                if let Some(u) = users.get(db, name) {
                    let mechs: Vec<Bson> =
                        u.mechanism_names().into_iter().map(Bson::from).collect();
                    reply.insert("saslSupportedMechs", mechs);
                }
            }
        }
        let Ok(spec) = hello.get_document("speculativeAuthenticate") else {
            return;
        };
        let db = spec.get_str("db").unwrap_or("admin").to_string();
        let step = if spec.contains_key("saslStart") {
            self.sasl_start(users, spec, &db)
        } else if spec.contains_key("authenticate") {
            self.authenticate(users, principals, spec, &db)
        } else {
            return;
        };
        let mut d = step.reply();
        if d.get_f64("ok") == Ok(1.0) {
            d.remove("ok");
            reply.insert("speculativeAuthenticate", d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_scram::{ClientConversation, Credential};

    fn users() -> Users {
        let text = "[[user]]\nname = \"app\"\npassword = \"pw\"\n\n[[user]]\nname = \"other\"\npassword = \"pw2\"\n\n[[user]]\nname = \"CN=c\"\ndb = \"$external\"\nupstream = \"service\"\n";
        let mut u = Users::parse(text, "users.toml", None).unwrap();
        u.path = Some("users.toml".into());
        u
    }

    fn bin(b: &[u8]) -> Bson {
        payload(b, false)
    }

    /// A whole login; returns the final reply of each step.
    fn login(
        a: &mut ClientAuth,
        users: &Users,
        p: &Principals,
        m: Mechanism,
        user: &str,
        pw: &str,
        skip: bool,
    ) -> Vec<Document> {
        let mut c = ClientConversation::new(m, user, Credential::Password(pw.into()));
        let start = doc! {"saslStart": 1, "mechanism": m.name(), "payload": bin(c.client_first().as_bytes()), "options": {"skipEmptyExchange": skip}};
        let r1 = a.sasl_start(users, &start, "admin").reply();
        let mut out = vec![r1.clone()];
        let Ok(Bson::Binary(sf)) = r1.get("payload").cloned().ok_or(()) else {
            return out;
        };
        let cf = c.server_first(&sf.bytes).unwrap();
        let r2 = a
            .sasl_continue(
                p,
                &doc! {"saslContinue": 1, "conversationId": 1, "payload": bin(cf.as_bytes())},
            )
            .reply();
        out.push(r2.clone());
        if r2.get_f64("ok") == Ok(1.0) && !r2.get_bool("done").unwrap() {
            let r3 = a
                .sasl_continue(
                    p,
                    &doc! {"saslContinue": 1, "conversationId": 1, "payload": bin(b"")},
                )
                .reply();
            out.push(r3);
        }
        out
    }

    #[test]
    fn scram_logins_with_and_without_skip_empty_exchange() {
        let (u, p) = (users(), Principals::default());
        for m in [Mechanism::ScramSha256, Mechanism::ScramSha1] {
            for skip in [true, false] {
                let mut a = ClientAuth::default();
                let steps = login(&mut a, &u, &p, m, "app", "pw", skip);
                assert_eq!(steps.len(), if skip { 2 } else { 3 }, "{steps:?}");
                assert!(steps.last().unwrap().get_bool("done").unwrap());
                assert!(a.logged_in());
                let pr = a.principal().unwrap();
                assert_eq!(&*pr.key, "admin.app");
                assert!(!pr.is_service());
            }
        }
    }

    #[test]
    fn every_failure_reads_authentication_failed() {
        let (u, p) = (users(), Principals::default());
        let mut a = ClientAuth::default();
        let r = login(&mut a, &u, &p, Mechanism::ScramSha256, "app", "wrong", true);
        assert_eq!(r.last().unwrap().get_i32("code").unwrap(), 18);
        assert_eq!(
            r.last().unwrap().get_str("errmsg").unwrap(),
            "Authentication failed."
        );
        assert!(!a.logged_in() && a.principal().is_none());
        let r = login(&mut a, &u, &p, Mechanism::ScramSha256, "nobody", "pw", true);
        assert_eq!(
            r.last().unwrap().get_str("errmsg").unwrap(),
            "Authentication failed."
        );
        // conversationId other than 1, or none in progress: ProtocolError.
        let r = a
            .sasl_continue(
                &p,
                &doc! {"saslContinue": 1, "conversationId": 2, "payload": bin(b"x")},
            )
            .reply();
        assert_eq!(r.get_i32("code").unwrap(), 17);
        let r = a
            .sasl_start(
                &u,
                &doc! {"saslStart": 1, "mechanism": "PLAIN", "payload": bin(b"x")},
                "admin",
            )
            .reply();
        assert_eq!(r.get_i32("code").unwrap(), 334);
    }

    #[test]
    fn one_user_per_connection() {
        let (u, p) = (users(), Principals::default());
        let mut a = ClientAuth::default();
        login(&mut a, &u, &p, Mechanism::ScramSha256, "app", "pw", true);
        let again = login(&mut a, &u, &p, Mechanism::ScramSha1, "app", "pw", true);
        assert_eq!(
            again.last().unwrap().get_f64("ok").unwrap(),
            1.0,
            "the same user again"
        );
        let other = login(&mut a, &u, &p, Mechanism::ScramSha256, "other", "pw2", true);
        assert_eq!(other.last().unwrap().get_i32("code").unwrap(), 5626701);
        assert_eq!(&*a.principal().unwrap().key, "admin.app");
    }

    #[test]
    fn without_a_users_file_logins_are_refused_clearly() {
        let mut a = ClientAuth::default();
        let r = a
            .sasl_start(
                &Users::none(),
                &doc! {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(b"n,,n=a,r=x")},
                "admin",
            )
            .reply();
        assert_eq!(r.get_i32("code").unwrap(), 18);
        assert!(r.get_str("errmsg").unwrap().contains("no users configured"));
    }

    #[test]
    fn hello_offers_mechanisms_and_runs_the_speculative_step() {
        let (u, p) = (users(), Principals::default());
        let mut a = ClientAuth::default();
        let mut c = ClientConversation::new(
            Mechanism::ScramSha256,
            "app",
            Credential::Password("pw".into()),
        );
        let hello = doc! {
            "hello": 1, "saslSupportedMechs": "admin.app",
            "speculativeAuthenticate": {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bin(c.client_first().as_bytes()), "options": {"skipEmptyExchange": true}, "db": "admin"},
        };
        let mut reply = doc! {"ok": 1.0};
        a.hello(&u, &p, &hello, &mut reply);
        assert_eq!(
            reply.get_array("saslSupportedMechs").unwrap(),
            &vec![Bson::from("SCRAM-SHA-256"), Bson::from("SCRAM-SHA-1")]
        );
        let spec = reply.get_document("speculativeAuthenticate").unwrap();
        assert!(!spec.contains_key("ok"));
        let Bson::Binary(sf) = spec.get("payload").unwrap() else {
            panic!()
        };
        let cf = c.server_first(&sf.bytes).unwrap();
        let r = a
            .sasl_continue(
                &p,
                &doc! {"saslContinue": 1, "conversationId": 1, "payload": bin(cf.as_bytes())},
            )
            .reply();
        assert!(r.get_bool("done").unwrap());
        assert!(a.logged_in());
        // Unknown user: no saslSupportedMechs field at all.
        let mut reply = doc! {"ok": 1.0};
        ClientAuth::default().hello(
            &u,
            &p,
            &doc! {"hello": 1, "saslSupportedMechs": "admin.nobody"},
            &mut reply,
        );
        assert!(!reply.contains_key("saslSupportedMechs"));
    }

    #[test]
    fn x509_uses_the_certificate_subject() {
        let (u, p) = (users(), Principals::default());
        let auth = doc! {"authenticate": 1, "mechanism": "MONGODB-X509"};
        let mut none = ClientAuth::default();
        assert_eq!(
            none.authenticate(&u, &p, &auth, "$external")
                .reply()
                .get_i32("code")
                .unwrap(),
            17
        );
        let mut a = ClientAuth {
            peer_subject: Some("CN=c".into()),
            ..Default::default()
        };
        let r = a.authenticate(&u, &p, &auth, "$external").reply();
        assert_eq!(r.get_str("user").unwrap(), "CN=c");
        assert!(a.principal().unwrap().is_service());
        let mut b = ClientAuth {
            peer_subject: Some("CN=c".into()),
            ..Default::default()
        };
        let wrong = doc! {"authenticate": 1, "mechanism": "MONGODB-X509", "user": "CN=d"};
        assert_eq!(
            b.authenticate(&u, &p, &wrong, "$external")
                .reply()
                .get_i32("code")
                .unwrap(),
            18
        );
        let cr = doc! {"authenticate": 1, "mechanism": "MONGODB-CR", "user": "a", "nonce": "n", "key": "k"};
        assert!(b
            .authenticate(&u, &p, &cr, "admin")
            .reply()
            .get_str("errmsg")
            .unwrap()
            .contains("SCRAM-SHA-1"));
    }

    #[test]
    fn a_user_known_by_its_secret_logs_in_upstream_with_the_recovered_key() {
        let secret =
            holdfast_scram::ScramSecret::generate(Mechanism::ScramSha256, "s", "pw").unwrap();
        let text = format!(
            "[[user]]\nname = \"s\"\nscram_sha256 = \"{}\"\n",
            secret.to_text()
        );
        let mut users = Users::parse(&text, "u.toml", None).unwrap();
        users.path = Some("u.toml".into());
        let p = Principals::default();
        let mut a = ClientAuth::default();
        login(&mut a, &users, &p, Mechanism::ScramSha256, "s", "pw", true);
        let pr = a.principal().unwrap();
        let upstream = pr.login.as_deref().unwrap();
        let crate::pool::login::Method::Keys { keys, mechanism } = &upstream.method else {
            panic!("{upstream:?}")
        };
        assert_eq!(*mechanism, Mechanism::ScramSha256);
        assert!(
            secret.matches_keys(keys),
            "the recovered ClientKey logs in where this secret is stored"
        );
        // Two connections of the user share one principal (one set of pools).
        let mut b = ClientAuth::default();
        login(&mut b, &users, &p, Mechanism::ScramSha256, "s", "pw", true);
        assert!(Arc::ptr_eq(&pr, &b.principal().unwrap()));
    }
}
