//! Slows password guessing down: failed logins are counted per username
//! (whichever address they come from) and per source address (whichever
//! usernames it tries). After a few free failures each further one makes
//! the next attempt wait longer, doubling up to a ceiling; while it must
//! wait, a login is refused with 429 and `Retry-After` before any password
//! is checked. A success clears the username's count.
//!
//! The counts live in this process: replicas behind a load balancer each
//! count their own, which multiplies an attacker's budget by the number of
//! replicas but keeps the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Failures allowed before delays start, per username and per address (an
/// address may be a NAT in front of many people, so it gets more).
const FREE_PER_USER: u32 = 5;
const FREE_PER_ADDRESS: u32 = 20;
/// The first delay, and the longest.
const FIRST_DELAY_SECS: i64 = 1;
const MAX_DELAY_SECS: i64 = 15 * 60;
/// A count no failure has renewed for this long is forgotten.
const FORGET_AFTER_SECS: i64 = 3600;
/// At most this many counts are kept; the stalest go first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last_failure: i64,
    /// No attempt before this time.
    blocked_until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

#[derive(Clone, Default)]
pub struct LoginThrottle {
    counts: Arc<Mutex<HashMap<Key, Count>>>,
}

fn user_key(tenant: &str, username: &str) -> Key {
    Key::User(format!(
        "{tenant}\u{0}{}",
        rampart_core::names::name_key(username)
    ))
}

impl LoginThrottle {
    /// Seconds the caller must wait before trying this username from this
    /// address, or `None` when it may try now.
    pub fn wait(
        &self,
        tenant: &str,
        username: &str,
        addr: Option<IpAddr>,
        now: i64,
    ) -> Option<i64> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keys = vec![user_key(tenant, username)];
        keys.extend(addr.map(Key::Address));
        keys.iter()
            .filter_map(|k| counts.get(k))
            .map(|c| c.blocked_until - now)
            .filter(|secs| *secs > 0)
            .max()
    }

    /// Counts a failed login.
    pub fn failed(&self, tenant: &str, username: &str, addr: Option<IpAddr>, now: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= MAX_ENTRIES {
            counts.retain(|_, c| now - c.last_failure < FORGET_AFTER_SECS);
            if counts.len() >= MAX_ENTRIES {
                // Still full: an address sweep; drop the oldest half.
                let mut ages: Vec<i64> = counts.values().map(|c| c.last_failure).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                counts.retain(|_, c| c.last_failure > cutoff);
            }
        }
        let mut bump = |key: Key, free: u32| {
            let count = counts.entry(key).or_insert(Count {
                failures: 0,
                last_failure: now,
                blocked_until: 0,
            });
            if now - count.last_failure >= FORGET_AFTER_SECS {
                count.failures = 0;
            }
            count.failures += 1;
            count.last_failure = now;
            if count.failures > free {
                let doublings = (count.failures - free - 1).min(20);
                let delay = (FIRST_DELAY_SECS << doublings).min(MAX_DELAY_SECS);
                count.blocked_until = now + delay;
            }
        };
        bump(user_key(tenant, username), FREE_PER_USER);
        if let Some(addr) = addr {
            bump(Key::Address(addr), FREE_PER_ADDRESS);
        }
    }

    /// A successful login clears the username's failures (not the
    /// address's: one right guess must not reset a sweep).
    pub fn succeeded(&self, tenant: &str, username: &str) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&user_key(tenant, username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_grow() {
        let t = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..FREE_PER_USER {
            assert_eq!(t.wait("t", "alice", Some(addr), 100), None);
            t.failed("t", "alice", Some(addr), 100);
        }
        assert_eq!(t.wait("t", "alice", Some(addr), 100), None);
        t.failed("t", "alice", Some(addr), 100);
        assert_eq!(t.wait("t", "alice", Some(addr), 100), Some(1));
        t.failed("t", "ALICE", None, 101);
        assert_eq!(
            t.wait("t", "alice", None, 101),
            Some(2),
            "the name's case does not matter"
        );
        t.failed("t", "alice", None, 103);
        assert_eq!(t.wait("t", "alice", None, 103), Some(4));
        // Another user from another address is not slowed.
        assert_eq!(t.wait("t", "bob", Some([10, 0, 0, 2].into()), 103), None);
        t.succeeded("t", "alice");
        assert_eq!(t.wait("t", "alice", None, 103), None);
    }

    #[test]
    fn an_address_trying_many_usernames_is_slowed() {
        let t = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 9].into();
        for i in 0..=FREE_PER_ADDRESS {
            t.failed("t", &format!("user{i}"), Some(addr), 100);
        }
        assert_eq!(t.wait("t", "someone-else", Some(addr), 100), Some(1));
        assert_eq!(t.wait("t", "someone-else", None, 100), None);
    }
}
