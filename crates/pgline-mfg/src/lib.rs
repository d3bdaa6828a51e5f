//! The manufacturing domain of pgline: schema and migrations, repositories for
//! orders, panels and barcode events, and order processing.
//!
//! Written once against the `pgline-core` traits, so it runs unchanged on the
//! async and the sync backend, bare or wrapped in the resilience and telemetry
//! layers.
//!
//! - [`migrate`]: the embedded, versioned schema ([`MIGRATIONS`]), applied
//!   under an advisory lock so instances starting together never race.
//! - [`ManufacturingStore`]: the operations — create an order with its panels,
//!   create a panel, record a barcode event (moving the panel's status), list
//!   panels by status, look up an order, figures for `/status`.
//! - [`PgStore`]: the store on any [`Database`](pgline_core::Database).
//!   [`MemoryStore`]: the same semantics in memory, for development when the
//!   database is unreachable ([`is_degraded`](ManufacturingStore::is_degraded)
//!   is true). [`Store`] holds either, chosen at run time.
//! - [`DomainError`]: validation, not found, conflict, invalid transition,
//!   database unavailable, database error — what the server maps to 4xx/503/500.
//!
//! # Panel life cycle
//!
//! `PANEL_CREATED` is recorded when a panel is created (`PENDING`). Stations
//! then record `SCANNED` (`PENDING` → `IN_PROGRESS`, and again while
//! `IN_PROGRESS`), `PASSED` (a check passed, while `IN_PROGRESS`), `FAILED`
//! (→ `FAILED`) and `COMPLETED` (`IN_PROGRESS` → `COMPLETED`); anything else is
//! [`DomainError::InvalidTransition`] — see [`PanelStatus::apply`]. An order's
//! status follows its panels ([`OrderStatus::derive`]).
//!
//! # Input rules
//!
//! | input | rule |
//! |---|---|
//! | barcode, order number | 1–64 ASCII characters from `A-Z a-z 0-9 . _ -` |
//! | panel type | 1–64 characters; no control characters (NUL included), no invisible formatting or bidirectional-override characters, no leading or trailing whitespace |
//! | station | `ST-` followed by 2–13 digits, and present in the `stations` table (`ST-01`..`ST-08` are seeded) |
//! | event type | exactly `SCANNED`, `PASSED`, `FAILED` or `COMPLETED` |
//! | panels per order | 1 to [`Limits::max_panels_per_order`] (1000), no barcode twice |
//! | list limit | 1 to [`Limits::max_page_size`] (1000) |
//!
//! A value that looks like SQL is refused by the barcode and order-number
//! alphabet, and stored verbatim as a panel type: every statement is
//! parameterized.
//!
//! # Example
//!
//! Domain code is generic over the store; here on the in-memory one:
//!
//! ```
//! use pgline_mfg::{
//!     DomainError, EventType, ManufacturingStore, MemoryStore, NewEvent, NewOrder, PanelStatus,
//! };
//!
//! async fn build_one<S: ManufacturingStore>(store: &S) -> Result<PanelStatus, DomainError> {
//!     store
//!         .create_order(&NewOrder::new("MO-1001", "Solar 60-cell", ["P-0001", "P-0002"]))
//!         .await?;
//!     for event in [EventType::Scanned, EventType::Passed, EventType::Completed] {
//!         store.record_event("P-0001", &NewEvent::new(event, "ST-01")).await?;
//!     }
//!     Ok(store.panel("P-0001").await?.status)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), DomainError> {
//! let store = MemoryStore::new();
//! assert_eq!(build_one(&store).await?, PanelStatus::Completed);
//!
//! // A panel cannot complete twice.
//! let again = store
//!     .record_event("P-0001", &NewEvent::new(EventType::Completed, "ST-02"))
//!     .await;
//! assert!(matches!(again, Err(DomainError::InvalidTransition { .. })));
//! # Ok(()) }
//! ```
//!
//! On PostgreSQL, through any backend:
//!
//! ```no_run
//! use pgline_core::Database;
//! use pgline_mfg::{ManufacturingStore, PgStore, PanelStatus};
//!
//! async fn start<D: Database>(db: D) -> Result<(), pgline_mfg::DomainError> {
//!     let store = PgStore::new(db);
//!     store.migrate().await?;
//!     let pending = store.panels_by_status(PanelStatus::Pending, 100).await?;
//!     let figures = store.figures().await?;
//!     println!("{} pending, {} orders", pending.len(), figures.orders);
//!     Ok(())
//! }
//! ```

mod error;
mod memory;
mod migrate;
mod model;
mod pg;
mod store;
mod time;
mod validate;

pub use error::DomainError;
pub use memory::MemoryStore;
pub use migrate::{MIGRATION_LOCK_KEY, MIGRATIONS, Migration, MigrationReport, migrate};
pub use model::{
    BarcodeEvent, EventType, Figures, NewEvent, NewOrder, NewOrderPanel, NewPanel, Order,
    OrderPanel, OrderStatus, Panel, PanelCounts, PanelStatus, RecordedEvent, StationActivity,
};
pub use pg::PgStore;
pub use store::{ManufacturingStore, Store};
pub use validate::{Limits, MAX_TEXT_LEN};
