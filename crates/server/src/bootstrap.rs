//! First start and quick start: the default tenant and its admin token, extra
//! tenants, and loading a directory of policy-as-code files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rampart_core::documents::load_documents;
use rampart_core::model::Role;
use rampart_core::validate::{group_to_json, policy_to_json, tenant_settings_to_json};
use rampart_store::{
    DeviceRecord, Expect, NewAudit, ObjectKind, Store, Tenant, TokenRecord, UserRecord, Write,
};

use crate::auth::{hash_password, hash_token, new_token};

/// The tenant a new server creates.
pub const DEFAULT_TENANT: &str = "default";

/// Where the bootstrap admin token is written.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

/// Creates a tenant and a `global_admin` token for it; returns both. The
/// token text exists only in the return value.
pub async fn create_tenant(store: &dyn Store, name: &str, now: i64) -> Result<(Tenant, String)> {
    let name =
        rampart_core::names::normalize_name(name, rampart_core::names::MAX_OBJECT_NAME_CHARS)
            .map_err(|m| anyhow::anyhow!("the tenant name {m}"))?;
    let name = name.as_str();
    let tenant = store.create_tenant(name, now).await?;
    let token = new_token();
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant.id.clone(),
        name: "bootstrap-admin".into(),
        role: Role::GlobalAdmin.to_string(),
        kind: "api".into(),
        hash: hash_token(&token),
        created_at: now,
        expires_at: None,
        created_by: "rampart-server".into(),
        last_used_at: None,
    };
    let audit = NewAudit {
        actor: "rampart-server".into(),
        action: "tenant.create".into(),
        object_kind: "tenant".into(),
        object_name: name.into(),
        before: None,
        after: Some(serde_json::json!({ "name": name, "admin_token": "bootstrap-admin" })),
    };
    store
        .write(&tenant.id, now, vec![Write::PutToken(record)], vec![audit])
        .await?;
    Ok((tenant, token))
}

/// The shortest password a local user may have (the API asks the same).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Creates a local console user in a tenant, from the command line: how the
/// first user of a new installation comes to exist. The password is hashed
/// with argon2id; the audit log records who was created, with which role, by
/// `rampart-server create-user`.
pub async fn create_user(
    store: &dyn Store,
    tenant: &Tenant,
    username: &str,
    role: &str,
    password: &str,
    now: i64,
) -> Result<UserRecord> {
    let Some(role) = Role::parse(role) else {
        bail!(
            "unknown role {role:?}; expected one of {}",
            Role::expected()
        );
    };
    let username = rampart_core::names::normalize_name(username, 64)
        .map_err(|m| anyhow::anyhow!("the username {m}"))?;
    if username.chars().any(char::is_whitespace) {
        bail!("the username must not contain spaces");
    }
    let username = username.as_str();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    let hash = hash_password(password).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let record = UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.to_string(),
        password_hash: hash,
        role: role.to_string(),
        created_at: now,
        disabled: false,
    };
    let audit = NewAudit {
        actor: "rampart-server create-user".into(),
        action: "user.create".into(),
        object_kind: "user".into(),
        object_name: username.to_string(),
        before: None,
        after: Some(serde_json::json!({ "role": role })),
    };
    store
        .write(
            &tenant.id,
            now,
            vec![Write::PutUser(record.clone())],
            vec![audit],
        )
        .await?;
    Ok(record)
}

/// Reads a password from a file, or from standard input when `path` is `-`:
/// never from the command line, where other users could see it. One trailing
/// newline is not part of the password.
pub fn read_password(path: &Path) -> Result<String> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the password from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the password file {}", path.display()))?
    };
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(password.to_string())
}

/// Writes a secret to a new file only its owner can read.
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}

/// Creates the default tenant on first start and writes its admin token to
/// `DATA_DIR/admin-token`. Returns the tenant either way.
pub async fn ensure_default_tenant(store: &dyn Store, data_dir: &Path, now: i64) -> Result<Tenant> {
    if let Some(t) = store.tenant_by_name(DEFAULT_TENANT).await? {
        return Ok(t);
    }
    let path = admin_token_path(data_dir);
    if path.exists() {
        bail!("{} exists but the database has no tenant: it belongs to another database; move it away", path.display());
    }
    let (tenant, token) = create_tenant(store, DEFAULT_TENANT, now).await?;
    write_secret(&path, &token)?;
    tracing::info!(path = %path.display(), "created the default tenant; its admin token is in this file");
    Ok(tenant)
}

/// Loads every YAML document under `dir` into a tenant: groups, policies and
/// tenant settings as if applied, devices as simulated devices. Objects that
/// already hold the same content are left alone.
pub async fn load_dir(
    store: &dyn Store,
    tenant: &str,
    files: &[(String, String)],
    now: i64,
) -> Result<usize> {
    let bundle = match load_documents(files, rampart_core::catalog::Catalog::builtin()) {
        Ok(b) => b,
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            bail!("the files to load are invalid:\n{}", text.join("\n"));
        }
    };
    let mut writes = Vec::new();
    let docs = bundle
        .groups
        .iter()
        .map(|g| (ObjectKind::Group, g.name.clone(), group_to_json(g)))
        .chain(
            bundle
                .policies
                .iter()
                .map(|p| (ObjectKind::Policy, p.name.clone(), policy_to_json(p))),
        );
    for (kind, name, doc) in docs {
        let current = store.object(tenant, kind, &name).await?;
        if let Some(c) = current.as_ref().filter(|c| c.doc != doc) {
            tracing::warn!(
                event = "load_overwrote",
                kind = kind.as_str(),
                name = %name,
                stored_version = c.version,
                "--load replaces this object with the one in its files; the change made since (API or console) is overwritten"
            );
        }
        if current.is_none_or(|c| c.doc != doc) {
            writes.push(Write::PutObject {
                kind,
                name,
                doc,
                expect: Expect::Any,
                by: "rampart-server --load".into(),
            });
        }
    }
    if let Some(settings) = &bundle.tenant {
        writes.push(Write::PutTenantSettings {
            doc: tenant_settings_to_json(settings),
        });
    }
    for d in &bundle.devices {
        if store.device(tenant, &d.name).await?.is_some() {
            continue;
        }
        writes.push(Write::PutDevice(DeviceRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: d.name.clone(),
            os: d.os.to_string(),
            os_version: d.os_version.clone(),
            device_type: d.device_type.to_string(),
            agent_version: String::new(),
            tags: d.tags.clone(),
            labels: Vec::new(),
            managed_by: "rampart".into(),
            enrollment_status: "simulated".into(),
            enrollment_code: None,
            enrollment_reason: None,
            last_check_in: None,
            applied_digest: None,
            policy_version: None,
            created_at: now,
            cert_serial: None,
            cert_not_after: None,
            issued_version: 0,
            issued_digest: None,
            key_sha256: None,
            reenroll_until: None,
            conditions: Vec::new(),
        }));
    }
    let count = writes.len();
    if count > 0 {
        let audit = NewAudit {
            actor: "rampart-server --load".into(),
            action: "load".into(),
            object_kind: "directory".into(),
            object_name: files.first().map(|(f, _)| f.clone()).unwrap_or_default(),
            before: None,
            after: Some(serde_json::json!({ "writes": count })),
        };
        store.write(tenant, now, writes, vec![audit]).await?;
    }
    Ok(count)
}
