//! Typed, tracked access to an element's parameters and child sections.

use std::time::Duration;

use crate::element::{Element, Param};
use crate::error::{ConfigError, Location};
use crate::json;

/// A view over one [`Element`] that plugin code reads its parameters through. It converts
/// values to types with Fluentd's rules and remembers which parameters and child elements were
/// read, so that the ones never read can be reported (Fluentd warns
/// "parameter 'x' in <...> is not used.").
#[derive(Debug, Clone)]
pub struct Section<'a> {
    element: &'a Element,
    context: String,
    used_params: Vec<bool>,
    used_elements: Vec<bool>,
}

/// Legacy spellings Fluentd still reads (with a deprecation warning) when the `@` form is absent.
fn legacy_key(key: &str) -> Option<&'static str> {
    match key {
        "@type" => Some("type"),
        "@id" => Some("id"),
        "@log_level" => Some("log_level"),
        _ => None,
    }
}

impl<'a> Section<'a> {
    /// Wraps an element. `context` names it in errors, for example `<source> @type forward` or
    /// `<match blog.**>`.
    pub fn new(e: &'a Element, context: impl Into<String>) -> Self {
        Section {
            element: e,
            context: context.into(),
            used_params: vec![false; e.params.len()],
            used_elements: vec![false; e.elements.len()],
        }
    }

    /// The element this section reads.
    pub fn element(&self) -> &'a Element {
        self.element
    }

    /// The element's name, for example `match`.
    pub fn name(&self) -> &str {
        &self.element.name
    }

    /// The element's argument, for example `blog.**`; empty when absent.
    pub fn arg(&self) -> &str {
        &self.element.arg
    }

    /// Where the element's opening tag is.
    pub fn location(&self) -> &Location {
        &self.element.location
    }

    /// The context string errors name.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Finds a parameter and marks it as read. `@type`, `@id` and `@log_level` fall back to
    /// their old names `type`, `id` and `log_level`, as Fluentd does.
    fn take(&mut self, key: &str) -> Option<&'a Param> {
        let element: &'a Element = self.element;
        let found = element
            .params
            .iter()
            .position(|p| p.key == key)
            .or_else(|| {
                legacy_key(key).and_then(|old| element.params.iter().position(|p| p.key == old))
            });
        let i = found?;
        if let Some(u) = self.used_params.get_mut(i) {
            *u = true;
        }
        element.params.get(i)
    }

    /// The `@type` parameter (or the legacy `type`), marked as read.
    pub fn type_name(&mut self) -> Option<&'a str> {
        self.take("@type").map(|p| p.value.as_str())
    }

    /// The raw value, marked as read.
    pub fn string(&mut self, key: &str) -> Option<String> {
        self.take(key).map(|p| p.value.clone())
    }

    /// The raw value, or `default` when the parameter is absent.
    pub fn string_or(&mut self, key: &str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    /// The raw value; an error when the parameter is absent.
    pub fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        match self.string(key) {
            Some(v) => Ok(v),
            None => Err(ConfigError {
                location: self.element.location.clone(),
                context: self.context.clone(),
                param: Some(key.to_string()),
                message: "is required".to_string(),
            }),
        }
    }

    /// Reads a parameter and converts it; the conversion's error message is reported at the
    /// parameter's line.
    fn typed<T>(
        &mut self,
        key: &str,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(p) = self.take(key) else {
            return Ok(None);
        };
        convert(&p.value).map(Some).map_err(|message| ConfigError {
            location: p.location.clone(),
            context: self.context.clone(),
            param: Some(p.key.clone()),
            message,
        })
    }

    /// An integer: optional sign and decimal digits (`_` allowed between digits), blanks around
    /// it allowed. Anything else is an error (Fluentd's default mode would read it as 0).
    pub fn integer(&mut self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.typed(key, parse_integer)
    }

    /// A decimal number such as `5`, `0.5`, `-1.25` or `1e3`.
    pub fn float(&mut self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.typed(key, parse_float)
    }

    /// A size in bytes: digits with an optional `k`, `m`, `g` or `t` suffix (any case,
    /// multiples of 1024) and an optional trailing `b`.
    pub fn size(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.typed(key, parse_size)
    }

    /// A duration: whole numbers with `s`, `m`, `h` or `d`, or plain (possibly fractional)
    /// seconds.
    pub fn duration(&mut self, key: &str) -> Result<Option<Duration>, ConfigError> {
        self.typed(key, parse_duration)
    }

    /// A boolean: `true`/`yes`, `false`/`no`; an empty value (the key alone) is true.
    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.typed(key, parse_bool)
    }

    /// One of `allowed`, exactly as written.
    pub fn enumeration(
        &mut self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<String>, ConfigError> {
        self.typed(key, |v| {
            if allowed.contains(&v) {
                Ok(v.to_string())
            } else {
                Err(format!(
                    "valid options are {} but got '{v}'",
                    allowed.join(",")
                ))
            }
        })
    }

    /// A list: a JSON array (`["a","b"]`) or comma-separated text (`a, b`), like Fluentd's
    /// `:array` type.
    pub fn array(&mut self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.typed(key, parse_array)
    }

    /// Key-value pairs: a JSON object or `k1:v1,k2:v2`, like Fluentd's `:hash` type. Pairs keep
    /// their order; a key given twice keeps its first place and its last value.
    pub fn hash(&mut self, key: &str) -> Result<Option<Vec<(String, String)>>, ConfigError> {
        self.typed(key, parse_hash)
    }

    /// Marks the parameter as read and fails when it is set: for Fluentd parameters weir does
    /// not implement.
    pub fn unsupported(&mut self, key: &str, why: &str) -> Result<(), ConfigError> {
        self.typed(key, |_| {
            Err::<(), _>(format!("not supported by weir: {why}"))
        })
        .map(|_| ())
    }

    /// Child elements with this name, marked as read, each as its own section.
    pub fn sections(&mut self, name: &str) -> Vec<Section<'a>> {
        let element: &'a Element = self.element;
        let mut out = Vec::new();
        for (i, e) in element.elements.iter().enumerate() {
            if e.name == name {
                if let Some(u) = self.used_elements.get_mut(i) {
                    *u = true;
                }
                out.push(Section::new(e, self.child_context(e)));
            }
        }
        out
    }

    /// The child element with this name, if there is one; an error when there are several.
    pub fn section(&mut self, name: &str) -> Result<Option<Section<'a>>, ConfigError> {
        let mut found = self.sections(name);
        if found.len() > 1 {
            let second = found.swap_remove(1);
            return Err(ConfigError {
                location: second.location().clone(),
                context: self.context.clone(),
                param: None,
                message: format!(
                    "only one <{name}> section is allowed here, found {}",
                    found.len() + 1
                ),
            });
        }
        Ok(found.pop())
    }

    fn child_context(&self, e: &Element) -> String {
        if self.context.is_empty() {
            e.head()
        } else {
            format!("{} {}", self.context, e.head())
        }
    }

    /// Parameters never read, in file order.
    pub fn unused(&self) -> Vec<&'a Param> {
        let element: &'a Element = self.element;
        element
            .params
            .iter()
            .zip(&self.used_params)
            .filter(|(_, used)| !**used)
            .map(|(p, _)| p)
            .collect()
    }

    /// Child elements never read, in file order.
    pub fn unused_sections(&self) -> Vec<&'a Element> {
        let element: &'a Element = self.element;
        element
            .elements
            .iter()
            .zip(&self.used_elements)
            .filter(|(_, used)| !**used)
            .map(|(e, _)| e)
            .collect()
    }

    /// Builds an error at this section, or at the parameter `key` when it is set.
    pub fn error(&self, key: Option<&str>, msg: impl Into<String>) -> ConfigError {
        let location = key
            .and_then(|k| self.element.param(k))
            .map(|p| p.location.clone())
            .unwrap_or_else(|| self.element.location.clone());
        ConfigError {
            location,
            context: self.context.clone(),
            param: key.map(str::to_string),
            message: msg.into(),
        }
    }
}

fn digits_with_underscores(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Fluentd `:integer`.
pub fn parse_integer(v: &str) -> Result<i64, String> {
    let t = v.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if !digits_with_underscores(body) {
        return Err(format!("invalid integer '{v}'"));
    }
    t.replace('_', "")
        .parse::<i64>()
        .map_err(|_| format!("integer '{v}' is out of range"))
}

/// Fluentd `:float`.
pub fn parse_float(v: &str) -> Result<f64, String> {
    let t = v.trim();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E' | '_'))
        && t.chars().any(|c| c.is_ascii_digit());
    match t.replace('_', "").parse::<f64>() {
        Ok(f) if ok && f.is_finite() => Ok(f),
        _ => Err(format!("invalid float '{v}'")),
    }
}

/// Fluentd `:size`.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    let invalid = || format!("invalid size '{v}'");
    if num.is_empty() {
        return Err(invalid());
    }
    let suffix = suffix.to_ascii_lowercase();
    let suffix = suffix.strip_suffix('b').unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(invalid()),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size '{v}' is out of range"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{v}' is out of range"))
}

/// Fluentd `:time`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let t = v.trim();
    let invalid = || format!("invalid duration '{v}'");
    let (num, unit) = match t.char_indices().last() {
        Some((i, c @ ('s' | 'm' | 'h' | 'd'))) => (&t[..i], Some(c)),
        _ => (t, None),
    };
    match unit {
        Some(u) => {
            if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
                return Err(invalid());
            }
            let n: u64 = num.parse().map_err(|_| invalid())?;
            let mult = match u {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            n.checked_mul(mult)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("duration '{v}' is out of range"))
        }
        None => {
            let ok = !num.is_empty()
                && num.chars().all(|c| c.is_ascii_digit() || c == '.')
                && num.chars().filter(|&c| c == '.').count() <= 1
                && num.chars().any(|c| c.is_ascii_digit());
            if !ok {
                return Err(invalid());
            }
            let secs: f64 = num.parse().map_err(|_| invalid())?;
            Duration::try_from_secs_f64(secs).map_err(|_| format!("duration '{v}' is out of range"))
        }
    }
}

/// Fluentd `:bool`.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "" => Ok(true),
        "false" | "no" => Ok(false),
        // Fluentd reads `key # comment` as the value "# comment" and takes it as true.
        v if v.starts_with('#') => Ok(true),
        _ => Err(format!(
            "invalid boolean '{v}' (expected true, false, yes, no, or nothing)"
        )),
    }
}

/// Ruby's `str.strip.split(/\s*,\s*/)`: trailing empty fields are dropped.
fn split_commas(v: &str) -> Vec<String> {
    let t = v.trim();
    let mut parts: Vec<String> = t.split(',').map(|s| s.trim().to_string()).collect();
    while parts.last().is_some_and(|s| s.is_empty()) {
        parts.pop();
    }
    parts
}

/// Fluentd `:array`.
pub fn parse_array(v: &str) -> Result<Vec<String>, String> {
    if v.starts_with('[') {
        match json::parse(v) {
            Ok(json::Value::Array(items)) => {
                Ok(items.iter().map(|i| i.to_plain_string()).collect())
            }
            _ => Err(format!("array required but got '{v}'")),
        }
    } else {
        Ok(split_commas(v))
    }
}

/// Fluentd `:hash`.
pub fn parse_hash(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: String, val: String| match out.iter_mut().find(|(ok, _)| *ok == k) {
        Some(slot) => slot.1 = val,
        None => out.push((k, val)),
    };
    if v.starts_with('{') {
        match json::parse(v) {
            Ok(json::Value::Object(members)) => {
                for (k, val) in members {
                    put(k, val.to_plain_string());
                }
            }
            _ => return Err(format!("hash required but got '{v}'")),
        }
    } else {
        for part in split_commas(v) {
            match part.split_once(':') {
                Some((k, val)) => put(k.to_string(), val.to_string()),
                None => {
                    return Err(format!(
                        "hash required but got '{v}': '{part}' has no ':' (write key:value)"
                    ))
                }
            }
        }
    }
    Ok(out)
}
