//! The device channel's TLS listener: a TLS handshake per connection (client
//! certificate optional at this layer, required by every route but enroll),
//! then HTTP/1.1 with the verified peer certificate attached to each request.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::device::PeerCert;

/// Serves until `shutdown` turns true; then stops accepting and drops the
/// open connections (their long polls end; agents reconnect elsewhere).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let app = app.clone();
                connections.spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "device TLS handshake failed");
                            return;
                        }
                    };
                    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
                    let service = app.map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(PeerCert(cert.clone()));
                        req
                    });
                    let hyper_service = TowerToHyperService::new(service);
                    if let Err(e) = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), hyper_service).await {
                        tracing::debug!(%peer, error = %e, "device connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
}
