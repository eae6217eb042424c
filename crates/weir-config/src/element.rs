//! The parsed tree: elements (directives and sections) holding parameters and child elements.

use std::fmt::Write as _;

use crate::error::Location;

/// One `key value` line. `@type`, `@id`, `@label` and `@log_level` are ordinary parameters whose
/// keys start with `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The key, for example `flush_interval` or `@type`.
    pub key: String,
    /// The value after quotes, escapes and embedded Ruby were resolved; empty for a bare key.
    pub value: String,
    /// Where the key was written (for a key set twice, the place of the value that won).
    pub location: Location,
}

/// A directive or section: `<name arg>` … `</name>`. The whole file is an element named `ROOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The name, for example `match` or `buffer`.
    pub name: String,
    /// The argument after the name, for example `blog.**` or `tag,time`; empty when absent.
    pub arg: String,
    /// Parameters in the order their keys first appeared. A key appears once: when a key is set
    /// twice, the last value wins, as in Fluentd.
    pub params: Vec<Param>,
    /// Child elements in file order.
    pub elements: Vec<Element>,
    /// Where the opening tag is (line 1 of the top file for `ROOT`).
    pub location: Location,
}

impl Element {
    /// The parameter with this key, if set.
    pub fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.key == key)
    }

    /// The value of the parameter with this key, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.param(key).map(|p| p.value.as_str())
    }

    /// Child elements with this name, in file order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements.iter().filter(move |e| e.name == name)
    }

    /// The opening tag as Fluentd prints it: `<name>` or `<name arg>`.
    pub fn head(&self) -> String {
        if self.arg.is_empty() {
            format!("<{}>", self.name)
        } else {
            format!("<{} {}>", self.name, self.arg)
        }
    }

    /// A canonical dump of the tree: one line per element and parameter, values written as JSON
    /// strings, every line ending with the `file:line` it came from. Used by tests and by
    /// `weir check`-style tools.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out, 0);
        out
    }

    fn dump_into(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        let _ = writeln!(out, "{indent}{} # {}", self.head(), self.location);
        for p in &self.params {
            let _ = writeln!(
                out,
                "{indent}  {} {} # {}",
                render_key(&p.key),
                json_string(&p.value),
                p.location
            );
        }
        for e in &self.elements {
            e.dump_into(out, depth + 1);
        }
        let _ = writeln!(out, "{indent}</{}>", self.name);
    }

    /// Renders the tree as Fluentd configuration text that parses back to the same tree (values
    /// are written double-quoted with escapes). For `ROOT`, only its contents are written.
    pub fn to_config_text(&self) -> String {
        let mut out = String::new();
        if self.name == "ROOT" {
            self.render_body(&mut out, 0);
        } else {
            self.render_into(&mut out, 0);
        }
        out
    }

    fn render_into(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        let _ = writeln!(out, "{indent}{}", self.head());
        self.render_body(out, depth + 1);
        let _ = writeln!(out, "{indent}</{}>", self.name);
    }

    fn render_body(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        for p in &self.params {
            let _ = writeln!(
                out,
                "{indent}{} {}",
                render_key(&p.key),
                quote_value(&p.value)
            );
        }
        for e in &self.elements {
            e.render_into(out, depth);
        }
    }
}

/// Writes a string as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::json::write_json_string(&mut out, s);
    out
}

fn render_key(key: &str) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(['<', '"', '\'', '#'])
        && key.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if plain {
        key.to_string()
    } else {
        quote_value(key)
    }
}

/// Writes a value as a double-quoted Fluentd string that parses back to the same text.
pub fn quote_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{c}' => out.push_str("\\f"),
            '\u{8}' => out.push_str("\\b"),
            '\0' => out.push_str("\\0"),
            '#' => out.push_str("\\#"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
