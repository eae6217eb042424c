//! Building a formatter from configuration: a `<format>` section, or the v0.12 flat
//! parameters Fluentd's `compat_parameters` moves into one.

use weir_config::{ConfigError, Section};

use crate::formatters::{Csv, Field, Hash, Json, Ltsv, Msgpack, OutFile, SingleValue, Tsv};
use crate::time::{TimeFormatter, TimeType, TimeZoneSpec};
use crate::Formatter;

/// The flat parameters `compat_parameters` copies into `<format>` (`format` becomes `@type`).
const FORMATTER_PARAMS: [&str; 14] = [
    "format",
    "delimiter",
    "force_quotes",
    "fields",
    "json_parser",
    "label_delimiter",
    "output_time",
    "output_tag",
    "localtime",
    "utc",
    "timezone",
    "message_key",
    "add_newline",
    "output_type",
];

struct Reader<'s, 'a> {
    s: &'s mut Section<'a>,
    compat: bool,
    errors: Vec<ConfigError>,
}

impl Reader<'_, '_> {
    fn allowed(&self, key: &str) -> bool {
        !self.compat || FORMATTER_PARAMS.contains(&key)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        if !self.allowed(key) {
            return None;
        }
        self.s.string(key)
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        if !self.allowed(key) {
            return default;
        }
        match self.s.boolean(key) {
            Ok(v) => v.unwrap_or(default),
            Err(e) => {
                self.errors.push(e);
                default
            }
        }
    }

    fn array(&mut self, key: &str) -> Option<Vec<String>> {
        if !self.allowed(key) {
            return None;
        }
        match self.s.array(key) {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn enumeration(&mut self, key: &str, allowed: &[&str]) -> Option<String> {
        if !self.allowed(key) {
            return None;
        }
        match self.s.enumeration(key, allowed) {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn newline(&mut self) -> &'static [u8] {
        match self.enumeration("newline", &["lf", "crlf"]).as_deref() {
            Some("crlf") => b"\r\n",
            _ => b"\n",
        }
    }

    fn error(&mut self, key: Option<&str>, msg: impl Into<String>) {
        let e = self.s.error(key, msg);
        self.errors.push(e);
    }
}

/// Builds the formatter a plugin configures.
///
/// `s` may be a `<format>` section, or the plugin's own section: then its `<format>` child is
/// read, or, when it has none, the v0.12 flat parameters (`format ltsv`, `delimiter`,
/// `label_delimiter`, `fields`, `force_quotes`, `message_key`, `add_newline`, `output_time`,
/// `output_tag`, `localtime`, `utc`, `timezone`, `time_as_epoch`) exactly as Fluentd's
/// `compat_parameters` copies them: other flat parameters (`time_format` among them) do not
/// reach the formatter. `default_type` is used when no type is named.
///
/// Known types: `ltsv`, `json`, `msgpack`, `single_value`, `csv`, `tsv`, `out_file`, `hash`.
/// Errors carry the file and line of the offending parameter.
pub fn formatter_from_section(
    s: &mut Section<'_>,
    default_type: &str,
) -> Result<Box<dyn Formatter>, Vec<ConfigError>> {
    if s.name() == "format" {
        return build(s, false, default_type);
    }
    match s.section("format") {
        Ok(Some(mut child)) => build(&mut child, false, default_type),
        Ok(None) => build(s, true, default_type),
        Err(e) => Err(vec![e]),
    }
}

fn build(
    s: &mut Section<'_>,
    compat: bool,
    default_type: &str,
) -> Result<Box<dyn Formatter>, Vec<ConfigError>> {
    let type_name = if compat {
        s.string("format")
    } else {
        s.type_name().map(str::to_string)
    }
    .unwrap_or_else(|| default_type.to_string());
    let mut r = Reader {
        s,
        compat,
        errors: Vec::new(),
    };
    let f: Box<dyn Formatter> = match type_name.as_str() {
        "ltsv" => {
            let d = Ltsv::default();
            Box::new(Ltsv {
                delimiter: r
                    .string("delimiter")
                    .map_or(d.delimiter, String::into_bytes),
                label_delimiter: r
                    .string("label_delimiter")
                    .map_or(d.label_delimiter, String::into_bytes),
                replacement: r
                    .string("replacement")
                    .map_or(d.replacement, String::into_bytes),
                add_newline: r.boolean("add_newline", true),
                newline: r.newline(),
            })
        }
        "json" => {
            let _ = r.enumeration("json_parser", &["oj", "yajl", "json"]);
            Box::new(Json {
                add_newline: r.boolean("add_newline", true),
                newline: r.newline(),
            })
        }
        "msgpack" => Box::new(Msgpack),
        "single_value" => Box::new(SingleValue {
            message_key: r.string("message_key").unwrap_or_else(|| "message".into()),
            add_newline: r.boolean("add_newline", true),
            newline: r.newline(),
        }),
        "csv" => {
            let delimiter = match r.string("delimiter").as_deref() {
                None => b",".to_vec(),
                Some("\\t" | "TAB") => b"\t".to_vec(),
                Some(d) => d.as_bytes().to_vec(),
            };
            let names: Vec<String> = r
                .array("fields")
                .unwrap_or_default()
                .into_iter()
                .filter(|f| !f.is_empty())
                .collect();
            if names.is_empty() {
                if r.s.element().param("fields").is_some() {
                    r.error(
                        Some("fields"),
                        "empty value is specified in fields parameter",
                    );
                } else {
                    r.error(Some("fields"), "'fields' parameter is required");
                }
            }
            let mut fields = Vec::new();
            for n in &names {
                match Field::parse(n) {
                    Some(f) => fields.push(f),
                    None => r.error(Some("fields"), format!("invalid record accessor '{n}'")),
                }
            }
            Box::new(Csv {
                fields,
                delimiter,
                force_quotes: r.boolean("force_quotes", true),
                add_newline: r.boolean("add_newline", true),
            })
        }
        "tsv" => {
            let keys = r.array("keys").unwrap_or_default();
            if keys.is_empty() {
                r.error(Some("keys"), "'keys' parameter is required");
            }
            Box::new(Tsv {
                keys,
                delimiter: r
                    .string("delimiter")
                    .map_or_else(|| b"\t".to_vec(), String::into_bytes),
                add_newline: r.boolean("add_newline", true),
                newline: r.newline(),
            })
        }
        "out_file" => {
            let delimiter = match r.string("delimiter") {
                Some(d) if d.to_ascii_uppercase().contains("SPACE") => b' ',
                Some(d) if d.to_ascii_uppercase().contains("COMMA") => b',',
                _ => b'\t',
            };
            let output_time = r.boolean("output_time", true);
            let output_tag = r.boolean("output_tag", true);
            let time = time_formatter(&mut r, TimeType::String);
            Box::new(OutFile {
                output_time,
                output_tag,
                delimiter,
                time,
                newline: r.newline(),
            })
        }
        "hash" => Box::new(Hash {
            add_newline: r.boolean("add_newline", true),
            newline: r.newline(),
        }),
        other => {
            let key = if compat { "format" } else { "@type" };
            r.error(Some(key), format!("unknown format type '{other}'"));
            Box::new(Msgpack)
        }
    };
    if r.errors.is_empty() {
        Ok(f)
    } else {
        Err(r.errors)
    }
}

/// Reads `time_type`, `time_format`, `localtime`, `utc`, `timezone` (and, in the flat form,
/// `time_as_epoch`) as Fluentd's `TimeMixin::Formatter` does.
fn time_formatter(r: &mut Reader<'_, '_>, default: TimeType) -> TimeFormatter {
    let mut tt = r
        .enumeration("time_type", &["float", "unixtime", "string"])
        .and_then(|t| TimeType::parse(&t))
        .unwrap_or(default);
    if r.compat {
        match r.s.boolean("time_as_epoch") {
            Ok(Some(true)) => tt = TimeType::Unixtime,
            Ok(_) => {}
            Err(e) => r.errors.push(e),
        }
    }
    let format = r.string("time_format");
    let has_local = r.allowed("localtime") && r.s.element().param("localtime").is_some();
    let has_utc = r.allowed("utc") && r.s.element().param("utc").is_some();
    if has_local && has_utc {
        r.error(
            Some("utc"),
            "both of utc and localtime are specified, use only one of them",
        );
    }
    let localtime = r.boolean("localtime", true);
    let utc = r.boolean("utc", false);
    let timezone = r.string("timezone");
    let tz = match TimeZoneSpec::from_params(localtime, utc, timezone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            r.error(Some("timezone"), e.to_string());
            TimeZoneSpec::Utc
        }
    };
    TimeFormatter::new(tt, format, tz)
}
