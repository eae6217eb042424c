//! The streaming HTTP endpoint: `GET /api/tail?tag=...&grep=key=regex&...` answers with a
//! chunked `200` whose body is the subscriber's stream, one line per event, for as long as the
//! client reads it. A client that goes away ends the subscription: hyper drops the body when
//! the client closes the connection or a write fails, and the heartbeat makes sure a write
//! happens now and then, so a client that vanished without closing is noticed too.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn serve(hub: Arc<Hub>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, routes(hub)).await;
        });
        addr
    }

    async fn get(addr: std::net::SocketAddr, query: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {TAIL_PATH}?{query} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s
    }

    /// Reads until `done` holds for what arrived (or the connection ends) and returns it.
    async fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("the server answered in time")
                .unwrap();
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all).into_owned();
            if n == 0 || done(&text) {
                return text;
            }
        }
    }

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn batch(json: &str) -> weir_proto::EventBatch {
        crate::testutil::batch_at(1, &[json])
    }

    #[tokio::test]
    async fn streams_chunked_lines_until_the_limit() {
        let hub = Arc::new(Hub::default());
        let addr = serve(Arc::clone(&hub)).await;
        let mut s = get(addr, "tag=a.**&grep=level%3Derror&format=json&limit=2").await;
        wait_for("the subscriber", || hub.subscribers() == 1).await;
        hub.publish("in", "a.b", &batch(r#"{"level":"error","n":1}"#));
        hub.publish("in", "a.b", &batch(r#"{"level":"info","n":2}"#));
        hub.publish("in", "b", &batch(r#"{"level":"error","n":3}"#));
        hub.publish("in", "a.c", &batch(r#"{"level":"error","n":4}"#));
        let text = read_until(&mut s, |t| t.ends_with("\r\n0\r\n\r\n")).await;
        let lower = text.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 200"), "{text}");
        assert!(lower.contains("transfer-encoding: chunked"), "{text}");
        assert!(
            lower.contains("content-type: application/x-ndjson"),
            "{text}"
        );
        assert!(
            text.contains(r#""n":1"#) && text.contains(r#""n":4"#),
            "{text}"
        );
        assert!(
            !text.contains(r#""n":2"#) && !text.contains(r#""n":3"#),
            "{text}"
        );
        assert!(
            text.contains("# weir: end (limit of 2 events reached)\n"),
            "{text}"
        );
        wait_for("the unsubscribe", || hub.subscribers() == 0).await;
    }

    #[tokio::test]
    async fn a_bad_filter_is_a_400_with_the_reason() {
        let hub = Arc::new(Hub::default());
        let addr = serve(Arc::clone(&hub)).await;
        let mut s = get(addr, "grep=level").await;
        let text = read_until(&mut s, |t| t.contains("expected key=regex")).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("grep: 'level': expected key=regex"), "{text}");
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_is_unsubscribed() {
        // No heartbeat within the test: hyper notices the closed connection by itself.
        let hub = Arc::new(Hub::new(HubConfig {
            heartbeat: Duration::from_secs(3600),
            ..HubConfig::default()
        }));
        let addr = serve(Arc::clone(&hub)).await;
        let s = get(addr, "tag=**").await;
        wait_for("the subscriber", || hub.subscribers() == 1).await;
        drop(s);
        wait_for("the unsubscribe", || hub.subscribers() == 0).await;
    }

    #[tokio::test]
    async fn close_ends_the_response_cleanly() {
        let hub = Arc::new(Hub::default());
        let addr = serve(Arc::clone(&hub)).await;
        let mut s = get(addr, "").await;
        wait_for("the subscriber", || hub.subscribers() == 1).await;
        hub.close();
        let text = read_until(&mut s, |t| t.ends_with("\r\n0\r\n\r\n")).await;
        assert!(
            text.contains("# weir: end (server shutting down)\n"),
            "{text}"
        );
        let mut s = get(addr, "").await;
        let text = read_until(&mut s, |t| t.contains("shutting down")).await;
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    }
}
