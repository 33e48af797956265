//! The machine's floor: a bare mutual-TLS handler (the same rustls
//! configuration as the device channel, client certificates verified
//! against a CA, hyper serving one route) with no database, no policy and
//! no application logic. Benchmarks report their numbers as a ratio to it,
//! measured in the same run.

use std::net::SocketAddr;

use anyhow::Result;
use rampart_pki::CaBundle;

/// A running bare handler, stopped on drop.
pub struct BareHandler {
    pub url: String,
    /// The CA that signed the server certificate and that client
    /// certificates must chain to.
    pub ca: CaBundle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BareHandler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl BareHandler {
    /// Listens on loopback: `GET /` answers `ok`; `POST /` reads the body
    /// and answers a small fixed JSON document, as a check-in does.
    pub async fn start() -> Result<BareHandler> {
        let ca = rampart_pki::new_ca("bench", 1)?;
        let now = now();
        let (cert, key) =
            rampart_pki::issue_server_cert(&ca, &["127.0.0.1".into()], now - 60, now + 3600)?;
        let roots = rampart_pki::ClientCaRoots::new(std::slice::from_ref(&ca.cert_pem))?;
        let tls = rampart_pki::server_config(&cert, &key, roots)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async { "ok" }).post(|body: axum::body::Bytes| async move {
                let _ = body.len();
                axum::Json(
                    serde_json::json!({"enrollment": {"status": "enrolled"}, "policy": null}),
                )
            }),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                    }
                });
            }
        });
        Ok(BareHandler {
            url: format!("https://{addr}/"),
            ca,
            task,
        })
    }

    /// A client presenting its own certificate from the handler's CA.
    pub fn client(&self) -> Result<reqwest::Client> {
        client_of(&self.ca)
    }
}

/// A client of the bare handler whose CA is `ca` (in another process:
/// `rampart-sim --fleet`'s workers), with its own certificate.
pub fn client_of(ca: &CaBundle) -> Result<reqwest::Client> {
    let key = rampart_pki::new_device_key()?;
    let csr = rampart_pki::csr_pem(&key, "bench")?;
    let now = now();
    let cert =
        rampart_pki::issue_device_cert(ca, &csr, "bench", &uuid_like(), now - 60, now + 3600)?;
    let tls = rampart_pki::client_config(&ca.cert_pem, Some((&cert.cert_pem, &key.key_pem)))?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .pool_max_idle_per_host(2)
        .build()?)
}

/// A device id for a bench certificate (only its form matters).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
