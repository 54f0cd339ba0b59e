//! A client connection's identity: authentication commands answered here
//! (never forwarded), hello's authentication fields, and the gate that
//! lets a connection that has not logged in run only what MongoDB allows
//! before authentication.

use std::sync::Arc;

use bson::Document;
use holdfast_wire::{codes, CommandClass, CommandView, ErrorReply, Frame};
use tracing::{debug, info};

use super::ClientConn;
use crate::auth::sasl::Step;
use crate::auth::{allowed_before_login, Principal};
use crate::metrics as m;

impl ClientConn {
    /// Who this connection's requests run as upstream; `None` while it
    /// must log in first.
    fn principal(&self) -> Option<Arc<Principal>> {
        if let Some(p) = self.auth.principal() {
            return Some(p);
        }
        let users = self.ctx.users();
        (!users.is_configured() || self.ctx.allow_unauthenticated)
            .then(|| self.ctx.principals.service())
    }

    /// Runs one request (not a hello): authentication commands here,
    /// everything else through the request path as this connection's
    /// principal. `None`: no reply (an unacknowledged request).
    pub(super) async fn execute(
        &mut self,
        frame: &Frame,
        view: &CommandView<'_>,
        class: CommandClass,
    ) -> Option<Frame> {
        let ctx = self.ctx.clone();
        let replies = ctx.forwarder.replies();
        if class == CommandClass::Auth {
            let d = self.auth_command(view);
            return Some(replies.document(frame, &d));
        }
        let principal = match self.principal() {
            Some(p) => p,
            None if allowed_before_login(view.name) => self.ctx.principals.service(),
            None => {
                let err = ErrorReply::of(
                    codes::UNAUTHORIZED,
                    format!("command {} requires authentication", view.name),
                );
                return Some(replies.error(frame, &err));
            }
        };
        let fw = self.ctx.forwarder.clone();
        fw.forward(
            &self.span,
            frame,
            view,
            class,
            &principal,
            &mut self.reply_charge,
        )
        .await
    }

    /// saslStart, saslContinue, authenticate, logout, getnonce.
    fn auth_command(&mut self, view: &CommandView<'_>) -> Document {
        let Ok(cmd) = Document::try_from(view.body) else {
            return ErrorReply::of(codes::INVALID_BSON, "unreadable command").to_document();
        };
        let db = view.db.unwrap_or("admin").to_string();
        let users = self.ctx.users();
        let principals = &self.ctx.principals;
        let mechanism = match view.name {
            "saslContinue" => self.auth.mechanism.unwrap_or("other").to_string(),
            _ => cmd.get_str("mechanism").unwrap_or("other").to_string(),
        };
        let step = match view.name {
            "saslStart" => self.auth.sasl_start(&users, &cmd, &db),
            "saslContinue" => self.auth.sasl_continue(principals, &cmd),
            "authenticate" => self.auth.authenticate(&users, principals, &cmd, &db),
            // Deprecated since 5.0: accepted and ignored, as mongod does.
            "logout" => Step::Reply(bson::doc! {"ok": 1.0}),
            _ => Step::Reply(
                ErrorReply::of(
                    codes::COMMAND_NOT_FOUND,
                    format!("no such command: '{}'", view.name),
                )
                .to_document(),
            ),
        };
        self.count_login(&step, &mechanism);
        step.reply()
    }

    fn count_login(&self, step: &Step, mechanism: &str) {
        let mechanism = match mechanism {
            "SCRAM-SHA-256" => "SCRAM-SHA-256",
            "SCRAM-SHA-1" => "SCRAM-SHA-1",
            "MONGODB-X509" => "MONGODB-X509",
            _ => "other",
        };
        match step {
            Step::LoggedIn(_) => {
                m::client_authentication(mechanism, "ok");
                let who = self
                    .auth
                    .principal()
                    .map(|p| p.key.to_string())
                    .unwrap_or_default();
                info!(parent: &self.span, peer = %self.peer, principal = %who, "client authenticated");
            }
            Step::Reply(d) if d.get_i32("code") == Ok(codes::AUTHENTICATION_FAILED) => {
                m::client_authentication(mechanism, "failed");
                debug!(parent: &self.span, peer = %self.peer, "client authentication failed");
            }
            Step::Reply(_) => {}
        }
    }

    /// Adds `saslSupportedMechs` and `speculativeAuthenticate` to a hello
    /// reply when the hello asks for them.
    pub(super) fn hello_auth(&mut self, view: &CommandView<'_>, reply: &mut Document) {
        let asks = |k| view.body.get(k).ok().flatten().is_some();
        if !asks("saslSupportedMechs") && !asks("speculativeAuthenticate") {
            return;
        }
        let Ok(hello) = Document::try_from(view.body) else {
            return;
        };
        let users = self.ctx.users();
        let before = self.auth.logged_in();
        self.auth.hello(&users, &self.ctx.principals, &hello, reply);
        if !before && self.auth.logged_in() {
            m::client_authentication("speculative", "ok");
        }
    }
}
