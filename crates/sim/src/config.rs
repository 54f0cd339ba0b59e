//! How a simulated replica set is laid out, how fast it fails over, and
//! who may use it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use holdfast_scram::{Mechanism, ScramSecret};

/// Configuration of one simulated replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Number of members (data-bearing, voting). Default 3.
    pub members: usize,
    /// Port of member 0; member `i` listens on `base_port + i`. `0` gives
    /// every member its own ephemeral port (what tests use).
    pub base_port: u16,
    /// The replica set name (`setName`, `replicaSet=`). Default `rs0`.
    pub set_name: String,
    /// Time with no primary after a stepdown, a kill or a shutdown of the
    /// primary, until the new primary is elected. Default 1500 ms. (MongoDB
    /// with default settings takes roughly 10–12 s after a crash.)
    pub election_ms: u64,
    /// Secondaries apply each replicated log entry this long after the
    /// primary wrote it. Default 2 ms.
    pub repl_lag_ms: u64,
    /// Address every member binds. Default 127.0.0.1.
    pub host: IpAddr,
    /// Access control (`--auth`): clients must authenticate, and users may
    /// only run what their roles allow. Default off (every command allowed;
    /// users, if any, can still authenticate).
    pub auth: bool,
    /// Users every member has from the start (`--user`).
    pub users: Vec<SimUser>,
    /// TLS on every member (`--tls-cert-key-file`, `--tls-ca-file`).
    pub tls: Option<SimTls>,
    /// Replica set tags of each member (`members[i].tags` of the
    /// configuration, `--member-tags`): entry `i` holds member `i`'s tags;
    /// a missing or empty entry means none. hello reports `tags` for the
    /// members that have some. See [`SimConfig::with_tags`].
    pub member_tags: Vec<MemberTags>,
    /// How often an idle primary writes a no-op to the log (MongoDB's
    /// `periodicNoopIntervalSecs`, default 10 s), so that `lastWriteDate`
    /// keeps advancing. `0` disables it.
    pub periodic_noop_ms: u64,
}

/// One member's tags (`{dc: "east", rack: "r1"}`), in configuration order.
/// Tag values are strings, as MongoDB requires.
pub type MemberTags = Vec<(String, String)>;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            members: 3,
            base_port: 0,
            set_name: "rs0".to_string(),
            election_ms: 1500,
            repl_lag_ms: 2,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            auth: false,
            users: Vec::new(),
            tls: None,
            member_tags: Vec::new(),
            periodic_noop_ms: 10_000,
        }
    }
}

impl SimConfig {
    /// Votes needed to elect a primary and to acknowledge `w: "majority"`.
    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }

    /// Gives `member` these tags (replacing any it had).
    pub fn with_tags(mut self, member: usize, tags: &[(&str, &str)]) -> SimConfig {
        if self.member_tags.len() <= member {
            self.member_tags.resize(member + 1, Vec::new());
        }
        self.member_tags[member] = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// The tags of `member` (empty if it has none).
    pub fn tags_of(&self, member: usize) -> &[(String, String)] {
        self.member_tags.get(member).map_or(&[], |t| t.as_slice())
    }

    /// Checks what [`crate::ReplicaSet::start`] cannot run with.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.members == 0 {
            return Err("a replica set needs at least one member".into());
        }
        if let Some(i) =
            (self.members..self.member_tags.len()).find(|i| !self.member_tags[*i].is_empty())
        {
            return Err(format!(
                "tags for member {i}, but the set has {} members",
                self.members
            ));
        }
        for (i, tags) in self.member_tags.iter().enumerate() {
            for (n, (k, _)) in tags.iter().enumerate() {
                if k.is_empty() {
                    return Err(format!("member {i} has a tag with an empty name"));
                }
                if tags[..n].iter().any(|(k2, _)| k2 == k) {
                    return Err(format!("member {i} has tag {k:?} twice"));
                }
            }
        }
        Ok(())
    }
}

/// Reads `--member-tags`: `N:key=value[,key=value...]` (member `N`'s tags).
pub fn parse_member_tags(spec: &str) -> Result<(usize, MemberTags), String> {
    let (member, list) = spec
        .split_once(':')
        .ok_or("expected N:key=value[,key=value...]")?;
    let member: usize = member
        .trim()
        .parse()
        .map_err(|_| format!("{member:?} is not a member index"))?;
    let mut tags: MemberTags = Vec::new();
    for item in list.split(',') {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                tags.retain(|(k2, _)| k2 != k);
                tags.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("{item:?} is not key=value")),
        }
    }
    Ok((member, tags))
}

/// A built-in role on a database (`{role: "readWrite", db: "app"}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName {
    pub role: String,
    pub db: String,
}

impl RoleName {
    pub fn new(role: &str, db: &str) -> RoleName {
        RoleName {
            role: role.to_string(),
            db: db.to_string(),
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.role, self.db)
    }
}

/// A user created when the set starts. SCRAM users live in `admin` and
/// get SCRAM-SHA-1 and SCRAM-SHA-256 credentials (default iterations,
/// random salts); MONGODB-X509 users live in `$external`, are named after
/// their certificate's subject and have no password. `Debug` does not
/// print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SimUser {
    pub name: String,
    /// `admin` or `$external`.
    pub db: String,
    /// `None` for `$external` users.
    pub password: Option<String>,
    pub roles: Vec<RoleName>,
    /// The SCRAM mechanisms it gets credentials for (default both).
    pub mechanisms: Vec<Mechanism>,
    /// Stored credentials to use instead of generating them from the
    /// password (for a mechanism in `mechanisms`): lets a test give the
    /// set the very secret (salt, iterations, keys) a proxy also holds.
    pub secrets: Vec<ScramSecret>,
}

impl SimUser {
    /// A SCRAM user on `admin` with `root@admin` and both mechanisms.
    pub fn new(name: &str, password: &str) -> SimUser {
        SimUser {
            name: name.to_string(),
            db: "admin".to_string(),
            password: Some(password.to_string()),
            roles: vec![RoleName::new("root", "admin")],
            mechanisms: Mechanism::ALL.to_vec(),
            secrets: Vec::new(),
        }
    }

    /// A MONGODB-X509 user on `$external` (`subject` as MongoDB prints it,
    /// e.g. `CN=client,OU=apps,O=holdfast`) with `root@admin`.
    pub fn external(subject: &str) -> SimUser {
        SimUser {
            name: subject.to_string(),
            db: "$external".to_string(),
            password: None,
            roles: vec![RoleName::new("root", "admin")],
            mechanisms: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// Replaces the roles (`("readWrite", "app")`, …).
    pub fn with_roles(mut self, roles: &[(&str, &str)]) -> SimUser {
        self.roles = roles.iter().map(|(r, d)| RoleName::new(r, d)).collect();
        self
    }

    /// Replaces the SCRAM mechanisms.
    pub fn with_mechanisms(mut self, mechanisms: &[Mechanism]) -> SimUser {
        self.mechanisms = mechanisms.to_vec();
        self
    }

    /// Uses these stored credentials (their mechanisms) instead of
    /// credentials derived from the password.
    pub fn with_secrets(mut self, secrets: &[ScramSecret]) -> SimUser {
        self.mechanisms = secrets.iter().map(|s| s.mechanism()).collect();
        self.secrets = secrets.to_vec();
        self
    }

    /// Reads `--user`: `NAME:PASSWORD[:ROLE@DB,…]` (an `admin` user; without
    /// roles it gets `root@admin`; a final `:ROLE@DB,…` is read as roles,
    /// so the password may contain `:`), or `SUBJECT@$external[:ROLE@DB,…]`
    /// for a MONGODB-X509 user.
    pub fn parse(spec: &str) -> Result<SimUser, String> {
        let external = "@$external";
        if let Some(pos) = spec.rfind(external) {
            let (subject, rest) = (&spec[..pos], &spec[pos + external.len()..]);
            if subject.is_empty() {
                return Err("an $external user needs a subject name".into());
            }
            let mut user = SimUser::external(subject);
            match rest.strip_prefix(':') {
                None if rest.is_empty() => {}
                Some(roles) => user.roles = parse_roles(roles)?,
                None => return Err(format!("unexpected {rest:?} after @$external")),
            }
            return Ok(user);
        }
        let (name, rest) = spec
            .split_once(':')
            .ok_or("expected NAME:PASSWORD[:ROLE@DB,...]")?;
        if name.is_empty() {
            return Err("the user name is empty".into());
        }
        let (password, roles) = match rest.rsplit_once(':') {
            Some((pw, roles)) if parse_roles(roles).is_ok() => (pw, parse_roles(roles)?),
            _ => (rest, vec![RoleName::new("root", "admin")]),
        };
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        let mut user = SimUser::new(name, password);
        user.roles = roles;
        Ok(user)
    }
}

fn parse_roles(list: &str) -> Result<Vec<RoleName>, String> {
    list.split(',')
        .map(|item| match item.split_once('@') {
            Some((role, db))
                if !role.is_empty()
                    && !db.is_empty()
                    && role.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Ok(RoleName::new(role, db))
            }
            _ => Err(format!("{item:?} is not ROLE@DB")),
        })
        .collect()
}

impl fmt::Debug for SimUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUser")
            .field("name", &self.name)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("roles", &self.roles)
            .field("mechanisms", &self.mechanisms)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// TLS for every member: plaintext clients are refused. With a CA,
/// client certificates are requested and verified against it (clients
/// without one still connect). `Debug` prints no key.
#[derive(Clone, PartialEq, Eq)]
pub struct SimTls {
    /// The server's certificate chain and private key, PEM, in one file.
    pub cert_key_pem: String,
    /// CA certificates (PEM) client certificates must chain to.
    pub ca_pem: Option<String>,
}

impl SimTls {
    /// Reads `--tls-cert-key-file` and `--tls-ca-file`.
    pub fn from_files(cert_key: &Path, ca: Option<&Path>) -> std::io::Result<SimTls> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
        };
        Ok(SimTls {
            cert_key_pem: read(cert_key)?,
            ca_pem: ca.map(read).transpose()?,
        })
    }
}

impl fmt::Debug for SimTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTls")
            .field("cert_key_pem", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(|c| c.len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_flags() {
        let u = SimUser::parse("alice:pw").unwrap();
        assert_eq!((u.name.as_str(), u.db.as_str()), ("alice", "admin"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.roles, vec![RoleName::new("root", "admin")]);
        assert_eq!(u.mechanisms, Mechanism::ALL.to_vec());

        let u = SimUser::parse("app:s3:cret:readWrite@db1,read@db2").unwrap();
        assert_eq!(u.password.as_deref(), Some("s3:cret"));
        assert_eq!(
            u.roles,
            vec![
                RoleName::new("readWrite", "db1"),
                RoleName::new("read", "db2")
            ]
        );
        // A last part that is not a role list belongs to the password.
        let u = SimUser::parse("bob:a:b").unwrap();
        assert_eq!(u.password.as_deref(), Some("a:b"));
        let u = SimUser::parse("bob@example.com:pw").unwrap();
        assert_eq!(u.name, "bob@example.com");

        let u = SimUser::parse("CN=client,OU=apps,O=holdfast@$external").unwrap();
        assert_eq!(u.name, "CN=client,OU=apps,O=holdfast");
        assert_eq!(u.db, "$external");
        assert_eq!(u.password, None);
        assert_eq!(u.roles, vec![RoleName::new("root", "admin")]);
        let u = SimUser::parse("CN=c@$external:read@db1").unwrap();
        assert_eq!(u.roles, vec![RoleName::new("read", "db1")]);

        for bad in [
            "",
            "alice",
            ":pw",
            "alice:",
            "@$external",
            "CN=c@$external:x",
            "CN=c@$externalx",
        ] {
            assert!(SimUser::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_tags_flags_and_validation() {
        let (i, tags) = parse_member_tags("2:dc=east,rack=r1").unwrap();
        assert_eq!(i, 2);
        assert_eq!(
            tags,
            vec![("dc".into(), "east".into()), ("rack".into(), "r1".into())]
        );
        // A key given twice keeps the last value; values may contain '='.
        let (_, tags) = parse_member_tags("0:dc=a,dc=b=c").unwrap();
        assert_eq!(tags, vec![("dc".into(), "b=c".into())]);
        for bad in ["", "dc=east", "x:dc=east", "1:", "1:dc", "1:=v", "1:dc=e,,"] {
            assert!(parse_member_tags(bad).is_err(), "{bad}");
        }

        let cfg = SimConfig::default().with_tags(1, &[("dc", "west")]);
        assert_eq!(cfg.tags_of(0), &[]);
        assert_eq!(cfg.tags_of(1), &[("dc".to_string(), "west".to_string())]);
        assert_eq!(cfg.tags_of(7), &[]);
        assert!(cfg.validate().is_ok());
        assert!(SimConfig::default()
            .with_tags(3, &[("dc", "x")])
            .validate()
            .is_err());
        // An empty entry past the last member is harmless.
        assert!(SimConfig::default().with_tags(5, &[]).validate().is_ok());
        assert!(SimConfig::default()
            .with_tags(0, &[("", "x")])
            .validate()
            .is_err());
        assert!(SimConfig::default()
            .with_tags(0, &[("a", "x"), ("a", "y")])
            .validate()
            .is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let u = SimUser::new("alice", "hunter2");
        assert!(!format!("{u:?}").contains("hunter2"));
        let t = SimTls {
            cert_key_pem: "-----BEGIN PRIVATE KEY-----abc".into(),
            ca_pem: None,
        };
        assert!(!format!("{t:?}").contains("PRIVATE"));
        let cfg = SimConfig {
            users: vec![u],
            tls: Some(t),
            ..SimConfig::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("PRIVATE"),
            "{dbg}"
        );
    }
}
