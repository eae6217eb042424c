//! `secondary_file`: its configuration checks against the primary's chunk keys, and a real
//! buffer whose primary always fails handing its chunks to it (one file per chunk with `.N`,
//! or appended, gzip, in the primary's format).

mod common;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{match_element, temp_dir};
use futures::future::BoxFuture;
use weir_config::Section;
use weir_out_file::{PrimaryFormat, SecondaryFileConfig, SecondaryFileOutput};
use weir_proto::{EntryRef, EventBatch, EventTime};
use weir_store::{
    spawn_flusher, Buffer, BufferConfig, ChunkKeySpec, ChunkRef, ChunkSink, RecordKey, TimekeyZone,
    WriteError,
};

/// A primary that is always down.
struct Down;

impl ChunkSink for Down {
    fn write<'a>(&'a self, _chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async { Err(WriteError::Retryable("the primary is down".into())) })
    }
}

fn keys(tag: bool, timekey: Option<i64>, record: &[&str]) -> ChunkKeySpec {
    ChunkKeySpec {
        tag,
        timekey,
        zone: TimekeyZone::Fixed(0),
        record_keys: record
            .iter()
            .map(|k| RecordKey::parse(k).expect("a key"))
            .collect(),
    }
}

fn json_format() -> PrimaryFormat {
    let e = match_element("<match **>\n<format>\n@type json\n</format>\n</match>\n");
    let mut s = Section::new(&e, "<match **>");
    let f = weir_format::formatter_from_section(&mut s, "out_file").expect("a formatter");
    PrimaryFormat {
        formatter: Some(Arc::from(f)),
        inject: None,
    }
}

fn configure(
    body: &str,
    keys: &ChunkKeySpec,
    format: PrimaryFormat,
) -> Result<SecondaryFileConfig, Vec<String>> {
    let e = match_element(&format!(
        "<match **>\n<secondary>\n@type secondary_file\n{body}\n</secondary>\n</match>\n"
    ));
    let sec = e.children("secondary").next().expect("secondary").clone();
    let mut s = Section::new(&sec, "<secondary>");
    let _ = s.type_name();
    SecondaryFileConfig::from_section(&mut s, keys, format)
        .map_err(|es| es.iter().map(|e| e.to_string()).collect())
}

#[test]
fn placeholders_must_fit_the_primarys_chunk_keys() {
    let none = keys(false, None, &[]);
    let all = keys(true, Some(3600), &["host"]);
    for (body, k, want) in [
        ("basename x", &none, "'directory' parameter is required"),
        (
            "directory /d\nbasename a/b",
            &none,
            "basename should not include `/`",
        ),
        ("directory /d/%Y%m%d", &none, "remove time formats"),
        (
            "directory /d\nbasename ${tag}",
            &none,
            "incompatible placeholder ${tag}",
        ),
        (
            "directory /d\nbasename ${host}",
            &none,
            "incompatible placeholder host",
        ),
        (
            "directory /d\nbasename ${zone}",
            &all,
            "incompatible placeholder zone",
        ),
        ("directory /d\ncompress lzo", &none, "compress"),
    ] {
        let errs = configure(body, k, PrimaryFormat::default()).expect_err(body);
        assert!(errs.iter().any(|e| e.contains(want)), "{body}: {errs:?}");
    }
    let c = configure(
        "directory /d/${tag[0]}/%Y%m%d%H\nbasename ${host}.${chunk_id}",
        &all,
        PrimaryFormat::default(),
    )
    .expect("fits");
    assert_eq!(c.path, "/d/${tag[0]}/%Y%m%d%H/${host}.${chunk_id}");
    // Not every chunk key has to appear (Fluentd's secondary_file checks only what is used).
    assert!(configure("directory /d", &all, PrimaryFormat::default()).is_ok());
}

fn batch(records: &[&str]) -> EventBatch {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for r in records {
        let start = buf.len() as u32;
        let v: serde_json::Value = serde_json::from_str(r).expect("json");
        buf.extend_from_slice(&common::rec(v));
        entries.push(EntryRef {
            time: EventTime::new(1_700_000_000, 0),
            start,
            end: buf.len() as u32,
        });
    }
    EventBatch::new(buf.into(), entries)
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A memory buffer with chunk key `tag` whose retries switch to the secondary quickly.
fn buffer_config() -> BufferConfig {
    let mut cfg = BufferConfig::memory();
    cfg.keys = keys(true, None, &[]);
    cfg.flush_interval = Duration::from_millis(10);
    cfg.flush_thread_interval = Duration::from_millis(10);
    cfg.retry.wait = 0.05;
    cfg.retry.randomize = false;
    cfg.retry.timeout = 60.0;
    cfg.retry.secondary_threshold = 0.001;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_of_a_failing_primary_land_in_numbered_files_in_its_format() {
    let dir = temp_dir("secondary-numbered");
    let cfg = buffer_config();
    let sec = configure(
        &format!("directory {}/${{tag}}", dir.display()),
        &cfg.keys,
        json_format(),
    )
    .expect("configures");
    let (buffer, _) = Buffer::open(cfg, "test").expect("opens");
    let flusher = spawn_flusher(
        buffer.clone(),
        Arc::new(Down),
        Some(Arc::new(SecondaryFileOutput::new(sec))),
    );
    buffer
        .append("app.web", &batch(&[r#"{"a":1}"#, r#"{"b":"x"}"#]))
        .await
        .expect("committed");
    buffer.flush_all();
    let first = dir.join("app.web/dump.bin.0");
    tokio::task::spawn_blocking({
        let first = first.clone();
        move || wait_for(&first)
    })
    .await
    .expect("waited");
    buffer
        .append("app.web", &batch(&[r#"{"c":2}"#]))
        .await
        .expect("committed");
    buffer.flush_all();
    let second = dir.join("app.web/dump.bin.1");
    tokio::task::spawn_blocking({
        let second = second.clone();
        move || wait_for(&second)
    })
    .await
    .expect("waited");
    buffer.shutdown(true).await;
    let _ = flusher.await;
    assert_eq!(
        std::fs::read_to_string(&first).expect("read"),
        "{\"a\":1}\n{\"b\":\"x\"}\n"
    );
    assert_eq!(
        std::fs::read_to_string(&second).expect("read"),
        "{\"c\":2}\n"
    );
    let names: Vec<String> = std::fs::read_dir(dir.join("app.web"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp")),
        "no temporary file is left: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_gzip_adds_one_member_per_chunk() {
    let dir = temp_dir("secondary-append");
    let cfg = buffer_config();
    let sec = configure(
        &format!("directory {}\nappend true\ncompress gzip", dir.display()),
        &cfg.keys,
        json_format(),
    )
    .expect("configures");
    let (buffer, _) = Buffer::open(cfg, "test").expect("opens");
    let flusher = spawn_flusher(
        buffer.clone(),
        Arc::new(Down),
        Some(Arc::new(SecondaryFileOutput::new(sec))),
    );
    let path = dir.join("dump.bin.gz");
    for (i, rec) in [r#"{"n":1}"#, r#"{"n":2}"#].iter().enumerate() {
        buffer.append("t", &batch(&[rec])).await.expect("committed");
        buffer.flush_all();
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let mut text = String::new();
                if let Ok(b) = std::fs::read(&p) {
                    let _ = flate2::read::MultiGzDecoder::new(&b[..]).read_to_string(&mut text);
                }
                if text.lines().count() > i {
                    break;
                }
                assert!(Instant::now() < deadline, "chunk {i} was not appended");
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .expect("waited");
    }
    buffer.shutdown(true).await;
    let _ = flusher.await;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&std::fs::read(&path).expect("read")[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n");
}

/// A primary whose lines carry the tag (`<inject> tag_key`) and whose buffer has no `tag` key
/// keeps each event's tag: the secondary file writes every event with its own tag, all tags of
/// the chunk in one file, as Fluentd dumps the primary's formatted chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_their_own_tags_without_a_tag_chunk_key() {
    let dir = temp_dir("secondary-tags");
    let mut cfg = buffer_config();
    cfg.keys = keys(false, None, &[]);
    cfg.keep_tags = true;
    // Both requests go into one chunk: nothing is enqueued before flush_all.
    cfg.flush_interval = Duration::from_secs(3600);
    let e = match_element(
        "<match **>\n<format>\n@type json\n</format>\n<inject>\ntag_key t\n</inject>\n</match>\n",
    );
    let mut s = Section::new(&e, "<match **>");
    let format = PrimaryFormat {
        formatter: Some(Arc::from(
            weir_format::formatter_from_section(&mut s, "out_file").expect("a formatter"),
        )),
        inject: weir_format::Inject::from_section(&mut s)
            .expect("inject")
            .map(Arc::new),
    };
    let sec =
        configure(&format!("directory {}", dir.display()), &cfg.keys, format).expect("configures");
    let (buffer, _) = Buffer::open(cfg, "test").expect("opens");
    let flusher = spawn_flusher(
        buffer.clone(),
        Arc::new(Down),
        Some(Arc::new(SecondaryFileOutput::new(sec))),
    );
    for (tag, rec) in [("app.a", r#"{"n":1}"#), ("app.b", r#"{"n":2}"#)] {
        buffer.append(tag, &batch(&[rec])).await.expect("committed");
    }
    buffer.flush_all();
    let path = dir.join("dump.bin.0");
    tokio::task::spawn_blocking({
        let path = path.clone();
        move || wait_for(&path)
    })
    .await
    .expect("waited");
    buffer.shutdown(true).await;
    let _ = flusher.await;
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        "{\"n\":1,\"t\":\"app.a\"}\n{\"n\":2,\"t\":\"app.b\"}\n"
    );
}
