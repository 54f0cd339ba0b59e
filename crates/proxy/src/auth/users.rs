//! The users file (`users_file`): the users holdfast authenticates its
//! clients as, and how each of them reaches the upstream.
//!
//! ```toml
//! [[user]]
//! name = "app"                 # required
//! db = "admin"                 # the user's authentication database (default admin)
//! password_file = "/run/secrets/app"   # or password = "…", or the SCRAM secrets:
//! # scram_sha256 = "SCRAM-SHA-256$15000:<salt>$<StoredKey>:<ServerKey>"
//! # scram_sha1   = "SCRAM-SHA-1$10000:<salt>$<StoredKey>:<ServerKey>"
//! upstream = "self"            # "self" (default): upstream as this user; "service": as holdfast's upstream identity
//!
//! [[user]]
//! name = "CN=reporting,O=example"   # an X.509 user (TLS client certificate)
//! db = "$external"
//! upstream = "service"
//! ```
//!
//! A user known only by its SCRAM secret logs in upstream with the
//! ClientKey recovered from its own proof: the secret must be the one the
//! upstream stores for that user (the same salt and iterations, as
//! `usersInfo` with `showCredentials` shows them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use holdfast_scram::{Mechanism, ScramSecret};
use serde::Deserialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UsersError {
    #[error("reading the users file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the users file {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("user {user:?} in {path}: {reason}")]
    User {
        path: String,
        user: String,
        reason: String,
    },
}

/// How an authenticated user reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamMode {
    /// As this user: its own backend connections, authenticated upstream
    /// with its password or the key recovered from its login.
    #[default]
    #[serde(rename = "self")]
    OwnIdentity,
    /// As holdfast's upstream identity (the connection string's user).
    Service,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default = "admin")]
    db: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    scram_sha256: Option<String>,
    scram_sha1: Option<String>,
    #[serde(default)]
    upstream: UpstreamMode,
}

fn admin() -> String {
    "admin".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    user: Vec<Entry>,
}

/// One user of the file.
pub struct User {
    pub name: String,
    pub db: String,
    /// The SCRAM secrets clients log in against, SCRAM-SHA-256 first.
    pub secrets: Vec<ScramSecret>,
    /// Known when the file gives it (then holdfast derived the secrets).
    pub password: Option<String>,
    pub upstream: UpstreamMode,
}

impl std::fmt::Debug for User {
    /// No password and no secret: only what identifies the user.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("db", &self.db)
            .field("mechanisms", &self.mechanism_names())
            .field("password", &self.password.as_ref().map(|_| "*****"))
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl User {
    /// `db.name`, as MongoDB names users (`saslSupportedMechs`, usersInfo).
    pub fn key(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }

    /// An X.509 user: authenticated by a TLS client certificate.
    pub fn is_x509(&self) -> bool {
        self.db == "$external"
    }

    pub fn mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        self.secrets.iter().map(|s| s.mechanism())
    }

    pub fn mechanism_names(&self) -> Vec<&'static str> {
        self.mechanisms().map(|m| m.name()).collect()
    }

    pub fn secret(&self, m: Mechanism) -> Option<&ScramSecret> {
        self.secrets.iter().find(|s| s.mechanism() == m)
    }
}

/// The users of one reading of the file.
#[derive(Debug, Default, Clone)]
pub struct Users {
    by_key: HashMap<(String, String), Arc<User>>,
    /// Where they came from (for reloads and messages).
    pub path: Option<PathBuf>,
}

impl Users {
    /// No users file: nobody is authenticated by holdfast.
    pub fn none() -> Users {
        Users::default()
    }

    pub fn is_configured(&self) -> bool {
        self.path.is_some()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, db: &str, name: &str) -> Option<Arc<User>> {
        self.by_key
            .get(&(db.to_string(), name.to_string()))
            .cloned()
    }

    /// Reads and checks the file (and the password files it names).
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| UsersError::Read {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        let mut users = Users::parse(&text, &p, path.parent())?;
        users.path = Some(path.to_path_buf());
        Ok(users)
    }

    /// Parses users-file text (`dir`: where relative password files are).
    pub fn parse(text: &str, path: &str, dir: Option<&Path>) -> Result<Users, UsersError> {
        let file: File = toml::from_str(text).map_err(|e| UsersError::Invalid {
            path: path.to_string(),
            reason: e.message().to_string(),
        })?;
        let mut by_key = HashMap::new();
        for e in file.user {
            let err = |reason: String| UsersError::User {
                path: path.to_string(),
                user: format!("{}.{}", e.db, e.name),
                reason,
            };
            let user = user_of(&e, dir).map_err(err)?;
            let key = (user.db.clone(), user.name.clone());
            if by_key.insert(key, Arc::new(user)).is_some() {
                return Err(err_dup(path, &e));
            }
        }
        Ok(Users { by_key, path: None })
    }
}

fn err_dup(path: &str, e: &Entry) -> UsersError {
    UsersError::User {
        path: path.to_string(),
        user: format!("{}.{}", e.db, e.name),
        reason: "appears twice".into(),
    }
}

fn read_password(file: &Path, dir: Option<&Path>) -> Result<String, String> {
    let full = match dir {
        Some(d) if file.is_relative() => d.join(file),
        _ => file.to_path_buf(),
    };
    let text = std::fs::read_to_string(&full)
        .map_err(|e| format!("reading its password_file {}: {e}", full.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn user_of(e: &Entry, dir: Option<&Path>) -> Result<User, String> {
    if e.name.is_empty() {
        return Err("the name is empty".into());
    }
    let given = [
        e.password.is_some(),
        e.password_file.is_some(),
        e.scram_sha256.is_some() || e.scram_sha1.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let x509 = e.db == "$external";
    if x509 {
        if given > 0 {
            return Err("an X.509 user ($external) has no password or SCRAM secret".into());
        }
        if e.upstream != UpstreamMode::Service {
            return Err("an X.509 user must have upstream = \"service\" (holdfast holds no key to log in upstream as it)".into());
        }
        return Ok(User {
            name: e.name.clone(),
            db: e.db.clone(),
            secrets: Vec::new(),
            password: None,
            upstream: e.upstream,
        });
    }
    if given != 1 {
        return Err("give exactly one of password, password_file, or the SCRAM secrets (scram_sha256 / scram_sha1)".into());
    }
    let password = match (&e.password, &e.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(read_password(f, dir)?),
        _ => None,
    };
    let secrets = match &password {
        Some(pw) => [Mechanism::ScramSha256, Mechanism::ScramSha1]
            .into_iter()
            .map(|m| ScramSecret::generate(m, &e.name, pw).map_err(|err| err.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        None => parse_secrets(e)?,
    };
    Ok(User {
        name: e.name.clone(),
        db: e.db.clone(),
        secrets,
        password,
        upstream: e.upstream,
    })
}

fn parse_secrets(e: &Entry) -> Result<Vec<ScramSecret>, String> {
    let mut out = Vec::new();
    for (field, text, want) in [
        ("scram_sha256", &e.scram_sha256, Mechanism::ScramSha256),
        ("scram_sha1", &e.scram_sha1, Mechanism::ScramSha1),
    ] {
        let Some(t) = text else { continue };
        let s = ScramSecret::parse(t).map_err(|err| format!("{field}: {err}"))?;
        if s.mechanism() != want {
            return Err(format!("{field} holds a {} secret", s.mechanism().name()));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Users, UsersError> {
        Users::parse(t, "users.toml", None)
    }

    #[test]
    fn passwords_secrets_and_x509_users() {
        let sha256 = ScramSecret::generate(Mechanism::ScramSha256, "reports", "pw").unwrap();
        let text = format!(
            "[[user]]\nname = \"app\"\npassword = \"secret\"\n\n\
             [[user]]\nname = \"reports\"\ndb = \"reporting\"\nscram_sha256 = \"{}\"\n\n\
             [[user]]\nname = \"CN=batch,O=x\"\ndb = \"$external\"\nupstream = \"service\"\n",
            sha256.to_text()
        );
        let u = parse(&text).unwrap();
        assert_eq!(u.len(), 3);
        let app = u.get("admin", "app").unwrap();
        assert_eq!(app.mechanism_names(), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        assert!(app
            .secret(Mechanism::ScramSha1)
            .unwrap()
            .verify_password("app", "secret"));
        assert_eq!(app.upstream, UpstreamMode::OwnIdentity);
        let r = u.get("reporting", "reports").unwrap();
        assert_eq!(r.mechanism_names(), ["SCRAM-SHA-256"]);
        assert!(r.password.is_none());
        assert!(u.get("$external", "CN=batch,O=x").unwrap().is_x509());
        assert!(
            u.get("admin", "reports").is_none(),
            "users are per database"
        );
    }

    #[test]
    fn nothing_secret_in_debug() {
        let u = parse("[[user]]\nname = \"app\"\npassword = \"hunter2-pw\"\n").unwrap();
        let d = format!("{:?}", u);
        assert!(!d.contains("hunter2-pw"), "{d}");
        let stored = u.get("admin", "app").unwrap().secrets[0].to_text();
        let key_part = stored.rsplit('$').next().unwrap();
        assert!(!d.contains(key_part), "{d}");
    }

    #[test]
    fn bad_entries_are_refused_clearly() {
        for (text, part) in [
            ("[[user]]\nname = \"a\"\n", "exactly one"),
            ("[[user]]\nname = \"a\"\npassword = \"p\"\nscram_sha1 = \"x\"\n", "exactly one"),
            ("[[user]]\nname = \"a\"\nscram_sha256 = \"nonsense\"\n", "scram_sha256"),
            ("[[user]]\nname = \"a\"\npassword = \"p\"\n[[user]]\nname = \"a\"\npassword = \"q\"\n", "twice"),
            ("[[user]]\nname = \"CN=x\"\ndb = \"$external\"\n", "service"),
            ("[[user]]\nname = \"a\"\npasswd = \"p\"\n", "passwd"),
            ("[[user]]\nname = \"a\"\npassword_file = \"/nonexistent/x\"\n", "password_file"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(part), "{text}: {e}");
            assert!(!e.contains("\"p\"") && !e.contains("q\""), "{e}");
        }
        let sha1 = ScramSecret::generate(Mechanism::ScramSha1, "a", "pw").unwrap();
        let text = format!(
            "[[user]]\nname = \"a\"\nscram_sha256 = \"{}\"\n",
            sha1.to_text()
        );
        assert!(parse(&text)
            .unwrap_err()
            .to_string()
            .contains("SCRAM-SHA-1 secret"));
    }

    #[test]
    fn password_files_are_read_relative_to_the_users_file() {
        let dir = std::env::temp_dir().join(format!("holdfast-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        std::fs::write(
            dir.join("users.toml"),
            "[[user]]\nname = \"f\"\npassword_file = \"pw\"\n",
        )
        .unwrap();
        let u = Users::load(&dir.join("users.toml")).unwrap();
        assert_eq!(
            u.get("admin", "f").unwrap().password.as_deref(),
            Some("from-file")
        );
        assert!(u.is_configured());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
