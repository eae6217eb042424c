//! weir's own log: lines on standard error (text or JSON), filtered by the process level and by
//! each plugin's `@log_level`.
//!
//! The process level comes from `--log-level` or `WEIR_LOG` (a tracing filter such as
//! `info,weir_server=debug`), else from the config's `<system> log_level`, else `info`. A line
//! about one plugin names it in an `output`, `buffer`, `source`, `filter`, `store` or
//! `plugin_id` field; when that plugin has an `@log_level`, its level decides instead. A reload
//! applies the new config's levels.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{span, Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};
use weir_server::log_level::LogLevels;

/// The fields that name the plugin a log line is about.
const PLUGIN_FIELDS: &[&str] = &["output", "buffer", "source", "filter", "store", "plugin_id"];

/// The line format on standard error.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

struct Levels {
    /// The process level.
    base: EnvFilter,
    /// Each plugin's level, by id.
    plugins: HashMap<String, LevelFilter>,
    /// The most verbose of `plugins` (OFF when there are none).
    plugins_max: LevelFilter,
}

/// The filter in front of the log writer.
struct PluginLevelFilter(Arc<RwLock<Levels>>);

/// Finds the value of the first plugin field that names a plugin with a level.
struct PluginVisitor<'a> {
    plugins: &'a HashMap<String, LevelFilter>,
    found: Option<LevelFilter>,
}

impl PluginVisitor<'_> {
    fn check(&mut self, field: &tracing::field::Field, value: &str) {
        if self.found.is_none() && PLUGIN_FIELDS.contains(&field.name()) {
            self.found = self.plugins.get(value.trim_matches('"')).copied();
        }
    }
}

impl tracing::field::Visit for PluginVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.check(field, value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.found.is_none() && PLUGIN_FIELDS.contains(&field.name()) {
            self.check(field, &format!("{value:?}"));
        }
    }
}

impl Levels {
    /// True when `meta` could be kept because some plugin's level is that verbose.
    fn maybe_plugin(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && !self.plugins.is_empty() && *meta.level() <= self.plugins_max
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for PluginLevelFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        let Ok(l) = self.0.read() else { return true };
        // A line that a plugin's level may keep is decided in `event_enabled`, where its
        // fields can be read.
        l.maybe_plugin(meta) || Filter::<S>::enabled(&l.base, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let Ok(l) = self.0.read() else {
            return Interest::sometimes();
        };
        let base = Filter::<S>::callsite_enabled(&l.base, meta);
        if l.maybe_plugin(meta) {
            Interest::sometimes()
        } else {
            base
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        let Ok(l) = self.0.read() else { return true };
        if l.plugins.is_empty() {
            return Filter::<S>::event_enabled(&l.base, event, cx);
        }
        let mut v = PluginVisitor {
            plugins: &l.plugins,
            found: None,
        };
        event.record(&mut v);
        match v.found {
            Some(level) => *event.metadata().level() <= level,
            None => {
                Filter::<S>::enabled(&l.base, event.metadata(), cx)
                    && Filter::<S>::event_enabled(&l.base, event, cx)
            }
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let l = self.0.read().ok()?;
        let base = Filter::<S>::max_level_hint(&l.base).unwrap_or(LevelFilter::TRACE);
        Some(base.max(l.plugins_max))
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        if let Ok(l) = self.0.read() {
            Filter::<S>::on_new_span(&l.base, attrs, id, cx);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        if let Ok(l) = self.0.read() {
            Filter::<S>::on_record(&l.base, id, values, cx);
        }
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Ok(l) = self.0.read() {
            Filter::<S>::on_enter(&l.base, id, cx);
        }
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        if let Ok(l) = self.0.read() {
            Filter::<S>::on_exit(&l.base, id, cx);
        }
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        if let Ok(l) = self.0.read() {
            Filter::<S>::on_close(&l.base, id, cx);
        }
    }
}

/// The installed filter's state, and whether the command line set the process level.
struct Installed {
    levels: Arc<RwLock<Levels>>,
    from_command_line: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

fn env_filter(spec: &str) -> EnvFilter {
    EnvFilter::try_new(spec).unwrap_or_else(|e| {
        eprintln!("weir: invalid log level '{spec}' ({e}); using info");
        EnvFilter::new("info")
    })
}

/// Starts logging. `level` is `--log-level` or `WEIR_LOG`, when given.
pub fn init(level: Option<&str>, format: LogFormat) {
    let levels = Arc::new(RwLock::new(Levels {
        base: env_filter(level.unwrap_or("info")),
        plugins: HashMap::new(),
        plugins_max: LevelFilter::OFF,
    }));
    let filter = PluginLevelFilter(Arc::clone(&levels));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let layer = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
    let _ = INSTALLED.set(Installed {
        levels,
        from_command_line: level.is_some(),
    });
}

/// Applies a config's levels: `<system> log_level` (unless the command line set the level)
/// and each plugin's `@log_level`.
pub fn apply(config: &LogLevels) {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    if let Ok(mut l) = installed.levels.write() {
        if !installed.from_command_line {
            let level = config.system.unwrap_or(tracing::Level::INFO);
            l.base = env_filter(&level.to_string().to_ascii_lowercase());
        }
        l.plugins = config
            .plugins
            .iter()
            .map(|(id, level)| (id.clone(), LevelFilter::from_level(*level)))
            .collect();
        l.plugins_max = l
            .plugins
            .values()
            .copied()
            .max()
            .unwrap_or(LevelFilter::OFF);
    }
    // Callsites remember whether they were enabled; make them ask again.
    tracing::callsite::rebuild_interest_cache();
}
