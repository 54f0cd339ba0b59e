//! The upstream: how holdfast reaches the replica set, read from its
//! connection string as a driver reads it — the user and mechanism
//! (`authSource`, `authMechanism`; the password from the string or from
//! `upstream_password_file`), and TLS (`tls`/`ssl`, `tlsCAFile`,
//! `tlsCertificateKeyFile`, `tlsAllowInvalidCertificates`,
//! `tlsAllowInvalidHostnames`, `tlsInsecure`). A `mongodb+srv://` string
//! is resolved (SRV and TXT records) as drivers resolve it, which also
//! turns TLS on.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use holdfast_scram::Mechanism;
use holdfast_tls::UpstreamTls;
use mongodb::options::{AuthMechanism, ClientOptions, Tls};

use crate::pool::login::{Login, Method};

/// What backend connections need to know of the upstream.
#[derive(Debug)]
pub struct Upstream {
    /// How backend connections of the upstream identity log in (`None`:
    /// the string names no user).
    pub login: Option<Arc<Login>>,
    /// TLS towards the members (`None`: plain TCP).
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    /// Reads `uri` (and the password file, if given).
    pub async fn from_uri(uri: &str, password_file: Option<&Path>) -> anyhow::Result<Upstream> {
        let (uri, relaxed_hostnames) = holdfast_topology::take_allow_invalid_hostnames(uri);
        let opts = ClientOptions::parse(&uri).await.map_err(|e| {
            anyhow::anyhow!("the upstream connection string does not parse: {}", e.kind)
        })?;
        let tls = match &opts.tls {
            Some(Tls::Enabled(t)) => Some(UpstreamTls {
                ca_file: t.ca_file_path.clone(),
                cert_key_file: t.cert_key_file_path.clone(),
                allow_invalid_certificates: t.allow_invalid_certificates == Some(true),
                allow_invalid_hostnames: relaxed_hostnames == Some(true),
            }),
            _ => None,
        };
        let login = login_of(&opts, tls.as_ref(), password_file)?;
        Ok(Upstream {
            login: login.map(Arc::new),
            tls,
        })
    }

    /// The login again with the password file re-read (SIGHUP).
    pub async fn reload_login(
        uri: &str,
        password_file: Option<&Path>,
    ) -> anyhow::Result<Option<Arc<Login>>> {
        Ok(Upstream::from_uri(uri, password_file).await?.login)
    }
}

/// The first line of a password file.
pub fn read_password_file(f: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(f)
        .with_context(|| format!("reading upstream_password_file {}", f.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        bail!(
            "upstream_password_file {} is empty: its first line is the password",
            f.display()
        );
    }
    Ok(line)
}

fn login_of(
    opts: &ClientOptions,
    tls: Option<&UpstreamTls>,
    password_file: Option<&Path>,
) -> anyhow::Result<Option<Login>> {
    let Some(cred) = &opts.credential else {
        return Ok(None);
    };
    let db = |default: &str| cred.source.clone().unwrap_or_else(|| default.into());
    let mechanism = match &cred.mechanism {
        None => None,
        Some(AuthMechanism::ScramSha256) => Some(Mechanism::ScramSha256),
        Some(AuthMechanism::ScramSha1) => Some(Mechanism::ScramSha1),
        Some(AuthMechanism::MongoDbX509) => {
            if tls.is_none_or(|t| t.cert_key_file.is_none()) {
                bail!("authMechanism=MONGODB-X509 needs tls=true and tlsCertificateKeyFile (the client certificate it logs in with)");
            }
            return Ok(Some(Login {
                user: cred.username.clone().unwrap_or_default(),
                db: "$external".into(),
                method: Method::X509,
            }));
        }
        Some(other) => bail!(
            "authMechanism {} is not supported for backend connections (SCRAM-SHA-256, SCRAM-SHA-1 and MONGODB-X509 are)",
            other.as_str()
        ),
    };
    let Some(user) = cred.username.clone() else {
        return Ok(None);
    };
    let password = match password_file {
        Some(f) => read_password_file(f)?,
        None => match &cred.password {
            Some(p) => p.clone(),
            None => bail!(
                "the upstream connection string names user {user} but no password: put it in the string or in upstream_password_file"
            ),
        },
    };
    Ok(Some(Login::password(
        &user,
        &db("admin"),
        &password,
        mechanism,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(u: &Upstream) -> String {
        format!("{:?}", u.login.as_deref().unwrap())
    }

    #[tokio::test]
    async fn credentials_come_from_the_string_or_the_password_file() {
        let u = Upstream::from_uri(
            "mongodb://svc:s3cret@h1:27017,h2:27017/?replicaSet=rs0",
            None,
        )
        .await
        .unwrap();
        let l = u.login.as_deref().unwrap();
        assert_eq!(l.principal(), "admin.svc");
        assert!(l.negotiates());
        assert!(!method(&u).contains("s3cret"));
        assert!(u.tls.is_none());

        let u = Upstream::from_uri(
            "mongodb://svc:x@h1/?authSource=app&authMechanism=SCRAM-SHA-1",
            None,
        )
        .await
        .unwrap();
        let l = u.login.as_deref().unwrap();
        assert_eq!(l.principal(), "app.svc");
        assert_eq!(l.mechanism_for(&[]), Some(Mechanism::ScramSha1));

        let dir = std::env::temp_dir().join(format!("holdfast-upstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "from-file\nignored\n").unwrap();
        let u = Upstream::from_uri("mongodb://svc@h1/", Some(&f))
            .await
            .unwrap();
        let Method::Password { password, .. } = &u.login.as_deref().unwrap().method else {
            panic!()
        };
        assert_eq!(password, "from-file");
        std::fs::write(&f, "").unwrap();
        let e = Upstream::from_uri("mongodb://svc@h1/", Some(&f))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        let e = Upstream::from_uri("mongodb://svc@h1/", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no password"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        let u = Upstream::from_uri("mongodb://h1/", None).await.unwrap();
        assert!(u.login.is_none());
    }

    #[tokio::test]
    async fn tls_options_and_x509() {
        let u = Upstream::from_uri(
            "mongodb://h1/?tls=true&tlsCAFile=/ca.pem&tlsAllowInvalidHostnames=true",
            None,
        )
        .await
        .unwrap();
        let t = u.tls.unwrap();
        assert_eq!(t.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert!(t.allow_invalid_hostnames && !t.allow_invalid_certificates);
        let u = Upstream::from_uri("mongodb://h1/?ssl=true&tlsInsecure=true", None)
            .await
            .unwrap();
        assert!(u.tls.unwrap().allow_invalid_certificates);

        let u = Upstream::from_uri(
            "mongodb://h1/?tls=true&tlsCertificateKeyFile=/me.pem&authMechanism=MONGODB-X509",
            None,
        )
        .await
        .unwrap();
        let l = u.login.as_deref().unwrap();
        assert!(matches!(l.method, Method::X509));
        assert_eq!(l.db, "$external");
        let e = Upstream::from_uri("mongodb://h1/?authMechanism=MONGODB-X509", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("tlsCertificateKeyFile"), "{e}");
        let e = Upstream::from_uri("mongodb://u:p@h1/?authMechanism=PLAIN", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("PLAIN"), "{e}");
    }
}
