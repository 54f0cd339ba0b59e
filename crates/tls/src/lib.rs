//! TLS for holdfast, on rustls with the ring provider.
//!
//! - [`Connector`]: connections to replica-set members, configured as a
//!   MongoDB connection string configures a driver — `tlsCAFile` (else the
//!   Mozilla roots), `tlsCertificateKeyFile` (a client certificate, for
//!   mutual TLS and MONGODB-X509), `tlsAllowInvalidCertificates`,
//!   `tlsAllowInvalidHostnames`.
//! - [`Acceptor`]: holdfast's client listener — certificate and key files,
//!   and with a client CA, mutual TLS (a client certificate is required and
//!   verified; its subject can log in with MONGODB-X509).
//! - [`Stream`]: a TCP connection with or without TLS, one type for the
//!   code that reads and writes frames.
//!
//! Errors name files and reasons, never key material.

#![forbid(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

/// A TLS setting that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("TLS: cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS: {path}: {reason}")]
    Content { path: String, reason: String },
    #[error("TLS: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn content(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Content {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Every CERTIFICATE block of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("unreadable certificate: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| content(path, "holds no readable private key"))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| content(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

/// How connections to replica-set members use TLS (the connection
/// string's TLS options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `tlsCAFile`: the CAs members' certificates must chain to; `None`:
    /// the Mozilla root set (as drivers use the system's).
    pub ca_file: Option<PathBuf>,
    /// `tlsCertificateKeyFile`: holdfast's client certificate and key, in
    /// one PEM file.
    pub cert_key_file: Option<PathBuf>,
    /// `tlsAllowInvalidCertificates` (or `tlsInsecure`): no verification.
    pub allow_invalid_certificates: bool,
    /// `tlsAllowInvalidHostnames`: the chain is verified, the name is not.
    pub allow_invalid_hostnames: bool,
}

/// Opens TLS connections to members. Cheap to clone; clones share one
/// configuration, which [`Connector::reload`] replaces for all of them.
#[derive(Clone)]
pub struct Connector {
    opts: UpstreamTls,
    current: Arc<RwLock<ClientSide>>,
}

#[derive(Clone)]
struct ClientSide {
    config: Arc<ClientConfig>,
    /// The subject of the client certificate (RFC 2253), for MONGODB-X509.
    subject: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads the files `opts` names and builds the client configuration.
    pub fn new(opts: &UpstreamTls) -> Result<Connector, TlsError> {
        Ok(Connector {
            opts: opts.clone(),
            current: Arc::new(RwLock::new(client_side(opts)?)),
        })
    }

    /// Reads the files again (certificate rotation): new connections use
    /// them; on an error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = client_side(&self.opts)?;
        *self.current.write().unwrap() = fresh;
        Ok(())
    }

    /// The subject of holdfast's client certificate, if it has one.
    pub fn client_subject(&self) -> Option<String> {
        self.current.read().unwrap().subject.clone()
    }

    /// Runs the TLS handshake on `tcp`, a connection to `addr`
    /// (`host:port`; the host is the name the certificate must carry).
    pub async fn handshake(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> io::Result<ClientTlsStream<TcpStream>> {
        let name = server_name(addr)?;
        let config = self.current.read().unwrap().config.clone();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }
}

fn client_side(opts: &UpstreamTls) -> Result<ClientSide, TlsError> {
    let provider = provider();
    let store = match &opts.ca_file {
        Some(p) => roots(p)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let store = Arc::new(store);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(store.clone());
    let (mut config, subject) = match &opts.cert_key_file {
        Some(p) => {
            let certs = certificates(p)?;
            let subject =
                holdfast_scram::x509::subject_name(certs[0].as_ref()).map_err(|e| content(p, e))?;
            let key = private_key(p)?;
            let config = builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| content(p, format!("certificate and key do not fit: {e}")))?;
            (config, Some(subject))
        }
        None => (builder.with_no_client_auth(), None),
    };
    if opts.allow_invalid_certificates {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate(provider)));
    } else if opts.allow_invalid_hostnames {
        let inner = WebPkiServerVerifier::builder_with_provider(store, provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyHostname(inner)));
    }
    Ok(ClientSide {
        config: Arc::new(config),
        subject,
    })
}

/// The host part of `host:port` as a TLS server name (an IP address is
/// checked against the certificate's IP addresses).
pub fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} is not a valid TLS server name: {e}"),
        )
    })
}

/// `tlsAllowInvalidHostnames`: the chain is verified as usual; a
/// certificate for another name is accepted.
#[derive(Debug)]
struct AnyHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `tlsAllowInvalidCertificates`: any certificate is accepted (the
/// handshake's signatures are still checked against it).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The files of holdfast's client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// With a CA: mutual TLS, a client certificate signed by it is required.
    pub client_ca_file: Option<PathBuf>,
}

/// Accepts TLS connections from clients. Cheap to clone; clones share one
/// configuration, which [`Acceptor::reload`] replaces for all of them.
#[derive(Clone)]
pub struct Acceptor {
    files: ListenerTls,
    current: Arc<RwLock<tokio_rustls::TlsAcceptor>>,
}

impl Acceptor {
    /// Reads the files of `files` and builds the server configuration.
    pub fn load(files: &ListenerTls) -> Result<Acceptor, TlsError> {
        Ok(Acceptor {
            files: files.clone(),
            current: Arc::new(RwLock::new(server_side(files)?)),
        })
    }

    /// Reads the files again (certificate rotation): new connections use
    /// them; connected clients keep theirs. On an error the previous
    /// configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_side(&self.files)?;
        *self.current.write().unwrap() = fresh;
        Ok(())
    }

    /// Client certificates are required.
    pub fn is_mutual(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// Runs the server side of the handshake on `tcp`.
    pub async fn accept<S>(&self, tcp: S) -> io::Result<ServerTlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = self.current.read().unwrap().clone();
        acceptor.accept(tcp).await
    }
}

fn server_side(files: &ListenerTls) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = provider();
    let certs = certificates(&files.cert_file)?;
    let key = private_key(&files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                    .build()
                    .map_err(|e| content(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        content(
            &files.key_file,
            format!("does not fit {}: {e}", files.cert_file.display()),
        )
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The RFC 2253 subject of the verified client certificate, if any.
pub fn peer_subject<S>(stream: &ServerTlsStream<S>) -> Option<String> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    holdfast_scram::x509::subject_name(cert.as_ref()).ok()
}

/// Whether a failed handshake failed on a certificate (not trusted, for
/// another name, expired, refused by the peer): a setting to fix, not a
/// condition that passes by waiting.
pub fn is_certificate_error(e: &io::Error) -> bool {
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return false;
    };
    matches!(
        inner,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::CertificateUnknown
                    | rustls::AlertDescription::CertificateExpired
                    | rustls::AlertDescription::AccessDenied
            )
    )
}

/// A connection to a member, with or without TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `addr`: TCP with `TCP_NODELAY`, then the TLS handshake
    /// when `tls` is given. No timeout here: callers bound the whole.
    pub async fn connect(addr: &str, tls: Option<&Connector>) -> io::Result<Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(c) => Ok(Stream::Tls(Box::new(c.handshake(addr, tcp).await?))),
        }
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(any(test, feature = "test-pki"))]
pub mod pki;

#[cfg(test)]
mod tests;
