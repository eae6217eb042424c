//! Reading a `<match> @type s3` section.

use std::sync::Arc;
use std::time::Duration;

use weir_config::{ConfigError, Section};
use weir_format::{formatter_from_section, writes_tag, Formatter, Inject, TimeZoneSpec};
use weir_store::{BufferConfig, BufferDefaults, TimekeyZone};

use crate::key::{IndexFormat, KeyTemplate};

/// fluent-plugin-s3's default `s3_object_key_format`.
pub const DEFAULT_KEY_FORMAT: &str = "%{path}%{time_slice}_%{index}.%{file_extension}";
/// fluent-plugin-s3's format when `check_object false` and no format is given.
pub const DEFAULT_KEY_FORMAT_NO_CHECK: &str =
    "%{path}/%{time_slice}_%{hms_slice}.%{file_extension}";
/// The longest `hex_random_length` fluent-plugin-s3 accepts.
pub const MAX_HEX_RANDOM_LENGTH: i64 = 16;
/// S3's smallest multipart part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// `store_as`: how the formatted chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    /// gzip, `.gz`, `application/x-gzip`.
    Gzip,
    /// As is, `.json`, `application/json`.
    Json,
    /// As is, `.txt`, `text/plain`.
    Text,
    /// zstd (level 3), `.zst`, `application/x-zst`.
    Zstd,
}

impl StoreAs {
    /// `%{file_extension}`.
    pub fn extension(self) -> &'static str {
        match self {
            StoreAs::Gzip => "gz",
            StoreAs::Json => "json",
            StoreAs::Text => "txt",
            StoreAs::Zstd => "zst",
        }
    }

    /// The object's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            StoreAs::Gzip => "application/x-gzip",
            StoreAs::Json => "application/json",
            StoreAs::Text => "text/plain",
            StoreAs::Zstd => "application/x-zst",
        }
    }
}

/// `<assume_role_credentials>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRole {
    /// `role_arn`.
    pub role_arn: String,
    /// `role_session_name`.
    pub role_session_name: String,
    /// `policy` (JSON).
    pub policy: Option<String>,
    /// `duration_seconds`.
    pub duration_seconds: Option<u64>,
    /// `external_id`.
    pub external_id: Option<String>,
    /// `sts_region` (else `s3_region`).
    pub sts_region: Option<String>,
    /// `sts_endpoint_url`.
    pub sts_endpoint_url: Option<String>,
}

/// A parsed `@type s3` output. Fields are public so tests and embedders can adjust them.
pub struct S3OutputConfig {
    /// The output's name in logs (`@id`, else `out_s3`).
    pub name: String,
    /// `s3_bucket` (required).
    pub s3_bucket: String,
    /// `s3_region` (`AWS_REGION`, else `us-east-1`).
    pub s3_region: String,
    /// `s3_endpoint`, for S3-compatible stores.
    pub s3_endpoint: Option<String>,
    /// `force_path_style` (false).
    pub force_path_style: bool,
    /// `aws_key_id` and `aws_sec_key`, when both are set.
    pub static_keys: Option<(String, String)>,
    /// `<assume_role_credentials>`.
    pub assume_role: Option<AssumeRole>,
    /// The object key template (`path`, `s3_object_key_format`, `time_slice_format`,
    /// `index_format`, `hex_random_length`, `check_object`).
    pub key: KeyTemplate,
    /// `store_as` (`gzip`).
    pub store_as: StoreAs,
    /// `check_object` (true): probe `%{index}` with HEAD requests.
    pub check_object: bool,
    /// `check_bucket` (true).
    pub check_bucket: bool,
    /// `auto_create_bucket` (true).
    pub auto_create_bucket: bool,
    /// `check_apikey_on_start` (true).
    pub check_apikey_on_start: bool,
    /// `overwrite` (false): with `check_object`, reuse a key without `%{index}` that exists.
    pub overwrite: bool,
    /// `storage_class` (`STANDARD`; `REDUCED_REDUNDANCY` with `reduced_redundancy true`).
    pub storage_class: String,
    /// `use_server_side_encryption` (`AES256`, `aws:kms`).
    pub use_server_side_encryption: Option<String>,
    /// `ssekms_key_id`.
    pub ssekms_key_id: Option<String>,
    /// `acl` (a canned ACL such as `bucket-owner-full-control`).
    pub acl: Option<String>,
    /// `warn_for_delay`.
    pub warn_for_delay: Option<Duration>,
    /// weir's own `multipart_threshold` (16 MiB): bodies this large or larger go up as a
    /// multipart upload.
    pub multipart_threshold: u64,
    /// weir's own `multipart_chunksize` (8 MiB, at least 5 MiB): the part size.
    pub multipart_chunksize: u64,
    /// The `<format>` (default `out_file`).
    pub formatter: Arc<dyn Formatter>,
    /// The `<inject>`, if any.
    pub inject: Option<Arc<Inject>>,
    /// `flush_thread_count` of the buffer (for the parallel-key warning).
    pub flush_thread_count: usize,
}

impl std::fmt::Debug for S3OutputConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3OutputConfig")
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("key", &self.key)
            .field("store_as", &self.store_as)
            .finish_non_exhaustive()
    }
}

/// Parameters of fluent-plugin-s3 that weir refuses, with the reason.
const UNSUPPORTED: [(&str, &str); 19] = [
    ("proxy_uri", "set HTTPS_PROXY in the environment instead"),
    (
        "use_bundled_cert",
        "weir uses the system's root certificates",
    ),
    ("enable_transfer_acceleration", "not implemented"),
    ("enable_dual_stack", "not implemented"),
    ("ssl_verify_peer", "certificates are always verified"),
    (
        "ssl_ca_bundle",
        "not implemented; add the CA to the system store",
    ),
    (
        "ssl_ca_directory",
        "not implemented; add the CA to the system store",
    ),
    ("sse_customer_algorithm", "SSE-C is not implemented"),
    ("sse_customer_key", "SSE-C is not implemented"),
    ("sse_customer_key_md5", "SSE-C is not implemented"),
    ("grant_full_control", "not implemented; use acl"),
    ("grant_read", "not implemented; use acl"),
    ("grant_read_acp", "not implemented; use acl"),
    ("grant_write_acp", "not implemented; use acl"),
    ("tagging", "not implemented"),
    ("s3_metadata", "not implemented"),
    (
        "compute_checksums",
        "every object carries a CRC32 checksum (and Content-MD5 when sent in one request)",
    ),
    ("signature_version", "weir always signs with SigV4"),
    (
        "aws_iam_retries",
        "the default credential chain reads the instance role (IMDSv2) itself",
    ),
];

const UNSUPPORTED_SECTIONS: [(&str, &str); 4] = [
    (
        "web_identity_credentials",
        "the default credential chain reads AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE",
    ),
    (
        "instance_profile_credentials",
        "the default credential chain uses the instance role (IMDSv2) and ECS task roles",
    ),
    (
        "shared_credentials",
        "the default credential chain reads AWS_PROFILE and AWS_SHARED_CREDENTIALS_FILE",
    ),
    (
        "bucket_lifecycle_rule",
        "manage lifecycle rules outside weir",
    ),
];

/// The local UTC offset used when the buffer has no `timekey_zone`: the buffer computes it.
fn zone_of(buffer: &BufferConfig) -> TimeZoneSpec {
    match buffer.keys.zone {
        TimekeyZone::Named(tz) => TimeZoneSpec::Named(tz),
        TimekeyZone::Fixed(o) => match i32::try_from(o) {
            Ok(0) | Err(_) => TimeZoneSpec::Utc,
            Ok(o) => TimeZoneSpec::Fixed(o),
        },
    }
}

/// The timekey a v0.12 `time_slice_format` implies (Fluentd's `compat_parameters`).
fn timekey_of_slice_format(f: &str) -> u64 {
    if f.contains("%S") || f.contains("%s") {
        1
    } else if f.contains("%M") {
        60
    } else if f.contains("%H") {
        3600
    } else {
        86400
    }
}

impl S3OutputConfig {
    /// Reads the output's section (and its `<buffer>`, `<format>` and `<inject>` children).
    /// Every problem is reported with its file and line. The buffer defaults are
    /// fluent-plugin-s3's: chunk keys `time`, `timekey 1d`, memory.
    pub fn from_section(s: &mut Section) -> Result<(Self, BufferConfig), Vec<ConfigError>> {
        let mut errors: Vec<ConfigError> = Vec::new();
        macro_rules! get {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        }

        let name = s.string("@id").unwrap_or_else(|| "out_s3".to_string());
        let s3_bucket = match s.required_string("s3_bucket") {
            Ok(b) => b,
            Err(e) => {
                errors.push(e);
                String::new()
            }
        };
        let s3_region = s.string("s3_region").unwrap_or_else(|| {
            std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".to_string())
        });
        let s3_endpoint = s.string("s3_endpoint");
        if let Some(ep) = &s3_endpoint {
            let aws = ep.ends_with("amazonaws.com")
                && !ep.ends_with("vpce.amazonaws.com")
                && !ep.contains("fips")
                && !ep.contains("gov");
            if aws {
                errors.push(s.error(
                    Some("s3_endpoint"),
                    "s3_endpoint parameter is not supported for S3, use s3_region instead. This parameter is for S3 compatible services",
                ));
            }
        }
        let force_path_style = get!(s.boolean("force_path_style")).unwrap_or(false);
        let static_keys = match (s.string("aws_key_id"), s.string("aws_sec_key")) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => None,
        };

        let assume_role = match s.section("assume_role_credentials") {
            Ok(Some(mut a)) => {
                let role_arn = get!(a.required_string("role_arn").map(Some));
                let role_session_name = get!(a.required_string("role_session_name").map(Some));
                let duration_seconds = get!(a.integer("duration_seconds"));
                let duration_seconds = match duration_seconds {
                    Some(d) if !(900..=43200).contains(&d) => {
                        errors.push(
                            a.error(Some("duration_seconds"), "must be between 900 and 43200"),
                        );
                        None
                    }
                    d => d.map(|d| d as u64),
                };
                let policy = a.string("policy");
                let external_id = a.string("external_id");
                let sts_region = a.string("sts_region");
                let sts_endpoint_url = a.string("sts_endpoint_url");
                if let Err(e) = a.unsupported("sts_http_proxy", "set HTTPS_PROXY instead") {
                    errors.push(e);
                }
                for p in a.unused() {
                    tracing::warn!(
                        "parameter '{}' in <assume_role_credentials> is not used ({}:{})",
                        p.key,
                        p.location.file,
                        p.location.line
                    );
                }
                match (role_arn, role_session_name) {
                    (Some(role_arn), Some(role_session_name)) => Some(AssumeRole {
                        role_arn,
                        role_session_name,
                        policy,
                        duration_seconds,
                        external_id,
                        sts_region,
                        sts_endpoint_url,
                    }),
                    _ => None,
                }
            }
            Ok(None) => None,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        for (sec, why) in UNSUPPORTED_SECTIONS {
            for child in s.sections(sec) {
                errors.push(child.error(None, format!("<{sec}> is not supported by weir: {why}")));
            }
        }
        for (key, why) in UNSUPPORTED {
            if let Err(e) = s.unsupported(key, why) {
                errors.push(e);
            }
        }

        let path = s.string_or("path", "");
        let format_given = s.string("s3_object_key_format");
        let store_as = match s.string("store_as").as_deref() {
            None | Some("gzip") => StoreAs::Gzip,
            Some("json") => StoreAs::Json,
            Some("text") => StoreAs::Text,
            Some("zstd") => StoreAs::Zstd,
            Some(other @ ("lzo" | "lzma2" | "gzip_command" | "parquet" | "lz4")) => {
                errors.push(s.error(
                    Some("store_as"),
                    format!("'{other}' is not supported by weir (it needs an external command in fluent-plugin-s3); use gzip, zstd, json or text"),
                ));
                StoreAs::Gzip
            }
            Some(other) => {
                errors.push(s.error(
                    Some("store_as"),
                    format!("unknown store_as '{other}': use gzip, zstd, json or text"),
                ));
                StoreAs::Gzip
            }
        };
        let check_object = get!(s.boolean("check_object")).unwrap_or(true);
        let check_bucket = get!(s.boolean("check_bucket")).unwrap_or(true);
        let auto_create_bucket = get!(s.boolean("auto_create_bucket")).unwrap_or(true);
        let check_apikey_on_start = get!(s.boolean("check_apikey_on_start")).unwrap_or(true);
        let overwrite = get!(s.boolean("overwrite")).unwrap_or(false);
        let mut storage_class = s.string_or("storage_class", "STANDARD");
        if get!(s.boolean("reduced_redundancy")).unwrap_or(false) {
            tracing::warn!(
                "reduced_redundancy parameter is deprecated. Use storage_class parameter instead"
            );
            storage_class = "REDUCED_REDUNDANCY".to_string();
        }
        let use_server_side_encryption = s.string("use_server_side_encryption");
        let ssekms_key_id = s.string("ssekms_key_id");
        let acl = s.string("acl");
        let warn_for_delay = get!(s.duration("warn_for_delay"));
        let hex_random_length = get!(s.integer("hex_random_length")).unwrap_or(4);
        if !(1..=MAX_HEX_RANDOM_LENGTH).contains(&hex_random_length) {
            errors.push(s.error(
                Some("hex_random_length"),
                format!("hex_random_length parameter must be less than or equal to {MAX_HEX_RANDOM_LENGTH}"),
            ));
        }
        let index_format_s = s.string_or("index_format", "%d");
        let index_format = IndexFormat::parse(&index_format_s).unwrap_or_else(|| {
            errors.push(s.error(
                Some("index_format"),
                "index_format parameter should follow `%[flags][width]type`. `0` is the only supported flag, and is mandatory if width is specified. `d`, `x` and `X` are supported types",
            ));
            IndexFormat::default()
        });
        let time_slice_format = s.string("time_slice_format");
        let multipart_threshold = get!(s.size("multipart_threshold")).unwrap_or(16 * 1024 * 1024);
        let multipart_chunksize = get!(s.size("multipart_chunksize")).unwrap_or(8 * 1024 * 1024);
        if multipart_chunksize < MIN_PART_SIZE {
            errors.push(s.error(
                Some("multipart_chunksize"),
                "must be at least 5m (S3's smallest part)",
            ));
        }

        let formatter: Option<Arc<dyn Formatter>> = match formatter_from_section(s, "out_file") {
            Ok(f) => Some(Arc::from(f)),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        let inject = match Inject::from_section(s) {
            Ok(i) => i.map(Arc::new),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };

        // The buffer: fluent-plugin-s3 defaults to `time` chunks of one day. A v0.12
        // `time_slice_format` without a <buffer> section sets the timekey, as
        // compat_parameters does.
        let buffer_section = match s.section("buffer") {
            Ok(b) => b,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let timekey_default = match (&buffer_section, &time_slice_format) {
            (None, Some(f)) => timekey_of_slice_format(f),
            _ => 86400,
        };
        let defaults = BufferDefaults {
            chunk_keys: "time".to_string(),
            timekey: Some(Duration::from_secs(timekey_default)),
            memory: true,
            path: None,
        };
        let buffer = BufferConfig::from_output(buffer_section, s, defaults);
        let buffer = match buffer {
            Ok(b) => Some(b),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };

        // The key format: %{hostname} now; uniqueness without check_object.
        let mut format = format_given
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_FORMAT.to_string());
        for removed in [
            "%{uuid}",
            "%{uuid:random}",
            "%{uuid:hostname}",
            "%{uuid:timestamp}",
        ] {
            if format.contains(removed) {
                errors.push(s.error(
                    Some("s3_object_key_format"),
                    format!("{removed} placeholder in s3_object_key_format is removed"),
                ));
            }
        }
        if !check_object {
            if format_given.is_none() {
                format = DEFAULT_KEY_FORMAT_NO_CHECK.to_string();
            }
            let unique = ["${chunk_id}", "%{uuid_flush}", "%{hex_random}"]
                .iter()
                .any(|p| format.contains(p));
            if !unique {
                errors.push(s.error(
                    Some("check_object"),
                    format!(
                        "with check_object false, s3_object_key_format must contain ${{chunk_id}}, %{{uuid_flush}} or %{{hex_random}} so that two chunks never get the same key (it is '{format}')"
                    ),
                ));
            }
        }
        if format.contains("%{hostname}") {
            let host = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            format = format.replace("%{hostname}", &host);
        }

        let (Some(formatter), Some(mut buffer)) = (formatter, buffer) else {
            return Err(errors);
        };
        // A body that carries the tag while `tag` is not a chunk key needs each event's tag.
        buffer.keep_tags = !buffer.keys.tag && writes_tag(formatter.as_ref(), inject.as_deref());
        if !errors.is_empty() {
            return Err(errors);
        }
        if buffer.flush_thread_count > 1
            && ["${chunk_id}", "%{uuid_flush}", "%{hex_random}"]
                .iter()
                .all(|p| !format.contains(p))
        {
            tracing::warn!(
                output = %name,
                "No ${{chunk_id}}, %{{uuid_flush}} or %{{hex_random}} in s3_object_key_format with multiple flush threads. weir reserves each key it chooses, but a chunk recovered after a restart may race a new one; add ${{chunk_id}} to be safe"
            );
        }
        let full = format.replace("%{path}", &path);
        if (full.contains("${tag}") || full.contains("${tag[")) && !buffer.keys.tag {
            tracing::warn!(
                output = %name,
                "s3_object_key_format/path has tag placeholders, but chunk key 'tag' is not configured: they stay as written in the key (add tag to <buffer>)"
            );
        }
        let key = KeyTemplate {
            format,
            path,
            file_extension: store_as.extension().to_string(),
            time_slice_format: time_slice_format.unwrap_or_else(|| {
                crate::key::default_time_slice_format(buffer.keys.timekey).to_string()
            }),
            zone: zone_of(&buffer),
            index_format,
            hex_random_length: hex_random_length.clamp(1, MAX_HEX_RANDOM_LENGTH) as usize,
            check_object,
        };
        Ok((
            S3OutputConfig {
                name,
                s3_bucket,
                s3_region,
                s3_endpoint,
                force_path_style,
                static_keys,
                assume_role,
                key,
                store_as,
                check_object,
                check_bucket,
                auto_create_bucket,
                check_apikey_on_start,
                overwrite,
                storage_class,
                use_server_side_encryption,
                ssekms_key_id,
                acl,
                warn_for_delay,
                multipart_threshold,
                multipart_chunksize,
                formatter,
                inject,
                flush_thread_count: buffer.flush_thread_count,
            },
            buffer,
        ))
    }
}
