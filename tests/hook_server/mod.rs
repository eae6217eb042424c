//! A local HTTP/1.1 server that records every request, for the webhook tests: real sockets on
//! 127.0.0.1, a thread per connection, keep-alive, `Content-Length` bodies. Each request takes
//! the next scripted answer (status and extra headers); when the script is empty it answers
//! the default (200 `ok`, as Slack does).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// When its body had arrived.
    pub at: Instant,
    /// `POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An answer: status and extra headers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// A bare status.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
}

/// The server; it stops accepting when dropped (open connections end with the test).
pub struct HookServer {
    /// The port it listens on.
    pub port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve(stream: TcpStream, state: Arc<(Mutex<State>, Condvar)>) {
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(stream);
    while let Some(req) = read_request(&mut r) {
        let answer = {
            let (m, cv) = &*state;
            let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
            st.requests.push(req);
            cv.notify_all();
            st.script
                .pop_front()
                .or_else(|| st.default.clone())
                .unwrap_or_else(|| Answer::status(200))
        };
        let body: &[u8] = if answer.status == 200 {
            b"ok"
        } else {
            b"error"
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
            answer.status,
            reason(answer.status),
            body.len()
        );
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(body))
            .is_err()
        {
            return;
        }
    }
}

impl HookServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the hook server");
        let port = listener.local_addr().expect("local addr").port();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(conn, st));
            }
        });
        HookServer { port, state }
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        let mut st = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        st.script.extend(answers);
    }

    /// Answers every unscripted request with this.
    pub fn always(&self, answer: Answer) {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .default = Some(answer);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }

    /// Waits (up to `timeout`) until at least `n` requests arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.state;
        let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
        while st.requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        st.requests.clone()
    }

    /// The URL of a Slack-like webhook on this server.
    pub fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/services/T0001/B0001/SeCrEtToKeN",
            self.port
        )
    }
}
