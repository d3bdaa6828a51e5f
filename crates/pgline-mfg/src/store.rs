//! The repository trait, and [`Store`] to choose an implementation at run time.

use std::future::Future;

use pgline_core::Database;

use crate::error::DomainError;
use crate::memory::MemoryStore;
use crate::model::{
    BarcodeEvent, Figures, NewEvent, NewOrder, NewPanel, Order, Panel, PanelStatus, RecordedEvent,
};
use crate::pg::PgStore;
use crate::validate::Limits;

/// The manufacturing operations, on any storage.
///
/// Implemented by [`PgStore`] (PostgreSQL through any [`Database`]) and
/// [`MemoryStore`] (in-process, for development without a database), with the
/// same validation and semantics; [`Store`] holds either. Every input is
/// validated before storage is touched (see the rules in the crate docs), and
/// every write is all or nothing.
///
/// The futures are `Send`, so handlers can run them on a multi-threaded
/// runtime.
pub trait ManufacturingStore: Send + Sync {
    /// Creates an order and all its panels (each with a `PANEL_CREATED`
    /// event) in one transaction.
    ///
    /// Errors: [`DomainError::Validation`] (including a barcode twice in the
    /// request), [`DomainError::Conflict`] naming the order or the first
    /// barcodes that exist already.
    fn create_order(
        &self,
        order: &NewOrder,
    ) -> impl Future<Output = Result<Order, DomainError>> + Send;

    /// Creates a panel outside any order and records its `PANEL_CREATED`
    /// event, atomically.
    ///
    /// Errors: [`DomainError::Validation`], [`DomainError::Conflict`].
    fn create_panel(
        &self,
        panel: &NewPanel,
    ) -> impl Future<Output = Result<Panel, DomainError>> + Send;

    /// Records a station's event for a panel and moves the panel's status
    /// (and its order's) in one transaction, with the panel locked so that
    /// concurrent events on it apply one after the other.
    ///
    /// Errors: [`DomainError::Validation`] (bad event type or station, or a
    /// station the store does not know), [`DomainError::NotFound`] (unknown
    /// barcode), [`DomainError::InvalidTransition`] (see
    /// [`PanelStatus::apply`]); nothing is recorded then.
    fn record_event(
        &self,
        barcode: &str,
        event: &NewEvent,
    ) -> impl Future<Output = Result<RecordedEvent, DomainError>> + Send;

    /// One panel. Errors: [`DomainError::NotFound`].
    fn panel(&self, barcode: &str) -> impl Future<Output = Result<Panel, DomainError>> + Send;

    /// Up to `limit` panels in `status`, oldest first. `limit` must be 1 to
    /// [`Limits::max_page_size`].
    fn panels_by_status(
        &self,
        status: PanelStatus,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Panel>, DomainError>> + Send;

    /// Up to `limit` events of a panel, oldest first. Errors:
    /// [`DomainError::NotFound`].
    fn panel_events(
        &self,
        barcode: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<BarcodeEvent>, DomainError>> + Send;

    /// An order with its panels (sorted by barcode). Errors:
    /// [`DomainError::NotFound`].
    fn order(&self, order_number: &str) -> impl Future<Output = Result<Order, DomainError>> + Send;

    /// Figures for `/status`: orders, panels per status, events per station
    /// in the last hour.
    fn figures(&self) -> impl Future<Output = Result<Figures, DomainError>> + Send;

    /// True when this store is a stand-in for the database (data lives in
    /// this process only and is lost on exit).
    fn is_degraded(&self) -> bool;

    /// The limits this store enforces.
    fn limits(&self) -> &Limits;
}

/// Either store, chosen at run time: PostgreSQL, or memory when the database
/// is unreachable in development (the seed's graceful degradation).
///
/// The trait's methods return `impl Future`, so it is not dyn-compatible;
/// this enum is the run-time choice instead.
#[derive(Debug, Clone)]
pub enum Store<D> {
    /// The real store.
    Postgres(PgStore<D>),
    /// The degraded, in-process store.
    Memory(MemoryStore),
}

impl<D: Database> From<PgStore<D>> for Store<D> {
    fn from(store: PgStore<D>) -> Self {
        Store::Postgres(store)
    }
}

impl<D> From<MemoryStore> for Store<D> {
    fn from(store: MemoryStore) -> Self {
        Store::Memory(store)
    }
}

impl<D: Database> ManufacturingStore for Store<D> {
    async fn create_order(&self, order: &NewOrder) -> Result<Order, DomainError> {
        match self {
            Store::Postgres(s) => s.create_order(order).await,
            Store::Memory(s) => s.create_order(order).await,
        }
    }

    async fn create_panel(&self, panel: &NewPanel) -> Result<Panel, DomainError> {
        match self {
            Store::Postgres(s) => s.create_panel(panel).await,
            Store::Memory(s) => s.create_panel(panel).await,
        }
    }

    async fn record_event(
        &self,
        barcode: &str,
        event: &NewEvent,
    ) -> Result<RecordedEvent, DomainError> {
        match self {
            Store::Postgres(s) => s.record_event(barcode, event).await,
            Store::Memory(s) => s.record_event(barcode, event).await,
        }
    }

    async fn panel(&self, barcode: &str) -> Result<Panel, DomainError> {
        match self {
            Store::Postgres(s) => s.panel(barcode).await,
            Store::Memory(s) => s.panel(barcode).await,
        }
    }

    async fn panels_by_status(
        &self,
        status: PanelStatus,
        limit: u32,
    ) -> Result<Vec<Panel>, DomainError> {
        match self {
            Store::Postgres(s) => s.panels_by_status(status, limit).await,
            Store::Memory(s) => s.panels_by_status(status, limit).await,
        }
    }

    async fn panel_events(
        &self,
        barcode: &str,
        limit: u32,
    ) -> Result<Vec<BarcodeEvent>, DomainError> {
        match self {
            Store::Postgres(s) => s.panel_events(barcode, limit).await,
            Store::Memory(s) => s.panel_events(barcode, limit).await,
        }
    }

    async fn order(&self, order_number: &str) -> Result<Order, DomainError> {
        match self {
            Store::Postgres(s) => s.order(order_number).await,
            Store::Memory(s) => s.order(order_number).await,
        }
    }

    async fn figures(&self) -> Result<Figures, DomainError> {
        match self {
            Store::Postgres(s) => s.figures().await,
            Store::Memory(s) => s.figures().await,
        }
    }

    fn is_degraded(&self) -> bool {
        match self {
            Store::Postgres(s) => s.is_degraded(),
            Store::Memory(s) => s.is_degraded(),
        }
    }

    fn limits(&self) -> &Limits {
        match self {
            Store::Postgres(s) => s.limits(),
            Store::Memory(s) => s.limits(),
        }
    }
}
