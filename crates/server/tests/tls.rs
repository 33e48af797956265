//! The admin API and console over TLS (`--tls-cert`/`--tls-key`).
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use rampart_server::clock::{Clock, SystemClock};
use rampart_server::config::ServerConfig;

#[tokio::test]
async fn the_admin_api_is_served_over_tls_when_given_a_certificate() {
    rampart_pki::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("rampart-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = rampart_pki::new_ca("admin test CA", 1).unwrap();
    let now = SystemClock.now();
    let (cert, key) =
        rampart_pki::issue_server_cert(&ca, &["127.0.0.1".into()], now - 60, now + 3600).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        device_listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(dir.join("cert.pem")),
        tls_key: Some(dir.join("key.pem")),
        ..ServerConfig::new(dir.join("data"))
    };
    let server = rampart_server::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let token = std::fs::read_to_string(dir.join("data/admin-token")).unwrap();
    let https = reqwest::Client::builder()
        .use_preconfigured_tls(rampart_pki::client_config(&ca.cert_pem, None).unwrap())
        .build()
        .unwrap();
    let me: serde_json::Value = https
        .get(format!("https://{}/api/v1/whoami", server.addr))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "global_admin");
    let plain = reqwest::Client::new()
        .get(format!("http://{}/api/v1/whoami", server.addr))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP is not served on a TLS listener"
    );
    server.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_public_address_needs_tls_or_an_explicit_proxy() {
    let public = ServerConfig {
        listen: "0.0.0.0:8080".parse().unwrap(),
        ..ServerConfig::new("d".into())
    };
    assert!(public
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--tls-cert"));
    let with_tls = ServerConfig {
        tls_cert: Some("c".into()),
        tls_key: Some("k".into()),
        ..public.clone()
    };
    assert!(with_tls.validate().is_ok());
    let half = ServerConfig {
        tls_cert: Some("c".into()),
        ..public
    };
    assert!(half.validate().is_err());
}
