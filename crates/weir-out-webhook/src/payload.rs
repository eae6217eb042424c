//! Slack messages: the lines of a chunk cut into messages that fit Slack's limits, and the
//! JSON body an incoming webhook takes.

use serde_json::{Map, Value};

/// How a message looks besides its text: fluent-plugin-slack's `channel`, `username`,
/// `icon_emoji`, `icon_url`, `color`, `mrkdwn` and `link_names`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageStyle {
    /// `channel`, with a leading `#` added to a bare name (as fluent-plugin-slack does).
    pub channel: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `icon_emoji`.
    pub icon_emoji: Option<String>,
    /// `icon_url`.
    pub icon_url: Option<String>,
    /// `color`: the text goes into an attachment with this colour bar.
    pub color: Option<String>,
    /// `mrkdwn` (true).
    pub mrkdwn: bool,
    /// `link_names` (false in weir).
    pub link_names: bool,
}

impl MessageStyle {
    /// The JSON body of one message.
    pub fn body(&self, text: &str) -> Vec<u8> {
        let mut m = Map::new();
        if let Some(c) = &self.channel {
            m.insert("channel".into(), c.clone().into());
        }
        if let Some(u) = &self.username {
            m.insert("username".into(), u.clone().into());
        }
        if let Some(e) = &self.icon_emoji {
            m.insert("icon_emoji".into(), e.clone().into());
        }
        if let Some(u) = &self.icon_url {
            m.insert("icon_url".into(), u.clone().into());
        }
        match &self.color {
            Some(color) => {
                let mut a = Map::new();
                a.insert("fallback".into(), text.into());
                a.insert("text".into(), text.into());
                a.insert("color".into(), color.clone().into());
                if self.mrkdwn {
                    a.insert("mrkdwn_in".into(), serde_json::json!(["text"]));
                }
                m.insert("attachments".into(), Value::Array(vec![Value::Object(a)]));
            }
            None => {
                m.insert("text".into(), text.into());
            }
        }
        m.insert("mrkdwn".into(), self.mrkdwn.into());
        if self.link_names {
            m.insert("link_names".into(), true.into());
        }
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }
}

/// What ends a line that is cut to fit a message.
pub const ELLIPSIS: char = '…';

/// Cuts a stream of lines into message texts of at most `max_chars` characters and
/// `max_lines` lines (0: no line limit), lines joined by `\n`. A line longer than `max_chars`
/// on its own is cut and ends with [`ELLIPSIS`]. The cut depends only on the lines and the
/// limits, so a retried chunk is cut the same way.
#[derive(Debug)]
pub struct Batcher {
    max_chars: usize,
    max_lines: usize,
    text: String,
    chars: usize,
    lines: usize,
}

impl Batcher {
    /// A batcher for these limits (`max_chars` at least 1).
    pub fn new(max_chars: usize, max_lines: usize) -> Self {
        Batcher {
            max_chars: max_chars.max(1),
            max_lines,
            text: String::new(),
            chars: 0,
            lines: 0,
        }
    }

    /// Adds a line; returns the message it completes, if it does not fit in the current one.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let mut line_chars = line.chars().count();
        let cut;
        let line = if line_chars > self.max_chars {
            let keep = self.max_chars - 1;
            let end = line.char_indices().nth(keep).map_or(line.len(), |(i, _)| i);
            cut = format!("{}{ELLIPSIS}", &line[..end]);
            line_chars = keep + 1;
            cut.as_str()
        } else {
            line
        };
        let full = self.lines > 0
            && (self.chars + 1 + line_chars > self.max_chars
                || (self.max_lines > 0 && self.lines >= self.max_lines));
        let done = if full { self.take() } else { None };
        if self.lines > 0 {
            self.text.push('\n');
            self.chars += 1;
        }
        self.text.push_str(line);
        self.chars += line_chars;
        self.lines += 1;
        done
    }

    /// The last message, if any lines are left.
    pub fn finish(&mut self) -> Option<String> {
        self.take()
    }

    fn take(&mut self) -> Option<String> {
        if self.lines == 0 {
            return None;
        }
        self.chars = 0;
        self.lines = 0;
        Some(std::mem::take(&mut self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(lines: &[&str], max_chars: usize, max_lines: usize) -> Vec<String> {
        let mut b = Batcher::new(max_chars, max_lines);
        let mut out: Vec<String> = lines.iter().filter_map(|l| b.push(l)).collect();
        out.extend(b.finish());
        out
    }

    #[test]
    fn batches_by_size_and_count() {
        assert_eq!(cut(&["a", "b", "c"], 100, 0), vec!["a\nb\nc"]);
        assert_eq!(cut(&["aaa", "bbb", "ccc"], 7, 0), vec!["aaa\nbbb", "ccc"]);
        assert_eq!(cut(&["a", "b", "c"], 100, 2), vec!["a\nb", "c"]);
        assert_eq!(cut(&["abcdef", "x"], 4, 0), vec!["abc…", "x"]);
        assert_eq!(cut(&["ééééé"], 3, 0), vec!["éé…"]);
        assert!(cut(&[], 10, 0).is_empty());
        assert_eq!(cut(&["", ""], 10, 0), vec!["\n"]);
    }

    #[test]
    fn slack_payload_shape() {
        let style = MessageStyle {
            channel: Some("#alerts".into()),
            username: Some("weir".into()),
            icon_emoji: Some(":rotating_light:".into()),
            mrkdwn: true,
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&style.body("a \"b\"\nc")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"channel": "#alerts", "username": "weir", "icon_emoji": ":rotating_light:", "text": "a \"b\"\nc", "mrkdwn": true})
        );
        let style = MessageStyle {
            color: Some("danger".into()),
            mrkdwn: true,
            link_names: true,
            ..Default::default()
        };
        let v: Value = serde_json::from_slice(&style.body("x")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"attachments": [{"fallback": "x", "text": "x", "color": "danger", "mrkdwn_in": ["text"]}], "mrkdwn": true, "link_names": true})
        );
    }

    proptest::proptest! {
        /// Every message fits the limits, and no line is lost or reordered.
        #[test]
        fn messages_fit_and_keep_every_line(lines in proptest::collection::vec("[a-zé ]{0,30}", 0..40), max_chars in 1usize..60, max_lines in 0usize..5) {
            let msgs = cut(&lines.iter().map(String::as_str).collect::<Vec<_>>(), max_chars, max_lines);
            for m in &msgs {
                proptest::prop_assert!(m.chars().count() <= max_chars, "{m:?} over {max_chars}");
                if max_lines > 0 {
                    proptest::prop_assert!(m.split('\n').count() <= max_lines);
                }
            }
            let got: Vec<String> = msgs.iter().flat_map(|m| m.split('\n').map(str::to_string).collect::<Vec<_>>()).collect();
            let want: Vec<String> = lines.iter().map(|l| {
                if l.chars().count() > max_chars {
                    let mut s: String = l.chars().take(max_chars - 1).collect();
                    s.push(ELLIPSIS);
                    s
                } else { l.clone() }
            }).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
