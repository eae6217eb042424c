//! Helpers shared by the integration tests: configs from text, records, fake chunks that keep
//! their metadata across a simulated restart, temporary directories.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use weir_config::{ConfigError, Element, Section};
use weir_out_file::{ChunkSource, EventStream, FileOutput, FileOutputConfig, IterEvents};
use weir_proto::{EntryRef, EventBatch, EventTime};
use weir_store::{BufferConfig, ChunkKey};

/// 2011-01-02 13:14:15 UTC, the time most of Fluentd's out_file tests use.
pub const T_2011: u32 = 1_293_974_055;

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "weir-out-file-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The first `<match>` of a configuration text.
pub fn match_element(conf: &str) -> Element {
    let root = weir_config::parse_str(conf, "test.conf", Path::new("/")).expect("config parses");
    root.elements
        .into_iter()
        .find(|e| e.name == "match")
        .expect("a <match> section")
}

/// Configures a file output from `<match **> ... </match>` around `body`.
pub fn configure(body: &str) -> Result<(FileOutputConfig, BufferConfig), Vec<ConfigError>> {
    let e = match_element(&format!("<match **>\n@type file\n{body}\n</match>\n"));
    let mut s = Section::new(&e, "<match **>");
    FileOutputConfig::from_section(&mut s)
}

/// What configuring gives.
pub type Configured = Result<(FileOutputConfig, BufferConfig), Vec<ConfigError>>;

/// Same, also returning the parameters the section never read.
pub fn configure_unused(body: &str) -> (Configured, Vec<String>) {
    let e = match_element(&format!("<match **>\n@type file\n{body}\n</match>\n"));
    let mut s = Section::new(&e, "<match **>");
    let _ = s.type_name(); // the server reads @type to pick the plugin
    let r = FileOutputConfig::from_section(&mut s);
    let unused = s.unused().iter().map(|p| p.key.clone()).collect();
    (r, unused)
}

/// Error messages of a failed configuration.
pub fn errors(body: &str) -> Vec<String> {
    match configure(body) {
        Ok(_) => Vec::new(),
        Err(es) => es.iter().map(|e| e.message.clone()).collect(),
    }
}

/// A record from JSON.
pub fn rec(v: serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    weir_proto::json_to_msgpack(&v, &mut out);
    out
}

/// A chunk as the store would hand it over, with metadata that outlives the output (as the
/// store's sidecar does across a restart).
pub struct FakeChunk {
    pub id: String,
    pub key: ChunkKey,
    pub events: Vec<(EventTime, Vec<u8>)>,
    /// The tag stored with every event, when the buffer keeps tags.
    pub event_tag: Option<String>,
    pub meta: Arc<Mutex<HashMap<String, String>>>,
}

/// A fake chunk's events, each with the chunk's per-event tag.
struct FakeEvents<'a> {
    events: std::slice::Iter<'a, (EventTime, Vec<u8>)>,
    tag: Option<&'a str>,
}

impl EventStream for FakeEvents<'_> {
    fn next_event(&mut self) -> Result<Option<weir_store::TaggedEvent<'_>>, String> {
        Ok(self
            .events
            .next()
            .map(|(t, r)| (*t, r.as_slice(), self.tag)))
    }
}

impl ChunkSource for FakeChunk {
    fn id(&self) -> &str {
        &self.id
    }
    fn key(&self) -> &ChunkKey {
        &self.key
    }
    fn events(&self) -> Result<Box<dyn EventStream + '_>, String> {
        if self.event_tag.is_none() {
            return Ok(Box::new(IterEvents::new(
                self.events.iter().map(|(t, r)| (*t, r.as_slice())),
            )));
        }
        Ok(Box::new(FakeEvents {
            events: self.events.iter(),
            tag: self.event_tag.as_deref(),
        }))
    }
    fn metadata(&self, key: &str) -> Option<String> {
        self.meta.lock().ok()?.get(key).cloned()
    }
    fn set_metadata(&self, key: &str, value: &str) -> Result<(), String> {
        self.meta
            .lock()
            .map_err(|e| e.to_string())?
            .insert(key.to_string(), value.to_string());
        Ok(())
    }
}

/// Splits events into chunks by the buffer's chunk keys, in first-seen order, as the store does
/// (storing the tag with each event when the buffer keeps tags).
pub fn chunks(buf: &BufferConfig, tag: &str, events: &[(u32, Vec<u8>)]) -> Vec<FakeChunk> {
    static ID: AtomicUsize = AtomicUsize::new(1);
    let mut out: Vec<FakeChunk> = Vec::new();
    for (t, r) in events {
        let time = EventTime::new(*t, 0);
        let key = buf.keys.key_of(tag, time, r);
        match out.iter_mut().find(|c| c.key == key) {
            Some(c) => c.events.push((time, r.clone())),
            None => out.push(FakeChunk {
                id: format!(
                    "{:032x}",
                    0x5f00_0000_0000_0000u64 + ID.fetch_add(1, Ordering::SeqCst) as u64
                ),
                key,
                events: vec![(time, r.clone())],
                event_tag: buf.keep_tags.then(|| tag.to_string()),
                meta: Arc::default(),
            }),
        }
    }
    out
}

/// A batch of `(time, record)` events, as a request brings them.
pub fn batch(events: &[(u32, Vec<u8>)]) -> EventBatch {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for (t, r) in events {
        let start = buf.len() as u32;
        buf.extend_from_slice(r);
        entries.push(EntryRef {
            time: EventTime::new(*t, 0),
            start,
            end: buf.len() as u32,
        });
    }
    EventBatch::new(bytes::Bytes::from(buf), entries)
}

/// One request: its tag and its `(time, record)` events.
pub type Request<'a> = (&'a str, Vec<(u32, Vec<u8>)>);

/// Configures, appends each `(tag, events)` request to a real buffer (the configured one:
/// chunk keys, per-event tags), delivers every chunk to the output and shuts the buffer down.
/// Returns the buffer's configuration.
pub fn run_buffered(body: &str, requests: &[Request]) -> BufferConfig {
    let (cfg, buf) = configure(body).expect("configures");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (buffer, _) = weir_store::Buffer::open(buf.clone(), "out_file").expect("buffer");
        let flusher =
            weir_store::spawn_flusher(buffer.clone(), Arc::new(FileOutput::new(cfg)), None);
        for (tag, events) in requests {
            buffer.append(tag, &batch(events)).await.expect("commit");
        }
        buffer.flush_all();
        buffer.shutdown(true).await;
        let _ = flusher.await;
    });
    buf
}

/// Writes every chunk; returns the files written.
pub fn write_all(out: &FileOutput, cs: &[FakeChunk]) -> Vec<PathBuf> {
    cs.iter()
        .map(|c| out.write_chunk(c).expect("chunk written"))
        .collect()
}

/// Configures, feeds one batch under `tag`, writes; returns the files written.
pub fn run_once(body: &str, tag: &str, events: &[(u32, Vec<u8>)]) -> Vec<PathBuf> {
    let (cfg, buf) = configure(body).expect("configures");
    let out = FileOutput::new(cfg);
    write_all(&out, &chunks(&buf, tag, events))
}

/// A file's text, gunzipped (all members) when it ends in `.gz`.
pub fn read(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("file exists");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut s = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut s)
            .expect("gzip");
        return String::from_utf8_lossy(&s).into_owned();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every file under `dir`, relative, sorted (hidden files too).
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() && !p.is_symlink() {
                    walk(base, &p, out);
                } else if let Ok(r) = p.strip_prefix(base) {
                    out.push(r.to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
