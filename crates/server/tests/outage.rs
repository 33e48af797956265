//! A database outage: the server on PostgreSQL behind a TCP proxy the test
//! controls. While the proxy refuses connections, or accepts them and never
//! answers, the API says 503 `database_unavailable` with `Retry-After` within
//! the database timeout, `/healthz` stays alive, `/readyz` is 503; when the
//! proxy forwards again, everything answers by itself. (The machine's
//! PostgreSQL keeps running; only the path to it is cut.)
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_testkit::{Options, TestServer};
use reqwest::StatusCode;
use sqlx::{Connection, Executor, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const FORWARD: u8 = 0;
const REFUSE: u8 = 1;
const HANG: u8 = 2;

/// A TCP proxy to `upstream`; changing its mode cuts every open connection.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let mode = mode.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut cut_rx = cut.subscribe();
                    match mode.load(Ordering::SeqCst) {
                        REFUSE => drop(client),
                        HANG => {
                            // Hold the connection, never answer, until the
                            // mode changes.
                            tokio::spawn(async move {
                                let _ = cut_rx.changed().await;
                                drop(client);
                            });
                        }
                        _ => {
                            let upstream = upstream.clone();
                            tokio::spawn(async move {
                                let Ok(server) = TcpStream::connect(&upstream).await else {
                                    return;
                                };
                                let (mut cr, mut cw) = client.into_split();
                                let (mut sr, mut sw) = server.into_split();
                                tokio::select! {
                                    _ = tokio::io::copy(&mut cr, &mut sw) => {}
                                    _ = tokio::io::copy(&mut sr, &mut cw) => {}
                                    _ = cut_rx.changed() => {}
                                }
                            });
                        }
                    }
                }
            })
        };
        Proxy {
            port,
            mode,
            cut,
            task,
        }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn wait_for(server: &TestServer, want: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, _) = server.admin().get("/devices").await.unwrap();
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {status}, not {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One API call while the database is out: a quick 503 with the JSON body,
/// the stable code and `Retry-After`.
async fn assert_unavailable(server: &TestServer, bound: Duration) {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let response = http
        .get(format!("{}/api/v1/devices", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < bound, "took {took:?}");
    assert!(response.headers().get("retry-after").is_some());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");

    let health = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.headers().get("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_is_a_quick_503_and_the_server_recovers_by_itself() {
    let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        assert!(!required, "RAMPART_TEST_POSTGRES_URL is not set");
        eprintln!("skipped: set RAMPART_TEST_POSTGRES_URL");
        return;
    };
    let name = format!("rampart_outage_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&base).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let options: sqlx::postgres::PgConnectOptions = base.parse().unwrap();
    let proxy = Proxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let user = options.get_username();
    let url = format!("postgres://{user}@127.0.0.1:{}/{name}", proxy.port);

    let timeout = Duration::from_secs(1);
    let server = TestServer::start_with(Options {
        database_url: Some(url),
        database_timeout: Some(timeout),
        ..Options::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    wait_for(&server, StatusCode::OK, Duration::from_secs(5)).await;

    // Connections refused.
    proxy.set(REFUSE);
    assert_unavailable(&server, Duration::from_secs(4)).await;
    proxy.set(FORWARD);
    wait_for(&server, StatusCode::OK, Duration::from_secs(15)).await;

    // Connections accepted and never answered: the timeout answers.
    proxy.set(HANG);
    assert_unavailable(&server, timeout * 4).await;
    proxy.set(FORWARD);
    wait_for(&server, StatusCode::OK, Duration::from_secs(15)).await;
    let ready = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    server.stop().await.unwrap();
    proxy.task.abort();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}
