//! The web console: `/` serves the page with a strict Content-Security-Policy,
//! every asset the page loads (and every module those import) is served with
//! the right content type, every file of the assets folder is embedded, and
//! the first user is created from the command line and can sign in.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use std::sync::Arc;

use rampart_server::clock::SystemClock;
use rampart_testkit::{repo_path, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const ASSETS_DIR: &str = "crates/server/src/console/assets";

async fn fetch(url: &str) -> (u16, String, String, reqwest::header::HeaderMap) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap(), headers)
}

/// Values of `attr="…"` in an HTML text.
fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    html.split(&needle)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// Relative module specifiers a JavaScript module imports.
fn imports(js: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['\'', '"'] {
        let needle = format!("from {quote}");
        for rest in js.split(&needle).skip(1) {
            let spec = rest.split(quote).next().unwrap();
            if spec.starts_with("./") || spec.starts_with("../") {
                out.push(spec.to_string());
            }
        }
    }
    out
}

/// `/assets/js/pages/a.js` + `../b.js` → `/assets/js/b.js`.
fn resolve(base: &str, spec: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for piece in spec.split('/') {
        match piece {
            "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn expected_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap() {
        "css" => "text/css",
        "js" => "text/javascript",
        "svg" => "image/svg+xml",
        "html" => "text/html",
        other => panic!("no expected content type for .{other}"),
    }
}

#[tokio::test]
async fn the_console_page_carries_a_strict_csp_and_every_asset_it_loads_is_served() {
    let server = TestServer::start().await.unwrap();
    let (status, ct, html, headers) = fetch(&format!("{}/", server.url)).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    let csp = headers
        .get("content-security-policy")
        .expect("a Content-Security-Policy header")
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    // No inline script or style the policy would block.
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "{html}"
    );
    assert!(!html.contains(" style=\"") && !html.contains(" onclick="));

    // Every asset the page names, then every module those import.
    let mut queue: Vec<String> = attr_values(&html, "src")
        .into_iter()
        .chain(attr_values(&html, "href"))
        .filter(|u| u.starts_with("/assets/"))
        .collect();
    assert!(queue.iter().any(|u| u.ends_with(".js")), "{queue:?}");
    assert!(queue.iter().any(|u| u.ends_with(".css")), "{queue:?}");
    let mut seen = BTreeSet::new();
    while let Some(url) = queue.pop() {
        if !seen.insert(url.clone()) {
            continue;
        }
        let (status, ct, body, headers) = fetch(&format!("{}{url}", server.url)).await;
        assert_eq!(status, 200, "{url}");
        assert!(ct.starts_with(expected_type(&url)), "{url}: {ct}");
        assert!(headers.get("content-security-policy").is_some(), "{url}");
        if url.ends_with(".js") {
            for spec in imports(&body) {
                queue.push(resolve(&url, &spec));
            }
        }
    }
    // Every file in the assets folder is reachable from the page, so none is
    // dead and none is missing from the binary.
    let mut on_disk = BTreeSet::new();
    let root = repo_path(ASSETS_DIR);
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "index.html" {
                    on_disk.insert(format!("/assets/{rel}"));
                }
            }
        }
    }
    assert_eq!(
        seen, on_disk,
        "assets reachable from the page vs files on disk"
    );
    let embedded: BTreeSet<String> = rampart_server::console::ASSETS
        .iter()
        .map(|(p, _)| format!("/assets/{p}"))
        .collect();
    assert_eq!(embedded, on_disk, "embedded assets vs files on disk");

    let (status, _, _, _) = fetch(&format!("{}/assets/js/nope.js", server.url)).await;
    assert_eq!(status, 404);
    let (status, _, _, _) = fetch(&format!("{}/assets/../Cargo.toml", server.url)).await;
    assert_eq!(status, 404);
    // The admin API is unchanged beside it.
    let (status, ct, _, _) = fetch(&format!("{}/api/v1/devices", server.url)).await;
    assert_eq!(status, 401);
    assert!(ct.starts_with("application/json"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn create_user_from_the_command_line_then_sign_in() {
    let data = std::env::temp_dir().join(format!(
        "rampart-create-user-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&data).unwrap();
    let password_file = data.join("password");
    std::fs::write(&password_file, "correct horse battery\n").unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rampart-server"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let file = password_file.to_str().unwrap();
    let out = run(
        &[
            "create-user",
            "--username",
            "alice",
            "--role",
            "global_admin",
            "--password-file",
            file,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
    // From standard input.
    let out = run(
        &[
            "create-user",
            "--username",
            "bob",
            "--role",
            "read_only",
            "--password-file",
            "-",
        ],
        Some("another long password\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refusals: the same name twice, a short password, an unknown role.
    for (args, stdin, why) in [
        (
            vec!["--username", "alice", "--role", "global_admin"],
            "long enough password",
            "exists",
        ),
        (
            vec!["--username", "carol", "--role", "global_admin"],
            "short",
            "12 characters",
        ),
        (
            vec!["--username", "dave", "--role", "root"],
            "long enough password",
            "role",
        ),
    ] {
        let mut all = vec!["create-user"];
        all.extend(args);
        all.extend(["--password-file", "-"]);
        let out = run(&all, Some(stdin));
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{all:?}: {err}");
    }
    // The password never appears in the database in clear.
    let db = std::fs::read(data.join("rampart.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("correct horse battery"));

    // The server on the same data directory: the tenant create-user made is
    // the default tenant, with its bootstrap admin token.
    let config = rampart_server::config::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        device_listen: "127.0.0.1:0".parse().unwrap(),
        ..rampart_server::config::ServerConfig::new(data.clone())
    };
    assert!(data.join("admin-token").exists());
    let running = rampart_server::start(config, Arc::new(SystemClock))
        .await
        .unwrap();
    let url = format!("http://{}/api/v1", running.addr);
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Value| {
        let mut req = reqwest::Client::new().request(method, format!("{url}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = call(
        Method::POST,
        "/login",
        None,
        json!({"username": "alice", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "global_admin");
    let alice = body["token"].as_str().unwrap().to_string();
    let (_, audit) = call(Method::GET, "/audit?limit=1000", Some(&alice), Value::Null).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "user.create"
                && a["object_name"] == "alice"
                && a["actor"] == "rampart-server create-user"),
        "{audit}"
    );
    let (status, _) = call(
        Method::POST,
        "/login",
        None,
        json!({"username": "alice", "password": "correct horse batter"}),
    )
    .await;
    assert_eq!(status, 401);
    // Role limits hold for a console session as for any token.
    let (_, body) = call(
        Method::POST,
        "/login",
        None,
        json!({"username": "bob", "password": "another long password"}),
    )
    .await;
    let bob = body["token"].as_str().unwrap().to_string();
    let (status, _) = call(
        Method::PUT,
        "/tenant/settings",
        Some(&bob),
        json!({"conflict_policy": "most_secure_wins"}),
    )
    .await;
    assert_eq!(status, 403);
    running.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&data);
}
