//! Private keys at rest: the database (every SQLite file, every PostgreSQL
//! secrets row) holds no private key material, only values sealed with the
//! master key; files are private; the master key rotates; a database from
//! before encryption is sealed at the next start.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rampart_server::config::ServerConfig;
use rampart_server::sealing::{Keyring, MasterKey};
use rampart_store::{Store, TenantSecrets, Write};
use rampart_testkit::{Options, TestServer};
use sqlx::{Connection, Executor, PgConnection};

/// Every form a private key could leak in: PEM text, its DER, the hex and
/// raw bytes of the signing key.
fn needles(key_pems: &[String], signing_keys: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("PEM marker".to_owned(), b"PRIVATE KEY".to_vec())];
    for pem in key_pems {
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap();
        assert!(der.len() > 32);
        out.push(("PEM body".to_owned(), body.as_bytes()[..40].to_vec()));
        out.push(("DER".to_owned(), der.clone()));
        // The raw private scalar sits at the end of a PKCS#8 EC key.
        out.push(("DER tail".to_owned(), der[der.len() - 32..].to_vec()));
    }
    for hex in signing_keys {
        out.push(("signing key hex".to_owned(), hex.as_bytes().to_vec()));
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        out.push(("signing key bytes".to_owned(), raw));
    }
    out
}

fn assert_clean(what: &str, bytes: &[u8], needles: &[(String, Vec<u8>)]) {
    for (name, needle) in needles {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{what} holds private key material ({name})"
        );
    }
}

/// The private keys in clear, through the server's own (sealing) store.
async fn private_keys(store: &dyn Store) -> (Vec<String>, Vec<String>) {
    let mut pems = Vec::new();
    let mut signing = Vec::new();
    for tenant in store.tenants().await.unwrap() {
        let s = store.tenant_secrets(&tenant.id).await.unwrap().unwrap();
        assert!(s.ca_key_pem.contains("PRIVATE KEY"), "opened in clear");
        pems.push(s.ca_key_pem);
        signing.push(s.signing_key);
    }
    let ca = store
        .server_secret(rampart_server::device::trust::SERVER_CA)
        .await
        .unwrap()
        .unwrap();
    let (_, key): (String, String) = serde_json::from_str(&ca).unwrap();
    pems.push(key);
    (pems, signing)
}

/// A tenant with its keys, as a device's first enrollment makes them.
async fn second_tenant(store: &dyn Store) {
    let (tenant, _) = rampart_server::bootstrap::create_tenant(store, "second", 1)
        .await
        .unwrap();
    rampart_server::device::trust::ensure_tenant_secrets(store, &tenant.id, &tenant.name, 1)
        .await
        .unwrap();
}

fn database_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("rampart.db")
        })
        .collect();
    files.sort();
    files
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_files_hold_no_private_key_and_are_private() {
    let mut server = TestServer::start().await.unwrap();
    let store = server.store().unwrap();
    second_tenant(store.as_ref()).await;
    let (pems, signing) = private_keys(store.as_ref()).await;
    assert_eq!(pems.len(), 3, "two tenant CAs and the installation CA");
    let needles = needles(&pems, &signing);

    let files = database_files(&server.data_dir);
    assert!(files.iter().any(|f| f.ends_with("rampart.db")), "{files:?}");
    for file in &files {
        assert_clean(
            &file.display().to_string(),
            &std::fs::read(file).unwrap(),
            &needles,
        );
        #[cfg(unix)]
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&server.data_dir), 0o700);
        assert_eq!(mode(&server.master_key_path()), 0o600);
    }
    assert!(server.master_key_path().starts_with(&server.data_dir));

    // After a clean stop (the WAL checkpointed into the main file) too.
    drop(store);
    server.halt().await.unwrap();
    for file in database_files(&server.data_dir) {
        // The last pooled connection may close (and SQLite remove the WAL
        // and its index) while this runs: a file gone holds nothing.
        match std::fs::read(&file) {
            Ok(bytes) => assert_clean(&file.display().to_string(), &bytes, &needles),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", file.display()),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_key_rotates_and_the_old_one_opens_nothing() {
    let mut server = TestServer::start().await.unwrap();
    let before = private_keys(server.store().unwrap().as_ref()).await;
    server.halt().await.unwrap();
    let path = server.master_key_path();
    let old = MasterKey::read(&path).unwrap();

    let new_id = rampart_server::rotate_master_key(server.config())
        .await
        .unwrap();
    assert_ne!(new_id, old.id());
    assert_eq!(MasterKey::read(&path).unwrap().id(), new_id);
    assert!(!rampart_server::sealing::next_key_path(&path).exists());
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);

    // The old key opens nothing any more.
    let err = rampart_server::open_store_with(server.config(), Keyring::new(old))
        .await
        .err()
        .expect("the old key is refused");
    assert!(
        format!("{err:#}").contains("sealed with master key"),
        "{err:#}"
    );

    // The server starts with the new key, with the same keys inside.
    server.resume().await.unwrap();
    let after = private_keys(server.store().unwrap().as_ref()).await;
    assert_eq!(before, after);
    let (status, _) = server.admin().get("/devices").await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_stored_in_clear_before_encryption_are_sealed_at_the_next_start() {
    let dir = std::env::temp_dir().join(format!("rampart-legacy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("rampart.db");
    let secrets = rampart_server::device::trust::new_tenant_secrets("old").unwrap();
    {
        let raw = rampart_store_sqlite::SqliteStore::open(&db).await.unwrap();
        let tenant = raw.create_tenant("old", 1).await.unwrap();
        raw.write(
            &tenant.id,
            1,
            vec![Write::PutTenantSecrets(secrets.clone())],
            vec![],
        )
        .await
        .unwrap();
        raw.put_server_secret_if_absent("device_channel_ca", "[\"c\",\"k\"]")
            .await
            .unwrap();
        raw.close().await;
    }
    let config = ServerConfig::new(dir.clone());
    let store = rampart_server::open_store(&config).await.unwrap();
    let tenant = store.tenant_by_name("old").await.unwrap().unwrap();
    let opened: TenantSecrets = store.tenant_secrets(&tenant.id).await.unwrap().unwrap();
    assert_eq!(opened, secrets);
    drop(store);

    let raw = rampart_store_sqlite::SqliteStore::open(&db).await.unwrap();
    let stored = raw.tenant_secrets(&tenant.id).await.unwrap().unwrap();
    assert!(stored.ca_key_pem.starts_with("rampart-sealed:v1:"));
    assert!(stored.signing_key.starts_with("rampart-sealed:v1:"));
    assert_eq!(
        stored.ca_cert_pem, secrets.ca_cert_pem,
        "public halves stay"
    );
    let ca = raw
        .server_secret("device_channel_ca")
        .await
        .unwrap()
        .unwrap();
    assert!(ca.starts_with("rampart-sealed:v1:"), "{ca}");
    raw.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_secrets_rows_hold_no_private_key() {
    let required = std::env::var("RAMPART_TEST_POSTGRES_REQUIRED").is_ok_and(|v| v == "1");
    let Ok(base) = std::env::var("RAMPART_TEST_POSTGRES_URL") else {
        assert!(!required, "RAMPART_TEST_POSTGRES_URL is not set");
        eprintln!("skipped: set RAMPART_TEST_POSTGRES_URL");
        return;
    };
    let name = format!("rampart_secrets_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&base).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = format!(
        "{}/{name}",
        base.rsplit_once('/')
            .map_or(base.as_str(), |(head, _)| head)
    );
    let server = TestServer::start_with(Options {
        database_url: Some(url.clone()),
        ..Options::default()
    })
    .await
    .unwrap();
    let store = server.store().unwrap();
    second_tenant(store.as_ref()).await;
    let (pems, signing) = private_keys(store.as_ref()).await;
    let needles = needles(&pems, &signing);

    let mut db = PgConnection::connect(&url).await.unwrap();
    let mut rows = 0;
    for table in ["tenant_secrets", "server_secrets"] {
        let texts: Vec<(String,)> = sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut db)
            .await
            .unwrap();
        for (text,) in texts {
            assert_clean(table, text.as_bytes(), &needles);
            assert!(text.contains("rampart-sealed:v1:"), "{table}: {text}");
            rows += 1;
        }
    }
    assert_eq!(rows, 3);
    let _ = db.close().await;
    drop(store);
    server.stop().await.unwrap();
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
}

/// `rampart-server rotate-master-key`, the command an operator runs between
/// a stop and a start: the key file changes and stays private, the server
/// starts with it (opening the installation CA sealed with the old one), and
/// the old key opens nothing.
#[test]
fn the_rotate_master_key_command_replaces_the_key_file() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("rampart-rotate-{}", uuid::Uuid::new_v4()));
    let data = dir.join("data");
    let key = dir.join("keys").join("master.key");
    let command = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rampart-server"));
        c.arg("--data-dir")
            .arg(&data)
            .arg("--master-key-file")
            .arg(&key)
            .env("RUST_LOG", "warn");
        c
    };
    // Runs the server until it listens, then stops it (SIGTERM, by PID).
    let start_and_stop = || {
        let mut child = command()
            .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            line.contains("listening"),
            "the server did not start: {line}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    start_and_stop();
    let before = MasterKey::read(&key).unwrap();
    let out = command().arg("rotate-master-key").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = MasterKey::read(&key).unwrap();
    assert_ne!(before.id(), after.id());
    assert!(String::from_utf8_lossy(&out.stdout).contains(after.id()));
    assert!(!rampart_server::sealing::next_key_path(&key).exists());
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    start_and_stop();

    // The old key file, put back, is refused.
    std::fs::remove_file(&key).unwrap();
    before.write_new(&key).unwrap();
    let out = command()
        .args(["--listen", "127.0.0.1:0", "--device-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sealed with master key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}
