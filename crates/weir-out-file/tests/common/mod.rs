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
use weir_proto::EventTime;
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
    pub meta: Arc<Mutex<HashMap<String, String>>>,
}

impl ChunkSource for FakeChunk {
    fn id(&self) -> &str {
        &self.id
    }
    fn key(&self) -> &ChunkKey {
        &self.key
    }
    fn events(&self) -> Result<Box<dyn EventStream + '_>, String> {
        Ok(Box::new(IterEvents::new(
            self.events.iter().map(|(t, r)| (*t, r.as_slice())),
        )))
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

/// Splits events into chunks by the buffer's chunk keys, in first-seen order, as the store does.
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
                meta: Arc::default(),
            }),
        }
    }
    out
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
