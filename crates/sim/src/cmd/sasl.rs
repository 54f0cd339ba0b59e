//! Authentication commands: `saslStart`/`saslContinue` (SCRAM-SHA-1 and
//! SCRAM-SHA-256), `authenticate` (MONGODB-X509), `logout`, and what
//! `hello` adds (`saslSupportedMechs`, `speculativeAuthenticate`).
//!
//! As mongod: every failure of a conversation is 18 AuthenticationFailed
//! "Authentication failed." (unknown user, wrong proof, nonce mismatch, a
//! mechanism the user has no credentials for); a connection is
//! authenticated as one user (5626701 when another user of the same
//! database tries). Nothing secret is logged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Document};
use holdfast_scram::{Mechanism, ServerConversation};
use tracing::{debug, info};

use super::{as_i64, ConnCtx, Request};
use crate::auth::{users, SaslSession, UserName};
use crate::errors::{self, CmdError};

const X509: &str = "MONGODB-X509";

pub fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    match req.name.as_str() {
        "saslStart" => sasl_start(conn, &req.db, &req.cmd),
        "saslContinue" => sasl_continue(conn, &req.cmd),
        "authenticate" => authenticate(conn, &req.db, &req.cmd),
        "logout" => {
            if conn.auth.user.as_ref().is_some_and(|u| u.db == req.db) {
                conn.auth.user = None;
            }
            conn.auth.sasl = None;
            Ok(super::ok())
        }
        other => Err(CmdError::command_not_found(other)),
    }
}

fn auth_failed() -> CmdError {
    CmdError::new(errors::AUTHENTICATION_FAILED, "Authentication failed.")
}

fn missing(command: &str, field: &str) -> CmdError {
    CmdError::new(
        errors::IDL_MISSING_FIELD,
        format!("BSON field '{command}.{field}' is missing but a required field"),
    )
}

/// A SASL payload: BinData, or a base64 string (then the reply is one too).
fn payload(cmd: &Document, command: &str) -> Result<(Vec<u8>, bool), CmdError> {
    match cmd.get("payload") {
        Some(Bson::Binary(b)) => Ok((b.bytes.clone(), false)),
        Some(Bson::String(s)) => STANDARD
            .decode(s)
            .map(|p| (p, true))
            .map_err(|_| CmdError::bad_value("Invalid base64 in SASL payload")),
        Some(_) => Err(CmdError::new(
            errors::TYPE_MISMATCH,
            format!("BSON field '{command}.payload' is the wrong type"),
        )),
        None => Err(missing(command, "payload")),
    }
}

fn reply_payload(bytes: &[u8], as_base64: bool) -> Bson {
    if as_base64 {
        Bson::String(STANDARD.encode(bytes))
    } else {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: bytes.to_vec(),
        })
    }
}

fn sasl_reply(done: bool, bytes: &[u8], as_base64: bool) -> Document {
    doc! {
        "conversationId": 1,
        "done": done,
        "payload": reply_payload(bytes, as_base64),
        "ok": 1.0,
    }
}

fn log_failure(conn: &ConnCtx, mechanism: &str, db: &str, user: Option<&str>, why: &str) {
    debug!(
        mechanism,
        db,
        user = user.unwrap_or(""),
        remote = %conn.peer,
        error = why,
        "Authentication failed"
    );
}

pub fn sasl_start(conn: &mut ConnCtx, db: &str, cmd: &Document) -> Result<Document, CmdError> {
    conn.auth.sasl = None;
    let mechanism = match cmd.get("mechanism") {
        Some(Bson::String(m)) => m.as_str(),
        Some(_) => {
            return Err(CmdError::new(
                errors::TYPE_MISMATCH,
                "BSON field 'saslStart.mechanism' is the wrong type",
            ))
        }
        None => return Err(missing("saslStart", "mechanism")),
    };
    let skip_empty_exchange = match cmd.get("options") {
        Some(Bson::Document(o)) => match o.get("skipEmptyExchange") {
            None => false,
            Some(Bson::Boolean(b)) => *b,
            Some(_) => return Err(CmdError::bad_value("skipEmptyExchange must be boolean")),
        },
        _ => false,
    };
    let Some(m) = Mechanism::from_name(mechanism).filter(|_| db != "$external") else {
        return Err(CmdError::bad_value(format!(
            "Unsupported mechanism '{mechanism}' on authentication database '{db}'"
        )));
    };
    let (input, as_base64) = payload(cmd, "saslStart")?;
    let mut conversation = ServerConversation::new(m);
    let mut found = false;
    let first = {
        let data = conn.member().data.lock();
        conversation.client_first(&input, |user| {
            let secret = users::find(&data.store, db, user).and_then(|r| r.secret(m).cloned());
            found = secret.is_some();
            secret
        })
    };
    let user = conversation.user().map(str::to_string);
    match first {
        Ok(server_first) if found => {
            conn.auth.sasl = Some(SaslSession {
                db: db.to_string(),
                mechanism: m,
                conversation,
                skip_empty_exchange,
                verified: None,
                speculative: false,
            });
            Ok(sasl_reply(false, server_first.as_bytes(), as_base64))
        }
        Ok(_) => {
            log_failure(
                conn,
                m.name(),
                db,
                user.as_deref(),
                "no such user or no credentials for the mechanism",
            );
            Err(auth_failed())
        }
        Err(e) => {
            log_failure(conn, m.name(), db, user.as_deref(), &e.to_string());
            Err(auth_failed())
        }
    }
}

pub fn sasl_continue(conn: &mut ConnCtx, cmd: &Document) -> Result<Document, CmdError> {
    let id = cmd
        .get("conversationId")
        .ok_or_else(|| missing("saslContinue", "conversationId"))?;
    if as_i64(id) != Some(1) {
        conn.auth.sasl = None;
        return Err(CmdError::new(
            errors::PROTOCOL_ERROR,
            "sasl: Mismatched conversation id",
        ));
    }
    let (input, as_base64) = payload(cmd, "saslContinue")?;
    let Some(mut session) = conn.auth.sasl.take() else {
        return Err(CmdError::new(
            errors::PROTOCOL_ERROR,
            "No SASL session state found",
        ));
    };
    if let Some(user) = session.verified.take() {
        // The empty exchange after server-final (no skipEmptyExchange).
        login(conn, user, session.mechanism.name(), session.speculative)?;
        return Ok(sasl_reply(true, b"", as_base64));
    }
    match session.conversation.client_final(&input) {
        Ok(done) => {
            let user = UserName::new(&done.user, &session.db);
            if session.skip_empty_exchange {
                login(conn, user, session.mechanism.name(), session.speculative)?;
                Ok(sasl_reply(true, done.message.as_bytes(), as_base64))
            } else {
                session.verified = Some(user);
                conn.auth.sasl = Some(session);
                Ok(sasl_reply(false, done.message.as_bytes(), as_base64))
            }
        }
        Err(e) => {
            let user = session.conversation.user().map(str::to_string);
            log_failure(
                conn,
                session.mechanism.name(),
                &session.db,
                user.as_deref(),
                &e.to_string(),
            );
            Err(auth_failed())
        }
    }
}

/// Makes `user` the connection's user (a second, different user of the
/// same database is refused, as mongod refuses it).
fn login(
    conn: &mut ConnCtx,
    user: UserName,
    mechanism: &str,
    speculative: bool,
) -> Result<(), CmdError> {
    if let Some(prev) = &conn.auth.user {
        if *prev == user {
            return Ok(());
        }
        if prev.db == user.db {
            return Err(CmdError::new(
                errors::AUTHENTICATED_ONCE,
                format!(
                    "Each client connection may only be authenticated once. Previously authenticated as: {prev}"
                ),
            ));
        }
        return Err(CmdError::new(
            errors::AUTHENTICATED_ON_MULTIPLE_DATABASES,
            format!(
                "Client has attempted to authenticate on multiple databases.Already authenticated as: {prev}"
            ),
        ));
    }
    info!(
        mechanism,
        speculative,
        user = %user.user,
        db = %user.db,
        remote = %conn.peer,
        "Authentication succeeded"
    );
    conn.auth.user = Some(user);
    Ok(())
}

/// `authenticate` with MONGODB-X509: the user is the verified client
/// certificate's subject, on `$external`.
pub fn authenticate(conn: &mut ConnCtx, db: &str, cmd: &Document) -> Result<Document, CmdError> {
    x509(conn, db, cmd, false)
}

fn x509(
    conn: &mut ConnCtx,
    db: &str,
    cmd: &Document,
    speculative: bool,
) -> Result<Document, CmdError> {
    let result = authenticate_x509(conn, db, cmd, speculative);
    match result {
        Err(e) if e.code == errors::USER_NOT_FOUND || e.code == errors::PROTOCOL_ERROR => Err(e),
        Err(e) => {
            log_failure(conn, X509, db, cmd.get_str("user").ok(), &e.errmsg);
            Err(auth_failed())
        }
        ok => ok,
    }
}

fn authenticate_x509(
    conn: &mut ConnCtx,
    db: &str,
    cmd: &Document,
    speculative: bool,
) -> Result<Document, CmdError> {
    let mechanism = cmd.get_str("mechanism").unwrap_or("");
    if mechanism.is_empty() {
        return Err(CmdError::bad_value("Auth mechanism not specified"));
    }
    if mechanism != X509 {
        return Err(CmdError::bad_value(format!(
            "Unsupported mechanism: {mechanism}"
        )));
    }
    let Some(subject) = conn.auth.peer_subject.clone() else {
        return Err(CmdError::new(
            errors::AUTHENTICATION_FAILED,
            "No verified subject name available from client",
        ));
    };
    if let Ok(user) = cmd.get_str("user") {
        if user != subject {
            return Err(CmdError::new(
                errors::AUTHENTICATION_FAILED,
                "There is no x.509 client certificate matching the user.",
            ));
        }
    }
    if db != "$external" {
        return Err(CmdError::new(
            errors::PROTOCOL_ERROR,
            "X.509 authentication must always use the $external database.",
        ));
    }
    let exists = {
        let data = conn.member().data.lock();
        users::find(&data.store, db, &subject).is_some()
    };
    if !exists {
        return Err(CmdError::new(
            errors::USER_NOT_FOUND,
            format!("Could not find user \"{subject}\" for db \"$external\""),
        ));
    }
    login(conn, UserName::new(&subject, db), X509, speculative)?;
    Ok(doc! { "dbname": db, "user": subject, "ok": 1.0 })
}

/// What `hello` adds for authentication: `saslSupportedMechs` for
/// `"<db>.<user>"` (absent for an unknown user) and the reply to
/// `speculativeAuthenticate` (absent on any failure).
pub fn hello_fields(conn: &mut ConnCtx, req: &Request, body: &mut Document) {
    if let Some(Bson::String(who)) = req.cmd.get("saslSupportedMechs") {
        if let Some((db, user)) = who.split_once('.') {
            let record = {
                let data = conn.member().data.lock();
                users::find(&data.store, db, user)
            };
            if let Some(r) = record {
                let names: Vec<&str> = r.mechanisms().iter().map(|m| m.name()).collect();
                body.insert("saslSupportedMechs", names);
            }
        }
    }
    if let Some(Bson::Document(spec)) = req.cmd.get("speculativeAuthenticate") {
        if let Some(reply) = speculative(conn, spec) {
            body.insert("speculativeAuthenticate", reply);
        }
    }
}

fn speculative(conn: &mut ConnCtx, spec: &Document) -> Option<Document> {
    let mut reply = if spec.contains_key("saslStart") {
        let db = spec.get_str("db").ok()?.to_string();
        let reply = sasl_start(conn, &db, spec).ok()?;
        if let Some(s) = conn.auth.sasl.as_mut() {
            s.speculative = true;
        }
        reply
    } else if spec.contains_key("authenticate") {
        let db = spec.get_str("db").unwrap_or("$external").to_string();
        x509(conn, &db, spec, true).ok()?
    } else {
        return None;
    };
    reply.remove("ok");
    Some(reply)
}
