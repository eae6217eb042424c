//! Reading `<match> @type webhook`: the URL, the message, its look, the limits, TLS and the
//! `<buffer>` section.

use std::path::PathBuf;
use std::time::Duration;

use weir_config::{ConfigError, Section};
use weir_format::{TimeFormatter, TimeType, TimeZoneSpec};
use weir_store::{BufferConfig, BufferDefaults};

use crate::payload::MessageStyle;
use crate::template::Template;

/// Slack cuts a message's text at 40,000 characters.
pub const SLACK_MAX_TEXT: usize = 40_000;

/// The default `max_message_length`: Slack advises keeping a message under 4,000 characters.
pub const DEFAULT_MAX_MESSAGE_LENGTH: usize = 4_000;

/// The default `rate_limit_per_minute`: Slack allows about one message a second per webhook.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: usize = 60;

/// A parsed `@type webhook` output.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `webhook_url`. A secret: never logged; see [`WebhookConfig::redacted_url`].
    pub url: http::Uri,
    /// The text of one event.
    pub template: Template,
    /// `escape_values` (true): escape `&`, `<` and `>` in values from tags and records.
    pub escape: bool,
    /// `${time}`: `time_format` (`%H:%M:%S`), in `timezone` / `utc` / `localtime`.
    pub time_format: TimeFormatter,
    /// `channel`, `username`, `icon_emoji`, `icon_url`, `color`, `mrkdwn`, `link_names`.
    pub style: MessageStyle,
    /// `max_message_length` (4000 characters, at most 40000).
    pub max_message_length: usize,
    /// `max_records_per_message` (0: no limit).
    pub max_records_per_message: usize,
    /// `rate_limit_per_minute` (60; 0: no limit).
    pub rate_limit_per_minute: usize,
    /// `http_timeout` (10 s): one request, from connecting to the end of the answer.
    pub http_timeout: Duration,
    /// `tls_verify_mode peer` (true, the default) or `none`.
    pub tls_verify: bool,
    /// `tls_ca_cert_path`: PEM certificates trusted besides the system's.
    pub tls_ca_cert_path: Option<PathBuf>,
    /// How long one chunk write may take (the buffer's `delayed_commit_timeout`): the output
    /// waits for the rate limit only as long as this allows.
    pub write_budget: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.redacted_url())
            .field("style", &self.style)
            .field("max_message_length", &self.max_message_length)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .finish_non_exhaustive()
    }
}

/// The URL with its path and query hidden (`https://hooks.slack.com/…`): an incoming
/// webhook's path is its secret.
pub fn redact(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("http");
    let host = url.authority().map_or("", |a| a.host());
    match url.port_u16() {
        Some(p) => format!("{scheme}://{host}:{p}/…"),
        None => format!("{scheme}://{host}/…"),
    }
}

impl WebhookConfig {
    /// The URL as it may appear in logs and in `weir check`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// fluent-plugin-slack parameters weir does not implement, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "token",
        "weir posts to incoming webhooks only (webhook_url), not the Web API",
    ),
    (
        "slackbot_url",
        "weir posts to incoming webhooks only (webhook_url)",
    ),
    (
        "as_user",
        "weir posts to incoming webhooks only (webhook_url)",
    ),
    (
        "auto_channels_create",
        "weir posts to incoming webhooks only (webhook_url)",
    ),
    ("https_proxy", "weir connects to the webhook directly"),
    (
        "title",
        "weir sends the text only (with color, as an attachment's text)",
    ),
    (
        "title_keys",
        "weir sends the text only (with color, as an attachment's text)",
    ),
    ("verbose_fallback", "weir sends the text only"),
    (
        "channel_keys",
        "the channel is fixed (an incoming webhook posts to its own channel)",
    ),
    ("parse", "use mrkdwn and link_names"),
    (
        "include_time_key",
        "use ${time} in message (or 'time' in message_keys)",
    ),
    (
        "include_tag_key",
        "use ${tag} in message (or 'tag' in message_keys)",
    ),
    (
        "time_key",
        "use ${time} in message (or 'time' in message_keys)",
    ),
    (
        "tag_key",
        "use ${tag} in message (or 'tag' in message_keys)",
    ),
];

/// v0.12 buffer parameters written in the output's section.
const FLAT_BUFFER: &[&str] = &[
    "buffer_type",
    "buffer_path",
    "flush_interval",
    "num_threads",
    "try_flush_interval",
    "retry_limit",
    "disable_retry_limit",
    "max_retry_wait",
    "retry_wait",
    "buffer_chunk_limit",
    "buffer_queue_limit",
    "buffer_queue_full_action",
    "flush_at_shutdown",
];

fn collect<T>(errors: &mut Vec<ConfigError>, r: Result<Option<T>, ConfigError>) -> Option<T> {
    match r {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

impl WebhookConfig {
    /// Reads a `<match> @type webhook` section and its `<buffer>` (a memory buffer by default,
    /// as fluent-plugin-slack's; no chunk keys). When the message uses the tag, `tag` is added
    /// to the chunk keys, because weir's chunks keep no per-event tag. Every problem is
    /// returned, each with its file and line; the URL never appears in a message.
    pub fn from_section(s: &mut Section<'_>) -> Result<(Self, BufferConfig), Vec<ConfigError>> {
        let mut errors = Vec::new();

        let url = match s.string("webhook_url") {
            None => {
                errors.push(s.error(None, "'webhook_url' parameter is required"));
                None
            }
            Some(u) if u.trim().is_empty() => {
                errors.push(s.error(Some("webhook_url"), "`webhook_url` is an empty string"));
                None
            }
            Some(u) => match u.trim().parse::<http::Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some_and(|h| !h.is_empty()) =>
                {
                    Some(uri)
                }
                // The value is a secret: say what is wrong without repeating it.
                _ => {
                    errors.push(s.error(
                        Some("webhook_url"),
                        "not an http:// or https:// URL with a host (the value is not shown: it is a secret)",
                    ));
                    None
                }
            },
        };

        // The message.
        let message = s.string("message");
        let message_keys = collect(&mut errors, s.array("message_keys"));
        let printf = message_keys.is_some()
            || message
                .as_deref()
                .is_some_and(|m| m.contains("%s") && !m.contains("${"));
        let template = if printf {
            let keys = message_keys.unwrap_or_else(|| vec!["message".to_string()]);
            let m = message.clone().unwrap_or_else(|| "%s".to_string());
            if m.contains("${") {
                errors.push(s.error(
                    Some("message"),
                    "message_keys is set: message takes %s (fluent-plugin-slack's syntax), not ${...} placeholders",
                ));
                None
            } else {
                match Template::from_printf(&m, &keys) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        errors.push(s.error(Some("message"), e.to_string()));
                        None
                    }
                }
            }
        } else {
            match Template::parse(message.as_deref().unwrap_or("${message}")) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(s.error(Some("message"), e.to_string()));
                    None
                }
            }
        };
        let escape = collect(&mut errors, s.boolean("escape_values")).unwrap_or(true);

        // ${time}.
        let time_format = s.string_or("time_format", "%H:%M:%S");
        let localtime = collect(&mut errors, s.boolean("localtime")).unwrap_or(true);
        let utc = collect(&mut errors, s.boolean("utc")).unwrap_or(false);
        let timezone = s.string("timezone");
        let tz = match TimeZoneSpec::from_params(localtime, utc, timezone.as_deref()) {
            Ok(tz) => tz,
            Err(e) => {
                errors.push(s.error(Some("timezone"), e.to_string()));
                TimeZoneSpec::Utc
            }
        };

        // The look of a message.
        let channel = s.string("channel").map(|c| {
            let c = c.trim().to_string();
            if c.starts_with('#') || c.starts_with('@') || c.is_empty() {
                c
            } else {
                format!("#{c}")
            }
        });
        let icon_emoji = s.string("icon_emoji");
        let icon_url = s.string("icon_url");
        if icon_emoji.is_some() && icon_url.is_some() {
            errors.push(s.error(
                Some("icon_url"),
                "either of `icon_emoji` or `icon_url` can be specified",
            ));
        }
        let style = MessageStyle {
            channel: channel.filter(|c| !c.is_empty()),
            username: s.string("username"),
            icon_emoji,
            icon_url,
            color: s.string("color"),
            mrkdwn: collect(&mut errors, s.boolean("mrkdwn")).unwrap_or(true),
            link_names: collect(&mut errors, s.boolean("link_names")).unwrap_or(false),
        };

        // Limits.
        let mut max_message_length = DEFAULT_MAX_MESSAGE_LENGTH;
        if let Some(v) = collect(&mut errors, s.integer("max_message_length")) {
            match usize::try_from(v) {
                Ok(n) if (1..=SLACK_MAX_TEXT).contains(&n) => max_message_length = n,
                _ => errors.push(s.error(
                    Some("max_message_length"),
                    format!("must be between 1 and {SLACK_MAX_TEXT} (Slack cuts longer messages)"),
                )),
            }
        }
        let mut max_records_per_message = 0;
        if let Some(v) = collect(&mut errors, s.integer("max_records_per_message")) {
            match usize::try_from(v) {
                Ok(n) => max_records_per_message = n,
                Err(_) => errors.push(s.error(
                    Some("max_records_per_message"),
                    "must not be negative (0: no limit)",
                )),
            }
        }
        let mut rate_limit_per_minute = DEFAULT_RATE_LIMIT_PER_MINUTE;
        if let Some(v) = collect(&mut errors, s.integer("rate_limit_per_minute")) {
            match usize::try_from(v) {
                Ok(n) => rate_limit_per_minute = n,
                Err(_) => errors.push(s.error(
                    Some("rate_limit_per_minute"),
                    "must not be negative (0: no limit)",
                )),
            }
        }
        let mut http_timeout = Duration::from_secs(10);
        if let Some(v) = collect(&mut errors, s.duration("http_timeout")) {
            if v.is_zero() {
                errors.push(s.error(Some("http_timeout"), "must be positive"));
            } else {
                http_timeout = v;
            }
        }

        // TLS, with Fluentd's out_http names.
        let tls_verify = match collect(
            &mut errors,
            s.enumeration("tls_verify_mode", &["peer", "none"]),
        ) {
            Some(m) => m == "peer",
            None => true,
        };
        let tls_ca_cert_path = s.string("tls_ca_cert_path").map(PathBuf::from);
        if let Some(p) = &tls_ca_cert_path {
            if !p.is_file() {
                errors.push(s.error(
                    Some("tls_ca_cert_path"),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }

        for (key, why) in UNSUPPORTED {
            if let Err(e) = s.unsupported(key, why) {
                errors.push(e);
            }
        }
        for name in ["inject", "format"] {
            for sub in s.sections(name) {
                errors.push(sub.error(
                    None,
                    format!("<{name}> in @type webhook is not supported: the message is built from `message`"),
                ));
            }
        }

        // <buffer>: memory by default, as fluent-plugin-slack's.
        let has_buffer = s.element().children("buffer").next().is_some();
        if !has_buffer {
            for key in FLAT_BUFFER {
                if s.element().param(key).is_some() {
                    let _ = s.string(key);
                    errors.push(s.error(
                        Some(key),
                        format!("v0.12 parameter '{key}' outside <buffer>: write the <buffer> parameter inside a <buffer> section for @type webhook"),
                    ));
                }
            }
        }
        let defaults = BufferDefaults {
            chunk_keys: String::new(),
            timekey: None,
            memory: true,
            path: None,
        };
        let buffer =
            BufferConfig::from_output(collect(&mut errors, s.section("buffer")), s, defaults);
        let mut buffer = match buffer {
            Ok(b) => Some(b),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };

        match (url, template, buffer.as_mut(), errors.is_empty()) {
            (Some(url), Some(template), Some(b), true) => {
                // weir's chunks keep no per-event tag: a message that shows the tag needs it
                // as a chunk key.
                if template.uses_tag() {
                    b.keys.tag = true;
                }
                let cfg = WebhookConfig {
                    url,
                    template,
                    escape,
                    time_format: TimeFormatter::new(TimeType::String, Some(time_format), tz),
                    style,
                    max_message_length,
                    max_records_per_message,
                    rate_limit_per_minute,
                    http_timeout,
                    tls_verify,
                    tls_ca_cert_path,
                    write_budget: b.delayed_commit_timeout,
                };
                Ok((cfg, b.clone()))
            }
            _ => {
                if errors.is_empty() {
                    errors.push(s.error(None, "invalid @type webhook section"));
                }
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(WebhookConfig, BufferConfig), Vec<String>> {
        let text = format!("<match **>\n@type webhook\n{body}\n</match>\n");
        let root =
            weir_config::parse_str(&text, "test.conf", std::path::Path::new(".")).expect("syntax");
        let el = root.elements.first().expect("match");
        let mut s = Section::new(el, "<match **>");
        let _ = s.type_name();
        WebhookConfig::from_section(&mut s).map_err(|es| es.iter().map(|e| e.to_string()).collect())
    }

    const URL: &str = "webhook_url https://hooks.slack.com/services/T000/B000/SECRETSECRET";

    #[test]
    fn defaults() {
        let (c, b) = parse(URL).expect("configures");
        assert_eq!(c.redacted_url(), "https://hooks.slack.com/…");
        assert!(!format!("{c:?}").contains("SECRET"));
        assert_eq!(c.max_message_length, 4000);
        assert_eq!(c.rate_limit_per_minute, 60);
        assert!(c.escape && c.style.mrkdwn && !c.style.link_names);
        assert!(!b.persistent(), "a memory buffer, as fluent-plugin-slack's");
        assert!(!b.keys.tag);
    }

    #[test]
    fn tag_in_the_message_makes_tag_a_chunk_key() {
        let (_, b) = parse(&format!("{URL}\nmessage \"[${{tag}}] ${{message}}\"")).expect("ok");
        assert!(b.keys.tag);
        let (_, b) =
            parse(&format!("{URL}\nmessage %s: %s\nmessage_keys tag,message")).expect("ok");
        assert!(b.keys.tag);
        let (c, _) = parse(&format!("{URL}\nchannel alerts")).expect("ok");
        assert_eq!(c.style.channel.as_deref(), Some("#alerts"));
    }

    #[test]
    fn errors_name_the_parameter_and_hide_the_url() {
        for (body, want) in [
            ("", "'webhook_url' parameter is required"),
            ("webhook_url ftp://x/SECRETSECRET", "webhook_url"),
            (&format!("{URL}\nmessage ${{tag"), "no closing"),
            (&format!("{URL}\nmessage %s %s\nmessage_keys a"), "mismatch"),
            (
                &format!("{URL}\nmessage ${{a}} %s\nmessage_keys a"),
                "message_keys is set",
            ),
            (&format!("{URL}\ntoken xoxb"), "token"),
            (&format!("{URL}\ntitle x"), "title"),
            (&format!("{URL}\nflush_interval 1s"), "inside a <buffer>"),
            (
                &format!("{URL}\nicon_emoji :x:\nicon_url http://i"),
                "either of",
            ),
            (
                &format!("{URL}\nmax_message_length 50000"),
                "max_message_length",
            ),
            (&format!("{URL}\ntls_verify_mode maybe"), "tls_verify_mode"),
            (&format!("{URL}\ntimezone Mars/Base"), "timezone"),
            (
                &format!("{URL}\n<inject>\ntime_key t\n</inject>"),
                "<inject>",
            ),
        ] {
            let errs = parse(body).expect_err(body);
            assert!(errs.iter().any(|e| e.contains(want)), "{body}: {errs:?}");
            assert!(errs.iter().all(|e| !e.contains("SECRETSECRET")), "{errs:?}");
        }
    }
}
