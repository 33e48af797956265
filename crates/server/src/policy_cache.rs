//! A per-tenant cache of policies, groups and tenant settings, so that a
//! device's check-in resolves against memory instead of reading every policy
//! from the database (DESIGN.md §9). Every admin mutation that can change an
//! effective policy invalidates its tenant's entry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::error::ApiResult;
use crate::fleet::Fleet;
use crate::state::AppState;

/// The tenants' policy sets.
pub type PolicyCache = TenantCache<Fleet>;

impl PolicyCache {
    /// The tenant's policy set (no devices), from memory or the store.
    pub async fn get(&self, state: &AppState, tenant: &str) -> ApiResult<Arc<Fleet>> {
        self.get_or_load(tenant, Fleet::load_policies(state, tenant))
            .await
    }
}

/// One value per tenant, loaded on a miss, dropped by `invalidate`.
pub struct TenantCache<T> {
    entries: Arc<RwLock<Entries<T>>>,
}

struct Entries<T> {
    values: HashMap<String, Arc<T>>,
    /// Per tenant, bumped by every invalidation. A load that started before
    /// an invalidation may have read the store before the change committed:
    /// it is not cached, or the stale copy would outlive the change.
    generations: HashMap<String, u64>,
}

impl<T> Clone for TenantCache<T> {
    fn clone(&self) -> Self {
        TenantCache {
            entries: self.entries.clone(),
        }
    }
}

impl<T> Default for TenantCache<T> {
    fn default() -> Self {
        TenantCache {
            entries: Arc::new(RwLock::new(Entries {
                values: HashMap::new(),
                generations: HashMap::new(),
            })),
        }
    }
}

impl<T> TenantCache<T> {
    async fn get_or_load<E>(
        &self,
        tenant: &str,
        load: impl Future<Output = Result<T, E>>,
    ) -> Result<Arc<T>, E> {
        let generation = match self.entries.read() {
            Ok(e) => {
                if let Some(hit) = e.values.get(tenant) {
                    return Ok(hit.clone());
                }
                e.generations.get(tenant).copied().unwrap_or(0)
            }
            Err(_) => 0,
        };
        let fresh = Arc::new(load.await?);
        if let Ok(mut e) = self.entries.write() {
            if e.generations.get(tenant).copied().unwrap_or(0) == generation {
                e.values.insert(tenant.to_string(), fresh.clone());
            }
        }
        Ok(fresh)
    }

    pub fn invalidate(&self, tenant: &str) {
        if let Ok(mut e) = self.entries.write() {
            e.values.remove(tenant);
            *e.generations.entry(tenant.to_string()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load(v: u32) -> Result<u32, ()> {
        Ok(v)
    }

    #[tokio::test]
    async fn a_load_that_overlaps_an_invalidation_is_not_cached() {
        let cache: TenantCache<u32> = TenantCache::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let slow = {
            let cache = cache.clone();
            // Reads the store (old value 1) before the change commits...
            tokio::spawn(async move {
                cache
                    .get_or_load("t", async move { Ok::<_, ()>(rx.await.unwrap_or(0)) })
                    .await
            })
        };
        tokio::task::yield_now().await;
        // ...the change commits and invalidates...
        cache.invalidate("t");
        // ...then the slow load finishes with what it read.
        tx.send(1).unwrap();
        assert_eq!(*slow.await.unwrap().unwrap(), 1);
        // The next reader loads the new value instead of the stale one.
        assert_eq!(*cache.get_or_load("t", load(2)).await.unwrap(), 2);
        assert_eq!(*cache.get_or_load("t", load(3)).await.unwrap(), 2, "cached");
        cache.invalidate("t");
        assert_eq!(*cache.get_or_load("t", load(4)).await.unwrap(), 4);
    }
}
