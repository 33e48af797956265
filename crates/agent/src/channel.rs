//! The device channel's client: one method per route of
//! `docs/device-channel.md`, over HTTPS with a rustls configuration from
//! `rampart-pki` that trusts only the installation CA pinned by the
//! onboarding package and presents the device certificate.
//!
//! The server's JSON error body becomes a [`ChannelError`] the agent acts
//! on: `device_offboarded` with its signed notice →
//! [`ChannelError::Offboarded`] (stop managing once the notice verifies);
//! a certificate the server does not take (`certificate_unknown`,
//! `certificate_superseded`, `device_unknown`, an old server's
//! `device_revoked`) → [`ChannelError::Untrusted`] (re-attest, keep
//! enforcing); a transport failure → [`ChannelError::Unreachable`] (keep
//! enforcing the last verified policy, retry with backoff).

use std::time::Duration;

use rampart_proto::device::{
    codes, CheckIn, CheckInResponse, EnrollRequest, EnrollResponse, KeyAnnouncement,
    OffboardNotice, OffboardedBody, ReattestRequest, RenewRequest, RenewResponse, StatusAck,
    StatusReport, WaitResponse,
};
use rampart_proto::ErrorBody;
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Slack on top of a long poll's own timeout before the client gives up.
const WAIT_SLACK: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// No answer: network down, server down, TLS handshake refused.
    #[error("cannot reach the Rampart server at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with a certificate the agent refuses: not from
    /// the CA the onboarding package pins (`server_certificate_untrusted`),
    /// or not valid at this device's time (`clock_skew`). Retried like an
    /// unreachable server: the last verified policy stays enforced.
    #[error("the Rampart server at {url} is not trusted ({code}): {message}")]
    ServerCertificate {
        url: String,
        code: &'static str,
        message: String,
    },
    /// The device was deleted: the server sent a signed notice, which the
    /// agent verifies before it removes anything.
    #[error("the server says this device was offboarded: {message}")]
    Offboarded {
        message: String,
        notice: Box<OffboardNotice>,
        /// The tenant's policy-key announcements, to verify the notice
        /// with a key rotated since this device last heard.
        key_announcements: Vec<KeyAnnouncement>,
    },
    /// The server does not take this device's certificate (it forgot it,
    /// or knows a newer one): re-attest with the enrolled key.
    #[error("the server does not accept this device's certificate ({code}): {message}")]
    Untrusted { code: String, message: String },
    /// The server answered with an error body.
    #[error("the server refused the request ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered something that is not the protocol.
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// The TLS configuration could not be built from the stored PEMs.
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// The server's certificate is not from the CA the package pins.
pub const SERVER_CERTIFICATE_UNTRUSTED: &str = "server_certificate_untrusted";
/// The server's certificate is not valid at this device's time.
pub const CLOCK_SKEW: &str = "clock_skew";

impl ChannelError {
    /// A stable code for `status` and logs.
    pub fn code(&self) -> &str {
        match self {
            ChannelError::Unreachable { .. } => "server_unreachable",
            ChannelError::ServerCertificate { code, .. } => code,
            ChannelError::Offboarded { .. } => codes::DEVICE_OFFBOARDED,
            ChannelError::Untrusted { code, .. } => code,
            ChannelError::Refused { code, .. } => code,
            ChannelError::Protocol { .. } => "protocol_error",
            ChannelError::Tls(_) => "tls_setup",
        }
    }

    /// Worth trying again later, as opposed to a refusal that will not
    /// change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            ChannelError::Unreachable { .. }
            | ChannelError::ServerCertificate { .. }
            | ChannelError::Protocol { .. } => true,
            ChannelError::Refused { status, .. } => *status >= 500 || *status == 429,
            ChannelError::Offboarded { .. }
            | ChannelError::Untrusted { .. }
            | ChannelError::Tls(_) => false,
        }
    }
}

/// A client of one server, anonymous (enrollment) or as this device.
#[derive(Clone)]
pub struct Channel {
    base: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("base", &self.base).finish()
    }
}

impl Channel {
    /// For `enroll`: no client certificate.
    pub fn anonymous(server_url: &str, server_ca_pem: &str) -> Result<Channel, ChannelError> {
        Channel::build(server_url, server_ca_pem, None)
    }

    /// As the device: every later call.
    pub fn mutual(
        server_url: &str,
        server_ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Channel, ChannelError> {
        Channel::build(server_url, server_ca_pem, Some((cert_pem, key_pem)))
    }

    fn build(
        server_url: &str,
        server_ca_pem: &str,
        identity: Option<(&str, &str)>,
    ) -> Result<Channel, ChannelError> {
        let base = server_url.trim().trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ChannelError::Tls(format!(
                "the server URL {base:?} is not https://: the device channel is always TLS"
            )));
        }
        rampart_pki::install_crypto_provider();
        let tls = rampart_pki::client_config(server_ca_pem, identity)
            .map_err(|e| ChannelError::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("rampart-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChannelError::Tls(chain(&e)))?;
        Ok(Channel { base, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ChannelError> {
        self.post("/device/v1/enroll", req).await
    }

    pub async fn reattest(&self, req: &ReattestRequest) -> Result<EnrollResponse, ChannelError> {
        self.post("/device/v1/reattest", req).await
    }

    pub async fn checkin(&self, req: &CheckIn) -> Result<CheckInResponse, ChannelError> {
        self.post("/device/v1/checkin", req).await
    }

    /// The long poll: `sync` as soon as the policy differs from `digest` or
    /// an administrator asks, else `timeout` after `timeout_secs`.
    pub async fn wait(
        &self,
        digest: Option<&str>,
        timeout_secs: u64,
    ) -> Result<WaitResponse, ChannelError> {
        let url = self.url("/device/v1/wait");
        let timeout = timeout_secs.to_string();
        let mut query: Vec<(&str, &str)> = vec![("timeout", &timeout)];
        if let Some(d) = digest {
            query.push(("digest", d));
        }
        let req = self
            .http
            .get(&url)
            .query(&query)
            .timeout(Duration::from_secs(timeout_secs) + WAIT_SLACK);
        self.send(&url, req).await
    }

    pub async fn report_status(&self, report: &StatusReport) -> Result<StatusAck, ChannelError> {
        self.post("/device/v1/status", report).await
    }

    pub async fn renew(&self, req: &RenewRequest) -> Result<RenewResponse, ChannelError> {
        self.post("/device/v1/renew", req).await
    }

    /// Tells the server the device leaves (204).
    pub async fn offboard(&self) -> Result<(), ChannelError> {
        let url = self.url("/device/v1/offboard");
        let resp = self
            .http
            .post(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(error_from(resp).await)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ChannelError> {
        let url = self.url(path);
        let req = self.http.post(&url).json(body);
        self.send(&url, req).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: &str,
        req: RequestBuilder,
    ) -> Result<T, ChannelError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(error_from(resp).await);
        }
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ChannelError::Protocol {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    fn unreachable(&self, e: &reqwest::Error) -> ChannelError {
        let code = match rampart_pki::certificate_rejection(e) {
            Some(rampart_pki::CertificateRejection::Untrusted) => SERVER_CERTIFICATE_UNTRUSTED,
            Some(rampart_pki::CertificateRejection::OutsideValidity) => CLOCK_SKEW,
            None => {
                return ChannelError::Unreachable {
                    url: self.base.clone(),
                    message: chain(e),
                }
            }
        };
        ChannelError::ServerCertificate {
            url: self.base.clone(),
            code,
            message: chain(e),
        }
    }
}

/// An error answer → the typed error.
async fn error_from(resp: reqwest::Response) -> ChannelError {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    classify(status, &bytes)
}

fn classify(status: StatusCode, body: &[u8]) -> ChannelError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            format!("http_{}", status.as_u16()),
            String::from_utf8_lossy(body).chars().take(200).collect(),
        ),
    };
    if code == codes::DEVICE_OFFBOARDED {
        if let Ok(b) = serde_json::from_slice::<OffboardedBody>(body) {
            return ChannelError::Offboarded {
                message,
                notice: Box::new(b.notice),
                key_announcements: b.key_announcements,
            };
        }
    }
    if [
        codes::DEVICE_REVOKED,
        codes::DEVICE_UNKNOWN,
        codes::CERTIFICATE_UNKNOWN,
        codes::CERTIFICATE_SUPERSEDED,
    ]
    .contains(&code.as_str())
    {
        return ChannelError::Untrusted { code, message };
    }
    ChannelError::Refused {
        status: status.as_u16(),
        code,
        message,
    }
}

/// An error and its causes on one line: reqwest's own message alone hides
/// the useful part ("invalid peer certificate: UnknownIssuer").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_typed_errors() {
        // Without a signed notice nothing says "offboard": an old server's
        // `device_revoked` only asks for re-attestation.
        let body = br#"{"error":{"code":"device_revoked","message":"the device was deleted"}}"#;
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, body),
            ChannelError::Untrusted {
                code: "device_revoked".into(),
                message: "the device was deleted".into()
            }
        );
        let body = br#"{"error":{"code":"device_offboarded","message":"gone"},"notice":{"payload":"{}","signature":"ab"}}"#;
        assert!(matches!(
            classify(StatusCode::GONE, body),
            ChannelError::Offboarded { .. }
        ));
        let body = br#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, body).is_transient());
        let body = br#"{"error":{"code":"token_expired","message":"expired"}}"#;
        let e = classify(StatusCode::UNAUTHORIZED, body);
        assert_eq!(e.code(), "token_expired");
        assert!(!e.is_transient());
        let e = classify(StatusCode::BAD_GATEWAY, b"<html>proxy</html>");
        assert_eq!(e.code(), "http_502");
        assert!(e.is_transient());
    }

    /// A real TLS server whose certificate the agent refuses: the failure
    /// says why, with a code of its own, and is retried (fail static).
    #[cfg(not(windows))]
    #[tokio::test]
    async fn a_refused_server_certificate_has_a_code_that_says_why() {
        rampart_pki::install_crypto_provider();
        let pinned = rampart_pki::new_ca("pinned", 30).unwrap();
        let other = rampart_pki::new_ca("other", 30).unwrap();
        let now = crate::clock::now();
        for (ca, not_before, expected) in [
            (&other, now - 60, SERVER_CERTIFICATE_UNTRUSTED),
            (&pinned, now + 86_400, CLOCK_SKEW),
            (&pinned, now - 2 * 86_400, CLOCK_SKEW),
        ] {
            let not_after = if not_before < now - 86_400 {
                now - 86_400
            } else {
                not_before + 86_400
            };
            let (cert, key) =
                rampart_pki::issue_server_cert(ca, &["127.0.0.1".into()], not_before, not_after)
                    .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(
                rampart_pki::plain_server_config(&cert, &key).unwrap(),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = acceptor.accept(stream).await;
                }
            });
            let channel = Channel::anonymous(&format!("https://{addr}"), &pinned.cert_pem).unwrap();
            let e = channel.offboard().await.unwrap_err();
            server.abort();
            assert_eq!(e.code(), expected, "{e}");
            assert!(e.is_transient(), "{e}");
        }
    }

    #[test]
    fn plain_http_is_refused() {
        let e = Channel::anonymous("http://example.test", "").unwrap_err();
        assert!(e.to_string().contains("not https"), "{e}");
    }
}
