//! The one accept loop behind every listener (the device channel, the admin
//! API with or without TLS), hardened against clients that connect and then
//! do nothing, or connect by the thousand:
//!
//! - a TLS handshake must finish within `handshake_timeout`, a request's
//!   headers within `header_timeout`, and a keep-alive connection with no
//!   request in flight is closed after `idle_timeout` (a long poll is a
//!   request in flight, so it is never cut as idle);
//! - at most `max_connections` connections are open at once. At the cap, the
//!   oldest connection still in its TLS handshake is dropped to make room
//!   (a flood of idle sockets only ever evicts its own kind); when none is,
//!   accepting pauses until one closes. Either way a line in the log says
//!   the cap was reached;
//! - an accept error (out of file descriptors, EMFILE) backs off instead of
//!   spinning a core.
//!
//! Each request carries the verified client certificate ([`PeerCert`]) and
//! the peer's address ([`PeerAddr`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::device::PeerCert;

/// The peer's socket address, attached to every request.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// How long and how many: the knobs of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// On shutdown, how long requests in flight may take to finish before
    /// their connections are dropped (zero for the device channel, whose
    /// long polls would only hold the shutdown up).
    pub drain: Duration,
}

impl Limits {
    /// Defaults for a listener allowed `max_connections`.
    pub fn with_cap(max_connections: usize) -> Limits {
        Limits {
            max_connections: max_connections.max(1),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            drain: Duration::ZERO,
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit and
/// returns the limit in force (a server holds a file descriptor per device
/// connection).
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection caps that fit the open-files limit: the device channel
/// gets most of it, the admin API a fixed share, and some is kept for the
/// database, files and outgoing connections.
pub fn default_caps(fd_limit: u64) -> (usize, usize) {
    let usable = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(512)
        .max(64);
    let admin = (usable / 10).clamp(32, 1024);
    let device = usable.saturating_sub(admin).max(32);
    (device, admin)
}

/// Connections still in their TLS handshake, oldest first: the ones to drop
/// when the cap is reached.
#[derive(Default)]
struct Handshaking {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

struct Shared {
    open: AtomicUsize,
    closed: Notify,
    handshaking: Mutex<Handshaking>,
}

impl Shared {
    fn handshaking(&self) -> std::sync::MutexGuard<'_, Handshaking> {
        // Only inserts and removes happen under the lock: nothing a panic
        // could leave half-done.
        self.handshaking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the oldest connection still in its handshake; false if none.
    fn evict_oldest_handshake(&self) -> bool {
        let mut h = self.handshaking();
        while let Some((_, stop)) = h.waiting.pop_first() {
            if stop.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

/// Counts a connection until it is dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_one();
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Marks a request in flight until dropped (when its response is ready).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `shutdown` turns true. With `tls`, each
/// connection starts with a TLS handshake and the verified client
/// certificate, if any, is attached to its requests.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        closed: Notify::new(),
        handshaking: Mutex::new(Handshaking::default()),
    });
    let local = listener.local_addr().ok();
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    let mut cap_logged = false;
    loop {
        // At the cap: make room by dropping the oldest unfinished handshake,
        // or wait for a connection to close.
        while shared.open.load(Ordering::Acquire) >= limits.max_connections {
            if !cap_logged {
                tracing::warn!(listener = ?local, cap = limits.max_connections, "connection cap reached: dropping the oldest connections still in their TLS handshake, pausing accepts while none is");
                cap_logged = true;
            }
            if shared.evict_oldest_handshake() {
                // The evicted task releases its slot as it ends.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = shared.closed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => return finish(connections, limits.drain).await,
            }
        }
        if shared.open.load(Ordering::Acquire) < limits.max_connections * 9 / 10 {
            cap_logged = false;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => {
                        backoff = Duration::from_millis(10);
                        a
                    }
                    Err(e) => {
                        // EMFILE and friends: retrying at once would spin.
                        tracing::warn!(listener = ?local, error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed; backing off");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                shared.open.fetch_add(1, Ordering::AcqRel);
                let slot = Slot(Arc::clone(&shared));
                let conn = Connection {
                    acceptor: acceptor.clone(),
                    app: app.clone(),
                    limits,
                    shared: Arc::clone(&shared),
                    shutdown: shutdown.clone(),
                };
                connections.spawn(async move {
                    conn.run(tcp, peer).await;
                    drop(slot);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    finish(connections, limits.drain).await;
}

async fn finish(mut connections: JoinSet<()>, drain: Duration) {
    if !drain.is_zero() {
        let _ = tokio::time::timeout(drain, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }
    connections.abort_all();
}

struct Connection {
    acceptor: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        match self.acceptor.clone() {
            None => self.serve_http(tcp, peer, None).await,
            Some(acceptor) => {
                let (evict_tx, evict_rx) = oneshot::channel();
                let ticket = {
                    let mut h = self.shared.handshaking();
                    h.next += 1;
                    let ticket = h.next;
                    h.waiting.insert(ticket, evict_tx);
                    ticket
                };
                let handshake = tokio::select! {
                    r = tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)) => Some(r),
                    _ = evict_rx => None,
                };
                self.shared.handshaking().waiting.remove(&ticket);
                let stream = match handshake {
                    Some(Ok(Ok(s))) => s,
                    Some(Ok(Err(e))) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Some(Err(_)) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                    None => {
                        tracing::debug!(%peer, "dropped while in its TLS handshake: connection cap reached");
                        return;
                    }
                };
                let cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                self.serve_http(stream, peer, cert).await;
            }
        }
    }

    async fn serve_http<S>(self, io: S, peer: SocketAddr, cert: Option<Vec<u8>>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        });
        let seen = Arc::clone(&activity);
        let service = self
            .app
            .clone()
            .map_request(
                move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerCert(cert.clone()));
                    req.extensions_mut().insert(PeerAddr(peer));
                    req
                },
            )
            .map_future(move |response| {
                // Counted from the call until the response is ready, so a
                // long poll is never mistaken for an idle connection.
                seen.in_flight.fetch_add(1, Ordering::AcqRel);
                let guard = InFlight(Arc::clone(&seen));
                async move {
                    let r = response.await;
                    drop(guard);
                    r
                }
            });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut shutdown = self.shutdown.clone();
        let idle = self.limits.idle_timeout;
        let mut check = tokio::time::interval(
            idle.min(Duration::from_secs(5))
                .max(Duration::from_millis(50)),
        );
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = check.tick() => {
                    if activity.idle_since().is_some_and(|since| since.elapsed() >= idle) {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_room_for_the_rest_of_the_process() {
        let (device, admin) = default_caps(20_000);
        assert!(device + admin <= 20_000 - 512, "{device} + {admin}");
        assert!(device > 15_000, "{device}");
        assert_eq!(admin, 1024);
        let (device, admin) = default_caps(256);
        assert!(device >= 32 && admin >= 32);
    }
}
