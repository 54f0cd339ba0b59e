//! A minimal raw wire client, for tests and benchmarks: one connection
//! (plain or TLS), OP_MSG and OP_QUERY commands, raw frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use futures::{SinkExt, StreamExt};
use holdfast_wire::reply::document_bytes;
use holdfast_wire::{
    Frame, FrameCodec, Limits, Message, MsgFlags, OpMsg, OpQuery, QueryFlags, WireError,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to one member.
pub struct RawClient {
    framed: Framed<Box<dyn Io>, FrameCodec>,
    next_id: i32,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection closed by the server")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A TLS client configuration (ring provider) trusting the CA certificates
/// in `ca_pem`, presenting the certificate chain and key in
/// `cert_key_pem` if given.
pub fn tls_config(
    ca_pem: &str,
    cert_key_pem: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let tls = |e: &dyn std::fmt::Display| ClientError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_root_certificates(roots);
    let config = match cert_key_pem {
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(&e))?;
            let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| tls(&e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Result<RawClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient::over(Box::new(stream)))
    }

    /// Connects with TLS (`server_name` is checked against the server's
    /// certificate).
    pub async fn connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<RawClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(RawClient::over(Box::new(tls)))
    }

    fn over(stream: Box<dyn Io>) -> RawClient {
        RawClient {
            framed: Framed::new(stream, FrameCodec::new(Limits::default())),
            next_id: 1,
        }
    }

    pub fn next_request_id(&mut self) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends `cmd` (with `$db` added) as an OP_MSG and returns the reply body.
    pub async fn command(&mut self, db: &str, cmd: Document) -> Result<Document, ClientError> {
        let frame = self.send_msg(db, cmd, MsgFlags::empty()).await?;
        let _ = frame;
        let reply = self.recv().await?.ok_or(ClientError::Closed)?;
        reply_body(&reply)
    }

    /// Sends an OP_MSG with the given flags; returns the frame sent.
    pub async fn send_msg(
        &mut self,
        db: &str,
        mut cmd: Document,
        flags: MsgFlags,
    ) -> Result<Frame, ClientError> {
        cmd.insert("$db", db);
        let id = self.next_request_id();
        let frame = Message::Msg(OpMsg::new(flags, document_bytes(&cmd))).to_frame(id, 0);
        self.send_frame(&frame).await?;
        Ok(frame)
    }

    /// Sends `cmd` as an OP_QUERY on `db.$cmd` and returns the OP_REPLY's
    /// document.
    pub async fn query_command(
        &mut self,
        db: &str,
        cmd: Document,
    ) -> Result<Document, ClientError> {
        self.query(&format!("{db}.$cmd"), cmd, QueryFlags::empty(), -1)
            .await
    }

    /// Any OP_QUERY; returns the first document of the OP_REPLY.
    pub async fn query(
        &mut self,
        namespace: &str,
        query: Document,
        flags: QueryFlags,
        number_to_return: i32,
    ) -> Result<Document, ClientError> {
        let id = self.next_request_id();
        let q = OpQuery {
            flags,
            full_collection_name: namespace.to_string(),
            number_to_skip: 0,
            number_to_return,
            query: document_bytes(&query),
            return_fields_selector: None,
        };
        self.send_frame(&Message::Query(q).to_frame(id, 0)).await?;
        let reply = self.recv().await?.ok_or(ClientError::Closed)?;
        reply_body(&reply)
    }

    pub async fn send_frame(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.framed.send(frame).await?;
        Ok(())
    }

    /// Writes raw bytes (malformed frames, legacy opcodes).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        use tokio::io::AsyncWriteExt;
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await?;
        Ok(())
    }

    /// The next frame; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame>, ClientError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(WireError::Io(e))) => Err(ClientError::Io(std::io::Error::other(e))),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Like [`RawClient::recv`] with a time limit.
    pub async fn recv_timeout(&mut self, limit: Duration) -> Result<Option<Frame>, ClientError> {
        match tokio::time::timeout(limit, self.recv()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(limit)),
        }
    }

    /// Runs `hello` (OP_MSG) and returns the reply.
    pub async fn hello(&mut self) -> Result<Document, ClientError> {
        self.command("admin", doc! { "hello": 1 }).await
    }
}

/// The body of an OP_MSG reply or the first document of an OP_REPLY.
pub fn reply_body(frame: &Frame) -> Result<Document, ClientError> {
    let limits = Limits::default();
    match frame.parse(&limits)? {
        Message::Msg(m) => {
            Document::from_reader(&m.body[..]).map_err(|e| ClientError::Unexpected(e.to_string()))
        }
        Message::Reply(r) => {
            let d = r.first_doc()?;
            Document::try_from(d).map_err(|e| ClientError::Unexpected(e.to_string()))
        }
        Message::Compressed(c) => {
            let inner = c.decompress(frame.header(), limits.max_message_size)?;
            reply_body(&inner)
        }
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}
