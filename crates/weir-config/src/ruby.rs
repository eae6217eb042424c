//! The few forms of embedded Ruby (`"#{...}"` in double-quoted values) that weir evaluates.
//!
//! Fluentd runs any Ruby there. weir evaluates only what configs use in practice:
//! `ENV["X"]`, `ENV['X']`, `ENV.fetch("X")`, `ENV.fetch("X", "default")`, `Socket.gethostname`,
//! and the `hostname` and `worker_id` variables Fluentd defines for embedded code. A
//! `.split("SEP")[N]` or `.split("SEP").first` may follow a host name, and `|| "default"` may
//! follow any form. Anything else is refused with a clear error.

/// Where embedded code reads the environment and the host name from.
pub(crate) trait Env {
    /// An environment variable, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
    /// This machine's host name.
    fn hostname(&self) -> Option<String>;
}

/// The real process environment.
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }

    fn hostname(&self) -> Option<String> {
        hostname::get()
            .ok()
            .map(|h| h.to_string_lossy().into_owned())
    }
}

/// The error for code weir does not evaluate.
pub(crate) fn unsupported(code: &str) -> String {
    format!(
        "embedded Ruby `{}` is not supported; weir evaluates only ENV[...], ENV.fetch(...) and Socket.gethostname",
        code.trim()
    )
}

struct Lexer<'c> {
    s: &'c str,
    pos: usize,
}

impl<'c> Lexer<'c> {
    fn ws(&mut self) {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.pos == self.s.len()
    }

    /// A Ruby string literal: `"..."` (with simple escapes, no interpolation) or `'...'`.
    fn string(&mut self) -> Option<String> {
        self.ws();
        let rest = &self.s[self.pos..];
        let quote = rest.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Some(out);
            }
            if c == '\\' {
                let (_, e) = chars.next()?;
                match (quote, e) {
                    ('"', 'n') => out.push('\n'),
                    ('"', 't') => out.push('\t'),
                    ('"', '#') => out.push('#'),
                    (_, '\\') => out.push('\\'),
                    (q, e) if e == q => out.push(e),
                    ('\'', e) => {
                        out.push('\\');
                        out.push(e);
                    }
                    _ => return None,
                }
                continue;
            }
            if quote == '"' && c == '#' && rest[i + 1..].starts_with('{') {
                return None;
            }
            out.push(c);
        }
        None
    }

    fn integer(&mut self) -> Option<i64> {
        self.ws();
        let rest = &self.s[self.pos..];
        let len = rest
            .char_indices()
            .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'))
            .count();
        let n = rest.get(..len)?.parse().ok()?;
        self.pos += len;
        Some(n)
    }
}

/// The result of one primary expression: `None` is Ruby's `nil`.
type Val = Option<String>;

fn primary(lx: &mut Lexer<'_>, env: &dyn Env) -> Result<Val, Option<String>> {
    // Err(None): not a form weir knows; Err(Some(msg)): a known form that failed.
    if lx.eat("ENV") {
        if lx.eat("[") {
            let name = lx.string().ok_or(None)?;
            if !lx.eat("]") {
                return Err(None);
            }
            return Ok(env.var(&name));
        }
        if lx.eat(".fetch") {
            if !lx.eat("(") {
                return Err(None);
            }
            let name = lx.string().ok_or(None)?;
            let default = if lx.eat(",") {
                Some(lx.string().ok_or(None)?)
            } else {
                None
            };
            if !lx.eat(")") {
                return Err(None);
            }
            return match (env.var(&name), default) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(d)) => Ok(Some(d)),
                (None, None) => Err(Some(format!(
                    "embedded Ruby: environment variable '{name}' is not set (ENV.fetch without a default)"
                ))),
            };
        }
        return Err(None);
    }
    let host = if lx.eat("Socket.gethostname") {
        true
    } else {
        let save = lx.pos;
        if lx.eat("hostname") {
            true
        } else {
            lx.pos = save;
            false
        }
    };
    if host {
        let name = env.hostname().ok_or_else(|| {
            Some("embedded Ruby: cannot read this machine's host name".to_string())
        })?;
        if lx.eat(".split") {
            if !lx.eat("(") {
                return Err(None);
            }
            let sep = lx.string().ok_or(None)?;
            if !lx.eat(")") || sep.is_empty() {
                return Err(None);
            }
            let mut parts: Vec<&str> = name.split(sep.as_str()).collect();
            while parts.last() == Some(&"") {
                parts.pop();
            }
            let index = if lx.eat(".first") {
                0
            } else if lx.eat("[") {
                let n = lx.integer().ok_or(None)?;
                if !lx.eat("]") {
                    return Err(None);
                }
                n
            } else {
                return Err(None);
            };
            let len = parts.len() as i64;
            let i = if index < 0 { len + index } else { index };
            return Ok(usize::try_from(i)
                .ok()
                .and_then(|i| parts.get(i))
                .map(|s| s.to_string()));
        }
        return Ok(Some(name));
    }
    if lx.eat("worker_id") {
        return Ok(Some(env.var("SERVERENGINE_WORKER_ID").unwrap_or_default()));
    }
    if let Some(s) = lx.string() {
        return Ok(Some(s));
    }
    Err(None)
}

/// Evaluates the code between `#{` and `}`. Errors carry the message to show.
pub(crate) fn eval(code: &str, env: &dyn Env) -> Result<String, String> {
    let mut lx = Lexer { s: code, pos: 0 };
    let mut value = match primary(&mut lx, env) {
        Ok(v) => v,
        Err(Some(msg)) => return Err(msg),
        Err(None) => return Err(unsupported(code)),
    };
    while lx.eat("||") {
        let next = match primary(&mut lx, env) {
            Ok(v) => v,
            Err(Some(msg)) => return Err(msg),
            Err(None) => return Err(unsupported(code)),
        };
        if value.is_none() {
            value = next;
        }
    }
    if !lx.at_end() {
        return Err(unsupported(code));
    }
    Ok(value.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fixed environment for tests.
    pub(crate) struct FakeEnv(pub HashMap<String, String>, pub Option<String>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn hostname(&self) -> Option<String> {
            self.1.clone()
        }
    }

    pub(crate) fn fake() -> FakeEnv {
        let mut m = HashMap::new();
        m.insert("X".to_string(), "ex".to_string());
        m.insert("EMPTY".to_string(), String::new());
        FakeEnv(m, Some("agg-1.az-a.example".to_string()))
    }

    #[test]
    fn forms() {
        let e = fake();
        assert_eq!(eval(r#"ENV["X"]"#, &e).as_deref(), Ok("ex"));
        assert_eq!(eval(r#" ENV['X'] "#, &e).as_deref(), Ok("ex"));
        assert_eq!(eval(r#"ENV["NOPE"]"#, &e).as_deref(), Ok(""));
        assert_eq!(eval(r#"ENV.fetch("X")"#, &e).as_deref(), Ok("ex"));
        assert_eq!(eval(r#"ENV.fetch("NOPE", "d")"#, &e).as_deref(), Ok("d"));
        assert_eq!(eval(r#"ENV.fetch('NOPE','d')"#, &e).as_deref(), Ok("d"));
        assert_eq!(
            eval(r#"ENV.fetch("NOPE")"#, &e),
            Err("embedded Ruby: environment variable 'NOPE' is not set (ENV.fetch without a default)".to_string())
        );
        assert_eq!(eval(r#"ENV["NOPE"] || "d""#, &e).as_deref(), Ok("d"));
        assert_eq!(eval(r#"ENV["EMPTY"] || "d""#, &e).as_deref(), Ok(""));
        assert_eq!(
            eval("Socket.gethostname", &e).as_deref(),
            Ok("agg-1.az-a.example")
        );
        assert_eq!(eval("hostname", &e).as_deref(), Ok("agg-1.az-a.example"));
        assert_eq!(
            eval(r#"Socket.gethostname.split(".")[0]"#, &e).as_deref(),
            Ok("agg-1")
        );
        assert_eq!(
            eval(r#"Socket.gethostname.split('.')[-1]"#, &e).as_deref(),
            Ok("example")
        );
        assert_eq!(
            eval(r#"Socket.gethostname.split(".").first"#, &e).as_deref(),
            Ok("agg-1")
        );
        assert_eq!(
            eval(r#"Socket.gethostname.split(".")[9]"#, &e).as_deref(),
            Ok("")
        );
        assert_eq!(eval("worker_id", &e).as_deref(), Ok(""));
    }

    #[test]
    fn refused() {
        let e = fake();
        for code in [
            "1 + 1",
            "`id`",
            "File.read('/etc/passwd')",
            "ENV",
            "ENV[X]",
            "ENV['X'].upcase",
            "hostnames",
            "",
        ] {
            assert_eq!(eval(code, &e), Err(unsupported(code)), "{code}");
        }
        assert_eq!(
            unsupported(" 1+1 "),
            "embedded Ruby `1+1` is not supported; weir evaluates only ENV[...], ENV.fetch(...) and Socket.gethostname"
        );
    }
}
