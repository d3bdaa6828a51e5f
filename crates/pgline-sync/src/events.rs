//! r2d2's `HandleEvent` and `HandleError`, mapped to the core [`PoolEvent`].
//!
//! | r2d2 | core | notes |
//! | --- | --- | --- |
//! | `handle_acquire` (a connection was opened) | `Connect` | duration measured in `connect` |
//! | `handle_checkout` | `Acquire` | wait measured from the start of `SyncPool::get`, not of r2d2's wait slice |
//! | `handle_checkin` | `Release` | |
//! | `handle_release` (a connection was closed) | — | carries no reason: `Remove` is sent when the connection itself is dropped, with the reason it was marked with |
//! | `handle_timeout` | — | `get` waits in slices; the timeout `Error` is sent by `get` at the caller's deadline, with waiters and in-use counts |
//! | `HandleError::handle_error` | `Error` | failed connects and validations |
//!
//! r2d2 numbers connections from a process-wide counter and only tells the
//! number to `handle_acquire`, which runs on the same r2d2 worker thread right
//! after `ManageConnection::connect`: `connect` leaves the new connection's id
//! cell in a thread-local and `handle_acquire` fills it in. Ids are r2d2's
//! plus one, so they start at 1 like the async pool's.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pgline_core::{DbError, PoolEvent};
use r2d2::event::{AcquireEvent, CheckinEvent, CheckoutEvent};

use crate::shared::Shared;

thread_local! {
    /// The id cell and connect duration of the connection `connect` just opened.
    static PENDING_CONNECT: RefCell<Option<(Arc<AtomicU64>, Duration)>> = const { RefCell::new(None) };
    /// When the current `SyncPool::get` on this thread started.
    static ACQUIRE_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// This thread is taking idle connections out to close them: no events.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Called by `connect` on the r2d2 worker, just before r2d2 numbers the connection.
pub(crate) fn connected(id_cell: Arc<AtomicU64>, duration: Duration) {
    PENDING_CONNECT.with(|p| *p.borrow_mut() = Some((id_cell, duration)));
}

/// Marks the start of an acquire on this thread until the guard is dropped.
pub(crate) fn acquire_started(at: Instant) -> impl Drop {
    Restore::new(&ACQUIRE_STARTED, Some(at))
}

/// Silences checkout/checkin events on this thread until the guard is dropped.
pub(crate) fn draining() -> impl Drop {
    Restore::new(&DRAINING, true)
}

struct Restore<T: Copy + 'static> {
    key: &'static std::thread::LocalKey<Cell<T>>,
    before: T,
}

impl<T: Copy + 'static> Restore<T> {
    fn new(key: &'static std::thread::LocalKey<Cell<T>>, value: T) -> Self {
        Self {
            key,
            before: key.replace(value),
        }
    }
}

impl<T: Copy + 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.key.set(self.before);
    }
}

/// The pool's `r2d2::HandleEvent`.
#[derive(Debug)]
pub(crate) struct EventHandler(pub(crate) Arc<Shared>);

impl r2d2::HandleEvent for EventHandler {
    fn handle_acquire(&self, event: AcquireEvent) {
        let id = event.connection_id() + 1;
        let duration = PENDING_CONNECT
            .with(|p| p.borrow_mut().take())
            .map(|(cell, duration)| {
                cell.store(id, Relaxed);
                duration
            })
            .unwrap_or_default();
        let shared = &self.0;
        shared.counters.created.fetch_add(1, Relaxed);
        shared.clear_last_error();
        shared.emit(|| PoolEvent::Connect {
            connection_id: id,
            duration,
        });
        shared.notify_changed();
    }

    fn handle_checkout(&self, event: CheckoutEvent) {
        if DRAINING.get() {
            return;
        }
        let wait = ACQUIRE_STARTED
            .get()
            .map_or_else(|| event.duration(), |started| started.elapsed());
        let shared = &self.0;
        shared.counters.acquired.fetch_add(1, Relaxed);
        shared.counters.record_wait(wait);
        shared.emit(|| PoolEvent::Acquire {
            connection_id: event.connection_id() + 1,
            wait,
        });
    }

    fn handle_checkin(&self, event: CheckinEvent) {
        if DRAINING.get() {
            return;
        }
        self.0.emit(|| PoolEvent::Release {
            connection_id: event.connection_id() + 1,
            held: event.duration(),
        });
    }
}

/// The pool's `r2d2::HandleError`: r2d2 hands it the real connect and
/// validation errors (its own error only carries the last one as text).
#[derive(Debug)]
pub(crate) struct ErrorHandler(pub(crate) Arc<Shared>);

impl r2d2::HandleError<DbError> for ErrorHandler {
    fn handle_error(&self, error: DbError) {
        let shared = &self.0;
        if shared.is_closed() {
            // r2d2 keeps refilling `min_idle` after close; `connect` refuses.
            return;
        }
        shared.counters.errors.fetch_add(1, Relaxed);
        let message = with_causes(&error);
        tracing::warn!(error = %message, "database connection error");
        shared.set_last_error(message.clone());
        shared.emit(|| PoolEvent::Error {
            kind: error.kind().clone(),
            message,
        });
    }
}

/// The error and its causes on one line ("error performing TLS handshake:
/// invalid peer certificate: UnknownIssuer"), which `Display` alone hides.
/// Safe to log: `DbError` exposes no source for server errors, whose detail
/// may quote row values.
fn with_causes(error: &DbError) -> String {
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}
