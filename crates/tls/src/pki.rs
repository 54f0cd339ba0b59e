//! Test certificates (feature `test-pki`), made with rcgen when a test runs
//! (never committed):
//! a CA, a server certificate for 127.0.0.1/localhost, client certificates
//! signed by the CA, and one signed by a CA the server does not trust.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct Pki {
    pub ca_pem: String,
    /// Server certificate and key, one PEM.
    pub server_pem: String,
    /// `CN=client,OU=apps,O=holdfast`: certificate and key, one PEM.
    pub client_pem: String,
    /// `CN=stranger,O=holdfast`, signed by the same CA.
    pub stranger_pem: String,
    /// `CN=client,OU=apps,O=holdfast`, signed by another CA.
    pub untrusted_pem: String,
    /// `CN=other.example,O=holdfast`: a server certificate for another
    /// host name (not 127.0.0.1 or localhost), and its key.
    pub other_host_pem: String,
    pub dir: PathBuf,
}

pub const CLIENT_SUBJECT: &str = "CN=client,OU=apps,O=holdfast";
pub const STRANGER_SUBJECT: &str = "CN=stranger,O=holdfast";

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>, sans: &[&str], dn: &[(DnType, &str)]) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut name = DistinguishedName::new();
    for (t, v) in dn {
        name.push(t.clone(), *v);
    }
    params.distinguished_name = name;
    let cert = params.signed_by(&key, issuer).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

static N: AtomicUsize = AtomicUsize::new(0);

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let (ca_params, ca_key, ca_pem) = ca("holdfast test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_pem = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            &[
                (DnType::OrganizationName, "holdfast"),
                (DnType::CommonName, "sim"),
            ],
        );
        let client_dn = [
            (DnType::OrganizationName, "holdfast"),
            (DnType::OrganizationalUnitName, "apps"),
            (DnType::CommonName, "client"),
        ];
        let client_pem = leaf(&issuer, &[], &client_dn);
        let stranger_pem = leaf(
            &issuer,
            &[],
            &[
                (DnType::OrganizationName, "holdfast"),
                (DnType::CommonName, "stranger"),
            ],
        );
        let other_host_pem = leaf(
            &issuer,
            &["other.example"],
            &[
                (DnType::OrganizationName, "holdfast"),
                (DnType::CommonName, "other.example"),
            ],
        );
        let (other_params, other_key, _) = ca("another CA");
        let untrusted_pem = leaf(&Issuer::new(other_params, other_key), &[], &client_dn);
        let dir = std::env::temp_dir().join(format!(
            "holdfast-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            ca_pem,
            server_pem,
            client_pem,
            stranger_pem,
            untrusted_pem,
            other_host_pem,
            dir,
        };
        for (name, pem) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.server_pem),
            ("client.pem", &pki.client_pem),
            ("stranger.pem", &pki.stranger_pem),
            ("untrusted.pem", &pki.untrusted_pem),
            ("other-host.pem", &pki.other_host_pem),
        ] {
            std::fs::write(pki.dir.join(name), pem).unwrap();
        }
        pki
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The certificate and the key of the PEM file `name` (as `path`
    /// names it) written as two files, for settings that take them apart.
    pub fn cert_and_key(&self, name: &str) -> (PathBuf, PathBuf) {
        let pem = std::fs::read_to_string(self.dir.join(name)).unwrap();
        let at = pem.find("-----BEGIN PRIVATE KEY-----").unwrap();
        let (cert, key) = pem.split_at(at);
        let c = self.dir.join(format!("{name}.crt"));
        let k = self.dir.join(format!("{name}.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
