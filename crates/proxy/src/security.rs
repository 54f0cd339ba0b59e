//! What holdfast's security is made of, read at start and again on
//! SIGHUP: the upstream identity and TLS towards the members (from the
//! connection string and `upstream_password_file`), TLS towards clients
//! (`tls_cert_file`, `tls_key_file`, `tls_client_ca_file`) and the users
//! file. A reload replaces each part only if its new files load; connected
//! clients keep their connections and logins.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use holdfast_tls::{Acceptor, Connector};
use tracing::info;

use crate::auth::{Principals, Users};
use crate::config::Config;
use crate::upstream::Upstream;

/// Security settings, as loaded.
pub struct Security {
    /// The upstream connection string (it may hold a password: never
    /// shown; logs use the redacted form).
    uri: String,
    password_file: Option<PathBuf>,
    users_file: Option<PathBuf>,
    /// The upstream identity and the users' principals.
    pub principals: Arc<Principals>,
    /// TLS towards the members.
    pub connector: Option<Connector>,
    /// TLS towards clients.
    pub acceptor: Option<Acceptor>,
    /// The users file as read at start.
    pub users: Users,
}

impl Security {
    /// Reads everything `cfg` names for the upstream `uri`.
    pub async fn load(cfg: &Config, uri: &str) -> anyhow::Result<Security> {
        let up = Upstream::from_uri(uri, cfg.upstream_password_file.as_deref()).await?;
        let connector = up
            .tls
            .as_ref()
            .map(Connector::new)
            .transpose()
            .context("TLS towards the replica set")?;
        if let Some(c) = &connector {
            info!(client_certificate = ?c.client_subject(), "connections to the replica set use TLS");
        }
        let acceptor = cfg
            .listener_tls()
            .map_err(anyhow::Error::msg)?
            .map(|f| Acceptor::load(&f))
            .transpose()
            .context("TLS towards clients")?;
        if let Some(a) = &acceptor {
            info!(mutual = a.is_mutual(), "clients must connect with TLS");
        }
        if let Some(l) = &up.login {
            info!(user = %l.principal(), "backend connections log in upstream");
        }
        let users = match &cfg.users_file {
            None => Users::none(),
            Some(p) => {
                let users = Users::load(p)?;
                info!(users = users.len(), file = %p.display(), "users file read");
                users
            }
        };
        Ok(Security {
            uri: uri.to_string(),
            password_file: cfg.upstream_password_file.clone(),
            users_file: cfg.users_file.clone(),
            principals: Arc::new(Principals::new(up.login)),
            connector,
            acceptor,
            users,
        })
    }

    /// SIGHUP: re-reads the users file (returned, to replace the current
    /// users), the certificate files on both sides and the upstream
    /// password file. Every part is tried; the errors of those that did
    /// not load are returned together and those parts stay as they were.
    pub async fn reload(&self) -> (Option<Users>, anyhow::Result<()>) {
        let mut errors = Vec::new();
        let users = match &self.users_file {
            None => None,
            Some(p) => match Users::load(p) {
                Ok(u) => {
                    info!(users = u.len(), file = %p.display(), "users file reloaded");
                    Some(u)
                }
                Err(e) => {
                    errors.push(format!("{e}"));
                    None
                }
            },
        };
        if let Some(a) = &self.acceptor {
            match a.reload() {
                Ok(()) => info!("TLS certificate towards clients reloaded"),
                Err(e) => errors.push(format!("TLS towards clients: {e}")),
            }
        }
        if let Some(c) = &self.connector {
            match c.reload() {
                Ok(()) => info!("TLS files towards the replica set reloaded"),
                Err(e) => errors.push(format!("TLS towards the replica set: {e}")),
            }
        }
        if self.password_file.is_some() {
            match Upstream::reload_login(&self.uri, self.password_file.as_deref()).await {
                Ok(login) => {
                    self.principals.set_service_login(login);
                    info!("upstream password file reloaded: new backend connections use it");
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let result = match errors.is_empty() {
            true => Ok(()),
            false => Err(anyhow::anyhow!(errors.join("; "))),
        };
        (users, result)
    }
}
