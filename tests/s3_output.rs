//! The S3 output end to end with the real weir process and a real S3-compatible server (moto,
//! installed by `make test-deps`): acked events, a flush at SIGTERM, and the object that lands
//! in the bucket checked byte for byte, key included, with boto3 (which moto installs).

use std::process::Command;
use std::time::Duration;

use weir_e2e::{python, record, run_with_timeout, with_chunk, Moto, RawClient, Weir};
use weir_proto::{encode_forward, EventTime};

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
