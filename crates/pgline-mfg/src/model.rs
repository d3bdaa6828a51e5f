//! Plain data of the domain: what the stores take and return, serializable as
//! the JSON of the HTTP contract.
//!
//! Timestamps are RFC 3339 strings in UTC with microseconds
//! (`2025-11-27T16:54:03.123456Z`), produced the same way by every store, so
//! they sort as text and need no date-time dependency.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Where a panel is in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PanelStatus {
    /// Created, not yet seen by a station.
    Pending,
    /// Seen by a station and being worked on.
    InProgress,
    /// Finished successfully (terminal).
    Completed,
    /// Rejected by a station (terminal).
    Failed,
}

impl PanelStatus {
    /// Every status, in production order.
    pub const ALL: [PanelStatus; 4] = [
        PanelStatus::Pending,
        PanelStatus::InProgress,
        PanelStatus::Completed,
        PanelStatus::Failed,
    ];

    /// The word stored in the database and used in JSON: `PENDING`, `IN_PROGRESS`...
    pub fn as_str(self) -> &'static str {
        match self {
            PanelStatus::Pending => "PENDING",
            PanelStatus::InProgress => "IN_PROGRESS",
            PanelStatus::Completed => "COMPLETED",
            PanelStatus::Failed => "FAILED",
        }
    }

    /// True for `COMPLETED` and `FAILED`, which no event leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, PanelStatus::Completed | PanelStatus::Failed)
    }

    /// The status after `event`, or [`DomainError::InvalidTransition`].
    ///
    /// | event | allowed from | to |
    /// |---|---|---|
    /// | `SCANNED` | `PENDING`, `IN_PROGRESS` | `IN_PROGRESS` |
    /// | `PASSED` | `IN_PROGRESS` | `IN_PROGRESS` (a station's check passed) |
    /// | `FAILED` | `PENDING`, `IN_PROGRESS` | `FAILED` |
    /// | `COMPLETED` | `IN_PROGRESS` | `COMPLETED` |
    ///
    /// `PANEL_CREATED` is recorded by the store when a panel is created and is
    /// never a transition.
    ///
    /// ```
    /// use pgline_mfg::{EventType, PanelStatus};
    ///
    /// assert_eq!(PanelStatus::Pending.apply(EventType::Scanned).ok(), Some(PanelStatus::InProgress));
    /// assert!(PanelStatus::Pending.apply(EventType::Completed).is_err());
    /// ```
    pub fn apply(self, event: EventType) -> Result<PanelStatus, DomainError> {
        use PanelStatus::{Completed, Failed, InProgress, Pending};
        let next = match (self, event) {
            (Pending | InProgress, EventType::Scanned) => Some(InProgress),
            (InProgress, EventType::Passed) => Some(InProgress),
            (Pending | InProgress, EventType::Failed) => Some(Failed),
            (InProgress, EventType::Completed) => Some(Completed),
            _ => None,
        };
        next.ok_or(DomainError::InvalidTransition { from: self, event })
    }
}

impl fmt::Display for PanelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PanelStatus {
    type Err = DomainError;

    /// Parses the exact word (`PENDING`, `IN_PROGRESS`, `COMPLETED`, `FAILED`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PanelStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                DomainError::validation(
                    "status",
                    "must be one of PENDING, IN_PROGRESS, COMPLETED, FAILED",
                )
            })
    }
}

/// Where an order is, derived from its panels whenever one of them changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Every panel is still `PENDING`.
    Pending,
    /// Some panel has started and some panel has not finished.
    InProgress,
    /// Every panel is finished (`COMPLETED` or `FAILED`).
    Completed,
}

impl OrderStatus {
    /// The word stored in the database and used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::InProgress => "IN_PROGRESS",
            OrderStatus::Completed => "COMPLETED",
        }
    }

    /// The order's status given its panels' statuses.
    pub fn derive(panels: impl IntoIterator<Item = PanelStatus>) -> OrderStatus {
        let (mut total, mut pending, mut finished) = (0_usize, 0_usize, 0_usize);
        for status in panels {
            total += 1;
            pending += usize::from(status == PanelStatus::Pending);
            finished += usize::from(status.is_terminal());
        }
        if pending == total {
            OrderStatus::Pending
        } else if finished == total {
            OrderStatus::Completed
        } else {
            OrderStatus::InProgress
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            OrderStatus::Pending,
            OrderStatus::InProgress,
            OrderStatus::Completed,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| {
            DomainError::validation("status", "must be one of PENDING, IN_PROGRESS, COMPLETED")
        })
    }
}

/// What happened to a panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// The panel was created; recorded by the store itself, never by a station.
    PanelCreated,
    /// A station saw the panel.
    Scanned,
    /// A station's check passed.
    Passed,
    /// A station rejected the panel.
    Failed,
    /// The panel is finished.
    Completed,
}

impl EventType {
    /// The event types a station may record (all but `PANEL_CREATED`).
    pub const STATION_EVENTS: [EventType; 4] = [
        EventType::Scanned,
        EventType::Passed,
        EventType::Failed,
        EventType::Completed,
    ];

    /// The word stored in the database and used in JSON: `SCANNED`, `PASSED`...
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PanelCreated => "PANEL_CREATED",
            EventType::Scanned => "SCANNED",
            EventType::Passed => "PASSED",
            EventType::Failed => "FAILED",
            EventType::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = DomainError;

    /// Parses the exact word, `PANEL_CREATED` included (it is refused later,
    /// when a station tries to record it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [EventType::PanelCreated]
            .into_iter()
            .chain(EventType::STATION_EVENTS)
            .find(|event| event.as_str() == s)
            .ok_or_else(|| {
                DomainError::validation(
                    "event_type",
                    "must be one of SCANNED, PASSED, FAILED, COMPLETED",
                )
            })
    }
}

/// A request to create an order with its panels (`POST /api/orders`).
///
/// Fields are unvalidated text, as they arrive; the store validates them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// The plant's order number, unique.
    pub order_number: String,
    /// The type of every panel of the order.
    pub panel_type: String,
    /// The panels to create with the order.
    pub panels: Vec<NewOrderPanel>,
}

impl NewOrder {
    /// An order with panels of the given barcodes.
    pub fn new(
        order_number: impl Into<String>,
        panel_type: impl Into<String>,
        barcodes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            order_number: order_number.into(),
            panel_type: panel_type.into(),
            panels: barcodes
                .into_iter()
                .map(|barcode| NewOrderPanel {
                    barcode: barcode.into(),
                })
                .collect(),
        }
    }
}

/// One panel of a [`NewOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrderPanel {
    /// The panel's barcode, unique across all panels.
    pub barcode: String,
}

/// A request to create a panel outside any order (`POST /api/panels`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPanel {
    /// The panel's barcode, unique across all panels.
    pub barcode: String,
    /// The panel's type.
    pub panel_type: String,
}

impl NewPanel {
    /// A panel with the given barcode and type.
    pub fn new(barcode: impl Into<String>, panel_type: impl Into<String>) -> Self {
        Self {
            barcode: barcode.into(),
            panel_type: panel_type.into(),
        }
    }
}

/// A request to record a barcode event (`POST /api/panels/{barcode}/events`).
///
/// `event_type` is text so that an unknown word is a validation error of the
/// domain (with the accepted words) rather than a deserialization failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// `SCANNED`, `PASSED`, `FAILED` or `COMPLETED`.
    pub event_type: String,
    /// The station that saw the panel, e.g. `ST-01`.
    pub station: String,
}

impl NewEvent {
    /// An event of a known type at `station`.
    pub fn new(event_type: EventType, station: impl Into<String>) -> Self {
        Self {
            event_type: event_type.as_str().to_string(),
            station: station.into(),
        }
    }
}

/// An order with its panels (`GET /api/orders/{order_number}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The plant's order number.
    pub order_number: String,
    /// The type of the order's panels.
    pub panel_type: String,
    /// Derived from the panels' statuses.
    pub status: OrderStatus,
    /// When the order was created (RFC 3339, UTC).
    pub created_at: String,
    /// The order's panels, sorted by barcode.
    pub panels: Vec<OrderPanel>,
}

/// A panel as listed inside an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPanel {
    /// The panel's barcode.
    pub barcode: String,
    /// The panel's status.
    pub status: PanelStatus,
}

/// A panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panel {
    /// The panel's barcode.
    pub barcode: String,
    /// The panel's type.
    pub panel_type: String,
    /// Where the panel is in production.
    pub status: PanelStatus,
    /// The order the panel belongs to, if it was created with one.
    pub order_number: Option<String>,
    /// When the panel was created (RFC 3339, UTC).
    pub created_at: String,
    /// When the last event was recorded for the panel (RFC 3339, UTC).
    pub updated_at: String,
}

/// One entry of a panel's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarcodeEvent {
    /// The panel's barcode.
    pub barcode: String,
    /// What happened.
    pub event_type: EventType,
    /// The station, or `None` for `PANEL_CREATED`.
    pub station: Option<String>,
    /// When it was recorded (RFC 3339, UTC).
    pub created_at: String,
}

/// The outcome of recording an event: the event and the panel's move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The panel's barcode.
    pub barcode: String,
    /// What happened.
    pub event_type: EventType,
    /// The station that recorded it.
    pub station: String,
    /// When it was recorded (RFC 3339, UTC).
    pub created_at: String,
    /// The panel's status before the event.
    pub previous_status: PanelStatus,
    /// The panel's status after the event.
    pub status: PanelStatus,
}

/// Panels per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelCounts {
    /// Panels `PENDING`.
    pub pending: u64,
    /// Panels `IN_PROGRESS`.
    pub in_progress: u64,
    /// Panels `COMPLETED`.
    pub completed: u64,
    /// Panels `FAILED`.
    pub failed: u64,
}

impl PanelCounts {
    /// All panels.
    pub fn total(&self) -> u64 {
        self.pending + self.in_progress + self.completed + self.failed
    }

    /// The count for one status.
    pub fn get(&self, status: PanelStatus) -> u64 {
        match status {
            PanelStatus::Pending => self.pending,
            PanelStatus::InProgress => self.in_progress,
            PanelStatus::Completed => self.completed,
            PanelStatus::Failed => self.failed,
        }
    }

    pub(crate) fn add(&mut self, status: PanelStatus, n: u64) {
        match status {
            PanelStatus::Pending => self.pending += n,
            PanelStatus::InProgress => self.in_progress += n,
            PanelStatus::Completed => self.completed += n,
            PanelStatus::Failed => self.failed += n,
        }
    }
}

/// Events a station recorded in the figures' window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationActivity {
    /// The station, e.g. `ST-01`.
    pub station: String,
    /// Events it recorded in the last hour.
    pub events: u64,
}

/// Manufacturing figures for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Orders ever created.
    pub orders: u64,
    /// Panels per status.
    pub panels: PanelCounts,
    /// Events per known station in the last hour, every station listed (zero
    /// when idle), sorted by station.
    pub events_last_hour: Vec<StationActivity>,
}
