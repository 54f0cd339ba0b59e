//! User documents in `admin.system.users`, as mongod stores them:
//! `{_id: "<db>.<user>", userId, user, db, credentials: {"SCRAM-SHA-1":
//! {iterationCount, salt, storedKey, serverKey}, "SCRAM-SHA-256": {…}},
//! roles: [{role, db}]}` (`credentials: {external: true}` on `$external`).
//! They replicate through the log like any other write.

use bson::{doc, Bson, Document};
use holdfast_scram::{Mechanism, ScramSecret};

use crate::config::{RoleName, SimUser};
use crate::engine::{Op, Store};
use crate::errors::{self, CmdError};

pub const USERS_NS: &str = "admin.system.users";

/// `_id` of a user document.
pub fn user_id(db: &str, user: &str) -> String {
    format!("{db}.{user}")
}

/// One user as stored. `Debug` is safe (secrets print redacted).
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user: String,
    pub db: String,
    pub uuid: bson::Uuid,
    pub roles: Vec<RoleName>,
    /// SCRAM credentials, in `Mechanism::ALL` order.
    pub scram: Vec<ScramSecret>,
    pub external: bool,
}

impl UserRecord {
    /// A SCRAM user with fresh credentials (random salts, default
    /// iterations) for `mechanisms`.
    pub fn scram(
        user: &str,
        db: &str,
        password: &str,
        roles: Vec<RoleName>,
        mechanisms: &[Mechanism],
    ) -> Result<UserRecord, CmdError> {
        let mut scram = Vec::new();
        for m in Mechanism::ALL {
            if mechanisms.contains(&m) {
                let secret = ScramSecret::generate(m, user, password).map_err(|_| {
                    CmdError::bad_value("Error preflighting SCRAM-SHA-256 credential: password is not valid for SASLprep")
                })?;
                scram.push(secret);
            }
        }
        Ok(UserRecord {
            user: user.to_string(),
            db: db.to_string(),
            uuid: bson::Uuid::new(),
            roles,
            scram,
            external: false,
        })
    }

    /// A `$external` user (MONGODB-X509).
    pub fn external(user: &str, roles: Vec<RoleName>) -> UserRecord {
        UserRecord {
            user: user.to_string(),
            db: "$external".to_string(),
            uuid: bson::Uuid::new(),
            roles,
            scram: Vec::new(),
            external: true,
        }
    }

    /// The record of a `--user` / [`SimUser`] (its given secrets first,
    /// then credentials derived from its password).
    pub fn from_sim_user(u: &SimUser) -> Result<UserRecord, CmdError> {
        if u.db == "$external" {
            return Ok(UserRecord::external(&u.name, u.roles.clone()));
        }
        let mut record = match &u.password {
            Some(pw) => {
                let derive: Vec<Mechanism> = u
                    .mechanisms
                    .iter()
                    .copied()
                    .filter(|m| !u.secrets.iter().any(|s| s.mechanism() == *m))
                    .collect();
                UserRecord::scram(&u.name, &u.db, pw, u.roles.clone(), &derive)?
            }
            None => UserRecord::scram(&u.name, &u.db, "", u.roles.clone(), &[])?,
        };
        record.scram.extend(
            u.secrets
                .iter()
                .filter(|s| u.mechanisms.contains(&s.mechanism()))
                .cloned(),
        );
        record.scram.sort_by_key(|s| s.mechanism());
        Ok(record)
    }

    pub fn id(&self) -> String {
        user_id(&self.db, &self.user)
    }

    pub fn secret(&self, m: Mechanism) -> Option<&ScramSecret> {
        self.scram.iter().find(|s| s.mechanism() == m)
    }

    pub fn mechanisms(&self) -> Vec<Mechanism> {
        self.scram.iter().map(|s| s.mechanism()).collect()
    }

    fn roles_bson(&self) -> Vec<Bson> {
        self.roles
            .iter()
            .map(|r| Bson::Document(doc! { "role": r.role.clone(), "db": r.db.clone() }))
            .collect()
    }

    fn credentials(&self) -> Document {
        if self.external {
            return doc! { "external": true };
        }
        let mut c = Document::new();
        for s in &self.scram {
            c.insert(s.mechanism().name(), s.to_credential_document());
        }
        c
    }

    /// The stored document.
    pub fn to_document(&self) -> Document {
        doc! {
            "_id": self.id(),
            "userId": self.uuid,
            "user": self.user.clone(),
            "db": self.db.clone(),
            "credentials": self.credentials(),
            "roles": self.roles_bson(),
        }
    }

    /// Reads a stored document (`None` if it is not one).
    pub fn from_document(d: &Document) -> Option<UserRecord> {
        let user = d.get_str("user").ok()?.to_string();
        let db = d.get_str("db").ok()?.to_string();
        let uuid = match d.get("userId") {
            Some(Bson::Binary(b)) if b.bytes.len() == 16 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(&b.bytes);
                bson::Uuid::from_bytes(u)
            }
            _ => bson::Uuid::from_bytes([0; 16]),
        };
        let roles = parse_stored_roles(d);
        let creds = d.get_document("credentials").ok();
        let external =
            creds.is_some_and(|c| matches!(c.get("external"), Some(Bson::Boolean(true))));
        let scram = creds
            .map(|c| {
                Mechanism::ALL
                    .iter()
                    .filter_map(|m| {
                        let cd = c.get_document(m.name()).ok()?;
                        ScramSecret::from_credential_document(*m, cd).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(UserRecord {
            user,
            db,
            uuid,
            roles,
            scram,
            external,
        })
    }

    /// The `usersInfo` form: `{_id, userId, user, db, roles, mechanisms}`,
    /// with `credentials` when asked for and allowed.
    pub fn info_document(&self, show_credentials: bool) -> Document {
        let mechanisms: Vec<&str> = if self.external {
            vec!["external"]
        } else {
            self.scram.iter().map(|s| s.mechanism().name()).collect()
        };
        let mut d = doc! {
            "_id": self.id(),
            "userId": self.uuid,
            "user": self.user.clone(),
            "db": self.db.clone(),
        };
        if show_credentials {
            d.insert("credentials", self.credentials());
        }
        d.insert("roles", self.roles_bson());
        d.insert("mechanisms", mechanisms);
        d
    }

    /// The op that stores this record.
    pub fn insert_op(&self) -> Op {
        Op::Insert {
            ns: USERS_NS.to_string(),
            doc: self.to_document(),
        }
    }

    /// The op that replaces the stored record.
    pub fn update_op(&self) -> Op {
        Op::Update {
            ns: USERS_NS.to_string(),
            id: Bson::String(self.id()),
            doc: self.to_document(),
        }
    }
}

/// The user `user` on `db` in this store.
pub fn find(store: &Store, db: &str, user: &str) -> Option<UserRecord> {
    store
        .find_by_id(USERS_NS, &Bson::String(user_id(db, user)))
        .and_then(UserRecord::from_document)
}

/// The roles of user `user` on `db` (without reading its credentials:
/// this runs before every command with access control on).
pub fn roles_of(store: &Store, db: &str, user: &str) -> Option<Vec<RoleName>> {
    let d = store.find_by_id(USERS_NS, &Bson::String(user_id(db, user)))?;
    Some(parse_stored_roles(d))
}

fn parse_stored_roles(d: &Document) -> Vec<RoleName> {
    d.get_array("roles")
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_document())
                .filter_map(|r| {
                    Some(RoleName::new(
                        r.get_str("role").ok()?,
                        r.get_str("db").ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every user in this store, sorted by database then name.
pub fn all(store: &Store) -> Vec<UserRecord> {
    let mut v: Vec<UserRecord> = store
        .documents(USERS_NS)
        .iter()
        .filter_map(UserRecord::from_document)
        .collect();
    v.sort_by(|a, b| (&a.db, &a.user).cmp(&(&b.db, &b.user)));
    v
}

/// Whether the store has any user (the localhost exception applies while
/// it has none).
pub fn any(store: &Store) -> bool {
    !store.documents(USERS_NS).is_empty()
}

/// The inserts that create the configured users (`--user`), checked as
/// `createUser` checks them.
pub fn seed_ops(list: &[SimUser]) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for u in list {
        let who = format!("{}@{}", u.name, u.db);
        if u.name.is_empty() {
            return Err("a user needs a name".into());
        }
        let external = u.db == "$external";
        if external && (u.password.is_some() || !u.secrets.is_empty()) {
            return Err(format!("{who}: users on $external have no password"));
        }
        if !external {
            let covered = |m: &Mechanism| {
                u.password.is_some() || u.secrets.iter().any(|s| s.mechanism() == *m)
            };
            if u.mechanisms.is_empty() || !u.mechanisms.iter().all(covered) {
                return Err(format!(
                    "{who}: needs a password or a secret for each of its SCRAM mechanisms"
                ));
            }
        }
        if let Some(r) = u.roles.iter().find(|r| !super::roles::exists(r)) {
            return Err(format!("{who}: Could not find role: {r}"));
        }
        if !seen.insert(who.clone()) {
            return Err(format!("User \"{who}\" already exists"));
        }
        let record = UserRecord::from_sim_user(u).map_err(|e| format!("{who}: {}", e.errmsg))?;
        ops.push(record.insert_op());
    }
    Ok(ops)
}

/// Roles as `createUser` / `updateUser` take them: `"role"` (on the
/// command's database) or `{role, db}`; each must be a built-in role.
pub fn parse_roles(
    v: Option<&Bson>,
    cmd_db: &str,
    command: &str,
) -> Result<Vec<RoleName>, CmdError> {
    let Some(Bson::Array(list)) = v else {
        return Err(CmdError::bad_value(format!(
            "\"{command}\" command requires a \"roles\" array"
        )));
    };
    let mut out = Vec::new();
    for r in list {
        let role = match r {
            Bson::String(s) => RoleName::new(s, cmd_db),
            Bson::Document(d) => match (d.get_str("role"), d.get_str("db")) {
                (Ok(role), Ok(db)) => RoleName::new(role, db),
                _ => {
                    return Err(CmdError::bad_value(
                        "User and role names must be either strings or objects",
                    ))
                }
            },
            _ => {
                return Err(CmdError::bad_value(
                    "User and role names must be either strings or objects",
                ))
            }
        };
        if !super::roles::exists(&role) {
            return Err(CmdError::new(
                errors::ROLE_NOT_FOUND,
                format!("Could not find role: {role}"),
            ));
        }
        if !out.contains(&role) {
            out.push(role);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let r = UserRecord::scram(
            "alice",
            "admin",
            "pw",
            vec![RoleName::new("readWrite", "app")],
            &Mechanism::ALL,
        )
        .unwrap();
        let d = r.to_document();
        assert_eq!(d.get_str("_id").unwrap(), "admin.alice");
        let creds = d.get_document("credentials").unwrap();
        assert_eq!(
            creds
                .get_document("SCRAM-SHA-256")
                .unwrap()
                .get_i32("iterationCount")
                .unwrap(),
            15_000
        );
        assert_eq!(
            creds
                .get_document("SCRAM-SHA-1")
                .unwrap()
                .get_i32("iterationCount")
                .unwrap(),
            10_000
        );
        assert_eq!(UserRecord::from_document(&d).unwrap(), r);
        let info = r.info_document(false);
        assert!(!info.contains_key("credentials"));
        assert_eq!(
            info.get_array("mechanisms").unwrap(),
            &vec![Bson::from("SCRAM-SHA-1"), Bson::from("SCRAM-SHA-256")]
        );
        assert!(r.info_document(true).contains_key("credentials"));
        assert!(r
            .secret(Mechanism::ScramSha256)
            .unwrap()
            .verify_password("alice", "pw"));

        let only1 = UserRecord::scram("b", "admin", "pw", vec![], &[Mechanism::ScramSha1]).unwrap();
        assert_eq!(only1.mechanisms(), vec![Mechanism::ScramSha1]);
        assert!(only1.secret(Mechanism::ScramSha256).is_none());

        let x = UserRecord::external("CN=c", vec![]);
        let back = UserRecord::from_document(&x.to_document()).unwrap();
        assert!(back.external && back.scram.is_empty());
    }

    #[test]
    fn role_arguments() {
        let roles = parse_roles(
            Some(&Bson::Array(vec![
                Bson::from("read"),
                Bson::Document(doc! { "role": "readWriteAnyDatabase", "db": "admin" }),
            ])),
            "app",
            "createUser",
        )
        .unwrap();
        assert_eq!(
            roles,
            vec![
                RoleName::new("read", "app"),
                RoleName::new("readWriteAnyDatabase", "admin")
            ]
        );
        let e = parse_roles(
            Some(&Bson::Array(vec![Bson::from("root")])),
            "app",
            "createUser",
        )
        .unwrap_err();
        assert_eq!(e.code, errors::ROLE_NOT_FOUND);
        assert_eq!(e.errmsg, "Could not find role: root@app");
        assert_eq!(
            parse_roles(None, "app", "createUser").unwrap_err().code,
            errors::BAD_VALUE
        );
    }
}
