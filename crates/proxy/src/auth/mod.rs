//! Client identity. Clients' `saslStart`, `saslContinue`, `authenticate`
//! and `logout` are answered by holdfast and never forwarded.
//!
//! - Without a users file, clients are not authenticated: every client
//!   reaches the upstream as holdfast's upstream identity (the sidecar
//!   model); a client that tries to log in is told holdfast has no users.
//! - With one ([`users`]), holdfast is the SCRAM server of its clients
//!   (SCRAM-SHA-256 and SCRAM-SHA-1, speculative authentication in hello,
//!   `saslSupportedMechs`); until a client logs in it may run only what
//!   MongoDB allows before authentication (or everything as the upstream
//!   identity, with `allow_unauthenticated`). Each user reaches the
//!   upstream as itself ([`Principal`]): with its password, or with the
//!   ClientKey recovered from its own login — or as the upstream identity
//!   (`upstream = "service"`).

pub mod sasl;
pub mod users;

use std::sync::{Arc, RwLock};

use holdfast_scram::{Mechanism, ScramKeys};

pub use users::{UpstreamMode, User, Users};

/// How a principal logs in upstream.
#[derive(Clone)]
pub enum UpstreamLogin {
    /// holdfast's upstream identity (from the connection string).
    Service,
    /// The user's password.
    Password {
        user: String,
        db: String,
        password: String,
    },
    /// The ClientKey recovered from the user's login, with its ServerKey:
    /// valid wherever the same secret is stored.
    Keys {
        user: String,
        db: String,
        mechanism: Mechanism,
        keys: ScramKeys,
    },
}

impl std::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamLogin::Service => f.write_str("Service"),
            UpstreamLogin::Password { user, db, .. } => write!(f, "Password({db}.{user})"),
            UpstreamLogin::Keys {
                user,
                db,
                mechanism,
                ..
            } => {
                write!(f, "Keys({db}.{user}, {})", mechanism.name())
            }
        }
    }
}

/// Who a request runs as upstream: its backend connections, cursors,
/// transactions and holdfast's sessions are kept per principal.
#[derive(Debug)]
pub struct Principal {
    /// `service`, or `<db>.<user>` (with the mechanism for a key login).
    pub key: Arc<str>,
    pub login: UpstreamLogin,
}

impl Principal {
    pub fn service() -> Arc<Principal> {
        Arc::new(Principal {
            key: Arc::from("service"),
            login: UpstreamLogin::Service,
        })
    }

    pub fn is_service(&self) -> bool {
        matches!(self.login, UpstreamLogin::Service)
    }
}

/// The principals holdfast knows, so every connection of one user shares
/// one set of backend pools.
pub struct Principals {
    service: Arc<Principal>,
    known: RwLock<Vec<Arc<Principal>>>,
}

impl Default for Principals {
    fn default() -> Self {
        Principals {
            service: Principal::service(),
            known: RwLock::new(Vec::new()),
        }
    }
}

impl Principals {
    pub fn service(&self) -> Arc<Principal> {
        self.service.clone()
    }

    /// The principal `user` logs in upstream as, after logging in to
    /// holdfast with `mechanism` (`keys`: recovered from that login).
    pub fn of(&self, user: &User, mechanism: Mechanism, keys: ScramKeys) -> Arc<Principal> {
        if user.upstream == UpstreamMode::Service {
            return self.service();
        }
        let (key, login) = match &user.password {
            Some(pw) => (
                user.key(),
                UpstreamLogin::Password {
                    user: user.name.clone(),
                    db: user.db.clone(),
                    password: pw.clone(),
                },
            ),
            None => (
                format!("{}/{}", user.key(), mechanism.name()),
                UpstreamLogin::Keys {
                    user: user.name.clone(),
                    db: user.db.clone(),
                    mechanism,
                    keys,
                },
            ),
        };
        self.intern(key, login)
    }

    fn intern(&self, key: String, login: UpstreamLogin) -> Arc<Principal> {
        if let Some(p) = self.known.read().unwrap().iter().find(|p| *p.key == *key) {
            if same_login(&p.login, &login) {
                return p.clone();
            }
        }
        let p = Arc::new(Principal {
            key: Arc::from(key.as_str()),
            login,
        });
        let mut known = self.known.write().unwrap();
        known.retain(|q| q.key != p.key);
        known.push(p.clone());
        p
    }
}

/// The same upstream login (a changed password makes a new principal).
fn same_login(a: &UpstreamLogin, b: &UpstreamLogin) -> bool {
    match (a, b) {
        (UpstreamLogin::Service, UpstreamLogin::Service) => true,
        (
            UpstreamLogin::Password { password: x, .. },
            UpstreamLogin::Password { password: y, .. },
        ) => x == y,
        (UpstreamLogin::Keys { keys: x, .. }, UpstreamLogin::Keys { keys: y, .. }) => {
            x.client_key() == y.client_key() && x.server_key() == y.server_key()
        }
        _ => false,
    }
}

/// Commands MongoDB runs before a client has logged in.
pub fn allowed_before_login(name: &str) -> bool {
    matches!(
        name,
        "hello"
            | "isMaster"
            | "ismaster"
            | "saslStart"
            | "saslContinue"
            | "authenticate"
            | "ping"
            | "listCommands"
            | "logout"
            | "getnonce"
    )
}
