//! A typed client for the admin API (`/api/v1`) of `rampart-server`.
//!
//! Every call returns the wire type from `rampart-proto` or an error written
//! for people: an API error becomes its message plus one line per invalid
//! field, a connection failure says which server could not be reached.

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rampart_proto::ErrorBody;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where `rampart-server` listens unless told otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Which server to talk to and as whom; shared by every API command.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The rampart-server to talk to.
    #[arg(
        long,
        global = true,
        help_heading = "Server",
        env = "RAMPART_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,
    /// An API token (`rampart token create`, or the server's admin-token file).
    #[arg(
        long,
        global = true,
        help_heading = "Server",
        env = "RAMPART_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust for an https:// server whose
    /// certificate a private CA issued.
    #[arg(
        long,
        global = true,
        help_heading = "Server",
        env = "RAMPART_CA_CERT",
        value_name = "FILE"
    )]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Target {
    /// A client for this target, or an error naming the flag and the
    /// environment variable to fix.
    pub fn client(&self) -> Result<Client> {
        let server = self.server.trim();
        if server.is_empty() {
            bail!("no server: pass --server URL or set RAMPART_SERVER (e.g. {DEFAULT_SERVER})");
        }
        let mut base = Url::parse(server).map_err(|e| {
            anyhow!("--server {server:?} is not a URL ({e}); pass --server URL or set RAMPART_SERVER, e.g. {DEFAULT_SERVER}")
        })?;
        match base.scheme() {
            "http" | "https" => {}
            other => bail!(
                "--server {server:?}: unsupported scheme {other:?}; use an http:// or https:// URL, e.g. {DEFAULT_SERVER}"
            ),
        }
        let token = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "no API token: pass --token TOKEN or set RAMPART_TOKEN \
                     (a new server writes its admin token to DATA_DIR/admin-token)"
                )
            })?
            .to_string();
        // Joining relative paths onto the base needs exactly one trailing
        // slash, whatever the user typed.
        let path = format!("{}/api/v1/", base.path().trim_end_matches('/'));
        base.set_path(&path);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300));
        // A server with a certificate from a private CA: trust that CA too.
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
                format!("--ca-cert {} is not a PEM certificate", path.display())
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().context("cannot set up the HTTP client")?;
        Ok(Client {
            server: server.trim_end_matches('/').to_string(),
            base,
            token,
            http,
        })
    }
}

/// Runs an API command on a single-threaded runtime: the CLI makes one
/// request at a time, and the offline commands need no runtime at all.
pub fn online<F, Fut>(target: &Target, command: F) -> Result<ExitCode>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let client = target.client()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command(client))
}

/// An authenticated connection to one server's admin API.
pub struct Client {
    server: String,
    /// `SERVER/api/v1/`.
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// A non-2xx answer from the server, as its JSON error body describes it.
#[derive(Debug)]
pub struct ApiError {
    pub message: String,
    /// `(path, message)` per invalid field.
    pub details: Vec<(String, String)>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for (path, message) in &self.details {
            if path.is_empty() {
                write!(f, "\n  {message}")?;
            } else {
                write!(f, "\n  {path}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl Client {
    /// The URL of an API path given as segments; each is percent-encoded, so
    /// a name is never read as part of the path.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("--server {} cannot hold a path", self.server))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder> {
        Ok(self
            .http
            .request(method, self.url(segments)?)
            .bearer_auth(&self.token))
    }

    /// Sends a request and returns the body of a 2xx answer.
    async fn send(&self, req: RequestBuilder) -> Result<String> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            return Ok(text);
        }
        Err(api_error(status, &text).into())
    }

    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(
                "cannot reach the server at {}: is rampart-server running? (set --server or RAMPART_SERVER)",
                self.server
            )
        } else if e.is_timeout() {
            anyhow!("the server at {} did not answer in time", self.server)
        } else {
            anyhow!("talking to the server at {} failed: {e}", self.server)
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let text = self.send(req).await?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the server at {} sent an answer this rampart does not understand; \
                 are the CLI and the server the same version?",
                self.server
            )
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.json(self.request(Method::GET, segments)?).await
    }

    /// A GET with query parameters; fields that are `None` are left out.
    pub async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        segments: &[&str],
        query: &Q,
    ) -> Result<T> {
        self.json(self.request(Method::GET, segments)?.query(query))
            .await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T> {
        self.json(self.request(Method::POST, segments)?.json(body))
            .await
    }

    pub async fn put<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T> {
        self.json(self.request(Method::PUT, segments)?.json(body))
            .await
    }

    /// A PUT the server refuses (412 `version_mismatch`) unless the object
    /// is still at `version`: a change made in between is never overwritten.
    pub async fn put_if_match<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
        version: u64,
    ) -> Result<T> {
        let req = self
            .request(Method::PUT, segments)?
            .header(reqwest::header::IF_MATCH, format!("\"{version}\""))
            .json(body);
        self.json(req).await
    }

    /// A DELETE; the server answers 204 with no body.
    pub async fn delete(&self, segments: &[&str]) -> Result<()> {
        self.send(self.request(Method::DELETE, segments)?)
            .await
            .map(drop)
    }
}

/// Turns an error answer into an [`ApiError`]. A body that is not the API's
/// error shape (a proxy's page, say) is shown as it is, shortened.
fn api_error(status: StatusCode, text: &str) -> ApiError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => {
            let mut message = body.error.message;
            // The server's 401 text says what is wrong with the token; the
            // CLI adds where the token came from.
            if status == StatusCode::UNAUTHORIZED {
                message.push_str(" (check --token or RAMPART_TOKEN)");
            }
            if status == StatusCode::PRECONDITION_FAILED {
                // The server speaks of If-Match; the command reads afresh.
                message = format!(
                    "{}; nothing was changed: run the command again to base it on the current state",
                    message.split("; reload it").next().unwrap_or(&message)
                );
            }
            ApiError {
                message,
                details: body
                    .error
                    .details
                    .into_iter()
                    .map(|d| (d.path, d.message))
                    .collect(),
            }
        }
        Err(_) => {
            let snippet: String = text.trim().chars().take(200).collect();
            ApiError {
                message: if snippet.is_empty() {
                    format!("the server answered {status}")
                } else {
                    format!("the server answered {status}: {snippet}")
                },
                details: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(server: &str, token: Option<&str>) -> Target {
        Target {
            server: server.into(),
            token: token.map(str::to_string),
            ca_cert: None,
        }
    }

    #[test]
    fn a_refused_stale_change_is_explained_for_the_command_line() {
        let body = r#"{"error":{"code":"version_mismatch","message":"the tenant settings was changed by someone else meanwhile and is now at version 4; reload it, make your change again and send If-Match: \"4\"","details":[]}}"#;
        let e = api_error(StatusCode::PRECONDITION_FAILED, body);
        assert!(
            e.message.contains("changed by someone else"),
            "{}",
            e.message
        );
        assert!(e.message.contains("run the command again"), "{}", e.message);
        assert!(!e.message.contains("If-Match"), "{}", e.message);
    }

    #[test]
    fn a_validation_error_lists_every_field() {
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":{"code":"validation_failed","message":"the request has 2 invalid fields","details":[{"path":"settings.pua_protection","message":"unknown value"},{"path":"name","message":"is required"}]}}"#,
        );
        assert_eq!(
            e.to_string(),
            "the request has 2 invalid fields\n  settings.pua_protection: unknown value\n  name: is required"
        );
    }

    #[test]
    fn a_body_that_is_not_an_api_error_is_shown_shortened() {
        let e = api_error(StatusCode::BAD_GATEWAY, &"x".repeat(500));
        assert!(e
            .to_string()
            .starts_with("the server answered 502 Bad Gateway: xxx"));
        assert!(e.to_string().len() < 260);
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_names() {
        let c = target("http://h:1/rampart/", Some("t")).client().unwrap();
        assert_eq!(
            c.url(&["devices", "a b/c"]).unwrap().as_str(),
            "http://h:1/rampart/api/v1/devices/a%20b%2Fc"
        );
        let c = target("http://h:1", Some("t")).client().unwrap();
        assert_eq!(
            c.url(&["tenant"]).unwrap().as_str(),
            "http://h:1/api/v1/tenant"
        );
    }

    #[test]
    fn a_missing_token_or_bad_server_names_the_flag_and_variable() {
        let e = target(DEFAULT_SERVER, None).client().err().unwrap();
        assert!(e.to_string().contains("--token TOKEN or set RAMPART_TOKEN"));
        let e = target("", Some("t")).client().err().unwrap();
        assert!(e.to_string().contains("RAMPART_SERVER"));
        let e = target("localhost:8080", Some("t")).client().err().unwrap();
        assert!(e.to_string().contains("--server"), "{e}");
    }
}
