//! The HTTP side: binding, the routes, the token check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::{ltsv_row, select, Control, EndpointConfig, PluginQuery, Role};

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The address did not resolve or could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `bind:port` as configured.
        addr: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// An endpoint with its port bound, ready to serve.
pub struct BoundAdmin {
    listener: tokio::net::TcpListener,
    config: EndpointConfig,
}

/// Binds an endpoint's port.
pub async fn bind(config: EndpointConfig) -> Result<BoundAdmin, AdminError> {
    let addr = format!("{}:{}", config.bind, config.port);
    let host = config.bind.trim_start_matches('[').trim_end_matches(']');
    let listener = tokio::net::TcpListener::bind((host, config.port))
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    Ok(BoundAdmin { listener, config })
}

impl BoundAdmin {
    /// True for a monitor_agent endpoint (which serves everything), false for the RPC one.
    pub fn serves_monitor(&self) -> bool {
        matches!(self.config.role, Role::Monitor { .. })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` fires. `extra` routes (the live tail) are served too, behind
    /// the same token.
    pub async fn serve(
        self,
        control: Arc<dyn Control>,
        extra: Option<Router>,
        shutdown: CancellationToken,
    ) {
        let local = self.local_addr();
        let role = match self.config.role {
            Role::Monitor { .. } => "monitor_agent",
            Role::Rpc => "rpc_endpoint",
        };
        tracing::info!(addr = ?local, role, token = self.config.token.is_some(), "admin endpoint listening");
        let app = router(&self.config, control, extra);
        // Behind a target group with Proxy Protocol v2, even the health checks start with a
        // PROXY header; the endpoint takes it off (see proxy.rs).
        let served = axum::serve(crate::proxy::ProxyTolerantListener::new(self.listener), app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(addr = ?local, "admin endpoint stopped: {e}");
        }
    }
}

#[derive(Clone)]
struct AppState {
    control: Arc<dyn Control>,
    include_config: bool,
    include_retry: bool,
}

/// The routes of an endpoint, with the token check in front when a token is set.
pub fn router(config: &EndpointConfig, control: Arc<dyn Control>, extra: Option<Router>) -> Router {
    let (include_config, include_retry) = match config.role {
        Role::Monitor {
            include_config,
            include_retry,
        } => (include_config, include_retry),
        Role::Rpc => (false, false),
    };
    let state = AppState {
        control,
        include_config,
        include_retry,
    };
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/api/plugins.flushBuffers",
            get(flush_buffers).post(flush_buffers),
        )
        .route("/api/config.reload", get(reload).post(reload))
        .route("/api/config.gracefulReload", get(reload).post(reload))
        .route("/api/processes.killWorkers", get(stop).post(stop))
        .route("/api/processes.interruptWorkers", get(stop).post(stop))
        .route(
            "/api/processes.flushBuffersAndKillWorkers",
            get(flush_and_stop).post(flush_and_stop),
        );
    if matches!(config.role, Role::Monitor { .. }) {
        app = app
            .route("/api/plugins.json", get(plugins_json))
            .route("/api/plugins", get(plugins_ltsv))
            .route("/api/config.json", get(config_json))
            .route("/api/config", get(config_ltsv))
            .route("/metrics", get(metrics));
    }
    let mut app = app.with_state(state);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    match &config.token {
        Some(token) => {
            let token: Arc<str> = Arc::from(token.as_str());
            app.layer(middleware::from_fn_with_state(token, check_token))
        }
        None => app,
    }
}

/// Lets a request through when it carries the token; `/healthz` is always open, so a load
/// balancer can check the instance without a secret.
async fn check_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
    if ok {
        return next.run(req).await;
    }
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"ok": false, "message": "this endpoint needs the admin token: Authorization: Bearer TOKEN"}),
        false,
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn json_response(status: StatusCode, v: &Value, pretty: bool) -> Response {
    let body = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .unwrap_or_else(|_| "{}".to_string());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.control.health() {
        Ok(()) => text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        Err(reasons) => {
            let mut body = String::new();
            for r in reasons {
                body.push_str("unavailable: ");
                body.push_str(&r);
                body.push('\n');
            }
            text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                body,
            )
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    s.control.metrics(&mut out);
    text_response(StatusCode::OK, weir_metrics::CONTENT_TYPE, out)
}

async fn flush_buffers(State(s): State<AppState>) -> Response {
    match s.control.flush() {
        Ok(()) => json_response(StatusCode::OK, &json!({"ok": true}), false),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"ok": false, "message": e}),
            false,
        ),
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    match s.control.reload().await {
        Ok(()) => json_response(StatusCode::OK, &json!({"ok": true}), false),
        Err(errors) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({
                "ok": false,
                "message": "the config was not reloaded; weir keeps running the previous config",
                "errors": errors,
            }),
            false,
        ),
    }
}

async fn stop(State(s): State<AppState>) -> Response {
    s.control.stop();
    json_response(StatusCode::OK, &json!({"ok": true}), false)
}

async fn flush_and_stop(State(s): State<AppState>) -> Response {
    let flushed = s.control.flush();
    s.control.stop();
    match flushed {
        Ok(()) => json_response(StatusCode::OK, &json!({"ok": true}), false),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"ok": false, "message": e}),
            false,
        ),
    }
}

fn bad_query(e: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"ok": false, "message": format!("invalid query string: {e}")}),
        false,
    )
}

async fn plugins_json(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = match PluginQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad_query(&e),
    };
    let list = select(s.control.as_ref(), &q, s.include_config, s.include_retry);
    json_response(StatusCode::OK, &json!({ "plugins": list }), q.debug)
}

async fn plugins_ltsv(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = match PluginQuery::parse(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad_query(&e),
    };
    let list = select(s.control.as_ref(), &q, s.include_config, s.include_retry);
    let mut text = String::new();
    for p in &list {
        text.push_str(&ltsv_row(p));
        text.push('\n');
    }
    text_response(StatusCode::OK, "text/plain; charset=utf-8", text)
}

async fn config_json(State(s): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &Value::Object(s.control.process_info()),
        false,
    )
}

async fn config_ltsv(State(s): State<AppState>) -> Response {
    let info = s.control.process_info();
    text_response(StatusCode::OK, "text/plain; charset=utf-8", ltsv_row(&info))
}
