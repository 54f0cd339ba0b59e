//! TLS on the members' listeners (rustls with the ring provider): the
//! server certificate and key from one PEM, optional client certificates
//! verified against a CA, and the verified client's subject for
//! MONGODB-X509.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

use crate::config::SimTls;

fn invalid(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {what}: {e}"))
}

/// The acceptor every member of the set uses.
pub fn acceptor(cfg: &SimTls) -> io::Result<TlsAcceptor> {
    let pem = cfg.cert_key_pem.as_bytes();
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("reading the certificate chain", e))?;
    if certs.is_empty() {
        return Err(invalid(
            "the certificate-key file",
            "has no CERTIFICATE block",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| invalid("reading the private key of the certificate-key file", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocol versions", e))?;
    let builder = match &cfg.ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                let cert = cert.map_err(|e| invalid("reading the CA file", e))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid("a CA certificate", e))?;
            }
            if roots.is_empty() {
                return Err(invalid("the CA file", "has no CERTIFICATE block"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid("the client certificate verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid("the certificate and key", e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The RFC 2253 subject of the client certificate the CA verified.
pub fn peer_subject(conn: &ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    holdfast_scram::x509::subject_name(cert.as_ref()).ok()
}
