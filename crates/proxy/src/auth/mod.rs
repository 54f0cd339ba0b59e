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

use crate::pool::login::{Login, Method};
pub use users::{UpstreamMode, User, Users};

/// Who a request runs as upstream: backend connections, cursors,
/// transactions and holdfast's own sessions are kept per principal, so no
/// request ever travels on a connection logged in as someone else.
pub struct Principal {
    /// `service`, or `<db>.<user>` (with `/<mechanism>` for a key login).
    pub key: Arc<str>,
    /// How its backend connections log in (`None`: they do not).
    pub login: Option<Arc<Login>>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("key", &self.key)
            .field("login", &self.login)
            .finish()
    }
}

impl Principal {
    /// holdfast's upstream identity, logging in as `login`.
    pub fn service(login: Option<Arc<Login>>) -> Arc<Principal> {
        Arc::new(Principal {
            key: Arc::from(SERVICE),
            login,
        })
    }

    pub fn is_service(&self) -> bool {
        &*self.key == SERVICE
    }
}

const SERVICE: &str = "service";

/// The principals holdfast knows, so every connection of one user shares
/// one set of backend pools.
pub struct Principals {
    service: RwLock<Arc<Principal>>,
    known: RwLock<Vec<Arc<Principal>>>,
}

impl Default for Principals {
    fn default() -> Self {
        Principals::new(None)
    }
}

impl Principals {
    /// `service`: how the upstream identity logs in.
    pub fn new(service: Option<Arc<Login>>) -> Principals {
        Principals {
            service: RwLock::new(Principal::service(service)),
            known: RwLock::new(Vec::new()),
        }
    }

    pub fn service(&self) -> Arc<Principal> {
        self.service.read().unwrap().clone()
    }

    /// A new upstream login (the password file was re-read): new backend
    /// connections of the upstream identity use it.
    pub fn set_service_login(&self, login: Option<Arc<Login>>) {
        *self.service.write().unwrap() = Principal::service(login);
    }

    /// The principal `user` logs in upstream as, after logging in to
    /// holdfast with `mechanism` (`keys`: recovered from that login).
    pub fn of(&self, user: &User, mechanism: Mechanism, keys: ScramKeys) -> Arc<Principal> {
        if user.upstream == UpstreamMode::Service {
            return self.service();
        }
        let (key, method) = match &user.password {
            Some(pw) => (
                user.key(),
                Method::Password {
                    password: pw.clone(),
                    mechanism: None,
                    cache: Default::default(),
                },
            ),
            None => (
                format!("{}/{}", user.key(), mechanism.name()),
                Method::Keys { mechanism, keys },
            ),
        };
        let login = Login {
            user: user.name.clone(),
            db: user.db.clone(),
            method,
        };
        self.intern(key, login)
    }

    fn intern(&self, key: String, login: Login) -> Arc<Principal> {
        if let Some(p) = self.known.read().unwrap().iter().find(|p| *p.key == *key) {
            if p.login.as_deref().is_some_and(|l| same_login(l, &login)) {
                return p.clone();
            }
        }
        let p = Arc::new(Principal {
            key: Arc::from(key.as_str()),
            login: Some(Arc::new(login)),
        });
        let mut known = self.known.write().unwrap();
        known.retain(|q| q.key != p.key);
        known.push(p.clone());
        p
    }
}

/// The same upstream login (a changed password makes a new principal).
fn same_login(a: &Login, b: &Login) -> bool {
    match (&a.method, &b.method) {
        (Method::Password { password: x, .. }, Method::Password { password: y, .. }) => x == y,
        (Method::Keys { keys: x, .. }, Method::Keys { keys: y, .. }) => {
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
