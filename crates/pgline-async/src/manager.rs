//! The backend trait: how the pool opens, checks and resets connections.

use std::future::Future;

use pgline_core::DbError;

/// Opens, checks and resets connections for a [`Pool`](crate::Pool).
///
/// Modelled on deadpool's `Manager` and bb8's `ManageConnection`: the backend
/// only does IO on one connection at a time; all policy (sizes, deadlines,
/// queueing, lifetimes) lives in the pool. The PostgreSQL implementation is
/// [`PgManager`](crate::PgManager); tests use a fake one.
pub trait Manager: Send + Sync + 'static {
    /// The connection type the pool hands out.
    type Connection: Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, DbError>> + Send;

    /// A cheap check with no IO: is the connection known to be unusable
    /// (its socket closed)? Called on every hand-out and return.
    fn has_broken(&self, conn: &Self::Connection) -> bool;

    /// A round trip proving the connection works; used before handing out a
    /// connection that sat idle longer than the validation threshold.
    fn validate(&self, conn: &Self::Connection)
    -> impl Future<Output = Result<(), DbError>> + Send;

    /// Whether the connection may be in a state another caller must not see
    /// (inside a transaction, an unfinished or cancelled query). Called on
    /// return; `true` sends the connection through [`Manager::reset`] first.
    fn needs_reset(&self, conn: &Self::Connection) -> bool;

    /// Brings a connection back to a clean state; an error discards it.
    fn reset(&self, conn: &Self::Connection) -> impl Future<Output = Result<(), DbError>> + Send;

    /// A pool-unique id for events and logs (the pool numbers connections).
    fn set_id(&self, conn: &mut Self::Connection, id: u64) {
        let _ = (conn, id);
    }
}
