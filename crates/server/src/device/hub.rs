//! The push side of the device channel: which devices are waiting on a long
//! poll, and waking them.
//!
//! Each waiting device has a `Notify`. A sync request wakes one device; a
//! change of policies wakes, in paced batches, the waiting devices whose
//! effective policy is no longer the one they hold — so a change that touches
//! every device does not bring them all back in the same millisecond.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Devices woken per batch, and the pause between batches.
pub const NUDGE_BATCH: usize = 200;
pub const NUDGE_PAUSE: Duration = Duration::from_millis(50);

/// One waiting device.
struct Waiter {
    notify: Arc<Notify>,
    /// The digest the device said it holds.
    digest: String,
}

#[derive(Clone, Default)]
pub struct SyncHub {
    /// (tenant id, device id) → waiter.
    waiting: Arc<Mutex<HashMap<(String, String), Waiter>>>,
}

/// Removes the waiter when the long poll ends, however it ends.
pub struct Registration {
    hub: SyncHub,
    key: (String, String),
    notify: Arc<Notify>,
}

impl Registration {
    /// Resolves when the device is nudged.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        crate::metrics::get().long_polls.dec();
        if let Ok(mut map) = self.hub.waiting.lock() {
            // Only remove our own entry: a newer poll may have replaced it.
            if map
                .get(&self.key)
                .is_some_and(|w| Arc::ptr_eq(&w.notify, &self.notify))
            {
                map.remove(&self.key);
            }
        }
    }
}

impl SyncHub {
    /// Registers a device that waits holding `digest`.
    pub fn register(&self, tenant: &str, device: &str, digest: &str) -> Registration {
        let notify = Arc::new(Notify::new());
        let key = (tenant.to_string(), device.to_string());
        crate::metrics::get().long_polls.inc();
        if let Ok(mut map) = self.waiting.lock() {
            map.insert(
                key.clone(),
                Waiter {
                    notify: notify.clone(),
                    digest: digest.to_string(),
                },
            );
        }
        Registration {
            hub: self.clone(),
            key,
            notify,
        }
    }

    /// Wakes one device; false when it is not waiting now.
    pub fn nudge(&self, tenant: &str, device: &str) -> bool {
        let Ok(map) = self.waiting.lock() else {
            return false;
        };
        match map.get(&(tenant.to_string(), device.to_string())) {
            Some(w) => {
                w.notify.notify_one();
                crate::metrics::get().nudges.inc();
                true
            }
            None => false,
        }
    }

    pub fn is_waiting(&self, tenant: &str, device: &str) -> bool {
        self.waiting
            .lock()
            .is_ok_and(|m| m.contains_key(&(tenant.to_string(), device.to_string())))
    }

    /// The waiting devices of a tenant with the digest each holds.
    pub fn waiting_in(&self, tenant: &str) -> Vec<(String, String)> {
        self.waiting
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|((t, _), _)| t == tenant)
                    .map(|((_, d), w)| (d.clone(), w.digest.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wakes `devices` of `tenant` in batches of [`NUDGE_BATCH`].
    pub async fn nudge_paced(&self, tenant: &str, devices: Vec<String>) -> usize {
        let mut woken = 0;
        for (i, chunk) in devices.chunks(NUDGE_BATCH).enumerate() {
            if i > 0 {
                tokio::time::sleep(NUDGE_PAUSE).await;
            }
            woken += chunk.iter().filter(|d| self.nudge(tenant, d)).count();
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_nudge_wakes_only_its_device_and_registrations_clean_up() {
        let hub = SyncHub::default();
        let a = hub.register("t", "a", "d1");
        let b = hub.register("t", "b", "d2");
        assert!(hub.nudge("t", "a"));
        tokio::time::timeout(Duration::from_secs(1), a.notified())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.notified())
                .await
                .is_err()
        );
        assert!(!hub.nudge("other-tenant", "a"));
        drop(a);
        assert!(!hub.is_waiting("t", "a"));
        assert_eq!(
            hub.waiting_in("t"),
            vec![("b".to_string(), "d2".to_string())]
        );
    }

    #[tokio::test]
    async fn a_newer_poll_survives_the_older_one_ending() {
        let hub = SyncHub::default();
        let old = hub.register("t", "a", "d1");
        let new = hub.register("t", "a", "d2");
        drop(old);
        assert!(hub.is_waiting("t", "a"));
        drop(new);
        assert!(!hub.is_waiting("t", "a"));
    }
}
