//! `weir-admin` owns weir's admin HTTP endpoint: the routes of Fluentd's `monitor_agent`
//! (`/api/plugins.json`, `/api/plugins`, `/api/config.json`, `/api/config`), the calls of
//! Fluentd's RPC endpoint (`/api/plugins.flushBuffers`, `/api/config.reload`, ...), Prometheus
//! metrics on `/metrics`, the load-balancer health check on `/healthz`, and the access token
//! that guards all of them but the health check.
//!
//! It knows nothing of the runtime: what it serves comes from a [`Control`], which the `weir`
//! command implements over the running instance, so the endpoint stays up while the instance
//! behind it is reloaded. Other crates add routes of their own (the live tail) with the `extra`
//! router of [`router`]; they sit behind the same token.

#![warn(missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// One plugin as `/api/plugins.json` shows it: `plugin_id`, `plugin_category`, `type`,
/// `config`, the counters, and `retry` for buffered outputs.
pub type PluginInfo = Map<String, Value>;

/// The running instance, as the admin endpoint sees it.
pub trait Control: Send + Sync + 'static {
    /// Every plugin (inputs, filters, outputs) with every field, `config` and `retry`
    /// included; the endpoint removes what the request does not ask for.
    fn plugins(&self) -> Vec<PluginInfo>;

    /// The `plugin_id` of the output that events with `tag` reach from the top level (the
    /// first `<match>` that fits), for `?tag=`.
    fn plugin_for_tag(&self, tag: &str) -> Option<String>;

    /// What `/api/config.json` shows: the process id and how weir was started.
    fn process_info(&self) -> PluginInfo;

    /// Writes every metric family in the Prometheus text format.
    fn metrics(&self, out: &mut String);

    /// `Ok` while the instance can accept and store data; otherwise every reason why not.
    fn health(&self) -> Result<(), Vec<String>>;

    /// Asks every buffered output to write out what it holds now (SIGUSR1).
    fn flush(&self) -> Result<(), String>;

    /// Reloads the config file. Resolves once the new config runs, or with every error that
    /// kept the old one running.
    fn reload(&self) -> BoxFuture<'static, Result<(), Vec<String>>>;

    /// Stops weir as SIGTERM does.
    fn stop(&self);
}

/// What an endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `<source> @type monitor_agent`: everything.
    Monitor {
        /// `include_config`: whether `config` is shown unless the request says otherwise.
        include_config: bool,
        /// `include_retry`: whether `retry` is shown unless the request says otherwise.
        include_retry: bool,
    },
    /// `<system> rpc_endpoint`: the RPC calls and the health check only.
    Rpc,
}

/// One admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The address to listen on.
    pub bind: String,
    /// The port (0 picks a free one).
    pub port: u16,
    /// What it serves.
    pub role: Role,
    /// The access token requests must carry (`Authorization: Bearer TOKEN`), if any.
    pub token: Option<String>,
}

/// True when `bind` only accepts connections from this machine (`localhost`, 127.0.0.0/8,
/// `::1`). Anything else needs an access token.
pub fn is_loopback(bind: &str) -> bool {
    let host = bind.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

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
        let served = axum::serve(self.listener, app)
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

/// The query parameters of `/api/plugins(.json)`, as Fluentd's monitor_agent reads them (the
/// first value of each key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PluginQuery {
    /// `?with_config=`.
    pub with_config: Option<bool>,
    /// `?with_retry=`.
    pub with_retry: Option<bool>,
    /// `?tag=`: the output events with this tag reach.
    pub tag: Option<String>,
    /// `?@id=` (or `?id=`): the plugin with this id.
    pub id: Option<String>,
    /// `?@type=` (or `?type=`): the plugins of this type.
    pub type_name: Option<String>,
    /// `?debug=`: pretty-printed JSON.
    pub debug: bool,
}

impl PluginQuery {
    /// Parses a query string. A boolean that is not `true`, `false`, `yes` or `no` is an error.
    pub fn parse(raw: &str) -> Result<PluginQuery, String> {
        let mut q = PluginQuery::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !seen.insert(k.to_string()) {
                continue;
            }
            match k.as_ref() {
                "with_config" => q.with_config = Some(parse_bool("with_config", &v)?),
                "with_retry" => q.with_retry = Some(parse_bool("with_retry", &v)?),
                "tag" => q.tag = Some(v.into_owned()),
                "@id" => q.id = Some(v.into_owned()),
                "id" if q.id.is_none() => q.id = Some(v.into_owned()),
                "@type" => q.type_name = Some(v.into_owned()),
                "type" if q.type_name.is_none() => q.type_name = Some(v.into_owned()),
                "debug" => q.debug = true,
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "" => Ok(true),
        "false" | "no" => Ok(false),
        other => Err(format!(
            "{key}: '{other}' is not a boolean (true, false, yes, no)"
        )),
    }
}

/// The plugins a query selects, with `config` and `retry` removed unless asked for.
pub fn select(
    control: &dyn Control,
    q: &PluginQuery,
    include_config: bool,
    include_retry: bool,
) -> Vec<PluginInfo> {
    let all = control.plugins();
    let id_is = |p: &PluginInfo, id: &str| p.get("plugin_id").and_then(Value::as_str) == Some(id);
    let mut list: Vec<PluginInfo> = if let Some(tag) = &q.tag {
        match control.plugin_for_tag(tag) {
            Some(id) => all.into_iter().filter(|p| id_is(p, &id)).take(1).collect(),
            None => Vec::new(),
        }
    } else if let Some(id) = &q.id {
        all.into_iter().filter(|p| id_is(p, id)).take(1).collect()
    } else if let Some(t) = &q.type_name {
        all.into_iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some(t.as_str()))
            .collect()
    } else {
        all
    };
    let with_config = q.with_config.unwrap_or(include_config);
    let with_retry = q.with_retry.unwrap_or(include_retry);
    for p in &mut list {
        if !with_config {
            p.remove("config");
        }
        if !with_retry {
            p.remove("retry");
        }
    }
    list
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

/// One LTSV row as monitor_agent writes it: every field that is not an object or an array,
/// `null` as an empty value.
pub fn ltsv_row(p: &PluginInfo) -> String {
    let mut row = Vec::new();
    for (k, v) in p {
        let value = match v {
            Value::Object(_) | Value::Array(_) => continue,
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        row.push(format!("{k}:{value}"));
    }
    row.join("\t")
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Control for Fake {
        fn plugins(&self) -> Vec<PluginInfo> {
            let mk = |v: Value| match v {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            vec![
                mk(
                    json!({"plugin_id": "in", "plugin_category": "input", "type": "forward",
                    "config": {"@type": "forward"}, "output_plugin": false, "retry_count": null}),
                ),
                mk(
                    json!({"plugin_id": "out", "plugin_category": "output", "type": "file",
                    "config": {"@type": "file"}, "output_plugin": true, "buffer_timekeys": [],
                    "retry_count": 2, "retry": {}}),
                ),
            ]
        }
        fn plugin_for_tag(&self, tag: &str) -> Option<String> {
            tag.starts_with("app.").then(|| "out".to_string())
        }
        fn process_info(&self) -> PluginInfo {
            Map::new()
        }
        fn metrics(&self, _out: &mut String) {}
        fn health(&self) -> Result<(), Vec<String>> {
            Ok(())
        }
        fn flush(&self) -> Result<(), String> {
            Ok(())
        }
        fn reload(&self) -> BoxFuture<'static, Result<(), Vec<String>>> {
            Box::pin(async { Ok(()) })
        }
        fn stop(&self) {}
    }

    fn ids(list: &[PluginInfo]) -> Vec<&str> {
        list.iter()
            .filter_map(|p| p.get("plugin_id").and_then(Value::as_str))
            .collect()
    }

    #[test]
    fn queries_select_as_monitor_agent_does() {
        let q = |s: &str| PluginQuery::parse(s).unwrap();
        assert_eq!(ids(&select(&Fake, &q(""), true, true)), ["in", "out"]);
        assert_eq!(ids(&select(&Fake, &q("tag=app.x"), true, true)), ["out"]);
        assert!(select(&Fake, &q("tag=sys.x"), true, true).is_empty());
        assert_eq!(ids(&select(&Fake, &q("%40id=in"), true, true)), ["in"]);
        assert_eq!(ids(&select(&Fake, &q("id=out"), true, true)), ["out"]);
        assert_eq!(ids(&select(&Fake, &q("@type=file"), true, true)), ["out"]);
        let bare = select(&Fake, &q("with_config=false&with_retry=no"), true, true);
        assert!(bare
            .iter()
            .all(|p| !p.contains_key("config") && !p.contains_key("retry")));
        let off = select(&Fake, &q(""), false, false);
        assert!(off.iter().all(|p| !p.contains_key("config")));
        let on = select(&Fake, &q("with_config=true"), false, false);
        assert!(on.iter().all(|p| p.contains_key("config")));
        assert!(PluginQuery::parse("with_config=maybe").is_err());
    }

    #[test]
    fn ltsv_skips_objects_and_arrays_and_prints_null_empty() {
        let list = Fake.plugins();
        assert_eq!(
            ltsv_row(&list[0]),
            "plugin_id:in\tplugin_category:input\ttype:forward\toutput_plugin:false\tretry_count:"
        );
        assert_eq!(
            ltsv_row(&list[1]),
            "plugin_id:out\tplugin_category:output\ttype:file\toutput_plugin:true\tretry_count:2"
        );
    }

    #[test]
    fn loopback_addresses() {
        for b in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(b), "{b}");
        }
        for b in ["0.0.0.0", "::", "10.0.0.1", "example.com"] {
            assert!(!is_loopback(b), "{b}");
        }
    }
}
