//! The Fluentd v1 syntax: directives, parameters, quoting, JSON values, comments and
//! `@include`, with the same rules Fluentd's `V1Parser` applies.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::element::{Element, Param};
use crate::error::{ConfigError, ConfigErrors, ConfigWarning, Location};
use crate::glob;
use crate::json;
use crate::ruby::{self, Env};

/// Deepest element nesting accepted (counting across included files).
pub const MAX_NESTING: usize = 64;
/// Deepest chain of `@include`s accepted.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// Reserved parameters that may appear anywhere.
const RESERVED_PARAMS: [&str; 4] = ["@type", "@id", "@label", "@log_level"];
/// Directives in which any other `@` key is an error (elsewhere it is a warning).
const ELEM_SYMBOLS: [&str; 4] = ["match", "source", "filter", "system"];

/// A parsed configuration and the warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The root element, named `ROOT`.
    pub root: Element,
    /// Things that work but deserve a word (a key set twice, a deprecated form, an include that
    /// matches no file).
    pub warnings: Vec<ConfigWarning>,
}

/// State shared by a file and the files it includes.
pub(crate) struct Ctx<'e> {
    env: &'e dyn Env,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
    /// Canonical paths of the files being read, outermost first, with the names they were
    /// opened under.
    include_stack: Vec<(PathBuf, Arc<str>)>,
}

type Fatal = ConfigError;

/// What an element's body collects: parameters (with an index by key, so a file with many keys
/// stays linear) and child elements.
#[derive(Default)]
struct Body {
    params: Vec<Param>,
    index: std::collections::HashMap<String, usize>,
    elems: Vec<Element>,
}

struct Parser<'s, 'c, 'e> {
    src: &'s str,
    b: &'s [u8],
    pos: usize,
    file: Arc<str>,
    base_dir: PathBuf,
    line_starts: Vec<usize>,
    ctx: &'c mut Ctx<'e>,
    /// Cache for the expensive look-ahead in element arguments: (position, result).
    arg_tail_cache: Option<(usize, bool)>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'s, 'c, 'e> Parser<'s, 'c, 'e> {
    fn new(src: &'s str, file: Arc<str>, base_dir: PathBuf, ctx: &'c mut Ctx<'e>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            src.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Parser {
            src,
            b: src.as_bytes(),
            pos: 0,
            file,
            base_dir,
            line_starts,
            ctx,
            arg_tail_cache: None,
        }
    }

    fn location_at(&self, pos: usize) -> Location {
        let line = self.line_starts.partition_point(|&s| s <= pos);
        Location {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
        }
    }

    fn err_at(&self, pos: usize, msg: impl Into<String>) -> Fatal {
        ConfigError::at(self.location_at(pos), msg)
    }

    fn warn_at(&mut self, pos: usize, msg: impl Into<String>) {
        let location = self.location_at(pos);
        self.ctx.warnings.push(ConfigWarning {
            location,
            message: msg.into(),
        });
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eof(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn next_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Skips to just past the next `\r` or `\n` (a comment's end), or to the end.
    fn comment_end(&self, from: usize) -> usize {
        match self.b[from..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        {
            Some(i) => from + i + 1,
            None => self.b.len(),
        }
    }

    /// Fluentd's SPACING: white space (new lines included) and `#` comments.
    fn spacing(&mut self) {
        loop {
            match self.peek() {
                Some(b) if is_ws(b) => self.pos += 1,
                Some(b'#') => self.pos = self.comment_end(self.pos),
                _ => return,
            }
        }
    }

    /// White space only; returns the skipped text.
    fn spacing_without_comment(&mut self) -> &'s str {
        let start = self.pos;
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// Fluentd's LINE_END: optional blanks and comment, then a line break or the end; repeated.
    fn line_end(&mut self) -> bool {
        let mut matched = false;
        loop {
            let save = self.pos;
            while let Some(b' ' | b'\t') = self.peek() {
                self.pos += 1;
            }
            if self.peek() == Some(b'#') {
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.pos += 1;
                }
            }
            match self.peek() {
                None => return true,
                Some(b'\r' | b'\n') => {
                    self.pos += 1;
                    matched = true;
                }
                Some(_) => {
                    self.pos = save;
                    return matched;
                }
            }
        }
    }

    /// `[a-zA-Z0-9_]*`
    fn scan_name(&mut self) -> &'s str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// After a blank run in an element argument that runs into a comment or a line break: does
    /// the white space and comments from `from` on lead to `>`?
    fn arg_tail_reaches_gt(&mut self, from: usize) -> bool {
        if let Some((p, r)) = self.arg_tail_cache {
            if p == from {
                return r;
            }
        }
        let mut p = from;
        loop {
            match self.b.get(p) {
                Some(&b) if is_ws(b) => p += 1,
                Some(b'#') => p = self.comment_end(p),
                Some(b'>') => break self.arg_tail_cache = Some((from, true)),
                _ => break self.arg_tail_cache = Some((from, false)),
            }
        }
        self.arg_tail_cache.is_some_and(|(_, r)| r)
    }

    /// The argument of `<name arg>`: up to optional spacing and `>`, never past the line.
    fn scan_arg(&mut self) -> &'s str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b'\n' | b'>' => break,
                b' ' | b'\t' | b'\r' => {
                    let mut run_end = self.pos;
                    while let Some(b' ' | b'\t' | b'\r') = self.b.get(run_end) {
                        run_end += 1;
                    }
                    let boundary = match self.b.get(run_end) {
                        Some(b'>') => true,
                        Some(b'#') => {
                            let e = self.comment_end(run_end);
                            self.arg_tail_reaches_gt(e)
                        }
                        Some(b'\n') | None => self.arg_tail_reaches_gt(run_end),
                        Some(_) => false,
                    };
                    if boundary {
                        break;
                    }
                    self.pos = run_end;
                }
                _ => self.pos += self.next_char().map_or(1, char::len_utf8),
            }
        }
        &self.src[start..self.pos]
    }

    /// An unquoted key: everything up to white space (`#` included).
    fn scan_plain_key(&mut self) -> &'s str {
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_ws(b)) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    /// An unquoted value: to the end of the line, without trailing blanks or a comment that
    /// follows a blank. A `#` right after other text is part of the value.
    fn scan_plain_value(&mut self) -> &'s str {
        let start = self.pos;
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => break,
                Some(b' ' | b'\t') => {
                    let mut run_end = self.pos;
                    while let Some(b' ' | b'\t') = self.b.get(run_end) {
                        run_end += 1;
                    }
                    if matches!(self.b.get(run_end), None | Some(b'\r' | b'\n' | b'#')) {
                        break;
                    }
                    self.pos = run_end;
                }
                Some(_) => self.pos += self.next_char().map_or(1, char::len_utf8),
            }
        }
        &self.src[start..self.pos]
    }

    fn scan_single_quoted(&mut self, open: usize) -> Result<String, Fatal> {
        let mut out = String::new();
        loop {
            match self.next_char() {
                Some('\'') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') if self.rest().starts_with("\\'") => {
                    out.push('\'');
                    self.pos += 2;
                }
                Some('\\') if self.rest().starts_with("\\\\") => {
                    out.push('\\');
                    self.pos += 2;
                }
                Some(c) if c != '\n' => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
                Some(_) => {
                    return Err(self.err_at(
                        self.pos,
                        format!(
                            "line break in a single-quoted string (opened on line {}); single-quoted strings cannot span lines",
                            self.location_at(open).line
                        ),
                    ))
                }
                None => {
                    return Err(self.err_at(self.pos, "unexpected end of file in a single-quoted string"))
                }
            }
        }
    }

    fn scan_double_quoted(&mut self) -> Result<String, Fatal> {
        let mut out = String::new();
        loop {
            let Some(c) = self.next_char() else {
                return Err(
                    self.err_at(self.pos, "unexpected end of file in a double-quoted string")
                );
            };
            if c == '"' {
                self.pos += 1;
                return Ok(out);
            }
            // A character just before a line break: the line break is dropped, and a backslash
            // there joins the lines.
            let next = self.pos + c.len_utf8();
            if matches!(self.b.get(next), None | Some(b'\r' | b'\n')) {
                if c != '\\' {
                    out.push(c);
                }
                self.pos = (next + 1).min(self.b.len());
                continue;
            }
            if c == '\\' {
                let e = self.src[next..].chars().next().unwrap_or('\n');
                if e != '\n' {
                    let at = self.pos;
                    self.pos = next + e.len_utf8();
                    match e {
                        'r' => out.push('\r'),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'f' => out.push('\u{c}'),
                        'b' => out.push('\u{8}'),
                        '0' => out.push('\0'),
                        e if e.is_ascii_alphanumeric() => {
                            return Err(self.err_at(
                                at,
                                format!("unexpected back-slash escape character '{e}'"),
                            ))
                        }
                        e => out.push(e),
                    }
                    continue;
                }
            }
            if self.rest().starts_with("#{") {
                out.push_str(&self.embedded_code()?);
                continue;
            }
            if c != '\n' {
                out.push(c);
                self.pos += c.len_utf8();
                continue;
            }
            return Err(self.err_at(
                self.pos,
                "unexpected line break in a double-quoted string (Fluentd reads this the same way; join the lines or escape them)",
            ));
        }
    }

    /// `#{...}` inside a double-quoted string: finds the closing brace and evaluates the code.
    fn embedded_code(&mut self) -> Result<String, Fatal> {
        let open = self.pos;
        let start = self.pos + 2;
        let mut depth = 1usize;
        let mut i = start;
        let mut end = None;
        while i < self.b.len() {
            match self.b[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                q @ (b'"' | b'\'') => {
                    i += 1;
                    while i < self.b.len() && self.b[i] != q {
                        if self.b[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let Some(end) = end else {
            return Err(self.err_at(open, "embedded Ruby code `#{` is not closed by `}`"));
        };
        let code = &self.src[start..end];
        self.pos = end + 1;
        match ruby::eval(code, self.ctx.env) {
            Ok(v) => Ok(v),
            Err(msg) => {
                let e = self.err_at(open, msg);
                self.ctx.errors.push(e);
                Ok(String::new())
            }
        }
    }

    /// Fluentd's `scan_string`: quoted or not. `key` selects the key rule for unquoted text.
    fn scan_string(&mut self, key: bool) -> Result<String, Fatal> {
        let open = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.scan_double_quoted()
            }
            Some(b'\'') => {
                self.pos += 1;
                self.scan_single_quoted(open)
            }
            _ if key => Ok(self.scan_plain_key().to_string()),
            _ => Ok(self.scan_plain_value().to_string()),
        }
    }

    /// A value: JSON array or object, quoted string, or unquoted text.
    fn parse_literal(&mut self) -> Result<String, Fatal> {
        self.spacing_without_comment();
        let open = self.pos;
        match self.peek() {
            Some(c @ (b'[' | b'{')) => {
                let mut reader = json::Reader::new(self.src, self.pos + 1, true);
                let result = if c == b'[' {
                    reader.array(1)
                } else {
                    reader.object(1)
                };
                match result {
                    Ok(v) => {
                        self.pos = reader.pos;
                        let mut out = String::new();
                        json::write_value(&mut out, &v);
                        Ok(out)
                    }
                    Err(_) => Err(self.err_at(
                        open,
                        format!(
                            "got incomplete JSON {} configuration",
                            if c == b'[' { "array" } else { "hash" }
                        ),
                    )),
                }
            }
            _ => self.scan_string(false),
        }
    }

    fn add_param(&mut self, body: &mut Body, key: String, value: String, at: usize) {
        let location = self.location_at(at);
        if let Some(p) = body.index.get(&key).and_then(|&i| body.params.get_mut(i)) {
            let first = p.location.clone();
            p.value = value;
            p.location = location;
            self.warn_at(
                at,
                format!("parameter '{key}' is set again (first at {first}); the last value wins"),
            );
        } else {
            body.index.insert(key.clone(), body.params.len());
            body.params.push(Param {
                key,
                value,
                location,
            });
        }
    }

    /// Parses the body of an element (or of the root when `elem_name` is `None`) until its end
    /// tag (or the end of the file for the root).
    fn parse_element(
        &mut self,
        elem_name: Option<&str>,
        body: &mut Body,
        depth: usize,
    ) -> Result<(), Fatal> {
        let root = elem_name.is_none();
        loop {
            self.spacing();
            if self.eof() {
                return match elem_name {
                    None => Ok(()),
                    Some(name) => Err(self.err_at(
                        self.pos,
                        format!("expected end tag '</{name}>' but got end of file"),
                    )),
                };
            }
            let at = self.pos;
            if self.rest().starts_with("</") {
                self.pos += 2;
                let name = self.scan_name();
                self.spacing();
                if self.peek() != Some(b'>') {
                    return Err(self.err_at(self.pos, "expected character in tag name"));
                }
                self.pos += 1;
                if !self.line_end() {
                    return Err(self.err_at(self.pos, "expected end of line after end tag"));
                }
                return match elem_name {
                    Some(open) if open == name => Ok(()),
                    Some(open) => Err(self.err_at(
                        at,
                        format!("unmatched end tag '</{name}>': expected '</{open}>'"),
                    )),
                    None => Err(self.err_at(
                        at,
                        format!("unmatched end tag '</{name}>': no element is open here"),
                    )),
                };
            }
            if self.peek() == Some(b'<') {
                self.pos += 1;
                let name = self.scan_name();
                if name.is_empty() {
                    return Err(self.err_at(
                        self.pos,
                        "expected an element name (letters, digits, '_') after '<'",
                    ));
                }
                self.spacing();
                let arg = self.scan_arg();
                self.spacing();
                if self.peek() != Some(b'>') {
                    return Err(self.err_at(self.pos, "expected '>'"));
                }
                self.pos += 1;
                if !self.line_end() {
                    return Err(self.err_at(self.pos, "expected end of line after tag"));
                }
                if depth >= MAX_NESTING {
                    return Err(self.err_at(
                        at,
                        format!("elements are nested more than {MAX_NESTING} levels deep"),
                    ));
                }
                let location = self.location_at(at);
                let mut child = Body::default();
                self.parse_element(Some(name), &mut child, depth + 1)?;
                body.elems.push(Element {
                    name: name.to_string(),
                    arg: arg.to_string(),
                    params: child.params,
                    elements: child.elems,
                    location,
                });
                continue;
            }
            if root {
                let kw = if self.rest().starts_with("@include") {
                    Some(8)
                } else if self.rest().starts_with("include") {
                    Some(7)
                } else {
                    None
                };
                if let Some(n) = kw {
                    let after = self.b.get(self.pos + n).copied();
                    if after.is_none_or(|b| is_ws(b) || b == b'#') {
                        if n == 7 {
                            self.warn_at(at, "'include' is deprecated; use '@include'");
                        }
                        self.pos += n;
                        self.spacing();
                        self.parse_include(body, depth, at)?;
                        continue;
                    }
                }
            }
            let key = self.scan_string(true)?;
            let skipped = self.spacing_without_comment();
            if skipped.contains('\n') || self.eof() {
                self.add_param(body, key, String::new(), at);
                continue;
            }
            if key == "@include" {
                self.parse_include(body, depth, at)?;
                continue;
            }
            if key.starts_with('@') && !RESERVED_PARAMS.contains(&key.as_str()) {
                let strict = match elem_name {
                    None => true,
                    Some(n) => ELEM_SYMBOLS.contains(&n),
                };
                if strict {
                    let e = self.err_at(
                        at,
                        format!("'@' is a reserved prefix; parameter '{key}' is not allowed here"),
                    );
                    self.ctx.errors.push(e);
                } else {
                    self.warn_at(
                        at,
                        format!("'@' is a reserved prefix; parameter '{key}' works in nested sections for now, but Fluentd plans to reject it"),
                    );
                }
            }
            let value = self.parse_literal()?;
            if !self.line_end() {
                return Err(self.err_at(self.pos, "expected end of line"));
            }
            self.add_param(body, key, value, at);
        }
    }

    fn parse_include(&mut self, body: &mut Body, depth: usize, at: usize) -> Result<(), Fatal> {
        let uri = if self.eof() {
            String::new()
        } else {
            self.scan_string(false)?
        };
        if uri.is_empty() {
            return Err(self.err_at(at, "@include needs a path"));
        }
        self.eval_include(body, depth, at, &uri)?;
        self.line_end();
        Ok(())
    }

    fn eval_include(
        &mut self,
        body: &mut Body,
        depth: usize,
        at: usize,
        uri: &str,
    ) -> Result<(), Fatal> {
        let path = if let Some(p) = uri.strip_prefix("file://") {
            p.to_string()
        } else if let Some((scheme, _)) = uri.split_once("://") {
            let is_scheme = scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if is_scheme {
                let e = self.err_at(
                    at,
                    format!("@include of '{uri}': including over {scheme} is not supported by weir; copy the file and include it by path"),
                );
                self.ctx.errors.push(e);
                return Ok(());
            }
            uri.to_string()
        } else {
            uri.to_string()
        };
        let pattern = if path.starts_with('/') {
            normalize(Path::new(&path))
        } else {
            normalize(&self.base_dir.join(&path))
        };
        let pattern_str = pattern.to_string_lossy().into_owned();
        let files = if glob::has_magic(&path) {
            glob::glob(&pattern_str)
        } else if pattern.exists() {
            vec![pattern.clone()]
        } else {
            Vec::new()
        };
        if files.is_empty() {
            self.warn_at(
                at,
                format!("@include '{uri}' matches no file (Fluentd ignores this too)"),
            );
        }
        for file in files {
            self.include_file(body, depth, at, uri, &file)?;
        }
        Ok(())
    }

    fn include_file(
        &mut self,
        body: &mut Body,
        depth: usize,
        at: usize,
        uri: &str,
        file: &Path,
    ) -> Result<(), Fatal> {
        let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let file_name: Arc<str> = Arc::from(file.display().to_string());
        if self.ctx.include_stack.iter().any(|(p, _)| *p == canonical) {
            let chain: Vec<&str> = self
                .ctx
                .include_stack
                .iter()
                .map(|(_, name)| &**name)
                .chain(std::iter::once(&*file_name))
                .collect();
            return Err(self.err_at(at, format!("@include cycle: {}", chain.join(" -> "))));
        }
        if self.ctx.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.err_at(
                at,
                format!("@include chain is deeper than {MAX_INCLUDE_DEPTH} files"),
            ));
        }
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                let err = self.err_at(at, format!("include error {uri} - {}: {e}", file.display()));
                self.ctx.errors.push(err);
                return Ok(());
            }
        };
        let text = decode(&bytes, &file_name, self.ctx);
        let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        self.ctx.include_stack.push((canonical, file_name.clone()));
        let mut sub = Parser::new(&text, file_name, base_dir, self.ctx);
        let result = sub.parse_element(None, body, depth);
        self.ctx.include_stack.pop();
        result
    }
}

/// Resolves `.` and `..` without touching the file system, as Ruby's `File.expand_path` does.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    Some(Component::RootDir) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// File bytes as text: a leading byte order mark is dropped; bytes that are not UTF-8 are
/// replaced (Fluentd reads files as UTF-8 too), with a warning.
fn decode(bytes: &[u8], file: &Arc<str>, ctx: &mut Ctx<'_>) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match String::from_utf8_lossy(bytes) {
        std::borrow::Cow::Borrowed(s) => s.to_string(),
        std::borrow::Cow::Owned(s) => {
            ctx.warnings.push(ConfigWarning {
                location: Location::new(file.clone(), 0),
                message: "file is not valid UTF-8; the invalid bytes were replaced".to_string(),
            });
            s
        }
    }
}

pub(crate) fn parse_text(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    env: &dyn Env,
    canonical: Option<PathBuf>,
) -> Result<Parsed, ConfigErrors> {
    let mut ctx = Ctx {
        env,
        errors: Vec::new(),
        warnings: Vec::new(),
        include_stack: Vec::new(),
    };
    let file: Arc<str> = Arc::from(file_name);
    if let Some(c) = canonical {
        ctx.include_stack.push((c, file.clone()));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let location = Location::new(file.clone(), 1);
    let mut body = Body::default();
    let mut parser = Parser::new(text, file, base_dir.to_path_buf(), &mut ctx);
    let result = parser.parse_element(None, &mut body, 0);
    let root = Element {
        name: "ROOT".to_string(),
        arg: String::new(),
        params: body.params,
        elements: body.elems,
        location,
    };
    if let Err(fatal) = result {
        ctx.errors.push(fatal);
    }
    if ctx.errors.is_empty() {
        Ok(Parsed {
            root,
            warnings: ctx.warnings,
        })
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

pub(crate) fn parse_path(path: &Path, env: &dyn Env) -> Result<Parsed, ConfigErrors> {
    let file_name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::at(
            Location::new(file_name.as_str(), 0),
            format!("cannot read the config file: {e}"),
        )
    })?;
    let name: Arc<str> = Arc::from(file_name.as_str());
    let mut scratch = Ctx {
        env,
        errors: Vec::new(),
        warnings: Vec::new(),
        include_stack: Vec::new(),
    };
    let text = decode(&bytes, &name, &mut scratch);
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let canonical = std::fs::canonicalize(path).ok();
    let mut parsed = parse_text(&text, &file_name, &base_dir, env, canonical)?;
    scratch.warnings.append(&mut parsed.warnings);
    parsed.warnings = scratch.warnings;
    Ok(parsed)
}

/// Parses with the real environment (for the public functions).
pub(crate) fn process_env() -> &'static dyn Env {
    &ruby::ProcessEnv
}
