//! `weir flush` and `weir reload`: ask a running weir to write out its buffers now, or to
//! read its config file again, through its admin endpoint (`POST /api/plugins.flushBuffers`,
//! `POST /api/config.reload`) or with a signal (SIGUSR1, SIGHUP).
//!
//! The HTTP call waits for the answer, so a reload's config errors are printed here; a signal
//! only says it was sent, and the answer is in weir's log.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

/// Arguments of `weir flush` and `weir reload`.
#[derive(Args)]
pub struct AdminCallArgs {
    /// The admin endpoint (a monitor_agent source or the rpc_endpoint), as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:24220")]
    addr: String,
    /// The admin token, sent as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Send the signal to this process instead of calling the admin endpoint.
    #[arg(long, conflicts_with = "pid_file")]
    pid: Option<i32>,
    /// Send the signal to the process whose id is in this file (`weir run --pid-file`).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// How long to wait for the endpoint's answer.
    #[arg(long, default_value = "120", value_name = "SECONDS")]
    timeout: u64,
}

/// What to ask for.
#[derive(Clone, Copy)]
pub enum Call {
    /// Write out every buffer now.
    Flush,
    /// Read the config file again.
    Reload,
}

impl Call {
    fn path(self) -> &'static str {
        match self {
            Call::Flush => "/api/plugins.flushBuffers",
            Call::Reload => "/api/config.reload",
        }
    }

    fn signal(self) -> (libc::c_int, &'static str) {
        match self {
            Call::Flush => (libc::SIGUSR1, "SIGUSR1"),
            Call::Reload => (libc::SIGHUP, "SIGHUP"),
        }
    }
}

/// Runs `weir flush` or `weir reload`.
pub fn call(call: Call, args: AdminCallArgs) -> anyhow::Result<ExitCode> {
    let pid = match (&args.pid, &args.pid_file) {
        (Some(pid), _) => Some(*pid),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the pid file {}", file.display()))?;
            Some(
                text.trim()
                    .parse::<i32>()
                    .with_context(|| format!("{}: not a process id", file.display()))?,
            )
        }
        (None, None) => None,
    };
    if let Some(pid) = pid {
        if pid <= 0 {
            bail!("{pid} is not a process id");
        }
        let (sig, name) = call.signal();
        // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
        if unsafe { libc::kill(pid, sig) } != 0 {
            bail!(
                "sending {name} to process {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
        eprintln!("sent {name} to process {pid}; weir's log says how it went");
        return Ok(ExitCode::SUCCESS);
    }
    let (status, body) = post(
        &args.addr,
        call.path(),
        args.token.as_deref(),
        Duration::from_secs(args.timeout),
    )?;
    if status == 200 {
        println!("{}", body.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} answered {status}:", args.addr);
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => {
            if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
                eprintln!("{m}");
            }
            for e in v
                .get("errors")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                eprintln!("error: {}", e.as_str().unwrap_or_default());
            }
        }
        Err(_) => eprintln!("{}", body.trim_end()),
    }
    Ok(ExitCode::FAILURE)
}

/// One `POST` with an empty body over HTTP/1.1; returns the status code and the body.
fn post(
    addr: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(10))
        .with_context(|| format!("connecting to the admin endpoint {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .with_context(|| format!("sending the request to {addr}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {addr}"))?;
    parse_response(&raw).with_context(|| format!("the answer from {addr}"))
}

/// Splits an HTTP/1.1 response (with `Content-Length` or chunked) into status and body.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("not an HTTP response");
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .context("no status line")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_length_or_chunks() {
        let (s, b) =
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}").unwrap();
        assert_eq!((s, b.as_str()), (200, "{\"ok\":true}"));
        let (s, b) = parse_response(
            b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"ok\r\n8\r\n\":false}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_str()), (500, "{\"ok\":false}"));
        assert!(parse_response(b"garbage").is_err());
    }
}
