//! Reading `@type s3` sections: fluent-plugin-s3's defaults and errors with file and line.

mod common;

use common::{config_errors, parse_config};
use weir_out_s3::StoreAs;
use weir_store::BufferType;

#[test]
fn defaults_are_fluent_plugin_s3s() {
    let (c, b) = parse_config("<match **>\n @type s3\n s3_bucket b\n</match>\n");
    assert_eq!(
        c.key.format,
        "%{path}%{time_slice}_%{index}.%{file_extension}"
    );
    assert_eq!(c.key.path, "");
    assert_eq!(c.store_as, StoreAs::Gzip);
    assert_eq!(c.key.file_extension, "gz");
    assert!(c.check_object && c.check_bucket && c.auto_create_bucket && c.check_apikey_on_start);
    assert!(!c.force_path_style && !c.overwrite);
    assert_eq!(c.storage_class, "STANDARD");
    assert_eq!(c.acl, None);
    assert_eq!(c.key.hex_random_length, 4);
    assert_eq!(c.warn_for_delay, None);
    // The buffer: memory, chunk key `time`, one-day timekey.
    assert!(matches!(b.buffer_type, BufferType::Memory));
    assert_eq!(b.keys.timekey, Some(86400));
    assert!(!b.keys.tag);
    // The default out_file format writes the tag: the buffer keeps each event's.
    assert!(b.keep_tags);
    assert_eq!(c.key.time_slice_format, "%Y%m%d");
    // Not when the body has no tag, nor when `tag` is a chunk key.
    for (extra, buffer) in [
        ("<format>\n @type json\n </format>", "time"),
        ("", "tag,time"),
    ] {
        let (_, b) = parse_config(&format!(
            "<match **>\n @type s3\n s3_bucket b\n path ${{tag}}/\n {extra}\n <buffer {buffer}>\n </buffer>\n</match>\n"
        ));
        assert!(!b.keep_tags, "{extra} <buffer {buffer}>");
    }
    let (_, b) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n include_tag_key true\n <format>\n @type json\n </format>\n</match>\n",
    );
    assert!(b.keep_tags && !b.keys.tag);
    let (c, _) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n <buffer time>\n timekey 1h\n </buffer>\n</match>\n",
    );
    assert_eq!(c.key.time_slice_format, "%Y%m%d%H");
    let (c, _) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n <buffer time>\n timekey 5m\n </buffer>\n</match>\n",
    );
    assert_eq!(c.key.time_slice_format, "%Y%m%d%H%M");
}

#[test]
fn v012_time_slice_format_sets_the_timekey_without_a_buffer_section() {
    let (c, b) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n time_slice_format %Y%m%d%H\n</match>\n",
    );
    assert_eq!(b.keys.timekey, Some(3600));
    assert_eq!(c.key.time_slice_format, "%Y%m%d%H");
}

#[test]
fn parameters_are_read() {
    let (c, _) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n s3_region eu-west-1\n s3_endpoint http://127.0.0.1:9000\n force_path_style true\n store_as zstd\n storage_class STANDARD_IA\n use_server_side_encryption aws:kms\n ssekms_key_id k1\n acl bucket-owner-full-control\n warn_for_delay 10m\n index_format %03d\n hex_random_length 8\n check_object false\n s3_object_key_format %{path}%{time_slice}-%{hex_random}.%{file_extension}\n <assume_role_credentials>\n role_arn arn:aws:iam::1:role/r\n role_session_name weir\n duration_seconds 1200\n </assume_role_credentials>\n</match>\n",
    );
    assert_eq!(c.s3_region, "eu-west-1");
    assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.force_path_style);
    assert_eq!(c.store_as, StoreAs::Zstd);
    assert_eq!(c.storage_class, "STANDARD_IA");
    assert_eq!(c.use_server_side_encryption.as_deref(), Some("aws:kms"));
    assert_eq!(c.ssekms_key_id.as_deref(), Some("k1"));
    assert_eq!(c.acl.as_deref(), Some("bucket-owner-full-control"));
    assert_eq!(c.warn_for_delay, Some(std::time::Duration::from_secs(600)));
    assert_eq!(c.key.index_format.format(7), "007");
    assert_eq!(c.key.hex_random_length, 8);
    let a = c.assume_role.expect("assume role");
    assert_eq!(a.role_arn, "arn:aws:iam::1:role/r");
    assert_eq!(a.duration_seconds, Some(1200));
}

fn one_error(text: &str) -> String {
    let e = config_errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap_or_default()
}

#[test]
fn errors_name_the_file_and_line() {
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n store_as lzo\n</match>\n");
    assert!(e.contains("test.conf:4"), "{e}");
    assert!(e.contains("'lzo' is not supported"), "{e}");
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n store_as lzma2\n</match>\n");
    assert!(e.contains("'lzma2' is not supported"), "{e}");
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n index_format %5d\n</match>\n");
    assert!(
        e.contains("test.conf:4") && e.contains("index_format"),
        "{e}"
    );
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n hex_random_length 17\n</match>\n");
    assert!(e.contains("less than or equal to 16"), "{e}");
    let e = one_error(
        "<match **>\n @type s3\n s3_bucket b\n s3_endpoint https://s3.eu-west-1.amazonaws.com\n</match>\n",
    );
    assert!(e.contains("use s3_region instead"), "{e}");
    let e = one_error("<match **>\n @type s3\n path x\n</match>\n");
    assert!(e.contains("s3_bucket") && e.contains("required"), "{e}");
    let e = one_error(
        "<match **>\n @type s3\n s3_bucket b\n s3_object_key_format %{uuid}.gz\n</match>\n",
    );
    assert!(
        e.contains("%{uuid} placeholder in s3_object_key_format is removed"),
        "{e}"
    );
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n <shared_credentials>\n profile_name x\n </shared_credentials>\n</match>\n");
    assert!(e.contains("AWS_PROFILE"), "{e}");
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n multipart_chunksize 1m\n</match>\n");
    assert!(e.contains("5m"), "{e}");
}

#[test]
fn check_object_false_needs_a_unique_key() {
    let e = one_error("<match **>\n @type s3\n s3_bucket b\n check_object false\n</match>\n");
    assert!(e.contains("${chunk_id}"), "{e}");
    assert!(
        e.contains("%{path}/%{time_slice}_%{hms_slice}.%{file_extension}"),
        "{e}"
    );
    assert!(config_errors(
        "<match **>\n @type s3\n s3_bucket b\n check_object false\n s3_object_key_format %{path}%{time_slice}_%{uuid_flush}.%{file_extension}\n</match>\n"
    )
    .is_empty());
}

#[test]
fn hostname_is_replaced_when_the_configuration_is_read() {
    let (c, _) = parse_config(
        "<match **>\n @type s3\n s3_bucket b\n s3_object_key_format %{path}%{hostname}/%{time_slice}_%{index}.%{file_extension}\n</match>\n",
    );
    assert!(!c.key.format.contains("%{hostname}"));
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        c.key.format.contains(&format!("%{{path}}{host}/")),
        "{}",
        c.key.format
    );
}
