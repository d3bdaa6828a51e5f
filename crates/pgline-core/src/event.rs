//! Pool events (the seed's connect, acquire, release, error, remove) and the
//! listener that receives them.

use std::time::Duration;

use crate::error::ErrorKind;

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RemoveReason {
    /// Idle longer than the idle timeout while the pool was above its minimum.
    Idle,
    /// Older than its (jittered) maximum lifetime.
    Lifetime,
    /// Found dead or unusable: closed by the server, failed validation, could
    /// not be reset to a clean state.
    Broken,
    /// The pool was closed.
    Closed,
}

impl RemoveReason {
    /// The reason as a lowercase word, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Idle => "idle",
            RemoveReason::Lifetime => "lifetime",
            RemoveReason::Broken => "broken",
            RemoveReason::Closed => "closed",
        }
    }
}

/// Something that happened in a pool. Events carry identifiers and durations,
/// never SQL parameters or passwords.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A new connection was opened.
    Connect {
        /// The pool-unique connection id.
        connection_id: u64,
        /// How long connecting took.
        duration: Duration,
    },
    /// A connection was handed to a caller.
    Acquire {
        /// The connection handed out.
        connection_id: u64,
        /// How long the caller waited (queueing, validation and connecting).
        wait: Duration,
    },
    /// A caller gave a connection back.
    Release {
        /// The connection returned.
        connection_id: u64,
        /// How long the caller held it.
        held: Duration,
    },
    /// An error inside the pool: a failed connect, a failed validation or reset,
    /// an acquire timeout.
    Error {
        /// What kind of error.
        kind: ErrorKind,
        /// A value-free description.
        message: String,
    },
    /// A connection was closed and removed from the pool.
    Remove {
        /// The connection removed.
        connection_id: u64,
        /// Why.
        reason: RemoveReason,
    },
}

impl PoolEvent {
    /// The event's name as in the seed: `connect`, `acquire`, `release`, `error`, `remove`.
    pub fn name(&self) -> &'static str {
        match self {
            PoolEvent::Connect { .. } => "connect",
            PoolEvent::Acquire { .. } => "acquire",
            PoolEvent::Release { .. } => "release",
            PoolEvent::Error { .. } => "error",
            PoolEvent::Remove { .. } => "remove",
        }
    }
}

/// Receives pool events. Every method has a default that does nothing; a pool
/// without a listener pays nothing for events.
///
/// Listeners are called synchronously on the pool's hot paths: keep them short
/// and never block (push into a channel or bump a counter).
pub trait PoolListener: Send + Sync + 'static {
    /// Called for every event.
    fn on_event(&self, event: &PoolEvent) {
        let _ = event;
    }
}

/// A listener that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

impl PoolListener for NoopListener {}

impl<F> PoolListener for F
where
    F: Fn(&PoolEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &PoolEvent) {
        self(event)
    }
}
