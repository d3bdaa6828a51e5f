//! The manufacturing API: orders, panels, barcode events.

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use pgline_core::Database;
use pgline_mfg::{ManufacturingStore, NewEvent, NewOrder, NewPanel, PanelStatus};
use serde::Deserialize;

use crate::auth::{Attempt, AuthenticatedStation, FailureReason, client_address};
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

/// Body of `POST /api/panels/{barcode}/events`. `station` may be left out
/// when the request is authenticated: the token says which station it is.
#[derive(Debug, Deserialize)]
pub(crate) struct EventRequest {
    event_type: String,
    station: Option<String>,
}

/// `POST /api/panels/{barcode}/events`: the event and the panel's new status
/// in one transaction. With station authentication on, the event is recorded
/// for the authenticated station, and naming another one is 403.
pub(crate) async fn record_event<D, S>(
    State(state): State<AppState<D, S>>,
    station: Option<Extension<AuthenticatedStation>>,
    ApiPath(barcode): ApiPath<String>,
    request: Request,
) -> Result<(StatusCode, Json<pgline_mfg::RecordedEvent>)>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    // The request's head is kept for the log line of a 403 before the body
    // is read.
    let attempt = Attempt::new(&request, client_address(&request));
    let ApiJson(body) = ApiJson::<EventRequest>::from_request(request, &state).await?;
    let station = match (station, body.station) {
        (Some(Extension(AuthenticatedStation(own))), Some(claimed)) if claimed != own => {
            attempt.refused(
                &state.auth_failures,
                FailureReason::WrongStation,
                "event in another station's name",
                Some(&own),
                Some(&claimed),
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                FailureReason::WrongStation.as_str(),
                format!(
                    "this token belongs to station {own}; it cannot record events for another station"
                ),
            ));
        }
        (Some(Extension(AuthenticatedStation(own))), _) => own,
        (None, Some(station)) => station,
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "missing field `station`",
            ));
        }
    };
    let event = NewEvent {
        event_type: body.event_type,
        station,
    };
    let recorded = state.store.record_event(&barcode, &event).await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}
