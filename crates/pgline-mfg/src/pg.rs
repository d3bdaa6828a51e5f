//! [`PgStore`]: the store on PostgreSQL, written once against [`Database`].

use std::collections::HashSet;
use std::sync::Arc;

use pgline_core::{Database, Row, Session, exactly_one};

use crate::error::DomainError;
use crate::migrate::{MigrationReport, migrate};
use crate::model::{
    BarcodeEvent, Figures, NewEvent, NewOrder, NewPanel, Order, OrderPanel, OrderStatus, Panel,
    PanelCounts, PanelStatus, RecordedEvent, StationActivity,
};
use crate::store::ManufacturingStore;
use crate::time::pg_timestamp;
use crate::validate::{self, Limits, ValidEvent, ValidOrder};

/// Conflicts named in one error at most; the rest are counted.
const NAMED_CONFLICTS: usize = 5;

/// The manufacturing store on PostgreSQL, through any [`Database`] handle
/// (either backend, bare or wrapped in the resilience and telemetry layers).
///
/// Reads that tolerate replication lag — [`figures`](ManufacturingStore::figures),
/// [`order`](ManufacturingStore::order) and
/// [`panels_by_status`](ManufacturingStore::panels_by_status) — go through
/// [`Database::query_replica`], so a [`Routed`](pgline_core::Routed) handle
/// answers them from a standby; everything else (writes, transactions, the
/// panel and event look-ups that stations use right after a write) goes to the
/// primary.
///
/// Run [`migrate`](crate::migrate()) (or [`PgStore::migrate`]) once at start.
#[derive(Debug, Clone)]
pub struct PgStore<D> {
    db: D,
    limits: Limits,
}

impl<D: Database> PgStore<D> {
    /// A store on `db` with the default [`Limits`].
    pub fn new(db: D) -> Self {
        Self::with_limits(db, Limits::default())
    }

    /// A store on `db` with the given limits.
    pub fn with_limits(db: D, limits: Limits) -> Self {
        Self { db, limits }
    }

    /// The database handle (for health checks and pool statistics).
    pub fn database(&self) -> &D {
        &self.db
    }

    /// Brings the schema up to date; see [`migrate`](crate::migrate()).
    pub async fn migrate(&self) -> Result<MigrationReport, DomainError> {
        migrate(&self.db).await
    }
}

/// The start of a query returning panels in the order `panel_from_row` reads.
macro_rules! select_panels {
    () => {
        concat!(
            "SELECT p.barcode, p.panel_type, p.status, o.order_number, ",
            pg_timestamp!("p.created_at"),
            ", ",
            pg_timestamp!("p.updated_at"),
            " FROM panels p LEFT JOIN manufacturing_orders o ON o.id = p.order_id "
        )
    };
}

impl<D: Database> ManufacturingStore for PgStore<D> {
    async fn create_order(&self, order: &NewOrder) -> Result<Order, DomainError> {
        let order = Arc::new(validate::order(order, &self.limits)?);
        self.db
            .transaction(move |tx| {
                let order = Arc::clone(&order);
                Box::pin(async move { insert_order(tx, &order).await })
            })
            .await
    }

    async fn create_panel(&self, panel: &NewPanel) -> Result<Panel, DomainError> {
        let panel = validate::panel(panel)?;
        // One statement, hence one transaction: the panel and its event
        // (the event's foreign key is checked at the end of the statement).
        let sql = concat!(
            "WITH p AS (",
            "  INSERT INTO panels (barcode, panel_type) VALUES ($1, $2)",
            "  ON CONFLICT (barcode) DO NOTHING",
            "  RETURNING barcode, panel_type, status, created_at, updated_at",
            "), e AS (",
            "  INSERT INTO barcode_events (barcode, event_type, created_at)",
            "  SELECT barcode, 'PANEL_CREATED', created_at FROM p",
            ") SELECT p.barcode, p.panel_type, p.status, NULL::text, ",
            pg_timestamp!("p.created_at"),
            ", ",
            pg_timestamp!("p.updated_at"),
            " FROM p"
        );
        let row = self
            .db
            .query_opt(sql, &[&panel.barcode, &panel.panel_type])
            .await?;
        match row {
            Some(row) => panel_from_row(&row),
            None => Err(DomainError::Conflict {
                what: format!("panel {}", panel.barcode),
            }),
        }
    }

    async fn record_event(
        &self,
        barcode: &str,
        event: &NewEvent,
    ) -> Result<RecordedEvent, DomainError> {
        let event = Arc::new(validate::event(barcode, event)?);
        self.db
            .transaction(move |tx| {
                let event = Arc::clone(&event);
                Box::pin(async move { apply_event(tx, &event).await })
            })
            .await
    }

    async fn panel(&self, barcode: &str) -> Result<Panel, DomainError> {
        validate::barcode(barcode)?;
        let sql = concat!(select_panels!(), "WHERE p.barcode = $1");
        match self.db.query_opt(sql, &[&barcode]).await? {
            Some(row) => panel_from_row(&row),
            None => Err(DomainError::NotFound {
                what: format!("panel {barcode}"),
            }),
        }
    }

    async fn panels_by_status(
        &self,
        status: PanelStatus,
        limit: u32,
    ) -> Result<Vec<Panel>, DomainError> {
        let limit = validate::page_size(limit, &self.limits)?;
        let sql = concat!(
            select_panels!(),
            "WHERE p.status = $1 ORDER BY p.id LIMIT $2"
        );
        let rows = self
            .db
            .query_replica(sql, &[&status.as_str(), &limit])
            .await?;
        rows.iter().map(panel_from_row).collect()
    }

    async fn panel_events(
        &self,
        barcode: &str,
        limit: u32,
    ) -> Result<Vec<BarcodeEvent>, DomainError> {
        validate::barcode(barcode)?;
        let limit = validate::page_size(limit, &self.limits)?;
        // The panel row comes along so that "no events" and "no panel" differ,
        // in one statement (one snapshot).
        let sql = concat!(
            "SELECT e.event_type, e.station, ",
            pg_timestamp!("e.created_at"),
            " FROM panels p LEFT JOIN LATERAL (",
            "  SELECT * FROM barcode_events e WHERE e.barcode = p.barcode ORDER BY e.id LIMIT $2",
            ") e ON true WHERE p.barcode = $1 ORDER BY e.id"
        );
        let rows = self.db.query(sql, &[&barcode, &limit]).await?;
        if rows.is_empty() {
            return Err(DomainError::NotFound {
                what: format!("panel {barcode}"),
            });
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(event_type) = opt_text(row, 0, "barcode_events.event_type")? else {
                continue; // the panel has no events
            };
            events.push(BarcodeEvent {
                barcode: barcode.to_string(),
                event_type: event_type
                    .parse()
                    .map_err(|_| DomainError::unexpected("barcode_events.event_type"))?,
                station: opt_text(row, 1, "barcode_events.station")?,
                created_at: text(row, 2, "barcode_events.created_at")?,
            });
        }
        Ok(events)
    }

    async fn order(&self, order_number: &str) -> Result<Order, DomainError> {
        validate::order_number(order_number)?;
        // One statement: the order's status and its panels from one snapshot.
        let sql = concat!(
            "SELECT o.panel_type, o.status, ",
            pg_timestamp!("o.created_at"),
            ", p.barcode, p.status",
            " FROM manufacturing_orders o LEFT JOIN panels p ON p.order_id = o.id",
            " WHERE o.order_number = $1 ORDER BY p.barcode"
        );
        let rows = self.db.query_replica(sql, &[&order_number]).await?;
        let Some(first) = rows.first() else {
            return Err(DomainError::NotFound {
                what: format!("order {order_number}"),
            });
        };
        let mut panels = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(barcode) = opt_text(row, 3, "panels.barcode")? {
                panels.push(OrderPanel {
                    barcode,
                    status: panel_status(&text(row, 4, "panels.status")?)?,
                });
            }
        }
        Ok(Order {
            order_number: order_number.to_string(),
            panel_type: text(first, 0, "manufacturing_orders.panel_type")?,
            status: text(first, 1, "manufacturing_orders.status")?
                .parse()
                .map_err(|_| DomainError::unexpected("manufacturing_orders.status"))?,
            created_at: text(first, 2, "manufacturing_orders.created_at")?,
            panels,
        })
    }

    async fn figures(&self) -> Result<Figures, DomainError> {
        // One statement, one snapshot. Each count uses panels' status index;
        // the activity join uses barcode_events (station, created_at).
        let sql = "WITH activity AS ( \
               SELECT s.id, count(e.id) AS events FROM stations s \
               LEFT JOIN barcode_events e \
                 ON e.station = s.id AND e.created_at > now() - interval '1 hour' \
               GROUP BY s.id) \
             SELECT (SELECT count(*) FROM manufacturing_orders), \
               (SELECT count(*) FROM panels WHERE status = 'PENDING'), \
               (SELECT count(*) FROM panels WHERE status = 'IN_PROGRESS'), \
               (SELECT count(*) FROM panels WHERE status = 'COMPLETED'), \
               (SELECT count(*) FROM panels WHERE status = 'FAILED'), \
               (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM activity), \
               (SELECT coalesce(array_agg(events ORDER BY id), '{}') FROM activity)";
        let row = exactly_one(self.db.query_replica(sql, &[]).await?)?;
        let mut panels = PanelCounts::default();
        for (i, status) in PanelStatus::ALL.into_iter().enumerate() {
            panels.add(status, count(&row, i + 1, "panels")?);
        }
        let stations: Vec<String> = row
            .try_get(5)
            .map_err(|_| DomainError::unexpected("stations.id"))?;
        let events: Vec<i64> = row
            .try_get(6)
            .map_err(|_| DomainError::unexpected("barcode_events"))?;
        let events_last_hour = stations
            .into_iter()
            .zip(events)
            .map(|(station, events)| StationActivity {
                station,
                events: u64::try_from(events).unwrap_or(0),
            })
            .collect();
        Ok(Figures {
            orders: count(&row, 0, "manufacturing_orders")?,
            panels,
            events_last_hour,
        })
    }

    fn is_degraded(&self) -> bool {
        false
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

async fn insert_order(tx: &mut dyn Session, order: &ValidOrder) -> Result<Order, DomainError> {
    // ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to
    // finish, so the conflict is detected exactly, and named, without parsing
    // the server's message.
    let sql = concat!(
        "INSERT INTO manufacturing_orders (order_number, panel_type) VALUES ($1, $2)",
        " ON CONFLICT (order_number) DO NOTHING RETURNING id, ",
        pg_timestamp!("created_at")
    );
    let Some(row) = tx
        .query_opt(sql, &[&order.order_number, &order.panel_type])
        .await?
    else {
        return Err(DomainError::Conflict {
            what: format!("order {}", order.order_number),
        });
    };
    let order_id: i64 = row
        .try_get(0)
        .map_err(|_| DomainError::unexpected("manufacturing_orders.id"))?;
    let created_at = text(&row, 1, "manufacturing_orders.created_at")?;

    // Barcodes arrive sorted: concurrent orders sharing barcodes take them in
    // the same order and wait for each other instead of deadlocking.
    let inserted = tx
        .query(
            "INSERT INTO panels (barcode, panel_type, order_id) \
             SELECT u.barcode, $2::text, $3::bigint FROM unnest($1::text[]) WITH ORDINALITY AS u(barcode, n) \
             ORDER BY u.n \
             ON CONFLICT (barcode) DO NOTHING RETURNING barcode",
            &[&order.barcodes, &order.panel_type, &order_id],
        )
        .await?;
    if inserted.len() != order.barcodes.len() {
        let mut created = HashSet::with_capacity(inserted.len());
        for row in &inserted {
            created.insert(text(row, 0, "panels.barcode")?);
        }
        let taken: Vec<&str> = order
            .barcodes
            .iter()
            .filter(|b| !created.contains(b.as_str()))
            .map(String::as_str)
            .collect();
        // Returning the error rolls back the order and the panels inserted.
        return Err(DomainError::Conflict {
            what: describe_taken(&taken),
        });
    }
    tx.execute(
        "INSERT INTO barcode_events (barcode, event_type) \
         SELECT b, 'PANEL_CREATED' FROM unnest($1::text[]) AS u(b)",
        &[&order.barcodes],
    )
    .await?;
    Ok(Order {
        order_number: order.order_number.clone(),
        panel_type: order.panel_type.clone(),
        status: OrderStatus::Pending,
        created_at,
        panels: order
            .barcodes
            .iter()
            .map(|barcode| OrderPanel {
                barcode: barcode.clone(),
                status: PanelStatus::Pending,
            })
            .collect(),
    })
}

/// `panel P-1`, `panels P-1, P-2`, `panels P-1, ..., P-5 and 3 more`.
pub(crate) fn describe_taken(taken: &[&str]) -> String {
    match taken {
        [] => "panel barcode".to_string(),
        [one] => format!("panel {one}"),
        _ if taken.len() <= NAMED_CONFLICTS => format!("panels {}", taken.join(", ")),
        _ => format!(
            "panels {} and {} more",
            taken[..NAMED_CONFLICTS].join(", "),
            taken.len() - NAMED_CONFLICTS
        ),
    }
}

async fn apply_event(
    tx: &mut dyn Session,
    event: &ValidEvent,
) -> Result<RecordedEvent, DomainError> {
    // Cancellation: dropping this future rolls the transaction back and
    // releases the row locks; nothing is recorded.
    //
    // The panel row is locked first: concurrent events for one panel apply
    // one after the other, each seeing the status the previous one left.
    let locked = tx
        .query_opt(
            "SELECT p.id, p.status, p.order_id, \
               EXISTS (SELECT 1 FROM stations s WHERE s.id = $2) \
             FROM panels p WHERE p.barcode = $1 FOR UPDATE OF p",
            &[&event.barcode, &event.station],
        )
        .await?;
    let Some(row) = locked else {
        let station = tx
            .query_opt("SELECT 1 FROM stations WHERE id = $1", &[&event.station])
            .await?;
        return Err(match station {
            None => unknown_station(&event.station),
            Some(_) => DomainError::NotFound {
                what: format!("panel {}", event.barcode),
            },
        });
    };
    let panel_id: i64 = row
        .try_get(0)
        .map_err(|_| DomainError::unexpected("panels.id"))?;
    let from = panel_status(&text(&row, 1, "panels.status")?)?;
    let order_id: Option<i64> = row
        .try_get(2)
        .map_err(|_| DomainError::unexpected("panels.order_id"))?;
    let station_known: bool = row
        .try_get(3)
        .map_err(|_| DomainError::unexpected("stations"))?;
    if !station_known {
        return Err(unknown_station(&event.station));
    }
    let to = from.apply(event.event_type)?;

    let sql = concat!(
        "WITH moved AS (UPDATE panels SET status = $4, updated_at = now() WHERE id = $5) ",
        "INSERT INTO barcode_events (barcode, event_type, station) VALUES ($1, $2, $3) ",
        "RETURNING ",
        pg_timestamp!("created_at")
    );
    let recorded = tx
        .query_one(
            sql,
            &[
                &event.barcode,
                &event.event_type.as_str(),
                &event.station,
                &to.as_str(),
                &panel_id,
            ],
        )
        .await?;
    let created_at = text(&recorded, 0, "barcode_events.created_at")?;

    if to != from
        && let Some(order_id) = order_id
    {
        // Lock the order before reading its panels: the statement after the
        // lock sees every panel change committed before it, so the last
        // writer derives the status from the final state. (One UPDATE with a
        // subquery would read its panels from a snapshot taken before the
        // lock wait.) Lock order is always panel, then order: no deadlock.
        tx.execute(
            "SELECT 1 FROM manufacturing_orders WHERE id = $1 FOR UPDATE",
            &[&order_id],
        )
        .await?;
        tx.execute(
            "UPDATE manufacturing_orders o SET status = CASE \
                 WHEN c.pending = c.total THEN 'PENDING' \
                 WHEN c.finished = c.total THEN 'COMPLETED' \
                 ELSE 'IN_PROGRESS' END \
             FROM (SELECT count(*) AS total, \
                     count(*) FILTER (WHERE status = 'PENDING') AS pending, \
                     count(*) FILTER (WHERE status IN ('COMPLETED', 'FAILED')) AS finished \
                   FROM panels WHERE order_id = $1) c \
             WHERE o.id = $1",
            &[&order_id],
        )
        .await?;
    }

    Ok(RecordedEvent {
        barcode: event.barcode.clone(),
        event_type: event.event_type,
        station: event.station.clone(),
        created_at,
        previous_status: from,
        status: to,
    })
}

fn unknown_station(station: &str) -> DomainError {
    // The value passed the station format rule, so quoting it is safe.
    DomainError::validation("station", format!("unknown station {station}"))
}

fn panel_from_row(row: &Row) -> Result<Panel, DomainError> {
    Ok(Panel {
        barcode: text(row, 0, "panels.barcode")?,
        panel_type: text(row, 1, "panels.panel_type")?,
        status: panel_status(&text(row, 2, "panels.status")?)?,
        order_number: opt_text(row, 3, "manufacturing_orders.order_number")?,
        created_at: text(row, 4, "panels.created_at")?,
        updated_at: text(row, 5, "panels.updated_at")?,
    })
}

fn panel_status(value: &str) -> Result<PanelStatus, DomainError> {
    value
        .parse()
        .map_err(|_| DomainError::unexpected("panels.status"))
}

fn text(row: &Row, idx: usize, what: &'static str) -> Result<String, DomainError> {
    row.try_get(idx).map_err(|_| DomainError::unexpected(what))
}

fn opt_text(row: &Row, idx: usize, what: &'static str) -> Result<Option<String>, DomainError> {
    row.try_get(idx).map_err(|_| DomainError::unexpected(what))
}

fn count(row: &Row, idx: usize, what: &'static str) -> Result<u64, DomainError> {
    let n: i64 = row
        .try_get(idx)
        .map_err(|_| DomainError::unexpected(what))?;
    u64::try_from(n).map_err(|_| DomainError::unexpected(what))
}
