//! Nudges between replicas. Several `rampart-server` replicas can share one
//! PostgreSQL database; a device holds its long poll on one of them, while a
//! "Policy sync" or a policy change may arrive at another. Each replica
//! publishes its nudges on PostgreSQL's LISTEN/NOTIFY channel and applies
//! the ones the others publish (DESIGN.md §2, §9). On SQLite there is one
//! process and nothing to send. A message bus could replace PostgreSQL
//! behind this module without touching its callers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The PostgreSQL notification channel.
const CHANNEL: &str = "rampart_nudges";

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Nudge {
    /// Wake one device (sync requested, or the device was deleted).
    Device { tenant: String, device: String },
    /// The tenant's policies, groups or settings changed.
    Policies { tenant: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The sender, so a replica ignores its own messages.
    replica: String,
    nudge: Nudge,
}

/// Where nudges go besides this process.
#[derive(Clone, Default)]
pub struct Fanout {
    postgres: Option<(PgPool, String)>,
}

impl Fanout {
    /// Publishes through the PostgreSQL at `url`.
    pub fn postgres(url: &str) -> Result<Fanout, sqlx::Error> {
        let pool = PgPool::connect_lazy(url)?;
        Ok(Fanout {
            postgres: Some((pool, uuid::Uuid::new_v4().to_string())),
        })
    }

    /// Tells the other replicas; never blocks the caller.
    pub fn publish(&self, nudge: Nudge) {
        let Some((pool, replica)) = self.postgres.clone() else {
            return;
        };
        tokio::spawn(async move {
            let payload = match serde_json::to_string(&Envelope { replica, nudge }) {
                Ok(p) => p,
                Err(_) => return,
            };
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "could not publish a nudge to the other replicas");
            }
        });
    }

    fn replica(&self) -> Option<&str> {
        self.postgres.as_ref().map(|(_, r)| r.as_str())
    }
}

/// Listens for the other replicas' nudges and applies them here,
/// reconnecting after a lost connection.
pub fn spawn_listener(state: AppState, url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&state, &url).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "lost the nudge channel; reconnecting"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn listen(state: &AppState, url: &str) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let message = listener.recv().await?;
        let Ok(envelope) = serde_json::from_str::<Envelope>(message.payload()) else {
            continue;
        };
        if Some(envelope.replica.as_str()) == state.fanout.replica() {
            continue;
        }
        match envelope.nudge {
            Nudge::Device { tenant, device } => {
                state.hub.nudge(&tenant, &device);
            }
            Nudge::Policies { tenant } => state.apply_policy_change(&tenant),
        }
    }
}
