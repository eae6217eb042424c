//! The S3 output end to end with the real weir process and a real S3-compatible server (moto,
//! installed by `make test-deps`): acked events, a flush at SIGTERM, and the object that lands
//! in the bucket checked byte for byte, key included, with boto3 (which moto installs).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_e2e::{
    free_port, python, record, root, run_with_timeout, with_chunk, RawClient, Scratch, Weir,
};
use weir_proto::{encode_forward, EventTime};

/// A moto S3 server on 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
    dir: Scratch,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers HTTP; on another port if that
    /// one is taken (by another test) before moto binds it.
    fn start() -> Moto {
        let bin = root().join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run `make test-deps`",
            bin.display()
        );
        let dir = Scratch::new("moto");
        let log = dir.path().join("moto.log");
        for _ in 0..5 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("moto's log");
            let err = out.try_clone().expect("moto's log");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("starting moto");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Address already in use") {
                        eprintln!("moto found port {port} taken; trying another");
                        break;
                    }
                    panic!("moto exited early with {status}:\n{text}");
                }
                // An HTTP answer, not only a connection: the port may be another test's.
                if answers_http(port) && child.try_wait().is_ok_and(|s| s.is_none()) {
                    return Moto { child, port, dir };
                }
                assert!(Instant::now() < deadline, "moto did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto found its port taken five times");
    }
}

/// True when something on `port` answers an HTTP request.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 7];
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut b).is_ok()
        && &b == b"HTTP/1."
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
            eprintln!("moto's log:\n{log}");
        }
    }
}

/// Every object in the bucket as "key\tbody" lines, gzip bodies decompressed.
fn objects(moto: &Moto, bucket: &str) -> String {
    let script = format!(
        r#"
import boto3, gzip
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for o in s3.list_objects_v2(Bucket="{bucket}").get("Contents", []):
    body = s3.get_object(Bucket="{bucket}", Key=o["Key"])["Body"].read()
    if o["Key"].endswith(".gz"):
        body = gzip.decompress(body)
    print(o["Key"] + "\t" + body.decode())
"#,
        port = moto.port
    );
    let (ok, out, err) = run_with_timeout(
        Command::new(python()).args(["-c", &script]),
        Duration::from_secs(30),
    );
    assert!(ok, "listing the bucket failed: {err}");
    out
}

#[test]
fn acked_events_land_in_s3_in_an_athena_layout() {
    let moto = Moto::start();
    let config = format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
</source>
<match logs.**>
  @type s3
  aws_key_id test
  aws_sec_key test
  s3_bucket weir-e2e
  s3_region us-east-1
  s3_endpoint http://127.0.0.1:{moto}
  force_path_style true
  path logs/${{tag[1]}}/dt=%Y-%m-%d/
  store_as gzip
  <format>
    @type json
  </format>
  <buffer tag,time>
    @type file
    path {{dir}}/buffer
    timekey 3600
    timekey_use_utc true
  </buffer>
</match>
"#,
        moto = moto.port
    );
    let mut weir = Weir::start("s3", &config);
    let records: Vec<Vec<u8>> = (0..3)
        .map(|i| record(&format!(r#"{{"seq":{i},"msg":"hello"}}"#)))
        .collect();
    let entries: Vec<(EventTime, &[u8])> = records
        .iter()
        .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
        .collect();
    let mut c = RawClient::connect(&weir);
    c.send(&encode_forward(
        "logs.web.111111111111.vpc-a",
        &entries,
        &with_chunk("s3"),
    ));
    assert_eq!(c.ack().expect("an ack"), "s3");
    drop(c);
    // Nothing is due yet (timekey 1h); SIGTERM flushes at shutdown.
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "weir's log:\n{}",
        weir.stderr_lines().join("\n")
    );
    let listing = objects(&moto, "weir-e2e");
    assert_eq!(
        listing.trim_end(),
        "logs/web/dt=2023-11-14/2023111422_0.gz\t{\"seq\":0,\"msg\":\"hello\"}\n{\"seq\":1,\"msg\":\"hello\"}\n{\"seq\":2,\"msg\":\"hello\"}",
        "weir's log:\n{}",
        weir.stderr_lines().join("\n")
    );
}
