//! Shared state of one server process, handed to every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rampart_core::catalog::Catalog;
use rampart_store::Store;

use crate::clock::Clock;
use crate::error::ApiResult;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub catalog: &'static Catalog,
    pub clock: Arc<dyn Clock>,
    /// Tenant id → name. Tenants are never renamed, so entries never go stale.
    tenant_names: Arc<RwLock<HashMap<String, String>>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> AppState {
        AppState {
            store,
            catalog: Catalog::builtin(),
            clock,
            tenant_names: Arc::default(),
        }
    }

    /// The name of a tenant, from the cache or the store.
    pub async fn tenant_name(&self, id: &str) -> ApiResult<Option<String>> {
        if let Ok(names) = self.tenant_names.read() {
            if let Some(name) = names.get(id) {
                return Ok(Some(name.clone()));
            }
        }
        let tenants = self.store.tenants().await?;
        let mut found = None;
        if let Ok(mut names) = self.tenant_names.write() {
            for t in tenants {
                if t.id == id {
                    found = Some(t.name.clone());
                }
                names.insert(t.id, t.name);
            }
        }
        Ok(found)
    }
}
