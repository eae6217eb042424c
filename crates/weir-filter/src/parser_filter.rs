//! `@type parser` (Fluentd's filter_parser): parses the text in one field of each record and
//! replaces the record with the result (or merges it, with `reserve_data`).
//!
//! A record whose field is missing or does not parse goes to the `@ERROR` label (unless
//! `emit_invalid_record_to_error false`) and is kept unchanged with `reserve_data true`, dropped
//! otherwise, as in Fluentd.

use rmpv::Value;
use weir_config::{ConfigError, Section};
use weir_proto::EventBatch;

use crate::accessor::RecordPath;
use crate::parse::{Parser, ParserConfig};
use crate::value::{decode, encode, ruby_to_s};
use crate::{done, opt, required, BatchBuilder, ErrorEvent, Filter, Filtered};

/// The parser filter.
#[derive(Debug)]
pub struct ParserFilter {
    id: String,
    key: RecordPath,
    parser: Parser,
    reserve_data: bool,
    reserve_time: bool,
    remove_key_name_field: bool,
    inject_key_prefix: Option<String>,
    hash_value_field: Option<String>,
    emit_invalid_record_to_error: bool,
}

impl ParserFilter {
    /// Builds the filter from its `<filter>` section.
    pub fn from_section(
        s: &mut Section<'_>,
        id: String,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let key_name = required(s, "key_name", &mut errors);
        let reserve_data = opt(s.boolean("reserve_data"), &mut errors).unwrap_or(false);
        let reserve_time = opt(s.boolean("reserve_time"), &mut errors).unwrap_or(false);
        let remove_key_name_field =
            opt(s.boolean("remove_key_name_field"), &mut errors).unwrap_or(false);
        let inject_key_prefix = s.string("inject_key_prefix");
        let hash_value_field = s.string("hash_value_field");
        let emit_invalid_record_to_error =
            opt(s.boolean("emit_invalid_record_to_error"), &mut errors).unwrap_or(true);
        if let Err(e) = s.unsupported(
            "replace_invalid_sequence",
            "records are read as UTF-8 with invalid bytes replaced already",
        ) {
            errors.push(e);
        }
        let parser = ParserConfig::from_plugin_section(s, warnings, &mut errors);
        let key = match RecordPath::parse(&key_name) {
            Ok(k) => k,
            Err(e) => {
                errors.push(s.error(Some("key_name"), e));
                return Err(errors);
            }
        };
        let Some(parser) = parser else {
            return Err(errors);
        };
        done(
            ParserFilter {
                id,
                key,
                parser: parser.parser,
                reserve_data,
                reserve_time,
                remove_key_name_field,
                inject_key_prefix,
                hash_value_field,
                emit_invalid_record_to_error,
            },
            errors,
        )
    }

    fn handle_parsed(&self, record: &Value, values: Vec<(Value, Value)>) -> Value {
        let values = match &self.inject_key_prefix {
            Some(p) => values
                .into_iter()
                .map(|(k, v)| {
                    (
                        Value::from(format!("{p}{}", crate::value::value_to_s(&k))),
                        v,
                    )
                })
                .collect(),
            None => values,
        };
        let r = match &self.hash_value_field {
            Some(f) => vec![(Value::from(f.as_str()), Value::Map(values))],
            None => values,
        };
        if self.reserve_data {
            let mut merged = match record {
                Value::Map(pairs) => pairs.clone(),
                _ => Vec::new(),
            };
            for (k, v) in r {
                let key = crate::value::value_to_s(&k);
                crate::value::map_set(&mut merged, &key, v);
            }
            Value::Map(merged)
        } else {
            Value::Map(r)
        }
    }
}

impl Filter for ParserFilter {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &str {
        "parser"
    }

    fn filter(&self, _tag: &str, events: EventBatch) -> Filtered {
        let mut out = BatchBuilder::with_capacity(events.len(), events.byte_len());
        let mut errors = Vec::new();
        for (i, (time, raw)) in events.iter().enumerate() {
            let mut fail = |error: String, out: &mut BatchBuilder| {
                if self.emit_invalid_record_to_error {
                    errors.push(ErrorEvent {
                        time,
                        record: events.record(i).unwrap_or_default(),
                        error,
                    });
                }
                if self.reserve_data {
                    out.push(time, raw);
                }
            };
            let Some(value) = self.key.find(raw) else {
                fail(format!("{} does not exist", self.key.as_str()), &mut out);
                continue;
            };
            let text = ruby_to_s(value);
            match self.parser.parse(&text) {
                Ok(Some((t, values))) => {
                    let Some(mut record) = decode(raw) else {
                        fail("record is not valid msgpack".into(), &mut out);
                        continue;
                    };
                    let t = if self.reserve_time {
                        time
                    } else {
                        t.unwrap_or(time)
                    };
                    if self.remove_key_name_field {
                        self.key.delete(&mut record);
                    }
                    let new = self.handle_parsed(&record, values);
                    out.push_with(t, |buf| encode(&new, buf));
                }
                Ok(None) => fail(format!("pattern not match with data '{text}'"), &mut out),
                Err(e) => {
                    if self.emit_invalid_record_to_error {
                        errors.push(ErrorEvent {
                            time,
                            record: events.record(i).unwrap_or_default(),
                            error: e,
                        });
                    }
                }
            }
        }
        Filtered {
            events: out.finish(),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, element, json};

    fn pf(conf: &str) -> ParserFilter {
        let el = element(conf);
        let mut s = Section::new(&el, "<filter **>");
        ParserFilter::from_section(&mut s, "p".into(), &mut Vec::new()).unwrap()
    }

    #[test]
    fn parses_merges_and_reports_errors() {
        let f = pf("<filter **>\n@type parser\nkey_name log\nreserve_data true\nremove_key_name_field true\n<parse>\n@type json\n</parse>\n</filter>");
        let out = f.filter(
            "t",
            batch(&[
                r#"{"log":"{\"a\":1}","k":"v"}"#,
                r#"{"log":"oops","k":"v"}"#,
                r#"{"k":"v"}"#,
            ]),
        );
        assert_eq!(
            json(&out.events),
            vec![
                r#"{"k":"v","a":1}"#,
                r#"{"log":"oops","k":"v"}"#,
                r#"{"k":"v"}"#
            ]
        );
        assert_eq!(out.errors.len(), 2);
        assert_eq!(out.errors[0].error, "pattern not match with data 'oops'");
        assert_eq!(out.errors[1].error, "log does not exist");
    }

    #[test]
    fn replaces_and_prefixes() {
        let f = pf("<filter **>\n@type parser\nkey_name msg\nreserve_time true\ninject_key_prefix p.\nhash_value_field parsed\nemit_invalid_record_to_error false\nformat ltsv\n</filter>");
        let out = f.filter("t", batch(&[r#"{"msg":"a:1\tb:2"}"#, r#"{"x":1}"#]));
        assert_eq!(
            json(&out.events),
            vec![r#"{"parsed":{"p.a":"1","p.b":"2"}}"#]
        );
        assert!(out.errors.is_empty());
        assert_eq!(out.events.time(0).map(|t| t.sec), Some(1000));
    }
}
