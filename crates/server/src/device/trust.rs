//! The server's side of device trust: the installation CA that signs the
//! device channel's TLS certificate (its PEM and pin go into every onboarding
//! package), each tenant's CA and policy-signing key, and the set of tenant
//! CAs the device listener accepts client certificates from.

use std::sync::Arc;

use anyhow::{Context, Result};
use rampart_pki::{CaBundle, ClientCaRoots};
use rampart_store::{Store, TenantSecrets, Write};

/// Name of the installation CA in the store's installation secrets.
pub const SERVER_CA: &str = "device_channel_ca";
/// How long the device channel's own certificate is valid; it is reissued at
/// every start.
const SERVER_CERT_DAYS: i64 = 90;

pub struct Trust {
    pub server_ca: CaBundle,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    /// Tenant CAs accepted for client certificates; refreshed from the store.
    pub roots: ClientCaRoots,
    /// The tenants whose CA `roots` holds.
    trusted: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Trust {
    /// Loads (or, on the very first start, creates) the installation CA,
    /// issues the listener's certificate for `hostnames`, and loads every
    /// tenant's CA, creating secrets for tenants that have none.
    pub async fn init(store: &dyn Store, hostnames: &[String], now: i64) -> Result<Arc<Trust>> {
        let server_ca = match store.server_secret(SERVER_CA).await? {
            Some(text) => {
                serde_json::from_str::<(String, String)>(&text).context("stored installation CA")?
            }
            None => {
                let ca = rampart_pki::new_ca("Rampart device channel CA", 3650)?;
                let text = serde_json::to_string(&(ca.cert_pem.clone(), ca.key_pem.clone()))?;
                // Replicas starting together converge on whichever CA won.
                let stored = store.put_server_secret_if_absent(SERVER_CA, &text).await?;
                serde_json::from_str::<(String, String)>(&stored)
                    .context("stored installation CA")?
            }
        };
        let server_ca = CaBundle {
            cert_pem: server_ca.0,
            key_pem: server_ca.1,
        };
        let (server_cert_pem, server_key_pem) = rampart_pki::issue_server_cert(
            &server_ca,
            hostnames,
            now - 300,
            now + SERVER_CERT_DAYS * 86_400,
        )?;
        let trust = Trust {
            server_ca,
            server_cert_pem,
            server_key_pem,
            roots: ClientCaRoots::default(),
            trusted: std::sync::Mutex::default(),
        };
        for tenant in store.tenants().await? {
            ensure_tenant_secrets(store, &tenant.id, &tenant.name, now).await?;
        }
        trust.refresh_roots(store).await?;
        Ok(Arc::new(trust))
    }

    /// Reloads the tenant CAs (a tenant created by another process or
    /// replica becomes acceptable here).
    pub async fn refresh_roots(&self, store: &dyn Store) -> Result<()> {
        let mut pems = Vec::new();
        let mut trusted = std::collections::BTreeSet::new();
        for tenant in store.tenants().await? {
            if let Some(secrets) = store.tenant_secrets(&tenant.id).await? {
                pems.push(secrets.ca_cert_pem);
                trusted.insert(tenant.id);
            }
        }
        self.roots.replace(&pems)?;
        *self
            .trusted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = trusted;
        Ok(())
    }

    /// Makes sure the tenant's CA is among the accepted roots before one of
    /// its devices gets a certificate: a tenant created a moment ago, by
    /// another process or replica, is trusted at once rather than at the
    /// next periodic refresh.
    pub async fn ensure_tenant_trusted(&self, store: &dyn Store, tenant_id: &str) -> Result<()> {
        let known = self
            .trusted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(tenant_id);
        if !known {
            self.refresh_roots(store).await?;
        }
        Ok(())
    }

    pub fn server_ca_sha256(&self) -> Result<String> {
        Ok(rampart_pki::sha256_fingerprint(&self.server_ca.cert_pem)?)
    }
}

/// A new tenant's CA and policy-signing key, as a write for its creation batch.
pub fn new_tenant_secrets(tenant_name: &str) -> Result<TenantSecrets> {
    let ca = rampart_pki::new_ca(&format!("Rampart tenant {tenant_name} CA"), 3650)?;
    let signing = rampart_pki::new_signing_key()?;
    Ok(TenantSecrets {
        ca_cert_pem: ca.cert_pem,
        ca_key_pem: ca.key_pem,
        signing_key: signing.secret_hex,
        verify_key: signing.public_hex,
        key_announcements: Vec::new(),
    })
}

/// The tenant's secrets, created if it has none (tenants made before device
/// trust existed).
pub async fn ensure_tenant_secrets(
    store: &dyn Store,
    tenant_id: &str,
    tenant_name: &str,
    now: i64,
) -> Result<TenantSecrets> {
    if let Some(s) = store.tenant_secrets(tenant_id).await? {
        return Ok(s);
    }
    let secrets = new_tenant_secrets(tenant_name)?;
    store
        .write(
            tenant_id,
            now,
            vec![Write::PutTenantSecrets(secrets.clone())],
            Vec::new(),
        )
        .await?;
    Ok(secrets)
}
