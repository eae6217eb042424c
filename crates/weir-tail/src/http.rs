//! The streaming HTTP endpoint: `GET /api/tail?tag=...&grep=key=regex&...` answers with a
//! chunked `200` whose body is the subscriber's stream, one line per event, for as long as the
//! client reads it. A client that goes away ends the subscription (hyper drops the body when
//! the connection closes or a write fails; the heartbeat makes sure a write happens).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::hub::Hub;
use crate::request::TailRequest;

/// The path the tail is served on.
pub const TAIL_PATH: &str = "/api/tail";

/// The routes of the live tail (`GET /api/tail`), for the admin endpoint to mount. They do no
/// access control: the admin endpoint checks its token first.
pub fn routes(hub: Arc<Hub>) -> Router {
    Router::new().route(TAIL_PATH, get(tail)).with_state(hub)
}

async fn tail(State(hub): State<Arc<Hub>>, RawQuery(query): RawQuery) -> Response {
    let request = match TailRequest::from_query(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let content_type = request.format.content_type();
    let subscription = match hub.subscribe(request) {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let stream = futures::stream::unfold(subscription, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), s))
    });
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Tells nginx-style proxies not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
