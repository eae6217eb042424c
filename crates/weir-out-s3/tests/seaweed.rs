//! The S3 output against SeaweedFS (`weed mini`), which checks SigV4 signatures, Content-MD5
//! and CRC32 and keeps data on disk: single PUTs and multipart uploads byte for byte, the
//! server stopped mid-run, bad credentials at start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_out_s3::{S3Error, S3Output};

// 2024-03-05 07:10:00 UTC.
const T1: u32 = 1_709_622_600;

fn conf(endpoint: &str, bucket: &str, extra: &str, buffer: &str) -> String {
    format!(
        "<match **>\n @type s3\n {}\n path p/\n {extra}\n <format>\n @type json\n </format>\n <buffer time>\n timekey 1h\n timekey_wait 0s\n timekey_use_utc true\n retry_wait 0.2\n retry_max_interval 1s\n retry_randomize false\n flush_thread_interval 0.1\n {buffer}\n </buffer>\n</match>\n",
        conn(endpoint, bucket)
    )
}

fn lines(range: std::ops::Range<u64>, msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for s in range {
        out.extend_from_slice(format!("{{\"seq\":{s},\"msg\":\"{msg}\"}}\n").as_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_multipart_pass_a_strict_server_byte_for_byte() {
    let weed = Weed::start();
    // Small: one PUT with Content-MD5 and CRC32, both verified by the server.
    let (cfg, bcfg) = parse_config(&conf(&weed.endpoint(), "strict", "store_as gzip", ""));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "t", &batch((0..10).map(|s| (s, T1)), "small")).await;
    buffer.shutdown(true).await;
    let keys = list_keys(&out, "strict").await;
    assert_eq!(keys, vec!["p/2024030507_0.gz"]);
    assert_eq!(
        gunzip(&get_body(&out, "strict", &keys[0]).await),
        lines(0..10, "small")
    );

    // Large: about 13 MiB of text in 5 MiB parts.
    let (cfg, bcfg) = parse_config(&conf(
        &weed.endpoint(),
        "strict",
        "store_as text\n multipart_threshold 6m\n multipart_chunksize 5m",
        "chunk_limit_size 64m",
    ));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    let msg = "m".repeat(200);
    let n = 60_000u64;
    deliver(&buffer, "t", &batch((0..n).map(|s| (s, T1)), &msg)).await;
    buffer.shutdown(true).await;
    let keys = list_keys(&out, "strict").await;
    assert_eq!(keys, vec!["p/2024030507_0.gz", "p/2024030507_0.txt"]);
    let body = get_body(&out, "strict", "p/2024030507_0.txt").await;
    let expected = lines(0..n, &msg);
    assert!(expected.len() > 12 * 1024 * 1024, "{}", expected.len());
    assert!(
        body == expected,
        "multipart body differs ({} vs {} bytes)",
        body.len(),
        expected.len()
    );
    let head = out
        .client()
        .head_object()
        .bucket("strict")
        .key("p/2024030507_0.txt")
        .send()
        .await
        .expect("head");
    let etag = head.e_tag().unwrap_or_default().to_string();
    assert!(
        etag.trim_matches('"').ends_with("-3"),
        "a three-part upload: {etag}"
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    // No multipart upload is left open.
    let open = out
        .client()
        .list_multipart_uploads()
        .bucket("strict")
        .send()
        .await
        .expect("list uploads");
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stopped_mid_run_gets_everything_once_after_it_returns() {
    let mut weed = Weed::start();
    let (cfg, bcfg) = parse_config(&conf(&weed.endpoint(), "outage", "store_as json", ""));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "t", &batch((0..3).map(|s| (s, T1)), "before")).await;

    weed.stop();
    for round in 0..3u64 {
        buffer
            .append(
                "t",
                &batch(
                    (10 * (round + 1)..10 * (round + 1) + 2).map(|s| (s, T1)),
                    "during",
                ),
            )
            .await
            .expect("append");
        buffer.flush_all();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nothing could be delivered while the server was down.
    let s = buffer.stats();
    assert!(
        s.queued_chunks + s.in_flight_chunks + s.staged_chunks >= 1,
        "{s:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    weed.restart();
    wait_delivered(&buffer, Duration::from_secs(60)).await;
    buffer.shutdown(true).await;

    let keys = list_keys(&out, "outage").await;
    // One chunk before, then the chunks queued during the outage, each once, indexes in order.
    assert_eq!(
        keys.first().map(String::as_str),
        Some("p/2024030507_0.json")
    );
    let mut all = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k, &format!("p/2024030507_{i}.json"), "no gaps: {keys:?}");
        all.extend(get_body(&out, "outage", k).await);
    }
    let text = String::from_utf8_lossy(&all).to_string();
    let mut seqs: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split("\"seq\":").nth(1))
        .filter_map(|r| r.split(',').next())
        .filter_map(|n| n.parse().ok())
        .collect();
    seqs.sort();
    assert_eq!(
        seqs,
        vec![0, 1, 2, 10, 11, 20, 21, 30, 31],
        "every event exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_at_start_with_a_clear_error() {
    let weed = Weed::start();
    let text = conf(&weed.endpoint(), "creds", "", "").replace(SECRET_KEY, "not-the-secret");
    let (cfg, _) = parse_config(&text);
    match S3Output::start(cfg).await {
        Err(e @ S3Error::ApiKeyCheck(_)) => {
            let m = e.to_string();
            assert!(m.contains("can't call S3 API"), "{m}");
            assert!(m.contains("credentials"), "{m}");
        }
        other => panic!("expected an API key error, got {other:?}"),
    }
}
