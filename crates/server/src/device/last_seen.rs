//! Write-behind of devices' last check-in times: an unchanged check-in only
//! notes the time in memory, and a background task writes the notes in one
//! batch per tenant every few seconds (DESIGN.md §9).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_store::Store;

/// How often pending times are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Default)]
pub struct LastSeen {
    /// tenant → device name → time.
    pending: Arc<Mutex<HashMap<String, HashMap<String, i64>>>>,
}

impl LastSeen {
    pub fn note(&self, tenant: &str, device: &str, at: i64) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(tenant.to_string())
                .or_default()
                .insert(device.to_string(), at);
        }
    }

    /// Writes everything pending.
    pub async fn flush(&self, store: &dyn Store) {
        let batch = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for (tenant, seen) in batch {
            if let Err(e) = store
                .touch_devices(&tenant, seen.into_iter().collect())
                .await
            {
                tracing::warn!(tenant, error = %e, "could not record last check-in times");
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until the process ends.
    pub fn spawn_flusher(&self, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                me.flush(store.as_ref()).await;
            }
        })
    }
}
