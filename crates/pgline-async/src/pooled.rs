//! The guard a caller holds while it borrows a connection.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use pgline_core::PoolEvent;
use tokio::time::Instant;

use crate::manager::Manager;
use crate::pool::{Inner, Origin, Slot};

/// A borrowed connection. Dereferences to the connection; dropping it gives
/// the connection back (through a reset first when it may be dirty).
#[must_use = "dropping the guard returns the connection at once"]
pub struct Pooled<M: Manager> {
    inner: Arc<Inner<M>>,
    slot: Option<Slot<M::Connection>>,
    acquired_at: Instant,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(
        inner: Arc<Inner<M>>,
        slot: Slot<M::Connection>,
        acquired_at: Instant,
    ) -> Self {
        Self {
            inner,
            slot: Some(slot),
            acquired_at,
        }
    }

    /// The pool-unique id of this connection (as in events).
    pub fn id(&self) -> u64 {
        self.slot.as_ref().map_or(0, |s| s.id)
    }

    /// How long this guard has held the connection.
    pub fn held(&self) -> Duration {
        self.acquired_at.elapsed()
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        match &self.slot {
            Some(slot) => &slot.conn,
            // The slot is only taken in `drop`.
            None => unreachable!("connection used after release"),
        }
    }
}

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        let id = slot.id;
        let acquired_at = self.acquired_at;
        // One clock reading for the event and the idle list, when a listener
        // wants the event.
        let mut now = None;
        self.inner.emit(|| {
            let at = *now.insert(Instant::now());
            PoolEvent::Release {
                connection_id: id,
                held: at.saturating_duration_since(acquired_at),
            }
        });
        if let Some(leaks) = &self.inner.leaks {
            leaks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
        }
        if self.inner.manager.needs_reset(&slot.conn) {
            self.inner.reset_then_put(slot);
        } else {
            self.inner
                .put_at(slot, Origin::Use, now.unwrap_or_else(Instant::now));
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pooled<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.id())
            .field("held", &self.held())
            .finish()
    }
}
