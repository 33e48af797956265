//! A per-tenant cache of policies, groups and tenant settings, so that a
//! device's check-in resolves against memory instead of reading every policy
//! from the database (DESIGN.md §9). Every admin mutation that can change an
//! effective policy invalidates its tenant's entry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::error::ApiResult;
use crate::fleet::Fleet;
use crate::state::AppState;

#[derive(Clone, Default)]
pub struct PolicyCache {
    entries: Arc<RwLock<HashMap<String, Arc<Fleet>>>>,
}

impl PolicyCache {
    /// The tenant's policy set (no devices), from memory or the store.
    pub async fn get(&self, state: &AppState, tenant: &str) -> ApiResult<Arc<Fleet>> {
        if let Some(hit) = self
            .entries
            .read()
            .ok()
            .and_then(|m| m.get(tenant).cloned())
        {
            return Ok(hit);
        }
        let fresh = Arc::new(Fleet::load_policies(state, tenant).await?);
        if let Ok(mut m) = self.entries.write() {
            m.insert(tenant.to_string(), fresh.clone());
        }
        Ok(fresh)
    }

    pub fn invalidate(&self, tenant: &str) {
        if let Ok(mut m) = self.entries.write() {
            m.remove(tenant);
        }
    }
}
