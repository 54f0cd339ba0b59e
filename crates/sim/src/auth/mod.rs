//! Access control as MongoDB 7.0 runs it: users stored in the replicated
//! `admin.system.users` collection, who a connection is, MongoDB's
//! built-in roles, and what each command needs.
//!
//! - `users`: user documents (SCRAM credentials in MongoDB's form) and
//!   lookups in a member's store.
//! - `roles`: built-in roles as actions on databases and the cluster.
//! - `check`: what a command requires before it runs, and the errors
//!   (13 Unauthorized) when it may not.
//!
//! The SASL and user-management commands are in `cmd::sasl` and
//! `cmd::users`.

pub mod check;
pub mod roles;
pub mod users;

use std::fmt;

use holdfast_scram::{Mechanism, ServerConversation};

use crate::cmd::ConnCtx;
use roles::Privileges;

/// A user: its name and the database it is defined on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName {
    pub user: String,
    pub db: String,
}

impl UserName {
    pub fn new(user: &str, db: &str) -> UserName {
        UserName {
            user: user.to_string(),
            db: db.to_string(),
        }
    }

    /// What sessions of this user are keyed by, after `lsid.id` (MongoDB
    /// keys a session by its id and the SHA-256 of the user).
    pub fn session_digest(&self) -> Vec<u8> {
        Mechanism::ScramSha256.hash(self.to_string().as_bytes())
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.db)
    }
}

/// A SASL conversation in progress on a connection.
pub struct SaslSession {
    pub db: String,
    pub mechanism: Mechanism,
    pub conversation: ServerConversation,
    pub skip_empty_exchange: bool,
    /// Verified, waiting for the client's last (empty) step.
    pub verified: Option<UserName>,
    /// Started inside `hello` (`speculativeAuthenticate`).
    pub speculative: bool,
}

/// Who a connection is.
#[derive(Default)]
pub struct ConnAuth {
    pub user: Option<UserName>,
    pub sasl: Option<SaslSession>,
    /// The connection is TLS.
    pub tls: bool,
    /// The subject of the client certificate the CA verified.
    pub peer_subject: Option<String>,
}

/// The connection's user and the privileges of its current roles, read
/// from this member's copy of the users collection. A user dropped since
/// it authenticated is logged out.
pub fn current(conn: &mut ConnCtx) -> Option<(UserName, Privileges)> {
    let name = conn.auth.user.clone()?;
    let roles = {
        let data = conn.member().data.lock();
        users::roles_of(&data.store, &name.db, &name.user)
    };
    match roles {
        Some(roles) => Some((name, Privileges::of(&roles))),
        None => {
            conn.auth.user = None;
            None
        }
    }
}
