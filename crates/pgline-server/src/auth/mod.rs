//! Who may call the server.
//!
//! - `/api/*`: stations, each with its own bearer token
//!   (`STATION_TOKENS_FILE`). The station a token belongs to is the only one
//!   it may record events for.
//! - `/`, `/status`, `/metrics`, `/health/database`: admin tokens
//!   (`ADMIN_TOKEN_FILE`), as `Bearer`, or as the password of `Basic` so a
//!   browser can open the dashboard.
//! - `/live`, `/ready`, `/health`: always open, for probes.
//!
//! The files hold SHA-256 hashes of the tokens; a presented token is hashed
//! and compared with every entry in constant time. A refusal is 401 with
//! `WWW-Authenticate: Bearer realm="pgline"` (and `Basic` on admin
//! endpoints), or 403 for the wrong station; each is logged (reason, method,
//! path, client address when known, stations) and counted in
//! [`AuthFailures`], never with the token.

mod credentials;
mod failures;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pgline_config::{AuthConfig, Config, ConfigError, NamedToken};

use crate::error::ApiError;
pub use credentials::hash_token;
use credentials::{Refusal, Schemes, TokenTable};
pub(crate) use failures::Attempt;
pub use failures::{AuthFailures, FailureReason};

/// The challenge of every 401.
const BEARER_CHALLENGE: &str = r#"Bearer realm="pgline""#;
/// The challenge of a 401 for a token that was presented but is not valid
/// (RFC 6750 §3.1).
const BEARER_INVALID_CHALLENGE: &str = r#"Bearer realm="pgline", error="invalid_token""#;
/// The extra challenge of admin endpoints: browsers answer it with a login
/// prompt, so the dashboard works behind a token.
const BASIC_CHALLENGE: &str = r#"Basic realm="pgline", charset="UTF-8""#;

/// Who may call the API and the admin endpoints. The default lets everyone
/// in, as a development server without `STATION_TOKENS_FILE` does.
///
/// ```
/// use pgline_server::Auth;
///
/// let auth = Auth::off().with_station_token("ST-01", "a-long-random-token");
/// assert!(auth.stations_required());
/// assert!(!auth.admin_required());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Auth {
    stations: Option<Arc<TokenTable>>,
    admin: Option<Arc<TokenTable>>,
}

impl Auth {
    /// No authentication anywhere.
    pub fn off() -> Self {
        Self::default()
    }

    /// The authentication the configuration asks for, after
    /// [`Config::check_http_auth`]: in the production profile
    /// `STATION_TOKENS_FILE` is required, and `ADMIN_TOKEN_FILE` unless
    /// `ADMIN_OPEN=true`; the error names them.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config.check_http_auth()?;
        Ok(Self::from_auth_config(&config.server.auth))
    }

    /// The authentication of `auth`, whatever the profile.
    pub fn from_auth_config(auth: &AuthConfig) -> Self {
        let table = |file: &Option<pgline_config::TokenFile>| {
            file.as_ref()
                .and_then(|file| TokenTable::new(file.tokens.clone()))
                .map(Arc::new)
        };
        Self {
            stations: table(&auth.station_tokens),
            admin: table(&auth.admin_tokens),
        }
    }

    /// Adds a station token given in clear (it is hashed at once); for tests
    /// and embedding. Turns station authentication on.
    #[must_use]
    pub fn with_station_token(mut self, station: &str, token: &str) -> Self {
        self.stations = Some(add(self.stations.take(), station, token));
        self
    }

    /// Adds an admin token given in clear (it is hashed at once). Turns
    /// admin authentication on.
    #[must_use]
    pub fn with_admin_token(mut self, token: &str) -> Self {
        self.admin = Some(add(self.admin.take(), "admin", token));
        self
    }

    /// Whether `/api/*` requires a station token.
    pub fn stations_required(&self) -> bool {
        self.stations.is_some()
    }

    /// Whether the admin endpoints require an admin token.
    pub fn admin_required(&self) -> bool {
        self.admin.is_some()
    }
}

fn add(table: Option<Arc<TokenTable>>, name: &str, token: &str) -> Arc<TokenTable> {
    let entry = NamedToken {
        name: name.to_owned(),
        sha256: hash_token(token),
    };
    let mut tokens = match table {
        Some(table) => Arc::unwrap_or_clone(table),
        None => TokenTable::empty(),
    };
    tokens.push(entry);
    Arc::new(tokens)
}

/// The station a request to `/api/*` authenticated as, in the request's
/// extensions (absent when station authentication is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedStation(pub String);

/// What the authentication middleware needs: the tokens and the counters.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) auth: Auth,
    pub(crate) failures: Arc<AuthFailures>,
}

/// The client's address, when the server was started with connect info.
pub(crate) fn client_address(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address)
}

/// Middleware of `/api/*`: a station's bearer token, when configured.
pub(crate) async fn require_station(
    State(gate): State<Gate>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(table) = &gate.auth.stations else {
        return next.run(request).await;
    };
    match identify(table, &request, Schemes::Bearer) {
        Ok(station) => {
            request
                .extensions_mut()
                .insert(AuthenticatedStation(station));
            next.run(request).await
        }
        Err(refusal) => refuse(&gate, &request, refusal, Schemes::Bearer),
    }
}

/// Middleware of the admin endpoints: an admin token, when configured.
pub(crate) async fn require_admin(
    State(gate): State<Gate>,
    request: Request,
    next: Next,
) -> Response {
    let Some(table) = &gate.auth.admin else {
        return next.run(request).await;
    };
    match identify(table, &request, Schemes::BearerOrBasic) {
        Ok(_) => next.run(request).await,
        Err(refusal) => refuse(&gate, &request, refusal, Schemes::BearerOrBasic),
    }
}

fn identify(table: &TokenTable, request: &Request, schemes: Schemes) -> Result<String, Refusal> {
    let token = credentials::presented_token(request.headers(), schemes)?;
    table
        .find(&token)
        .map(str::to_owned)
        .ok_or(Refusal::Unknown)
}

/// 401, logged and counted.
fn refuse(gate: &Gate, request: &Request, refusal: Refusal, schemes: Schemes) -> Response {
    let (reason, detail) = match refusal {
        Refusal::Missing => (FailureReason::MissingToken, "no Authorization header"),
        Refusal::Malformed(detail) => (FailureReason::InvalidToken, detail),
        Refusal::Unknown => (FailureReason::InvalidToken, "unknown token"),
    };
    Attempt::new(request, client_address(request)).refused(
        &gate.failures,
        reason,
        detail,
        None,
        None,
    );
    let (bearer, message) = match reason {
        FailureReason::MissingToken => (
            BEARER_CHALLENGE,
            "authentication required: send Authorization: Bearer <token>",
        ),
        _ => (BEARER_INVALID_CHALLENGE, "the token is not valid"),
    };
    let mut error = ApiError::new(StatusCode::UNAUTHORIZED, reason.as_str(), message)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(bearer));
    if schemes == Schemes::BearerOrBasic {
        error = error.with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BASIC_CHALLENGE),
        );
    }
    error.into_response()
}
