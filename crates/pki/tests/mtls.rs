//! The device channel's mutual TLS end to end, in process: an installation
//! CA and server certificate, tenant CAs, device certificates issued from
//! CSRs, and rustls server and client configurations built by this crate,
//! talking over 127.0.0.1.

// Helpers outside `#[test]` functions report failures by panicking too.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_pki::{
    client_config, csr_pem, install_crypto_provider, issue_device_cert, issue_server_cert, new_ca,
    new_device_key, peer_identity, server_config, CaBundle, ClientCaRoots, DeviceKey, IssuedCert,
    PeerIdentity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const WAIT: Duration = Duration::from_secs(10);

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// What the server saw of one connection: the handshake error, or the
/// client's identity (`None` when it sent no certificate).
type Outcome = Result<Option<PeerIdentity>, String>;

/// A TLS server on 127.0.0.1:0 that answers `ok` to every connection whose
/// handshake succeeds and reports what it saw; stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    task: JoinHandle<()>,
}

impl TestServer {
    async fn start(config: Arc<ServerConfig>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(config);
        let (tx, outcomes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let outcome = match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let (_, conn) = tls.get_ref();
                            assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
                            let identity = conn
                                .peer_certificates()
                                .and_then(|certs| certs.first())
                                .map(|cert| peer_identity(cert).map_err(|e| e.to_string()));
                            let _ = tls.write_all(b"ok").await;
                            let _ = tls.shutdown().await;
                            identity.transpose()
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(outcome);
                });
            }
        });
        Self {
            addr,
            outcomes,
            task,
        }
    }

    async fn next_outcome(&mut self) -> Outcome {
        timeout(WAIT, self.outcomes.recv()).await.unwrap().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects, and returns what the server said, or why that failed.
async fn talk(addr: SocketAddr, config: ClientConfig) -> Result<String, String> {
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let result = timeout(WAIT, async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        // With TLS 1.3 the client finishes its handshake before the server
        // has checked its certificate: a refusal shows up on the first read.
        let mut answer = String::new();
        tls.read_to_string(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer)
    })
    .await;
    result.unwrap_or_else(|_| Err("timed out".to_owned()))
}

struct Installation {
    ca: CaBundle,
    server_cert_pem: String,
    server_key_pem: String,
}

fn installation() -> Installation {
    let ca = new_ca("Rampart installation CA", 3650).unwrap();
    let (server_cert_pem, server_key_pem) =
        issue_server_cert(&ca, &["127.0.0.1".to_owned()], now() - 60, now() + 86_400).unwrap();
    Installation {
        ca,
        server_cert_pem,
        server_key_pem,
    }
}

/// A device of `tenant_id` enrolled with `tenant_ca`, the way the agent and
/// server do it: key on the device, CSR, certificate from the tenant CA.
fn enroll(tenant_ca: &CaBundle, tenant_id: &str, device_id: &str) -> (DeviceKey, IssuedCert) {
    let key = new_device_key().unwrap();
    let csr = csr_pem(&key, "laptop-1").unwrap();
    let cert = issue_device_cert(
        tenant_ca,
        &csr,
        tenant_id,
        device_id,
        now() - 60,
        now() + 86_400,
    )
    .unwrap();
    (key, cert)
}

fn device_client(install: &Installation, key: &DeviceKey, cert: &IssuedCert) -> ClientConfig {
    client_config(&install.ca.cert_pem, Some((&cert.cert_pem, &key.key_pem))).unwrap()
}

#[tokio::test]
async fn mutual_tls_round_trip() {
    install_crypto_provider();
    install_crypto_provider();
    let install = installation();
    let tenant_a = new_ca("tenant A CA", 365).unwrap();
    let roots = ClientCaRoots::new(std::slice::from_ref(&tenant_a.cert_pem)).unwrap();
    assert_eq!(roots.len(), 1);
    let config = server_config(
        &install.server_cert_pem,
        &install.server_key_pem,
        roots.clone(),
    )
    .unwrap();
    let mut server = TestServer::start(config).await;

    // (a) A device of a known tenant: accepted, and identified.
    let (key, cert) = enroll(&tenant_a, "tenant-a", "device-1");
    let answer = talk(server.addr, device_client(&install, &key, &cert)).await;
    assert_eq!(answer.as_deref(), Ok("ok"));
    let seen = server.next_outcome().await.unwrap().unwrap();
    assert_eq!(seen.tenant_id, "tenant-a");
    assert_eq!(seen.device_id, "device-1");
    assert_eq!(seen.serial_hex, cert.serial_hex);
    assert_eq!(seen.not_after, cert.not_after);

    // (b) No client certificate (enrollment): accepted, anonymous.
    let anonymous = client_config(&install.ca.cert_pem, None).unwrap();
    assert_eq!(talk(server.addr, anonymous).await.as_deref(), Ok("ok"));
    assert_eq!(server.next_outcome().await, Ok(None));

    // (c) A certificate from a CA the server does not know: refused.
    let stranger_ca = new_ca("someone else's CA", 365).unwrap();
    let (key, cert) = enroll(&stranger_ca, "tenant-a", "device-1");
    assert!(talk(server.addr, device_client(&install, &key, &cert))
        .await
        .is_err());
    let refused = server.next_outcome().await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // (d) A tenant created after start: refused until its CA is added to
    // the roots, then accepted by the same server configuration.
    let tenant_b = new_ca("tenant B CA", 365).unwrap();
    let (key_b, cert_b) = enroll(&tenant_b, "tenant-b", "device-2");
    assert!(talk(server.addr, device_client(&install, &key_b, &cert_b))
        .await
        .is_err());
    assert!(server.next_outcome().await.is_err());
    roots
        .replace(&[tenant_a.cert_pem.clone(), tenant_b.cert_pem.clone()])
        .unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(
        talk(server.addr, device_client(&install, &key_b, &cert_b))
            .await
            .as_deref(),
        Ok("ok")
    );
    let seen = server.next_outcome().await.unwrap().unwrap();
    assert_eq!(
        (seen.tenant_id.as_str(), seen.device_id.as_str()),
        ("tenant-b", "device-2")
    );

    // A tenant removed from the roots is refused from then on.
    roots
        .replace(std::slice::from_ref(&tenant_b.cert_pem))
        .unwrap();
    let (key, cert) = enroll(&tenant_a, "tenant-a", "device-3");
    assert!(talk(server.addr, device_client(&install, &key, &cert))
        .await
        .is_err());
    assert!(server.next_outcome().await.is_err());

    // With no tenant CA at all, certificates are refused and anonymous
    // clients still get in.
    roots.replace(&[]).unwrap();
    assert!(roots.is_empty());
    assert!(talk(server.addr, device_client(&install, &key_b, &cert_b))
        .await
        .is_err());
    assert!(server.next_outcome().await.is_err());
    let anonymous = client_config(&install.ca.cert_pem, None).unwrap();
    assert_eq!(talk(server.addr, anonymous).await.as_deref(), Ok("ok"));
    assert_eq!(server.next_outcome().await, Ok(None));

    // (e) A client pinned to another CA refuses the server.
    let other_install = new_ca("another installation CA", 365).unwrap();
    let wrong_pin = client_config(&other_install.cert_pem, None).unwrap();
    let refused = talk(server.addr, wrong_pin).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert!(server.next_outcome().await.is_err());

    drop(server);
}

#[tokio::test]
async fn bad_root_set_keeps_the_previous_one() {
    let tenant = new_ca("tenant CA", 365).unwrap();
    let roots = ClientCaRoots::new(std::slice::from_ref(&tenant.cert_pem)).unwrap();
    assert!(roots.replace(&["not a certificate".to_owned()]).is_err());
    assert_eq!(roots.len(), 1);

    // And the server still accepts that tenant's devices.
    let install = installation();
    let config = server_config(&install.server_cert_pem, &install.server_key_pem, roots).unwrap();
    let mut server = TestServer::start(config).await;
    let (key, cert) = enroll(&tenant, "t", "d");
    assert_eq!(
        talk(server.addr, device_client(&install, &key, &cert))
            .await
            .as_deref(),
        Ok("ok")
    );
    assert!(server.next_outcome().await.unwrap().is_some());
}

#[test]
fn configs_refuse_bad_inputs() {
    let install = installation();
    assert!(client_config("nope", None).is_err());
    assert!(client_config(&install.ca.cert_pem, Some(("nope", "nope"))).is_err());
    assert!(server_config("nope", &install.server_key_pem, ClientCaRoots::default()).is_err());
    assert!(server_config(&install.server_cert_pem, "nope", ClientCaRoots::default()).is_err());
    // A key that does not match the certificate.
    let (_, other_key) = issue_server_cert(
        &install.ca,
        &["127.0.0.1".to_owned()],
        now() - 60,
        now() + 60,
    )
    .unwrap();
    assert!(server_config(
        &install.server_cert_pem,
        &other_key,
        ClientCaRoots::default()
    )
    .is_err());
}

#[tokio::test]
async fn tls12_client_certificate_is_verified_too() {
    use tokio_rustls::rustls::crypto::ring::default_provider;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{version::TLS12, RootCertStore};

    let install = installation();
    let tenant = new_ca("tenant CA", 365).unwrap();
    let roots = ClientCaRoots::new(std::slice::from_ref(&tenant.cert_pem)).unwrap();
    let config = server_config(&install.server_cert_pem, &install.server_key_pem, roots).unwrap();
    let mut server = TestServer::start(config).await;

    let tls12_client = |key: &DeviceKey, cert: &IssuedCert| {
        let mut trust = RootCertStore::empty();
        trust
            .add(CertificateDer::from_pem_slice(install.ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_protocol_versions(&[&TLS12])
            .unwrap()
            .with_root_certificates(trust)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    };

    let (key, cert) = enroll(&tenant, "t", "d");
    assert_eq!(
        talk(server.addr, tls12_client(&key, &cert))
            .await
            .as_deref(),
        Ok("ok")
    );
    let seen = server.next_outcome().await.unwrap().unwrap();
    assert_eq!(seen.device_id, "d");

    let stranger = new_ca("stranger", 365).unwrap();
    let (key, cert) = enroll(&stranger, "t", "d");
    assert!(talk(server.addr, tls12_client(&key, &cert)).await.is_err());
    assert!(server.next_outcome().await.is_err());
}
