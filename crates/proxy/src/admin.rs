//! The admin HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/readyz`.
//!
//! - `/healthz`: 200 while the process runs (liveness).
//! - `/readyz`: 200 once holdfast has seen a primary at least once since it
//!   started, and until it starts draining. It stays 200 during an
//!   election: holdfast holds requests then, and taking the sidecar out of
//!   service (or restarting it) would turn a pause into errors.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use holdfast_topology::Topology;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often recorded histogram samples are folded into their buckets.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Installs the Prometheus recorder once per process (the `metrics` facade
/// is process-wide by design); later calls reuse it.
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            crate::metrics::describe();
            crate::metrics::register_known();
            // Histogram samples pile up in the recorder until they are
            // folded into buckets; only `install()` would do that for us.
            // Without it, memory grows with every request between scrapes
            // (and for ever when nobody scrapes).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("holdfast-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

pub async fn serve(
    addr: &str,
    topology: Topology,
    draining: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let handle = prometheus();
    let l = TcpListener::bind(addr).await?;
    let local = l.local_addr()?;
    let ever_primary = Arc::new(AtomicBool::new(false));
    {
        let ever = ever_primary.clone();
        let mut rx = topology.subscribe();
        tokio::spawn(async move {
            let _ = rx.wait_for(|s| s.primary.is_some()).await;
            ever.store(true, Ordering::SeqCst);
        });
    }
    tokio::spawn(async move {
        loop {
            let accepted =
                tokio::select! { _ = shutdown.cancelled() => return, a = l.accept() => a };
            let Ok((mut s, _)) = accepted else { continue };
            let handle = handle.clone();
            let (draining, ever) = (draining.clone(), ever_primary.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let n =
                    match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
                        .await
                    {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("/");
                let (status, ctype, body) = match path {
                    "/metrics" => match &handle {
                        Some(h) => ("200 OK", "text/plain; version=0.0.4", h.render()),
                        None => (
                            "503 Service Unavailable",
                            "text/plain",
                            "metrics recorder not installed\n".into(),
                        ),
                    },
                    "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
                    "/readyz" => {
                        if draining.load(Ordering::SeqCst) {
                            ("503 Service Unavailable", "text/plain", "draining\n".into())
                        } else if ever.load(Ordering::SeqCst) {
                            ("200 OK", "text/plain", "ready\n".into())
                        } else {
                            (
                                "503 Service Unavailable",
                                "text/plain",
                                "no primary seen yet\n".into(),
                            )
                        }
                    }
                    _ => ("404 Not Found", "text/plain", "not found\n".into()),
                };
                let resp = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(local)
}
