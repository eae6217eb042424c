//! A tail request as it travels in a URL query: `tag`, `grep` and `exclude` (repeatable),
//! `source`, `format` and `limit`. The server reads it with [`TailRequest::from_query`]; the
//! `weir tail` client writes it with [`TailRequest::to_query`].

use crate::filter::{FieldMatch, FilterError, TailFilter};
use crate::format::LineFormat;

/// Why a query was refused. The server answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A bad `tag`, `grep` or `exclude`.
    #[error("{param}: {source}")]
    Filter {
        /// The query parameter.
        param: &'static str,
        /// What is wrong.
        source: FilterError,
    },
    /// A format other than `ltsv`, `json` or `out_file`.
    #[error("format: '{0}' is not one of ltsv, json, out_file")]
    Format(String),
    /// A limit that is not a whole number above zero.
    #[error("limit: '{0}' is not a whole number above 0")]
    Limit(String),
    /// A parameter given twice that may appear once.
    #[error("{0}: given more than once")]
    Repeated(&'static str),
    /// A parameter weir does not know.
    #[error("unknown parameter '{0}' (known: tag, grep, exclude, source, format, limit)")]
    Unknown(String),
}

/// A subscriber's request: what to send and how.
#[derive(Debug, Clone)]
pub struct TailRequest {
    /// Which events.
    pub filter: TailFilter,
    /// How each event is written.
    pub format: LineFormat,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

impl Default for TailRequest {
    fn default() -> Self {
        TailRequest {
            filter: TailFilter::default(),
            format: LineFormat::Ltsv,
            limit: None,
        }
    }
}

fn once<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), RequestError> {
    if slot.is_some() {
        return Err(RequestError::Repeated(name));
    }
    *slot = Some(v);
    Ok(())
}

impl TailRequest {
    /// Reads a URL query (without the `?`), `application/x-www-form-urlencoded` as browsers
    /// and curl's `--data-urlencode` write it. `token` is let through for the admin endpoint,
    /// which checks it; any other unknown parameter is an error.
    pub fn from_query(query: &str) -> Result<TailRequest, RequestError> {
        let mut filter = TailFilter::default();
        let mut tag = None;
        let mut source = None;
        let mut format = None;
        let mut limit = None;
        let condition = |param: &'static str, v: &str| {
            FieldMatch::parse(v).map_err(|source| RequestError::Filter { param, source })
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "tag" => once(&mut tag, "tag", v.into_owned())?,
                "source" => once(&mut source, "source", v.into_owned())?,
                "format" => {
                    let f = LineFormat::parse(&v).ok_or_else(|| RequestError::Format(v.into()))?;
                    once(&mut format, "format", f)?;
                }
                "limit" => {
                    let n = v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| RequestError::Limit(v.clone().into_owned()))?;
                    once(&mut limit, "limit", n)?;
                }
                "grep" => filter = filter.grep(condition("grep", &v)?),
                "exclude" => filter = filter.exclude(condition("exclude", &v)?),
                "token" => {}
                other => return Err(RequestError::Unknown(other.to_string())),
            }
        }
        if let Some(t) = tag {
            filter = filter.tag(&t).map_err(|source| RequestError::Filter {
                param: "tag",
                source,
            })?;
        }
        if let Some(s) = source {
            filter = filter.source(s);
        }
        Ok(TailRequest {
            filter,
            format: format.unwrap_or(LineFormat::Ltsv),
            limit,
        })
    }

    /// Writes the request as a URL query (without the `?`) that [`TailRequest::from_query`]
    /// reads back.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(t) = self.filter.tag_pattern() {
            q.append_pair("tag", t);
        }
        if let Some(s) = self.filter.source_id() {
            q.append_pair("source", s);
        }
        for m in self.filter.greps() {
            q.append_pair("grep", m.as_str());
        }
        for m in self.filter.excludes() {
            q.append_pair("exclude", m.as_str());
        }
        q.append_pair("format", self.format.name());
        if let Some(n) = self.limit {
            q.append_pair("limit", &n.to_string());
        }
        q.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_every_parameter() {
        let r = TailRequest::from_query(
            "tag=blog.**%20app.*&grep=level%3Derror&grep=%24.a.b%3D%5Ex&exclude=msg=ping&format=json&limit=5&source=in1&token=t",
        )
        .unwrap();
        assert_eq!(r.filter.tag_pattern(), Some("blog.** app.*"));
        assert_eq!(r.filter.source_id(), Some("in1"));
        let greps: Vec<_> = r.filter.greps().iter().map(|m| m.as_str()).collect();
        assert_eq!(greps, ["level=error", "$.a.b=^x"]);
        assert_eq!(r.filter.excludes()[0].as_str(), "msg=ping");
        assert_eq!(r.format, LineFormat::Json);
        assert_eq!(r.limit, Some(5));
    }

    #[test]
    fn defaults() {
        let r = TailRequest::from_query("").unwrap();
        assert_eq!(r.format, LineFormat::Ltsv);
        assert_eq!(r.limit, None);
        assert!(r.filter.wants("any", "tag"));
    }

    #[test]
    fn refusals() {
        let e = |q: &str| TailRequest::from_query(q).unwrap_err().to_string();
        assert_eq!(
            e("format=csv"),
            "format: 'csv' is not one of ltsv, json, out_file"
        );
        assert_eq!(e("limit=0"), "limit: '0' is not a whole number above 0");
        assert_eq!(e("limit=-1"), "limit: '-1' is not a whole number above 0");
        assert_eq!(e("limit=1&limit=2"), "limit: given more than once");
        assert_eq!(e("grep=level"), "grep: 'level': expected key=regex");
        assert!(e("exclude=a=(").starts_with("exclude: 'a=(': "));
        assert!(e("tag=a.{b").starts_with("tag: tag pattern 'a.{b': "));
        assert!(e("greps=a=b").starts_with("unknown parameter 'greps'"));
    }

    proptest! {
        #[test]
        fn query_round_trip(
            tag in proptest::option::of("[a-z]{1,5}(\\.(\\*\\*|\\*|[a-z]{1,4})){0,3}"),
            greps in proptest::collection::vec("[a-z$ &%+=]{1,6}=[a-z &%+=#?]{0,8}", 0..4),
            excludes in proptest::collection::vec("[a-z]{1,6}=[a-z &%+=]{0,8}", 0..3),
            limit in proptest::option::of(1u64..u64::MAX),
            format in prop_oneof![Just(LineFormat::Ltsv), Just(LineFormat::Json), Just(LineFormat::OutFile)],
        ) {
            let mut filter = TailFilter::default();
            if let Some(t) = &tag {
                filter = filter.tag(t).unwrap();
            }
            for g in &greps {
                match FieldMatch::parse(g) {
                    Ok(m) => filter = filter.grep(m),
                    Err(_) => return Ok(()),
                }
            }
            for x in &excludes {
                match FieldMatch::parse(x) {
                    Ok(m) => filter = filter.exclude(m),
                    Err(_) => return Ok(()),
                }
            }
            let req = TailRequest { filter, format, limit };
            let back = TailRequest::from_query(&req.to_query()).unwrap();
            prop_assert_eq!(back.filter.tag_pattern(), tag.as_deref());
            let g: Vec<_> = back.filter.greps().iter().map(|m| m.as_str().to_string()).collect();
            prop_assert_eq!(g, greps);
            let x: Vec<_> = back.filter.excludes().iter().map(|m| m.as_str().to_string()).collect();
            prop_assert_eq!(x, excludes);
            prop_assert_eq!(back.limit, limit);
            prop_assert_eq!(back.format, format);
        }

        #[test]
        fn any_query_is_read_or_refused(q in "\\PC{0,60}") {
            let _ = TailRequest::from_query(&q);
        }
    }
}
