//! The manufacturing API: orders, panels, barcode events.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use pgline_core::Database;
use pgline_mfg::{ManufacturingStore, NewEvent, NewOrder, NewPanel, PanelStatus};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

type Result<T> = std::result::Result<T, ApiError>;

/// `POST /api/orders`: the order and all its panels in one transaction.
pub(crate) async fn create_order<D, S>(
    State(state): State<AppState<D, S>>,
    ApiJson(order): ApiJson<NewOrder>,
) -> Result<(StatusCode, Json<pgline_mfg::Order>)>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let created = state.store.create_order(&order).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/orders/{order_number}`.
pub(crate) async fn get_order<D, S>(
    State(state): State<AppState<D, S>>,
    ApiPath(order_number): ApiPath<String>,
) -> Result<Json<pgline_mfg::Order>>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    Ok(Json(state.store.order(&order_number).await?))
}

/// `POST /api/panels`: a panel and its `PANEL_CREATED` event.
pub(crate) async fn create_panel<D, S>(
    State(state): State<AppState<D, S>>,
    ApiJson(panel): ApiJson<NewPanel>,
) -> Result<(StatusCode, Json<pgline_mfg::Panel>)>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let created = state.store.create_panel(&panel).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Query of `GET /api/panels`.
#[derive(Debug, Deserialize)]
pub(crate) struct PanelQuery {
    status: String,
    limit: Option<u32>,
}

/// `GET /api/panels?status=PENDING[&limit=N]`.
pub(crate) async fn list_panels<D, S>(
    State(state): State<AppState<D, S>>,
    ApiQuery(query): ApiQuery<PanelQuery>,
) -> Result<Json<Vec<pgline_mfg::Panel>>>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let status: PanelStatus = query.status.parse().map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "invalid status: must be one of PENDING, IN_PROGRESS, COMPLETED, FAILED",
        )
    })?;
    let limit = query.limit.unwrap_or(100);
    Ok(Json(state.store.panels_by_status(status, limit).await?))
}

/// `POST /api/panels/{barcode}/events`: the event and the panel's new status
/// in one transaction.
pub(crate) async fn record_event<D, S>(
    State(state): State<AppState<D, S>>,
    ApiPath(barcode): ApiPath<String>,
    ApiJson(event): ApiJson<NewEvent>,
) -> Result<(StatusCode, Json<pgline_mfg::RecordedEvent>)>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let recorded = state.store.record_event(&barcode, &event).await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}
