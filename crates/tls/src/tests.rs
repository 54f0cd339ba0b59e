//! Handshakes between a [`Connector`] and an [`Acceptor`] on loopback, with
//! certificates made at test time.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::pki::{Pki, CLIENT_SUBJECT};

/// A listener that echoes one line per connection; returns its address and
/// the subjects of the client certificates it saw.
async fn echo_server(
    acceptor: Acceptor,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tx.send(peer_subject(&s));
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                }
            });
        }
    });
    (addr, rx)
}

fn listener(pki: &Pki, server: &str, mutual: bool) -> Acceptor {
    let (cert_file, key_file) = pki.cert_and_key(server);
    Acceptor::load(&ListenerTls {
        cert_file,
        key_file,
        client_ca_file: mutual.then(|| pki.dir().join("ca.pem")),
    })
    .unwrap()
}

/// Connects and exchanges five bytes; the error text if anything fails.
async fn exchange(addr: &str, opts: &UpstreamTls) -> Result<(), String> {
    let c = Connector::new(opts).map_err(|e| e.to_string())?;
    let mut s = Stream::connect(addr, Some(&c))
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"hello");
    Ok(())
}

fn with_ca(pki: &Pki) -> UpstreamTls {
    UpstreamTls {
        ca_file: Some(pki.dir().join("ca.pem")),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_member_signed_by_the_ca_file_is_trusted() {
    let pki = Pki::new();
    let (addr, _) = echo_server(listener(&pki, "server.pem", false)).await;
    exchange(&addr, &with_ca(&pki)).await.unwrap();
    // By name too: the certificate carries localhost.
    let port = addr.rsplit_once(':').unwrap().1;
    exchange(&format!("localhost:{port}"), &with_ca(&pki))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_ca_is_refused_unless_invalid_certificates_are_allowed() {
    let pki = Pki::new();
    let (addr, _) = echo_server(listener(&pki, "server.pem", false)).await;
    let untrusted = Connector::new(&UpstreamTls::default()).unwrap();
    let e = Stream::connect(&addr, Some(&untrusted))
        .await
        .err()
        .unwrap();
    assert!(is_certificate_error(&e), "{e}");
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    assert!(!is_certificate_error(&refused));
    let e = exchange(&addr, &UpstreamTls::default()).await.unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("invalid peer certificate"),
        "{e}"
    );
    let relaxed = UpstreamTls {
        allow_invalid_certificates: true,
        ..Default::default()
    };
    exchange(&addr, &relaxed).await.unwrap();
}

#[tokio::test]
async fn another_hosts_certificate_needs_allow_invalid_hostnames() {
    let pki = Pki::new();
    let (addr, _) = echo_server(listener(&pki, "other-host.pem", false)).await;
    let e = exchange(&addr, &with_ca(&pki)).await.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    let relaxed = UpstreamTls {
        allow_invalid_hostnames: true,
        ..with_ca(&pki)
    };
    exchange(&addr, &relaxed).await.unwrap();
    // Relaxing the name does not relax the chain.
    let untrusted = UpstreamTls {
        allow_invalid_hostnames: true,
        ..Default::default()
    };
    assert!(exchange(&addr, &untrusted).await.is_err());
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_and_names_its_subject() {
    let pki = Pki::new();
    let (addr, mut subjects) = echo_server(listener(&pki, "server.pem", true)).await;
    // Without a certificate: refused (TLS 1.3 reports it on the first read).
    assert!(exchange(&addr, &with_ca(&pki)).await.is_err());
    let with_cert = UpstreamTls {
        cert_key_file: Some(pki.dir().join("client.pem")),
        ..with_ca(&pki)
    };
    assert_eq!(
        Connector::new(&with_cert)
            .unwrap()
            .client_subject()
            .as_deref(),
        Some(CLIENT_SUBJECT)
    );
    exchange(&addr, &with_cert).await.unwrap();
    assert_eq!(
        subjects.recv().await.unwrap().as_deref(),
        Some(CLIENT_SUBJECT)
    );
    // A certificate from a CA the listener does not trust is refused.
    let untrusted = UpstreamTls {
        cert_key_file: Some(pki.dir().join("untrusted.pem")),
        ..with_ca(&pki)
    };
    assert!(exchange(&addr, &untrusted).await.is_err());
}

#[test]
fn bad_files_are_named_and_keys_never_shown() {
    let pki = Pki::new();
    let missing = UpstreamTls {
        ca_file: Some(pki.dir().join("nope.pem")),
        ..Default::default()
    };
    let e = Connector::new(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
    // A key file where the CA belongs: no CERTIFICATE block.
    let (_, key) = pki.cert_and_key("server.pem");
    let not_ca = UpstreamTls {
        ca_file: Some(key.clone()),
        ..Default::default()
    };
    let e = Connector::new(&not_ca).unwrap_err().to_string();
    assert!(e.contains("no CERTIFICATE"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "{e}");
    // A certificate where the key belongs.
    let e = Acceptor::load(&ListenerTls {
        cert_file: pki.dir().join("ca.pem"),
        key_file: pki.dir().join("ca.pem"),
        client_ca_file: None,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("no readable private key"), "{e}");
}

#[test]
fn server_names_from_addresses() {
    assert!(matches!(
        server_name("127.0.0.1:27017").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name("[::1]:27017").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert_eq!(
        server_name("db1.example.net:27017").unwrap(),
        ServerName::try_from("db1.example.net").unwrap()
    );
    assert!(server_name("bad name:1").is_err());
}

#[tokio::test]
async fn reloading_picks_up_new_files_and_keeps_the_old_on_error() {
    let pki = Pki::new();
    let (cert_file, key_file) = pki.cert_and_key("server.pem");
    let files = ListenerTls {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: None,
    };
    let acceptor = Acceptor::load(&files).unwrap();
    let (addr, _) = echo_server(acceptor.clone()).await;
    exchange(&addr, &with_ca(&pki)).await.unwrap();
    // The certificate is replaced by one for another host: after reload
    // the listener presents it.
    let (other_cert, other_key) = pki.cert_and_key("other-host.pem");
    std::fs::copy(&other_cert, &cert_file).unwrap();
    std::fs::copy(&other_key, &key_file).unwrap();
    exchange(&addr, &with_ca(&pki)).await.unwrap();
    acceptor.reload().unwrap();
    let e = exchange(&addr, &with_ca(&pki)).await.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    // A broken file: the reload fails and the current certificate stays.
    std::fs::write(&key_file, "garbage").unwrap();
    assert!(acceptor.reload().is_err());
    let relaxed = UpstreamTls {
        allow_invalid_hostnames: true,
        ..with_ca(&pki)
    };
    let connector = Connector::new(&relaxed).unwrap();
    connector.reload().unwrap();
    exchange(&addr, &relaxed).await.unwrap();
}
