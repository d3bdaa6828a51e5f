//! [`MemoryStore`]: the in-process stand-in for development without a database.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::error::DomainError;
use crate::model::{
    BarcodeEvent, EventType, Figures, NewEvent, NewOrder, NewPanel, Order, OrderPanel, OrderStatus,
    Panel, PanelCounts, PanelStatus, RecordedEvent, StationActivity,
};
use crate::pg::describe_taken;
use crate::store::ManufacturingStore;
use crate::time::rfc3339;
use crate::validate::{self, Limits};

/// The window of [`Figures::events_last_hour`].
const ACTIVITY_WINDOW: Duration = Duration::from_secs(3600);

/// The manufacturing store in memory, behind one mutex: the seed's graceful
/// degradation, for the development profile when the database is unreachable.
///
/// Same validation and semantics as [`PgStore`](crate::PgStore): stations
/// `ST-01`..`ST-08` are known, writes are all or nothing (everything is
/// checked before anything changes), timestamps are formatted alike. Data
/// lives in this process only: [`is_degraded`](ManufacturingStore::is_degraded)
/// is always true, and creating one logs a warning saying so.
///
/// Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    limits: Limits,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, OrderRecord>,
    panels: HashMap<String, PanelRecord>,
    next_panel_seq: u64,
    stations: BTreeSet<String>,
    /// Station events of the last hour, oldest first.
    recent: VecDeque<(SystemTime, String)>,
}

struct OrderRecord {
    panel_type: String,
    status: OrderStatus,
    created_at: String,
    /// Sorted.
    barcodes: Vec<String>,
}

struct PanelRecord {
    seq: u64,
    barcode: String,
    panel_type: String,
    status: PanelStatus,
    order_number: Option<String>,
    created_at: String,
    updated_at: String,
    events: Vec<BarcodeEvent>,
}

impl PanelRecord {
    fn to_panel(&self) -> Panel {
        Panel {
            barcode: self.barcode.clone(),
            panel_type: self.panel_type.clone(),
            status: self.status,
            order_number: self.order_number.clone(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

impl MemoryStore {
    /// An empty store with the default [`Limits`]; logs a warning that the
    /// service runs degraded.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// An empty store with the given limits; logs a warning that the service
    /// runs degraded.
    pub fn with_limits(limits: Limits) -> Self {
        tracing::warn!(
            "DEGRADED MODE: manufacturing data is kept in memory only — it is lost when the \
             process exits and not shared with other instances. Start PostgreSQL and restart \
             to leave degraded mode"
        );
        let state = State {
            stations: (1..=8).map(|n| format!("ST-{n:02}")).collect(),
            ..State::default()
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section checks before it writes, so a panic inside
        // one cannot leave half a change: the data stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("degraded", &true)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ManufacturingStore for MemoryStore {
    async fn create_order(&self, order: &NewOrder) -> Result<Order, DomainError> {
        let order = validate::order(order, &self.limits)?;
        let mut state = self.lock();
        if state.orders.contains_key(&order.order_number) {
            return Err(DomainError::Conflict {
                what: format!("order {}", order.order_number),
            });
        }
        let taken: Vec<&str> = order
            .barcodes
            .iter()
            .filter(|b| state.panels.contains_key(*b))
            .map(String::as_str)
            .collect();
        if !taken.is_empty() {
            return Err(DomainError::Conflict {
                what: describe_taken(&taken),
            });
        }
        let now = rfc3339(SystemTime::now());
        for barcode in &order.barcodes {
            state.insert_panel(barcode, &order.panel_type, Some(&order.order_number), &now);
        }
        state.orders.insert(
            order.order_number.clone(),
            OrderRecord {
                panel_type: order.panel_type.clone(),
                status: OrderStatus::Pending,
                created_at: now.clone(),
                barcodes: order.barcodes.clone(),
            },
        );
        Ok(Order {
            panels: order
                .barcodes
                .iter()
                .map(|barcode| OrderPanel {
                    barcode: barcode.clone(),
                    status: PanelStatus::Pending,
                })
                .collect(),
            order_number: order.order_number,
            panel_type: order.panel_type,
            status: OrderStatus::Pending,
            created_at: now,
        })
    }

    async fn create_panel(&self, panel: &NewPanel) -> Result<Panel, DomainError> {
        let panel = validate::panel(panel)?;
        let mut state = self.lock();
        if state.panels.contains_key(&panel.barcode) {
            return Err(DomainError::Conflict {
                what: format!("panel {}", panel.barcode),
            });
        }
        let now = rfc3339(SystemTime::now());
        Ok(state
            .insert_panel(&panel.barcode, &panel.panel_type, None, &now)
            .to_panel())
    }

    async fn record_event(
        &self,
        barcode: &str,
        event: &NewEvent,
    ) -> Result<RecordedEvent, DomainError> {
        let event = validate::event(barcode, event)?;
        let mut state = self.lock();
        if !state.stations.contains(&event.station) {
            return Err(DomainError::validation(
                "station",
                format!("unknown station {}", event.station),
            ));
        }
        let not_found = || DomainError::NotFound {
            what: format!("panel {}", event.barcode),
        };
        let panel = state.panels.get_mut(&event.barcode).ok_or_else(not_found)?;
        let from = panel.status;
        let to = from.apply(event.event_type)?;
        let at = SystemTime::now();
        let created_at = rfc3339(at);
        panel.status = to;
        panel.updated_at.clone_from(&created_at);
        panel.events.push(BarcodeEvent {
            barcode: event.barcode.clone(),
            event_type: event.event_type,
            station: Some(event.station.clone()),
            created_at: created_at.clone(),
        });
        let order_number = panel.order_number.clone();
        state.recent.push_back((at, event.station.clone()));
        if to != from
            && let Some(order_number) = order_number
        {
            state.refresh_order_status(&order_number);
        }
        Ok(RecordedEvent {
            barcode: event.barcode,
            event_type: event.event_type,
            station: event.station,
            created_at,
            previous_status: from,
            status: to,
        })
    }

    async fn panel(&self, barcode: &str) -> Result<Panel, DomainError> {
        validate::barcode(barcode)?;
        let state = self.lock();
        state
            .panels
            .get(barcode)
            .map(PanelRecord::to_panel)
            .ok_or_else(|| DomainError::NotFound {
                what: format!("panel {barcode}"),
            })
    }

    async fn panels_by_status(
        &self,
        status: PanelStatus,
        limit: u32,
    ) -> Result<Vec<Panel>, DomainError> {
        let limit = usize::try_from(validate::page_size(limit, &self.limits)?).unwrap_or(0);
        let state = self.lock();
        let mut found: Vec<&PanelRecord> = state
            .panels
            .values()
            .filter(|p| p.status == status)
            .collect();
        found.sort_unstable_by_key(|p| p.seq);
        Ok(found
            .into_iter()
            .take(limit)
            .map(PanelRecord::to_panel)
            .collect())
    }

    async fn panel_events(
        &self,
        barcode: &str,
        limit: u32,
    ) -> Result<Vec<BarcodeEvent>, DomainError> {
        validate::barcode(barcode)?;
        let limit = usize::try_from(validate::page_size(limit, &self.limits)?).unwrap_or(0);
        let state = self.lock();
        let panel = state
            .panels
            .get(barcode)
            .ok_or_else(|| DomainError::NotFound {
                what: format!("panel {barcode}"),
            })?;
        Ok(panel.events.iter().take(limit).cloned().collect())
    }

    async fn order(&self, order_number: &str) -> Result<Order, DomainError> {
        validate::order_number(order_number)?;
        let state = self.lock();
        let order = state
            .orders
            .get(order_number)
            .ok_or_else(|| DomainError::NotFound {
                what: format!("order {order_number}"),
            })?;
        let panels = order
            .barcodes
            .iter()
            .filter_map(|barcode| state.panels.get(barcode))
            .map(|p| OrderPanel {
                barcode: p.barcode.clone(),
                status: p.status,
            })
            .collect();
        Ok(Order {
            order_number: order_number.to_string(),
            panel_type: order.panel_type.clone(),
            status: order.status,
            created_at: order.created_at.clone(),
            panels,
        })
    }

    async fn figures(&self) -> Result<Figures, DomainError> {
        let mut state = self.lock();
        let now = SystemTime::now();
        while let Some((at, _)) = state.recent.front() {
            match now.duration_since(*at) {
                Ok(age) if age > ACTIVITY_WINDOW => {
                    state.recent.pop_front();
                }
                _ => break,
            }
        }
        let mut panels = PanelCounts::default();
        for panel in state.panels.values() {
            panels.add(panel.status, 1);
        }
        let mut per_station: HashMap<&str, u64> = HashMap::new();
        for (_, station) in &state.recent {
            *per_station.entry(station.as_str()).or_default() += 1;
        }
        let events_last_hour = state
            .stations
            .iter()
            .map(|station| StationActivity {
                station: station.clone(),
                events: per_station.get(station.as_str()).copied().unwrap_or(0),
            })
            .collect();
        Ok(Figures {
            orders: u64::try_from(state.orders.len()).unwrap_or(u64::MAX),
            panels,
            events_last_hour,
        })
    }

    fn is_degraded(&self) -> bool {
        true
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl State {
    /// Inserts a new panel with its `PANEL_CREATED` event; the caller checked
    /// that the barcode is free.
    fn insert_panel(
        &mut self,
        barcode: &str,
        panel_type: &str,
        order_number: Option<&str>,
        now: &str,
    ) -> &PanelRecord {
        self.next_panel_seq += 1;
        let record = PanelRecord {
            seq: self.next_panel_seq,
            barcode: barcode.to_string(),
            panel_type: panel_type.to_string(),
            status: PanelStatus::Pending,
            order_number: order_number.map(str::to_string),
            created_at: now.to_string(),
            updated_at: now.to_string(),
            events: vec![BarcodeEvent {
                barcode: barcode.to_string(),
                event_type: EventType::PanelCreated,
                station: None,
                created_at: now.to_string(),
            }],
        };
        self.panels.entry(barcode.to_string()).or_insert(record)
    }

    fn refresh_order_status(&mut self, order_number: &str) {
        let Some(order) = self.orders.get(order_number) else {
            return;
        };
        let status = OrderStatus::derive(
            order
                .barcodes
                .iter()
                .filter_map(|b| self.panels.get(b))
                .map(|p| p.status),
        );
        if let Some(order) = self.orders.get_mut(order_number) {
            order.status = status;
        }
    }
}
