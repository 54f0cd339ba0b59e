//! MongoDB's built-in roles as sets of actions on resources.

use crate::config::RoleName;

/// What a command does to a resource (a subset of MongoDB's action types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Action {
    Find,
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    ListCollections,
    ListIndexes,
    CollStats,
    DbStats,
    RenameCollectionSameDb,
    CollMod,
    Validate,
    DropDatabase,
    ViewUser,
    CreateUser,
    DropUser,
    UpdateUser,
    // On the cluster.
    ListDatabases,
    ServerStatus,
    ReplSetGetStatus,
    ReplSetGetConfig,
    ReplSetStateChange,
    ReplSetConfigure,
    Shutdown,
    GetCmdLineOpts,
    GetParameter,
    HostInfo,
    GetLog,
    InProg,
    KillOp,
    KillAnySession,
    GetDefaultRWConcern,
    /// The simulator's fault injection (root only).
    SimFault,
}

/// A set of actions (a bit mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u64);

impl Actions {
    pub const fn of(list: &[Action]) -> Actions {
        let mut bits = 0u64;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << list[i] as u8;
            i += 1;
        }
        Actions(bits)
    }

    pub const fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    pub fn contains(self, a: Action) -> bool {
        self.0 & (1 << a as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

use Action::*;

const READ: Actions = Actions::of(&[Find, ListCollections, ListIndexes, CollStats, DbStats]);
const READ_WRITE: Actions = READ.union(Actions::of(&[
    Insert,
    Update,
    Remove,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    RenameCollectionSameDb,
]));
const DB_ADMIN: Actions = Actions::of(&[
    ListCollections,
    ListIndexes,
    CollStats,
    DbStats,
    CreateCollection,
    DropCollection,
    CreateIndex,
    DropIndex,
    RenameCollectionSameDb,
    CollMod,
    Validate,
    DropDatabase,
]);
const USER_ADMIN: Actions = Actions::of(&[ViewUser, CreateUser, DropUser, UpdateUser]);
const CLUSTER_MONITOR: Actions = Actions::of(&[
    ListDatabases,
    ServerStatus,
    ReplSetGetStatus,
    ReplSetGetConfig,
    GetCmdLineOpts,
    GetParameter,
    HostInfo,
    GetLog,
    InProg,
    GetDefaultRWConcern,
]);
const HOST_MANAGER: Actions = Actions::of(&[Shutdown, KillOp]);
const CLUSTER_MANAGER: Actions =
    Actions::of(&[ReplSetStateChange, ReplSetConfigure, KillAnySession]);

/// Which databases a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Db(String),
    /// Every database except `local` and `config` (the *AnyDatabase roles).
    AnyNormalDb,
    /// Every database.
    AnyDb,
    /// The cluster (server-wide actions).
    Cluster,
    /// Everything (root).
    All,
}

/// One grant of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub actions: Actions,
}

fn grant(scope: Scope, actions: Actions) -> Grant {
    Grant { scope, actions }
}

/// Roles defined on any database.
const DB_ROLES: [&str; 5] = ["read", "readWrite", "dbAdmin", "userAdmin", "dbOwner"];

/// Roles defined on `admin` only.
const ADMIN_ROLES: [&str; 10] = [
    "readAnyDatabase",
    "readWriteAnyDatabase",
    "userAdminAnyDatabase",
    "dbAdminAnyDatabase",
    "clusterMonitor",
    "hostManager",
    "clusterManager",
    "clusterAdmin",
    "root",
    "__system",
];

/// Whether `role` is a built-in role (RoleNotFound otherwise).
pub fn exists(role: &RoleName) -> bool {
    DB_ROLES.contains(&role.role.as_str())
        || (role.db == "admin" && ADMIN_ROLES.contains(&role.role.as_str()))
}

/// The grants of a built-in role (none for an unknown one).
pub fn grants(role: &RoleName) -> Vec<Grant> {
    let db = || Scope::Db(role.db.clone());
    match role.role.as_str() {
        "read" => vec![grant(db(), READ)],
        "readWrite" => vec![grant(db(), READ_WRITE)],
        "dbAdmin" => vec![grant(db(), DB_ADMIN)],
        "userAdmin" => vec![grant(db(), USER_ADMIN)],
        "dbOwner" => vec![grant(db(), READ_WRITE.union(DB_ADMIN).union(USER_ADMIN))],
        _ if role.db != "admin" => Vec::new(),
        "readAnyDatabase" => vec![
            grant(Scope::AnyNormalDb, READ),
            grant(Scope::Cluster, Actions::of(&[ListDatabases])),
        ],
        "readWriteAnyDatabase" => vec![
            grant(Scope::AnyNormalDb, READ_WRITE),
            grant(Scope::Cluster, Actions::of(&[ListDatabases])),
        ],
        "userAdminAnyDatabase" => vec![
            grant(Scope::AnyDb, USER_ADMIN),
            grant(Scope::Cluster, Actions::of(&[ListDatabases])),
        ],
        "dbAdminAnyDatabase" => vec![
            grant(Scope::AnyNormalDb, DB_ADMIN),
            grant(Scope::Cluster, Actions::of(&[ListDatabases])),
        ],
        "clusterMonitor" => vec![
            grant(Scope::Cluster, CLUSTER_MONITOR),
            grant(Scope::AnyDb, Actions::of(&[CollStats, DbStats])),
        ],
        "hostManager" => vec![grant(Scope::Cluster, HOST_MANAGER)],
        "clusterManager" => vec![grant(Scope::Cluster, CLUSTER_MANAGER)],
        "clusterAdmin" => vec![
            grant(
                Scope::Cluster,
                CLUSTER_MONITOR.union(HOST_MANAGER).union(CLUSTER_MANAGER),
            ),
            grant(
                Scope::AnyDb,
                Actions::of(&[CollStats, DbStats, DropDatabase]),
            ),
        ],
        "root" | "__system" => vec![grant(Scope::All, Actions::of(&[]))],
        _ => Vec::new(),
    }
}

/// Where an action is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A database; `system` is true for a `system.*` collection in it
    /// (only root reaches those).
    Db {
        db: String,
        system: bool,
    },
    Cluster,
}

impl Resource {
    pub fn db(db: &str) -> Resource {
        Resource::Db {
            db: db.to_string(),
            system: false,
        }
    }

    pub fn collection(db: &str, coll: &str) -> Resource {
        Resource::Db {
            db: db.to_string(),
            system: coll.starts_with("system."),
        }
    }
}

/// Everything a user's roles grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privileges {
    grants: Vec<Grant>,
}

impl Privileges {
    pub fn of(roles: &[RoleName]) -> Privileges {
        Privileges {
            grants: roles.iter().flat_map(grants).collect(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.grants.iter().any(|g| g.scope == Scope::All)
    }

    pub fn allows(&self, resource: &Resource, action: Action) -> bool {
        self.grants.iter().any(|g| {
            if g.scope == Scope::All {
                return true;
            }
            if !g.actions.contains(action) {
                return false;
            }
            match (resource, &g.scope) {
                (Resource::Cluster, Scope::Cluster) => true,
                (Resource::Db { system: true, .. }, _) => false,
                (Resource::Db { db, .. }, Scope::Db(d)) => db == d,
                (Resource::Db { db, .. }, Scope::AnyNormalDb) => db != "local" && db != "config",
                (Resource::Db { .. }, Scope::AnyDb) => true,
                _ => false,
            }
        })
    }

    /// Whether any action at all is granted on database `db` (what
    /// `listDatabases` shows a user without the ListDatabases action).
    pub fn any_on_db(&self, db: &str) -> bool {
        self.grants.iter().any(|g| match &g.scope {
            Scope::All | Scope::AnyDb => true,
            Scope::AnyNormalDb => db != "local" && db != "config",
            Scope::Db(d) => d == db && !g.actions.is_empty(),
            Scope::Cluster => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(roles: &[(&str, &str)]) -> Privileges {
        Privileges::of(
            &roles
                .iter()
                .map(|(r, d)| RoleName::new(r, d))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn db_roles_stay_on_their_database() {
        let rw = p(&[("readWrite", "db1")]);
        assert!(rw.allows(&Resource::db("db1"), Insert));
        assert!(rw.allows(&Resource::db("db1"), Find));
        assert!(!rw.allows(&Resource::db("db2"), Insert));
        assert!(!rw.allows(&Resource::db("db2"), Find));
        assert!(!rw.allows(&Resource::db("db1"), DropDatabase));
        assert!(!rw.allows(&Resource::collection("db1", "system.x"), Find));
        assert!(!rw.allows(&Resource::Cluster, ListDatabases));
        let r = p(&[("read", "db1")]);
        assert!(r.allows(&Resource::db("db1"), Find));
        assert!(!r.allows(&Resource::db("db1"), Insert));
        assert!(r.any_on_db("db1") && !r.any_on_db("db2"));
    }

    #[test]
    fn any_database_roles_skip_local_and_config() {
        let r = p(&[("readAnyDatabase", "admin")]);
        assert!(r.allows(&Resource::db("anything"), Find));
        assert!(r.allows(&Resource::db("admin"), Find));
        assert!(!r.allows(&Resource::db("local"), Find));
        assert!(!r.allows(&Resource::db("x"), Insert));
        assert!(r.allows(&Resource::Cluster, ListDatabases));
        let rw = p(&[("readWriteAnyDatabase", "admin")]);
        assert!(rw.allows(&Resource::db("x"), Insert));
        assert!(!rw.allows(&Resource::db("config"), Insert));
        assert!(!rw.allows(&Resource::Cluster, ServerStatus));
        // Only defined on admin.
        assert!(!exists(&RoleName::new("readAnyDatabase", "db1")));
        assert!(p(&[("readAnyDatabase", "db1")]).grants.is_empty());
    }

    #[test]
    fn cluster_and_root() {
        let m = p(&[("clusterMonitor", "admin")]);
        assert!(m.allows(&Resource::Cluster, ServerStatus));
        assert!(!m.allows(&Resource::Cluster, ReplSetStateChange));
        let a = p(&[("clusterAdmin", "admin")]);
        assert!(a.allows(&Resource::Cluster, ReplSetStateChange));
        assert!(a.allows(&Resource::Cluster, Shutdown));
        assert!(!a.allows(&Resource::db("x"), Find));
        assert!(!a.allows(&Resource::Cluster, SimFault));
        let root = p(&[("root", "admin")]);
        assert!(root.is_root());
        assert!(root.allows(&Resource::Cluster, SimFault));
        assert!(root.allows(&Resource::collection("admin", "system.users"), Find));
        let ua = p(&[("userAdmin", "db1")]);
        assert!(ua.allows(&Resource::db("db1"), CreateUser));
        assert!(!ua.allows(&Resource::db("db1"), Find));
        assert!(exists(&RoleName::new("dbOwner", "x")));
        assert!(!exists(&RoleName::new("superuser", "admin")));
    }
}
