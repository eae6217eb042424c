//! The sample aggregator config (`/work/shared/docs/examples/aggregator.conf`, paths moved to a
//! temporary directory) run through a real file buffer and flusher.
//!
//! What Fluentd does with that `<match>` (out_file.rb, output.rb, compat_parameters.rb):
//!
//! * `<buffer tag>` exists, so `compat_parameters_buffer` copies nothing: `time_slice_wait`
//!   is never read (Fluentd warns "parameter 'time_slice_wait' in <match blog.**> is not
//!   used."), and `flush_interval 10s` is not copied either. `Output#configure` does see it
//!   (`conf.has_key?('flush_interval')`), which only switches a default flush mode to
//!   `interval` (it already is: no `time` key) and logs an info line. The buffer keeps its own
//!   `flush_interval`, the default 60 s.
//! * The chunk keys are `tag` only: `timekey 1m`, `timekey_use_utc`, `timekey_wait` are
//!   accepted and unused, and `time_slice_format %Y%m%d` is read but not applied (no
//!   timekey for the path), so file names have no date:
//!   `var-log-${tag[1]}-${tag[2]}-${tag[3]}_N.log`, one new `_N` per flushed chunk.
//! * `time_format` becomes an `<inject>` with no `time_key`: nothing is injected; `<format>`
//!   is plain LTSV of the record.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use weir_config::Section;
use weir_out_file::{FileOutput, FileOutputConfig};
use weir_store::{spawn_flusher, Buffer, FlushMode};

async fn wait_for(p: &Path) {
    for _ in 0..200 {
        if p.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never appeared", p.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_aggregator_conf() {
    let d = temp_dir("aggregator");
    let text = std::fs::read_to_string("/work/shared/docs/examples/aggregator.conf")
        .expect("the sample config")
        .replace("/var/log/blog/", &format!("{}/", d.display()));
    let e = match_element(&text);
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.type_name(), Some("file"));
    let (cfg, buf) = FileOutputConfig::from_section(&mut s).expect("the sample configures");
    let unused: Vec<&str> = s.unused().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(unused, vec!["time_slice_wait"]);
    assert_eq!(
        cfg.template.source,
        format!(
            "{}/file/var-log-${{tag[1]}}-${{tag[2]}}-${{tag[3]}}_**.log",
            d.display()
        )
    );
    assert!(buf.keys.tag && buf.keys.timekey.is_none() && buf.keys.record_keys.is_empty());
    assert_eq!(buf.flush_mode, FlushMode::Interval);
    assert_eq!(buf.flush_interval, Duration::from_secs(60));
    assert!(buf.persistent());

    let (buffer, _) = Buffer::open(buf, "out_file").expect("buffer opens");
    assert!(
        d.join("buf/var-log.buf").is_dir(),
        "buffer path is a directory, as in Fluentd"
    );
    let out = Arc::new(FileOutput::new(cfg));
    let flusher = spawn_flusher(buffer.clone(), out, None);

    let access = "blog.access.123456789012.vpc-0abc";
    let error = "blog.error.123456789012.vpc-0abc";
    let r1 = rec(
        json!({"host": "10.0.0.1", "method": "GET", "path": "/a\tb", "code": 200, "instance": {"id": "i-1"}}),
    );
    let r2 = rec(json!({"host": "10.0.0.2", "method": "POST", "path": "/c", "code": 500}));
    let r3 = rec(json!({"message": "boom\nstack", "level": "error"}));
    buffer
        .append(access, &batch(&[(T_2011, r1), (T_2011 + 1, r2)]))
        .await
        .expect("commit");
    buffer
        .append(error, &batch(&[(T_2011, r3)]))
        .await
        .expect("commit");
    buffer.flush_all();

    let f_access = d.join("file/var-log-access-123456789012-vpc-0abc_0.log");
    let f_error = d.join("file/var-log-error-123456789012-vpc-0abc_0.log");
    wait_for(&f_access).await;
    wait_for(&f_error).await;
    assert_eq!(
        read(&f_access),
        "host:10.0.0.1\tmethod:GET\tpath:/a b\tcode:200\tinstance:{\"id\" => \"i-1\"}\n\
         host:10.0.0.2\tmethod:POST\tpath:/c\tcode:500\n"
    );
    assert_eq!(read(&f_error), "message:boom\nstack\tlevel:error\n");

    // The next flush of the same tag goes to the next index.
    let r4 = rec(json!({"host": "10.0.0.3"}));
    buffer
        .append(access, &batch(&[(T_2011 + 60, r4)]))
        .await
        .expect("commit");
    buffer.flush_all();
    let f_access1 = d.join("file/var-log-access-123456789012-vpc-0abc_1.log");
    wait_for(&f_access1).await;
    assert_eq!(read(&f_access1), "host:10.0.0.3\n");

    buffer.shutdown(true).await;
    let _ = flusher.await;
    assert_eq!(
        files(&d.join("file")),
        vec![
            "var-log-access-123456789012-vpc-0abc_0.log",
            "var-log-access-123456789012-vpc-0abc_1.log",
            "var-log-error-123456789012-vpc-0abc_0.log",
        ]
    );
}
