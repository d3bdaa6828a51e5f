//! The guard a caller holds while it borrows a connection.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use pgline_core::RemoveReason;

use crate::blocking::{can_block_here, off_thread};
use crate::client::SyncClient;
use crate::manager::Manager;

type Pooled = r2d2::PooledConnection<Manager>;

/// A borrowed connection. Dereferences to [`SyncClient`]; dropping it gives
/// the connection back to the pool, rolled back first when it may be inside
/// a transaction.
///
/// The reset runs right in `drop` on a thread that may block (the usual case
/// for thread users). Dropped inside a tokio runtime (a cancelled or
/// panicking async transaction), the connection is moved to a short-lived
/// thread that rolls it back and returns it, and counts as in use meanwhile.
/// A connection whose reset fails, or whose statement was interrupted by a
/// panic, is closed instead.
#[must_use = "dropping the guard returns the connection at once"]
pub struct SyncConnection {
    /// `None` only inside `drop`.
    pooled: Option<Pooled>,
}

impl SyncConnection {
    pub(crate) fn new(pooled: Pooled) -> Self {
        Self {
            pooled: Some(pooled),
        }
    }

    /// Marks the connection to be closed instead of reused when it is returned.
    pub(crate) fn discard(&mut self, reason: RemoveReason) {
        if let Some(pooled) = &mut self.pooled {
            pooled.flags.discard.get_or_insert(reason);
        }
    }
}

impl Deref for SyncConnection {
    type Target = SyncClient;

    fn deref(&self) -> &SyncClient {
        match &self.pooled {
            Some(pooled) => pooled,
            // The connection is only taken in `drop`.
            None => unreachable!("connection used after release"),
        }
    }
}

impl DerefMut for SyncConnection {
    fn deref_mut(&mut self) -> &mut SyncClient {
        match &mut self.pooled {
            Some(pooled) => pooled,
            None => unreachable!("connection used after release"),
        }
    }
}

impl Drop for SyncConnection {
    fn drop(&mut self) {
        let Some(pooled) = self.pooled.take() else {
            return;
        };
        let needs_io = pooled.flags.discard.is_none()
            && !pooled.shared().is_closed()
            && pooled.flags.needs_reset();
        if !needs_io || can_block_here() {
            give_back(pooled);
            return;
        }
        if let Err(mut pooled) = off_thread("pgline-sync-reset", pooled, give_back) {
            pooled.flags.discard = Some(RemoveReason::Broken);
            give_back(pooled);
        }
    }
}

/// Resets the connection if it needs it (blocking), then returns it to r2d2,
/// whose `has_broken` discards it when it is marked, closed or dirty.
fn give_back(mut pooled: Pooled) {
    if pooled.shared().is_closed() {
        pooled.flags.discard.get_or_insert(RemoveReason::Closed);
    } else if pooled.flags.interrupted {
        pooled.flags.discard.get_or_insert(RemoveReason::Broken);
    }
    if pooled.flags.discard.is_none()
        && pooled.flags.needs_reset()
        && let Err(e) = pooled.reset_now()
    {
        tracing::debug!(connection_id = pooled.id(), error = %e, "reset failed; closing the connection");
        pooled.shared().counters.errors.fetch_add(1, Relaxed);
        pooled.flags.discard = Some(RemoveReason::Broken);
    }
    // `close` and `initialize` wait for returns; nobody else pays for waking them.
    let watched = pooled
        .shared()
        .is_watched()
        .then(|| Arc::clone(pooled.shared()));
    drop(pooled);
    if let Some(shared) = watched {
        shared.notify_changed();
    }
}

impl std::fmt::Debug for SyncConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pooled {
            Some(pooled) => std::fmt::Debug::fmt(&**pooled, f),
            None => f.write_str("SyncConnection(released)"),
        }
    }
}
