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

use futures::future::BoxFuture;
use serde_json::{Map, Value};

#[cfg(feature = "server")]
mod proxy;
mod query;
#[cfg(feature = "server")]
mod server;

pub use query::{ltsv_row, select, PluginQuery};
#[cfg(feature = "server")]
pub use server::{bind, router, AdminError, BoundAdmin};

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
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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

    proptest! {
        #[test]
        fn any_query_string_parses_or_is_refused_without_panicking(raw in "\\PC{0,200}") {
            if let Ok(q) = PluginQuery::parse(&raw) {
                // Whatever was selected came from the query string.
                if let Some(id) = &q.id {
                    prop_assert!(raw.contains("id="), "{raw:?} -> {id:?}");
                }
            }
        }

        #[test]
        fn booleans_and_ids_round_trip(id in "[a-zA-Z0-9_.@#-]{1,30}", cfg in any::<bool>()) {
            let raw: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("@id", &id)
                .append_pair("with_config", if cfg { "true" } else { "false" })
                .finish();
            let q = PluginQuery::parse(&raw).unwrap();
            prop_assert_eq!(q.id.as_deref(), Some(id.as_str()));
            prop_assert_eq!(q.with_config, Some(cfg));
        }
    }
}
