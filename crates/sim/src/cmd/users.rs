//! User management: `createUser`, `updateUser`, `dropUser` (primary only,
//! replicated through the log with their write concern) and `usersInfo`.

use bson::{Bson, Document};
use holdfast_scram::Mechanism;

use super::{ConnCtx, Request};
use crate::auth::roles::{Action, Resource};
use crate::auth::users::{self, UserRecord};
use crate::auth::{check, UserName};
use crate::engine::Op;
use crate::errors::{self, CmdError};
use crate::oplog::EntryKind;
use crate::set::WriteConcern;

pub async fn run(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    match req.name.as_str() {
        "createUser" => {
            let record = create_record(req)?;
            let op = record.insert_op();
            write(conn, req, op, |store| {
                if users::find(store, &record.db, &record.user).is_some() {
                    return Err(CmdError::new(
                        errors::USER_ALREADY_EXISTS,
                        format!("User \"{}@{}\" already exists", record.user, record.db),
                    ));
                }
                Ok(())
            })
            .await
        }
        "updateUser" => update_user(conn, req).await,
        "dropUser" => {
            let name = user_argument(req, "dropUser")?;
            let id = users::user_id(&req.db, &name);
            let op = Op::Delete {
                ns: users::USERS_NS.to_string(),
                id: Bson::String(id),
            };
            write(conn, req, op, |store| {
                if users::find(store, &req.db, &name).is_none() {
                    return Err(user_not_found(&name, &req.db));
                }
                Ok(())
            })
            .await
        }
        "usersInfo" => users_info(conn, req),
        other => Err(CmdError::command_not_found(other)),
    }
}

fn user_not_found(user: &str, db: &str) -> CmdError {
    CmdError::new(
        errors::USER_NOT_FOUND,
        format!("User '{user}@{db}' not found"),
    )
}

fn user_argument(req: &Request, command: &str) -> Result<String, CmdError> {
    match req.cmd.get(command) {
        Some(Bson::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(CmdError::bad_value(format!(
            "Must provide a '{command}' field with a non-empty user name"
        ))),
    }
}

/// `mechanisms: [...]`, each a SCRAM mechanism.
fn mechanisms_argument(req: &Request) -> Result<Option<Vec<Mechanism>>, CmdError> {
    let Some(v) = req.cmd.get("mechanisms") else {
        return Ok(None);
    };
    let Bson::Array(list) = v else {
        return Err(CmdError::bad_value("mechanisms field must be an array"));
    };
    if list.is_empty() {
        return Err(CmdError::bad_value("mechanisms field must not be empty"));
    }
    let mut out = Vec::new();
    for m in list {
        let name = m.as_str().unwrap_or("");
        let mech = Mechanism::from_name(name)
            .ok_or_else(|| CmdError::bad_value(format!("Unknown auth mechanism '{name}'")))?;
        if !out.contains(&mech) {
            out.push(mech);
        }
    }
    Ok(Some(out))
}

fn password_argument(req: &Request, external: bool) -> Result<Option<String>, CmdError> {
    if matches!(req.cmd.get("digestPassword"), Some(Bson::Boolean(false))) {
        return Err(CmdError::bad_value(
            "Use of SCRAM-SHA-256 requires undigested passwords",
        ));
    }
    match req.cmd.get("pwd") {
        None => Ok(None),
        Some(_) if external => Err(CmdError::bad_value(
            "Cannot set the password for users defined on the '$external' database",
        )),
        Some(Bson::String(p)) if p.is_empty() => {
            Err(CmdError::bad_value("User passwords must not be empty"))
        }
        Some(Bson::String(p)) => Ok(Some(p.clone())),
        Some(_) => Err(CmdError::bad_value("Password must be a string")),
    }
}

fn create_record(req: &Request) -> Result<UserRecord, CmdError> {
    let name = user_argument(req, "createUser")?;
    let external = req.db == "$external";
    let password = password_argument(req, external)?;
    let mechanisms = mechanisms_argument(req)?;
    let roles = users::parse_roles(req.cmd.get("roles"), &req.db, "createUser")?;
    if external {
        if mechanisms.is_some() {
            return Err(CmdError::bad_value(
                "mechanisms field must not be set for users on the '$external' database",
            ));
        }
        return Ok(UserRecord::external(&name, roles));
    }
    let Some(password) = password else {
        return Err(CmdError::bad_value(
            "Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db",
        ));
    };
    let mechanisms = mechanisms.unwrap_or_else(|| Mechanism::ALL.to_vec());
    UserRecord::scram(&name, &req.db, &password, roles, &mechanisms)
}

async fn update_user(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    let name = user_argument(req, "updateUser")?;
    let external = req.db == "$external";
    let password = password_argument(req, external)?;
    let mechanisms = mechanisms_argument(req)?;
    let roles = match req.cmd.get("roles") {
        Some(v) => Some(users::parse_roles(Some(v), &req.db, "updateUser")?),
        None => None,
    };
    let current = {
        let data = conn.member().data.lock();
        users::find(&data.store, &req.db, &name)
    }
    .ok_or_else(|| user_not_found(&name, &req.db))?;
    let mut record = current.clone();
    if let Some(roles) = roles {
        record.roles = roles;
    }
    match (&password, &mechanisms) {
        (Some(pw), m) => {
            let m = m.clone().unwrap_or_else(|| current.mechanisms());
            let fresh = UserRecord::scram(&name, &req.db, pw, Vec::new(), &m)?;
            record.scram = fresh.scram;
        }
        (None, Some(m)) => {
            if !m.iter().all(|x| current.mechanisms().contains(x)) {
                return Err(CmdError::bad_value(
                    "mechanisms field must be a subset of previously set mechanisms",
                ));
            }
            record.scram.retain(|s| m.contains(&s.mechanism()));
        }
        (None, None) => {}
    }
    let op = record.update_op();
    write(conn, req, op, |store| {
        if users::find(store, &req.db, &name).is_none() {
            return Err(user_not_found(&name, &req.db));
        }
        Ok(())
    })
    .await
}

/// Applies `op` on the primary after `check` passed, logs it and waits
/// for the write concern.
async fn write<F>(conn: &mut ConnCtx, req: &Request, op: Op, check: F) -> Result<Document, CmdError>
where
    F: FnOnce(&crate::engine::Store) -> Result<(), CmdError>,
{
    let wc = WriteConcern::from_command(&req.cmd)?;
    let set = conn.set.clone();
    let idx = conn.idx;
    let m = &set.members[idx];
    let (index, epoch) = {
        let mut data = m.data.lock();
        if !data.writable {
            return Err(CmdError::not_writable_primary());
        }
        check(&data.store)?;
        let epoch = m.role_epoch();
        data.store.apply(&op);
        let mut repl = set.repl.lock();
        let index = set.append(&mut repl, idx, EntryKind::Ops(vec![op]));
        (index, epoch)
    };
    set.notify_log();
    let mut reply = super::ok();
    if wc.is_unacknowledged() {
        return Ok(reply);
    }
    if let Some(wce) = set.wait_write_concern(idx, index, &wc, epoch).await {
        reply.insert("writeConcernError", wce);
    }
    Ok(reply)
}

/// Which users `usersInfo` asks for.
enum Wanted {
    AllOnDb,
    AllDbs,
    Some(Vec<UserName>),
}

fn wanted(req: &Request) -> Result<Wanted, CmdError> {
    let one = |v: &Bson| -> Result<UserName, CmdError> {
        match v {
            Bson::String(u) => Ok(UserName::new(u, &req.db)),
            Bson::Document(d) => match (d.get_str("user"), d.get_str("db")) {
                (Ok(u), Ok(db)) => Ok(UserName::new(u, db)),
                _ => Err(CmdError::bad_value(
                    "User and role names must be either strings or objects",
                )),
            },
            _ => Err(CmdError::bad_value(
                "User and role names must be either strings or objects",
            )),
        }
    };
    match req.cmd.get("usersInfo") {
        Some(Bson::Document(d)) if d.contains_key("forAllDBs") => Ok(Wanted::AllDbs),
        Some(Bson::Array(a)) => Ok(Wanted::Some(a.iter().map(one).collect::<Result<_, _>>()?)),
        Some(v @ (Bson::String(_) | Bson::Document(_))) => Ok(Wanted::Some(vec![one(v)?])),
        Some(v) if super::as_i64(v) == Some(1) => Ok(Wanted::AllOnDb),
        _ => Err(CmdError::bad_value(
            "usersInfo field must be 1, a user name, a {user, db} document, or an array of them",
        )),
    }
}

fn users_info(conn: &mut ConnCtx, req: &Request) -> Result<Document, CmdError> {
    if !conn.member().is_writable() && !req.secondary_ok {
        return Err(CmdError::not_primary_no_secondary_ok());
    }
    let wanted = wanted(req)?;
    let show_credentials = req.cmd.get("showCredentials").is_some_and(super::as_bool);
    // With access control, a user may always see itself; anyone else
    // needs viewUser on the user's database, and so do credentials.
    let who = if conn.set.cfg.auth {
        Some(
            crate::auth::current(conn)
                .ok_or_else(|| check::requires_authentication("usersInfo"))?,
        )
    } else {
        None
    };
    let may_view = |db: &str| {
        who.as_ref()
            .is_none_or(|(_, p)| p.allows(&Resource::db(db), Action::ViewUser))
    };
    let is_self = |u: &UserName| who.as_ref().is_some_and(|(me, _)| me == u);
    let allowed = match &wanted {
        Wanted::AllOnDb => may_view(&req.db),
        Wanted::AllDbs => who.as_ref().is_none_or(|(_, p)| {
            p.is_root() || {
                p.allows(&Resource::db("admin"), Action::ViewUser)
                    && p.allows(&Resource::db("$external"), Action::ViewUser)
            }
        }),
        Wanted::Some(list) => list.iter().all(|u| is_self(u) || may_view(&u.db)),
    };
    if !allowed {
        return Err(check::not_authorized(req));
    }
    let records = {
        let data = conn.member().data.lock();
        match &wanted {
            Wanted::AllOnDb => users::all(&data.store)
                .into_iter()
                .filter(|r| r.db == req.db)
                .collect(),
            Wanted::AllDbs => users::all(&data.store),
            Wanted::Some(list) => list
                .iter()
                .filter_map(|u| users::find(&data.store, &u.db, &u.user))
                .collect::<Vec<_>>(),
        }
    };
    let docs: Vec<Bson> = records
        .iter()
        .map(|r| Bson::Document(r.info_document(show_credentials && may_view(&r.db))))
        .collect();
    Ok(bson::doc! { "users": docs, "ok": 1.0 })
}
