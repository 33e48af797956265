//! The push side of the device channel: which devices are waiting on a long
//! poll, and waking them.
//!
//! Each waiting device has a `Notify`. A sync request wakes one device; a
//! change of policies wakes the waiting devices whose effective policy is
//! no longer the one they hold, paced by the server's own load: only as
//! many as keep the device-channel requests in flight under a bound, so a
//! change that touches every device neither brings them all back in the
//! same millisecond nor waits on a fixed timer when the server has room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Device-channel requests in flight, per core, that nudges may fill.
const IN_FLIGHT_PER_CORE: usize = 32;
/// How long a nudge round waits before looking at the load again: woken
/// devices need a moment to arrive and be counted.
const PACE_TICK: Duration = Duration::from_millis(10);

/// The most device-channel requests nudges may keep in flight.
fn max_in_flight() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    (cores * IN_FLIGHT_PER_CORE).max(64)
}

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
    /// Check-ins and status reports being served now: the load that paces
    /// nudges.
    in_flight: Arc<AtomicUsize>,
}

/// Counts one request in flight until dropped.
pub struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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

    /// Marks a device-channel request in flight for as long as the guard
    /// lives.
    pub fn busy(&self) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.in_flight.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Wakes `devices` of `tenant` as fast as the server keeps up: each
    /// round wakes as many as there is room for under [`max_in_flight`],
    /// then looks again after [`PACE_TICK`].
    pub async fn nudge_paced(&self, tenant: &str, devices: Vec<String>) -> usize {
        self.nudge_within(tenant, devices, max_in_flight()).await
    }

    async fn nudge_within(&self, tenant: &str, devices: Vec<String>, limit: usize) -> usize {
        let mut woken = 0;
        let mut rest = &devices[..];
        while !rest.is_empty() {
            let room = limit.saturating_sub(self.in_flight());
            if room > 0 {
                let (now, later) = rest.split_at(room.min(rest.len()));
                woken += now.iter().filter(|d| self.nudge(tenant, d)).count();
                rest = later;
            }
            if !rest.is_empty() {
                tokio::time::sleep(PACE_TICK).await;
            }
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

    #[tokio::test]
    async fn nudges_wait_while_the_server_is_busy_and_go_on_when_it_has_room() {
        let hub = SyncHub::default();
        let names: Vec<String> = (0..30).map(|i| format!("d{i}")).collect();
        let waiting: Vec<Registration> = names.iter().map(|n| hub.register("t", n, "x")).collect();
        // The server is full: nothing is woken.
        let load: Vec<Busy> = (0..10).map(|_| hub.busy()).collect();
        let pacing = {
            let hub = hub.clone();
            let names = names.clone();
            tokio::spawn(async move { hub.nudge_within("t", names, 10).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!pacing.is_finished());
        let woken_while_full =
            tokio::time::timeout(Duration::from_millis(1), waiting[0].notified())
                .await
                .is_ok();
        assert!(
            !woken_while_full,
            "a device was woken while the server was full"
        );
        // Room for 4: at most 4 more in flight per round, and every device
        // is woken in the end.
        drop(load.into_iter().take(4).collect::<Vec<_>>());
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), pacing)
                .await
                .expect("pacing ends")
                .expect("task"),
            30
        );
        for w in &waiting {
            tokio::time::timeout(Duration::from_secs(1), w.notified())
                .await
                .expect("woken");
        }
    }
}
