//! The S3 output against moto 5 (in memory), partly through a fault-injecting proxy: keys and
//! bodies byte for byte, `%{index}` probing, store_as variants, bucket checks, exactly-once
//! keys across a crash, 500/503 answers and slow answers.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use weir_e2e::Moto;
use weir_out_s3::{S3Error, S3Output, META_KEY};
use weir_store::{Buffer, BufferConfig, BufferType, ChunkRef, ChunkSink, WriteError};

// 2024-03-05 07:10:00 UTC and 07:20:00 UTC.
const T1: u32 = 1_709_622_600;
const T2: u32 = 1_709_623_200;

fn athena_conf(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "<match blog.**>\n @type s3\n {}\n path logs/${{tag[1]}}/dt=%Y-%m-%d/hour=%H/\n time_slice_format %Y%m%d%H\n store_as gzip\n {extra}\n <format>\n @type json\n </format>\n <buffer tag,time>\n timekey 1h\n timekey_wait 0s\n timekey_use_utc true\n retry_wait 0.2\n retry_randomize false\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
        conn(endpoint, bucket)
    )
}

fn expected_json(seqs: std::ops::Range<u64>, msg: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for s in seqs {
        out.extend_from_slice(format!("{{\"seq\":{s},\"msg\":\"{msg}\"}}\n").as_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn athena_layout_keys_and_bodies_are_byte_exact_and_index_is_probed() {
    let moto = Moto::start();
    let (cfg, bcfg) = parse_config(&athena_conf(&moto.endpoint(), "athena", ""));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());

    deliver(
        &buffer,
        "blog.nginx.123456789012.vpc-1",
        &batch((0..3).map(|s| (s, T1)), "a \"quoted\" line"),
    )
    .await;
    deliver(
        &buffer,
        "blog.nginx.123456789012.vpc-1",
        &batch((3..5).map(|s| (s, T2)), "second"),
    )
    .await;
    deliver(
        &buffer,
        "blog.app.123456789012.vpc-1",
        &batch((5..6).map(|s| (s, T1)), "app"),
    )
    .await;

    let keys = list_keys(&out, "athena").await;
    assert_eq!(
        keys,
        vec![
            "logs/app/dt=2024-03-05/hour=07/2024030507_0.gz",
            "logs/nginx/dt=2024-03-05/hour=07/2024030507_0.gz",
            "logs/nginx/dt=2024-03-05/hour=07/2024030507_1.gz",
        ]
    );
    let b0 = get_body(&out, "athena", &keys[1]).await;
    assert_eq!(&b0[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(gunzip(&b0), expected_json(0..3, "a \\\"quoted\\\" line"));
    let b1 = gunzip(&get_body(&out, "athena", &keys[2]).await);
    assert_eq!(b1, expected_json(3..5, "second"));
    let b2 = gunzip(&get_body(&out, "athena", &keys[0]).await);
    assert_eq!(b2, expected_json(5..6, "app"));

    let head = out
        .client()
        .head_object()
        .bucket("athena")
        .key(&keys[1])
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("application/x-gzip"));
    assert_eq!(
        head.checksum_crc32(),
        Some(weir_out_s3::crc32_base64(&b0).as_str()),
        "the object carries our CRC32"
    );
    buffer.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_as_variants_default_format_and_chunk_id_keys() {
    let moto = Moto::start();
    for (store_as, ext, ctype) in [
        ("json", "json", "application/json"),
        ("text", "txt", "text/plain"),
        ("zstd", "zst", "application/x-zst"),
    ] {
        let bucket = format!("variants-{store_as}");
        // fluent-plugin-s3's defaults: key %{path}%{time_slice}_%{index}.%{file_extension},
        // chunk keys `time` with a one-day timekey (time_slice %Y%m%d), format out_file.
        let conf = format!(
            "<match **>\n @type s3\n {}\n path raw/\n store_as {store_as}\n <buffer>\n timekey_use_utc true\n timekey_wait 0s\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
            conn(&moto.endpoint(), &bucket)
        );
        let (cfg, bcfg) = parse_config(&conf);
        let out = Arc::new(S3Output::start(cfg).await.expect("start"));
        let (buffer, _h) = open_buffer(bcfg, out.clone());
        deliver(&buffer, "x.y", &batch([(1, T1)], "m")).await;
        let keys = list_keys(&out, &bucket).await;
        assert_eq!(keys, vec![format!("raw/20240305_0.{ext}")]);
        let body = get_body(&out, &bucket, &keys[0]).await;
        let text = if store_as == "zstd" {
            zstd::decode_all(&body[..]).expect("zstd")
        } else {
            body
        };
        // out_file: time, tab, tag (stored with the event: `tag` is not a chunk key), tab,
        // JSON.
        assert_eq!(
            String::from_utf8_lossy(&text),
            "2024-03-05T07:10:00+00:00\tx.y\t{\"seq\":1,\"msg\":\"m\"}\n"
        );
        let head = out
            .client()
            .head_object()
            .bucket(&bucket)
            .key(&keys[0])
            .send()
            .await
            .expect("head");
        assert_eq!(head.content_type(), Some(ctype));
        buffer.shutdown(true).await;
    }

    // check_object false with ${chunk_id}: no HEAD probing, the chunk id in the key.
    let conf = format!(
        "<match **>\n @type s3\n {}\n check_object false\n s3_object_key_format %{{path}}${{chunk_id}}.%{{file_extension}}\n path ids/\n <buffer>\n timekey_wait 0s\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
        conn(&moto.endpoint(), "ids")
    );
    let (cfg, bcfg) = parse_config(&conf);
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "x", &batch([(1, T1)], "m")).await;
    deliver(&buffer, "x", &batch([(2, T1)], "m")).await;
    let keys = list_keys(&out, "ids").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        let id = k
            .strip_prefix("ids/")
            .and_then(|k| k.strip_suffix(".gz"))
            .expect("shape");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    buffer.shutdown(true).await;
}

/// With `<buffer time>` only, one chunk (one object) holds the events of several tags, and the
/// tag column of each line is that event's own tag, as fluent-plugin-s3 formats each event
/// with its tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_columns_hold_each_events_tag_without_a_tag_chunk_key() {
    let moto = Moto::start();
    let conf = format!(
        "<match **>\n @type s3\n {}\n path tags/\n store_as json\n <format>\n @type json\n </format>\n <inject>\n tag_key tag\n </inject>\n <buffer time>\n timekey_use_utc true\n flush_mode interval\n flush_interval 1h\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
        conn(&moto.endpoint(), "tags")
    );
    let (cfg, bcfg) = parse_config(&conf);
    assert!(bcfg.keep_tags && !bcfg.keys.tag);
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    for (seq, tag) in [(1, "app.a"), (2, "app.b"), (3, "app.a")] {
        buffer
            .append(tag, &batch([(seq, T1)], "m"))
            .await
            .expect("append");
    }
    buffer.flush_all();
    wait_delivered(&buffer, Duration::from_secs(60)).await;
    let keys = list_keys(&out, "tags").await;
    assert_eq!(keys, vec!["tags/20240305_0.json".to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&get_body(&out, "tags", &keys[0]).await),
        "{\"seq\":1,\"msg\":\"m\",\"tag\":\"app.a\"}\n\
         {\"seq\":2,\"msg\":\"m\",\"tag\":\"app.b\"}\n\
         {\"seq\":3,\"msg\":\"m\",\"tag\":\"app.a\"}\n"
    );
    buffer.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_bucket_creates_or_refuses_a_missing_bucket() {
    let moto = Moto::start();
    let conf = |extra: &str| {
        format!(
            "<match **>\n @type s3\n {}\n {extra}\n</match>\n",
            conn(&moto.endpoint(), "made-by-weir")
        )
    };
    let (cfg, _) = parse_config(&conf("auto_create_bucket false"));
    match S3Output::start(cfg).await {
        Err(S3Error::NoSuchBucket(b)) => assert_eq!(b, "made-by-weir"),
        other => panic!("expected NoSuchBucket, got {other:?}"),
    }
    let (cfg, _) = parse_config(&conf(""));
    let out = S3Output::start(cfg)
        .await
        .expect("start creates the bucket");
    out.client()
        .head_bucket()
        .bucket("made-by-weir")
        .send()
        .await
        .expect("bucket exists now");
    // check_bucket false: nothing is checked or created.
    let (cfg, _) = parse_config(&format!(
        "<match **>\n @type s3\n {}\n check_bucket false\n</match>\n",
        conn(&moto.endpoint(), "never-made")
    ));
    let out = S3Output::start(cfg).await.expect("start");
    assert!(out
        .client()
        .head_bucket()
        .bucket("never-made")
        .send()
        .await
        .is_err());
}

/// Uploads through the real output, then reports failure the first `crashes` times, as if the
/// process died after the upload and before the chunk was deleted.
struct CrashAfterUpload {
    inner: Arc<S3Output>,
    crashes: AtomicUsize,
}

impl ChunkSink for CrashAfterUpload {
    fn write<'a>(&'a self, c: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            self.inner.write_chunk(c).await?;
            if self
                .crashes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(WriteError::Retryable(
                    "simulated crash after the upload".into(),
                ));
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_upload_writes_the_same_key_no_duplicate_no_gap() {
    let moto = Moto::start();
    let dir = TempDir::new("crash");
    let conf = athena_conf(&moto.endpoint(), "crash", "");
    let file_buffer = |mut b: BufferConfig| {
        b.buffer_type = BufferConfig::file(dir.0.join("buf")).buffer_type;
        b
    };

    // First life: the upload succeeds, then the "process dies" before the chunk is deleted.
    let (cfg, bcfg) = parse_config(&conf);
    let bcfg = file_buffer(bcfg);
    assert!(matches!(bcfg.buffer_type, BufferType::File(_)));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let sink = Arc::new(CrashAfterUpload {
        inner: out.clone(),
        crashes: AtomicUsize::new(1),
    });
    let (buffer, h) = open_buffer(bcfg.clone(), sink.clone());
    buffer
        .append("blog.nginx.1.v", &batch((0..4).map(|s| (s, T1)), "first"))
        .await
        .expect("append");
    buffer.flush_all();
    while sink.crashes.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    buffer.shutdown(false).await;
    let _ = h.await;
    drop(buffer);
    assert_eq!(
        list_keys(&out, "crash").await,
        vec!["logs/nginx/dt=2024-03-05/hour=07/2024030507_0.gz"]
    );

    // Second life: recovery finds the chunk with its recorded key and writes that key again,
    // although HEAD would now say index 0 is taken.
    let (cfg, _) = parse_config(&conf);
    let out = Arc::new(S3Output::start(cfg).await.expect("restart"));
    let (buffer, report) = Buffer::open(bcfg.clone(), "out_s3").expect("reopen");
    assert_eq!(report.queued, 1, "the undelisted chunk is recovered");
    struct Check(Arc<S3Output>, std::sync::Mutex<Vec<Option<String>>>);
    impl ChunkSink for Check {
        fn write<'a>(&'a self, c: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
            if let Ok(mut v) = self.1.lock() {
                v.push(c.metadata(META_KEY));
            }
            self.0.write(c)
        }
    }
    let check = Arc::new(Check(out.clone(), std::sync::Mutex::new(Vec::new())));
    let h = weir_store::spawn_flusher(buffer.clone(), check.clone(), None);
    buffer.flush_all();
    wait_delivered(&buffer, Duration::from_secs(30)).await;
    // A new chunk of the same hour gets the next index: no gap, no duplicate.
    deliver(
        &buffer,
        "blog.nginx.1.v",
        &batch((4..6).map(|s| (s, T2)), "later"),
    )
    .await;
    buffer.shutdown(true).await;
    let _ = h.await;

    let seen = check.1.lock().expect("lock").clone();
    assert_eq!(
        seen.first().cloned().flatten().as_deref(),
        Some("logs/nginx/dt=2024-03-05/hour=07/2024030507_0.gz"),
        "the recovered chunk carries its key"
    );
    let keys = list_keys(&out, "crash").await;
    assert_eq!(
        keys,
        vec![
            "logs/nginx/dt=2024-03-05/hour=07/2024030507_0.gz",
            "logs/nginx/dt=2024-03-05/hour=07/2024030507_1.gz",
        ]
    );
    assert_eq!(
        gunzip(&get_body(&out, "crash", &keys[0]).await),
        expected_json(0..4, "first")
    );
    assert_eq!(
        gunzip(&get_body(&out, "crash", &keys[1]).await),
        expected_json(4..6, "later")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_answers_are_retried_and_everything_lands_once() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let (cfg, bcfg) = parse_config(&athena_conf(&proxy.endpoint(), "faults", ""));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());

    // More 503s than the SDK's own three attempts: the buffer's retries take over.
    proxy.fail_next(503, 7);
    deliver(&buffer, "blog.a.1.v", &batch((0..2).map(|s| (s, T1)), "x")).await;
    assert_eq!(proxy.faulted(), 7);
    proxy.fail_next(500, 5);
    deliver(&buffer, "blog.a.1.v", &batch((2..4).map(|s| (s, T1)), "y")).await;
    assert_eq!(proxy.faulted(), 12);

    let keys = list_keys(&out, "faults").await;
    assert_eq!(
        keys,
        vec![
            "logs/a/dt=2024-03-05/hour=07/2024030507_0.gz",
            "logs/a/dt=2024-03-05/hour=07/2024030507_1.gz",
        ]
    );
    assert_eq!(
        gunzip(&get_body(&out, "faults", &keys[0]).await),
        expected_json(0..2, "x")
    );
    assert_eq!(
        gunzip(&get_body(&out, "faults", &keys[1]).await),
        expected_json(2..4, "y")
    );
    buffer.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_past_the_write_timeout_still_land_once() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let conf = athena_conf(&proxy.endpoint(), "slow", "").replace(
        "retry_wait 0.2",
        "retry_wait 0.2\n delayed_commit_timeout 1s",
    );
    let (cfg, bcfg) = parse_config(&conf);
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());

    // A slow answer within the timeout: delivered on the first try.
    proxy.delay_next(Duration::from_millis(300), 2);
    deliver(&buffer, "blog.s.1.v", &batch([(0, T1)], "quick")).await;

    // The PUT is held for 2 s: the write times out after 1 s, but the PUT still reaches the
    // server. The retry writes the same recorded key: one object, not two.
    proxy.delay_next_matching("PUT ", Duration::from_secs(2), 1);
    buffer
        .append("blog.s.1.v", &batch([(1, T2)], "slow"))
        .await
        .expect("append");
    buffer.flush_all();
    wait_delivered(&buffer, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert_eq!(
        proxy.count("PUT /slow/logs/s/dt%3D2024-03-05/hour%3D07/2024030507_1.gz"),
        2,
        "the timed-out PUT and its retry, to the same key: {:?}",
        proxy.faults.lock().expect("faults").seen
    );
    let keys = list_keys(&out, "slow").await;
    assert_eq!(
        keys,
        vec![
            "logs/s/dt=2024-03-05/hour=07/2024030507_0.gz",
            "logs/s/dt=2024-03-05/hour=07/2024030507_1.gz",
        ],
        "requests: {:?}",
        proxy.faults.lock().expect("faults").seen
    );
    assert_eq!(
        gunzip(&get_body(&out, "slow", &keys[1]).await),
        expected_json(1..2, "slow")
    );
    buffer.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multipart_upload_is_aborted_and_the_retry_completes_once() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port).await;
    let conf = format!(
        "<match **>\n @type s3\n {}\n path mp/\n store_as text\n multipart_threshold 5m\n multipart_chunksize 5m\n <format>\n @type json\n </format>\n <buffer time>\n timekey 1h\n timekey_wait 0s\n timekey_use_utc true\n chunk_limit_size 64m\n retry_wait 0.2\n retry_randomize false\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
        conn(&proxy.endpoint(), "multipart")
    );
    let (cfg, bcfg) = parse_config(&conf);
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    // CompleteMultipartUpload (a POST with ?uploadId=) fails more often than the SDK retries.
    proxy.fail_next_matching("POST /multipart/mp/2024030507_0.txt?uploadId=", 500, 4);
    let msg = "z".repeat(100);
    deliver(&buffer, "t", &batch((0..80_000).map(|s| (s, T1)), &msg)).await;
    buffer.shutdown(true).await;
    assert_eq!(proxy.faulted(), 4);
    assert!(
        proxy.count("DELETE /multipart/mp/2024030507_0.txt?x-id=AbortMultipartUpload&uploadId=")
            >= 1,
        "the failed upload was aborted: {:?}",
        proxy.faults.lock().expect("faults").seen
    );
    assert_eq!(
        list_keys(&out, "multipart").await,
        vec!["mp/2024030507_0.txt"]
    );
    let body = get_body(&out, "multipart", "mp/2024030507_0.txt").await;
    assert!(body == expected_json(0..80_000, &msg), "body differs");
    let open = out
        .client()
        .list_multipart_uploads()
        .bucket("multipart")
        .send()
        .await
        .expect("list uploads");
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_index_is_refused_when_taken_unless_overwrite() {
    let moto = Moto::start();
    let conf = |bucket: &str, extra: &str| {
        format!(
            "<match **>\n @type s3\n {}\n path fixed\n s3_object_key_format %{{path}}.%{{file_extension}}\n store_as json\n {extra}\n <format>\n @type json\n </format>\n <buffer>\n timekey_wait 0s\n retry_wait 0.2\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
            conn(&moto.endpoint(), bucket)
        )
    };
    // Without overwrite the second chunk fails as unrecoverable (fluent-plugin-s3's
    // "duplicated path is generated"); the first object is untouched.
    let (cfg, bcfg) = parse_config(&conf("dup", ""));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "t", &batch([(1, T1)], "first")).await;
    deliver(&buffer, "t", &batch([(2, T1)], "second")).await;
    assert_eq!(list_keys(&out, "dup").await, vec!["fixed.json"]);
    assert_eq!(
        get_body(&out, "dup", "fixed.json").await,
        expected_json(1..2, "first")
    );
    buffer.shutdown(true).await;

    // With overwrite the second chunk replaces it.
    let (cfg, bcfg) = parse_config(&conf("dup2", "overwrite true"));
    let out = Arc::new(S3Output::start(cfg).await.expect("start"));
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "t", &batch([(1, T1)], "first")).await;
    deliver(&buffer, "t", &batch([(2, T1)], "second")).await;
    assert_eq!(list_keys(&out, "dup2").await, vec!["fixed.json"]);
    assert_eq!(
        get_body(&out, "dup2", "fixed.json").await,
        expected_json(2..3, "second")
    );
    buffer.shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_credentials_get_keys_from_sts() {
    // moto answers STS too: the role's temporary keys sign the S3 requests.
    let moto = Moto::start();
    let sts = FaultProxy::start(moto.port).await;
    let conf = format!(
        "<match **>\n @type s3\n {}\n path r/\n store_as json\n <assume_role_credentials>\n role_arn arn:aws:iam::123456789012:role/weir\n role_session_name weir-test\n duration_seconds 900\n sts_endpoint_url {}\n </assume_role_credentials>\n <format>\n @type json\n </format>\n <buffer>\n timekey_wait 0s\n timekey_use_utc true\n flush_thread_interval 0.1\n </buffer>\n</match>\n",
        conn(&moto.endpoint(), "assumed"),
        sts.endpoint()
    );
    let (cfg, bcfg) = parse_config(&conf);
    assert!(cfg.assume_role.is_some());
    let out = Arc::new(
        S3Output::start(cfg)
            .await
            .expect("start with an assumed role"),
    );
    let (buffer, _h) = open_buffer(bcfg, out.clone());
    deliver(&buffer, "t", &batch([(1, T1)], "role")).await;
    assert_eq!(list_keys(&out, "assumed").await, vec!["r/20240305_0.json"]);
    // The provider called STS AssumeRole (a form POST to /) through the proxy.
    let calls = sts.faults.lock().expect("faults").seen.clone();
    assert!(
        calls.iter().any(|l| l.starts_with("POST / ")),
        "no STS call: {calls:?}"
    );
    buffer.shutdown(true).await;
}
