//! The S3 client side: start-up checks, choosing and recording keys, uploads.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration, ObjectCannedAcl, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use md5::Digest as _;
use weir_store::{blocking, ChunkRef, ChunkSink, WriteError};

use crate::config::{S3OutputConfig, StoreAs};
use crate::error::S3Error;
use crate::key::KeyInput;

/// The chunk metadata key under which the chosen object key is recorded.
pub const META_KEY: &str = "s3_key";
/// The chunk metadata key of a multipart upload in progress (aborted on the next try).
pub const META_UPLOAD_ID: &str = "s3_upload_id";

/// The `@type s3` output: a [`ChunkSink`] that formats, compresses and uploads chunks.
pub struct S3Output {
    cfg: Arc<S3OutputConfig>,
    client: Client,
    /// Keys chosen for chunks not yet uploaded: probing treats them as taken.
    reserved: Mutex<HashSet<String>>,
    /// Serialises key choice so that two flush workers never probe the same index at once.
    choosing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for S3Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Output")
            .field("bucket", &self.cfg.s3_bucket)
            .finish_non_exhaustive()
    }
}

fn sdk_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(e).to_string()
}

fn status_of<E, R: HttpStatus>(e: &SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(HttpStatus::status_code)
}

/// The HTTP status of a raw response.
trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// S3 error codes that retrying cannot fix: the chunk goes to the secondary or `failed/`.
const UNRECOVERABLE_CODES: [&str; 6] = [
    "InvalidArgument",
    "InvalidStorageClass",
    "KeyTooLongError",
    "EntityTooLarge",
    "InvalidEncryptionAlgorithmError",
    "InvalidRequest",
];

fn classify<E>(
    what: &str,
    key: &str,
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> WriteError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let msg = format!("{what} {key}: {}", sdk_message(e));
    let code = e
        .as_service_error()
        .and_then(|s| s.code().map(str::to_string));
    match code {
        Some(c) if UNRECOVERABLE_CODES.contains(&c.as_str()) => WriteError::Unrecoverable(msg),
        _ => WriteError::Retryable(msg),
    }
}

/// A random (version 4) UUID, for `%{uuid_flush}`.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// CRC32 of `data` as S3 writes it: the big-endian bytes in base64.
pub fn crc32_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(data).to_be_bytes())
}

fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// Where compressed (or plain) body bytes collect until they are sent.
enum Encoder {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(store_as: StoreAs) -> Result<Self, WriteError> {
        Ok(match store_as {
            StoreAs::Json | StoreAs::Text => Encoder::Plain(Vec::new()),
            StoreAs::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            StoreAs::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3)
                    .map_err(|e| WriteError::Retryable(format!("zstd: {e}")))?,
            ),
        })
    }

    fn write(&mut self, text: &[u8]) -> Result<(), WriteError> {
        match self {
            Encoder::Plain(v) => {
                v.extend_from_slice(text);
                Ok(())
            }
            Encoder::Gzip(w) => w
                .write_all(text)
                .map_err(|e| WriteError::Retryable(format!("gzip: {e}"))),
            Encoder::Zstd(w) => w
                .write_all(text)
                .map_err(|e| WriteError::Retryable(format!("zstd: {e}"))),
        }
    }

    /// The bytes ready to send.
    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Plain(v) => v,
            Encoder::Gzip(w) => w.get_mut(),
            Encoder::Zstd(w) => w.get_mut(),
        }
    }

    /// Ends the stream (the gzip trailer, the last zstd frame); every byte is then in `out`.
    fn finish(self) -> Result<Encoder, WriteError> {
        Ok(Encoder::Plain(match self {
            Encoder::Plain(v) => v,
            Encoder::Gzip(w) => w
                .finish()
                .map_err(|e| WriteError::Retryable(format!("gzip: {e}")))?,
            Encoder::Zstd(w) => w
                .finish()
                .map_err(|e| WriteError::Retryable(format!("zstd: {e}")))?,
        }))
    }
}

/// A chunk's object body, made a piece at a time: every event formatted with the output's
/// `<inject>` and `<format>` (each with its own tag when the buffer stored one, else the chunk
/// key's) and compressed as `store_as` says. Memory stays at about the piece asked for, however
/// large the chunk. Events the formatter refuses are left out with a warning.
pub struct Body<'a> {
    cfg: &'a S3OutputConfig,
    chunk: &'a ChunkRef,
    events: weir_store::ChunkEvents<'a>,
    enc: Option<Encoder>,
    text: Vec<u8>,
    injected: Vec<u8>,
    skipped: u64,
    ended: bool,
}

/// Formatted text gathered before it goes to the compressor.
const TEXT_BATCH: usize = 64 * 1024;

impl<'a> Body<'a> {
    /// Starts reading `chunk`.
    pub fn new(cfg: &'a S3OutputConfig, chunk: &'a ChunkRef) -> Result<Self, WriteError> {
        // A read error is also kept as the chunk's read_error: the flusher never counts the
        // chunk as delivered.
        let events = chunk
            .event_reader()
            .map_err(|e| WriteError::Retryable(e.to_string()))?;
        Ok(Body {
            cfg,
            chunk,
            events,
            enc: Some(Encoder::new(cfg.store_as)?),
            text: Vec::with_capacity(TEXT_BATCH * 2),
            injected: Vec::new(),
            skipped: 0,
            ended: false,
        })
    }

    /// Bytes ready to send.
    pub fn ready(&mut self) -> usize {
        self.enc.as_mut().map_or(0, |e| e.out().len())
    }

    /// True once every event is formatted and the compressed stream is closed.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Formats events until at least `want` bytes are ready or the chunk ends.
    pub fn fill(&mut self, want: usize) -> Result<(), WriteError> {
        let key_tag = self.chunk.key().tag.as_deref().unwrap_or("");
        let unreadable = |e: weir_store::StoreError| WriteError::Retryable(e.to_string());
        while !self.ended && self.ready() < want {
            match self.events.next_tagged_event().map_err(unreadable)? {
                Some((time, record, tag)) => {
                    let tag = tag.unwrap_or(key_tag);
                    let record = match &self.cfg.inject {
                        Some(inject) => {
                            self.injected.clear();
                            if inject.apply(tag, time, record, &mut self.injected).is_err() {
                                self.skipped += 1;
                                continue;
                            }
                            &self.injected[..]
                        }
                        None => record,
                    };
                    if self
                        .cfg
                        .formatter
                        .format(tag, time, record, &mut self.text)
                        .is_err()
                    {
                        self.skipped += 1;
                    }
                    if self.text.len() >= TEXT_BATCH {
                        self.flush_text()?;
                    }
                }
                None => {
                    self.flush_text()?;
                    if let Some(enc) = self.enc.take() {
                        self.enc = Some(enc.finish()?);
                    }
                    self.ended = true;
                    if self.skipped > 0 {
                        tracing::warn!(output = %self.cfg.name, chunk_id = %self.chunk.id(), "{} event(s) could not be formatted and were left out", self.skipped);
                    }
                }
            }
        }
        Ok(())
    }

    fn flush_text(&mut self) -> Result<(), WriteError> {
        if let Some(enc) = self.enc.as_mut() {
            enc.write(&self.text)?;
        }
        self.text.clear();
        Ok(())
    }

    /// Takes up to `n` ready bytes, oldest first.
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        let Some(enc) = self.enc.as_mut() else {
            return Vec::new();
        };
        let out = enc.out();
        if n >= out.len() {
            return std::mem::take(out);
        }
        let rest = out.split_off(n);
        std::mem::replace(out, rest)
    }
}

/// The whole body of a chunk at once (for small chunks and tests).
pub fn chunk_body(cfg: &S3OutputConfig, chunk: &ChunkRef) -> Result<Vec<u8>, WriteError> {
    let mut body = Body::new(cfg, chunk)?;
    body.fill(usize::MAX)?;
    Ok(body.take(usize::MAX))
}

/// Compresses formatted text for `store_as`.
pub fn compress(store_as: StoreAs, text: Vec<u8>) -> Result<Vec<u8>, WriteError> {
    let mut enc = Encoder::new(store_as)?;
    enc.write(&text)?;
    Ok(std::mem::take(enc.finish()?.out()))
}

fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl S3Output {
    /// Builds the client (the standard credential chain: environment, profile, web identity,
    /// ECS, IMDSv2; or `aws_key_id`/`aws_sec_key`; optionally `<assume_role_credentials>` on
    /// top), then runs the start-up checks: `check_apikey_on_start` lists one object under
    /// `path`, `check_bucket` looks the bucket up and creates it when `auto_create_bucket`.
    pub async fn start(cfg: S3OutputConfig) -> Result<Self, S3Error> {
        let region = Region::new(cfg.s3_region.clone());
        let http = https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http.clone())
            .region(region.clone())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            );
        if let Some((k, s)) = &cfg.static_keys {
            loader = loader.credentials_provider(Credentials::new(
                k.clone(),
                s.clone(),
                None,
                None,
                "weir-config",
            ));
        }
        if let Some(a) = &cfg.assume_role {
            let sts_region = Region::new(
                a.sts_region
                    .clone()
                    .unwrap_or_else(|| cfg.s3_region.clone()),
            );
            let mut base = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http.clone())
                .region(sts_region.clone());
            if let Some((k, s)) = &cfg.static_keys {
                base = base.credentials_provider(Credentials::new(
                    k.clone(),
                    s.clone(),
                    None,
                    None,
                    "weir-config",
                ));
            }
            if let Some(url) = &a.sts_endpoint_url {
                base = base.endpoint_url(url.clone());
            }
            let base = base.load().await;
            let mut b = AssumeRoleProvider::builder(a.role_arn.clone())
                .session_name(a.role_session_name.clone())
                .region(sts_region)
                .configure(&base);
            if let Some(p) = &a.policy {
                b = b.policy(p.clone());
            }
            if let Some(id) = &a.external_id {
                b = b.external_id(id.clone());
            }
            if let Some(d) = a.duration_seconds {
                b = b.session_length(Duration::from_secs(d));
            }
            loader = loader.credentials_provider(b.build().await);
        }
        let sdk = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(cfg.force_path_style);
        if let Some(ep) = &cfg.s3_endpoint {
            s3 = s3.endpoint_url(ep.clone());
        }
        let client = Client::from_conf(s3.build());
        let out = S3Output {
            cfg: Arc::new(cfg),
            client,
            reserved: Mutex::new(HashSet::new()),
            choosing: tokio::sync::Mutex::new(()),
        };
        if out.cfg.check_apikey_on_start {
            out.check_apikeys().await?;
        }
        if out.cfg.check_bucket {
            out.ensure_bucket().await?;
        }
        Ok(out)
    }

    /// The configuration the output runs with.
    pub fn config(&self) -> &S3OutputConfig {
        &self.cfg
    }

    /// The SDK client (for tests and tools that read back what was written).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn check_apikeys(&self) -> Result<(), S3Error> {
        let r = self
            .client
            .list_objects_v2()
            .bucket(&self.cfg.s3_bucket)
            .prefix(&self.cfg.key.path)
            .max_keys(1)
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_bucket())
                    || e.code() == Some("NoSuchBucket") =>
            {
                Ok(())
            }
            Err(e) => Err(S3Error::ApiKeyCheck(sdk_message(&e))),
        }
    }

    async fn ensure_bucket(&self) -> Result<(), S3Error> {
        let bucket = &self.cfg.s3_bucket;
        let r = self.client.head_bucket().bucket(bucket).send().await;
        let missing = match r {
            Ok(_) => false,
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status_of(&e) == Some(404) =>
            {
                true
            }
            Err(e) => {
                return Err(S3Error::Bucket {
                    bucket: bucket.clone(),
                    message: sdk_message(&e),
                })
            }
        };
        if !missing {
            return Ok(());
        }
        if !self.cfg.auto_create_bucket {
            return Err(S3Error::NoSuchBucket(bucket.clone()));
        }
        tracing::info!(
            output = %self.cfg.name,
            "Creating bucket {bucket} on {}",
            self.cfg.s3_endpoint.as_deref().unwrap_or("S3")
        );
        let mut req = self.client.create_bucket().bucket(bucket);
        if self.cfg.s3_region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(
                        self.cfg.s3_region.as_str(),
                    ))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(S3Error::Bucket {
                bucket: bucket.clone(),
                message: format!("cannot create it: {}", sdk_message(&e)),
            }),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, WriteError> {
        match self
            .client
            .head_object()
            .bucket(&self.cfg.s3_bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status_of(&e) == Some(404) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify("HEAD", key, &e)),
        }
    }

    /// The key for a chunk: the one recorded earlier (a retry, possibly after a restart), or a
    /// new one, chosen (probing `%{index}` with HEAD when `check_object`) and recorded durably
    /// in the chunk's metadata before anything is uploaded.
    async fn key_for(&self, chunk: &ChunkRef) -> Result<String, WriteError> {
        if let Some(k) = chunk.metadata(META_KEY) {
            if let Ok(mut r) = self.reserved.lock() {
                r.insert(k.clone());
            }
            return Ok(k);
        }
        let _turn = self.choosing.lock().await;
        let ck = chunk.key();
        let input = KeyInput {
            tag: ck.tag.as_deref(),
            timekey: ck.timekey,
            variables: &ck.variables,
            chunk_id: chunk.id(),
            now: unix_now(),
        };
        let uuid = if self.cfg.key.uses_uuid_flush() {
            uuid_v4()
        } else {
            String::new()
        };
        let key = if self.cfg.check_object {
            let mut i = 0u64;
            let mut previous: Option<String> = None;
            loop {
                let candidate = self.cfg.key.render(&input, i, &uuid);
                if previous.as_deref() == Some(candidate.as_str()) {
                    if self.cfg.overwrite {
                        tracing::warn!(output = %self.cfg.name, "{candidate} already exists, but will overwrite");
                        break candidate;
                    }
                    return Err(WriteError::Unrecoverable(format!(
                        "duplicated path is generated. use %{{index}} in s3_object_key_format: path = {candidate}"
                    )));
                }
                let taken = self
                    .reserved
                    .lock()
                    .map(|r| r.contains(&candidate))
                    .unwrap_or(false);
                if !taken && !self.exists(&candidate).await? {
                    break candidate;
                }
                previous = Some(candidate);
                i += 1;
            }
        } else {
            self.cfg.key.render(&input, 0, &uuid)
        };
        blocking(|| chunk.set_metadata(META_KEY, &key))
            .map_err(|e| WriteError::Retryable(format!("cannot record the object key: {e}")))?;
        if let Ok(mut r) = self.reserved.lock() {
            r.insert(key.clone());
        }
        Ok(key)
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), WriteError> {
        let c = &self.cfg;
        let crc = crc32_base64(&body);
        let md5 = md5_base64(&body);
        let mut req = self
            .client
            .put_object()
            .bucket(&c.s3_bucket)
            .key(key)
            .content_type(c.store_as.content_type())
            .storage_class(StorageClass::from(c.storage_class.as_str()))
            .content_md5(md5)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_crc32(crc)
            .body(ByteStream::from(Bytes::from(body)));
        if let Some(v) = &c.use_server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::from(v.as_str()));
        }
        if let Some(v) = &c.ssekms_key_id {
            req = req.ssekms_key_id(v);
        }
        if let Some(v) = &c.acl {
            req = req.acl(ObjectCannedAcl::from(v.as_str()));
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PUT", key, &e))
    }

    async fn multipart(
        &self,
        chunk: &ChunkRef,
        key: &str,
        body: &mut Body<'_>,
    ) -> Result<usize, WriteError> {
        let c = &self.cfg;
        if let Some(old) = chunk.metadata(META_UPLOAD_ID).filter(|s| !s.is_empty()) {
            // A try before this one (perhaps before a restart) left an upload open.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&c.s3_bucket)
                .key(key)
                .upload_id(old)
                .send()
                .await;
        }
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(&c.s3_bucket)
            .key(key)
            .content_type(c.store_as.content_type())
            .storage_class(StorageClass::from(c.storage_class.as_str()))
            .checksum_algorithm(ChecksumAlgorithm::Crc32);
        if let Some(v) = &c.use_server_side_encryption {
            req = req.server_side_encryption(ServerSideEncryption::from(v.as_str()));
        }
        if let Some(v) = &c.ssekms_key_id {
            req = req.ssekms_key_id(v);
        }
        if let Some(v) = &c.acl {
            req = req.acl(ObjectCannedAcl::from(v.as_str()));
        }
        let created = req
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", key, &e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(WriteError::Retryable(format!(
                "CreateMultipartUpload {key}: the answer has no upload id"
            )));
        };
        if let Err(e) = blocking(|| chunk.set_metadata(META_UPLOAD_ID, &upload_id)) {
            tracing::warn!(output = %c.name, "cannot record the multipart upload id: {e}");
        }
        let result = self.upload_parts(key, &upload_id, body).await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&c.s3_bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &mut Body<'_>,
    ) -> Result<usize, WriteError> {
        let c = &self.cfg;
        let size = c.multipart_chunksize.max(crate::config::MIN_PART_SIZE) as usize;
        let mut parts = Vec::new();
        let mut n = 1i32;
        let mut total = 0usize;
        loop {
            // One part at a time: the next part is made once the one before has gone up.
            blocking(|| body.fill(size))?;
            if body.ready() == 0 {
                break;
            }
            let part = Bytes::from(body.take(size));
            total += part.len();
            let out = self
                .client
                .upload_part()
                .bucket(&c.s3_bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(n)
                .content_md5(md5_base64(&part))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .checksum_crc32(crc32_base64(&part))
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .map_err(|e| classify("UploadPart", key, &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .checksum_crc32(crc32_base64(&part))
                    .build(),
            );
            n += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&c.s3_bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| total)
            .map_err(|e| classify("CompleteMultipartUpload", key, &e))
    }

    /// Delivers one chunk: its key (recorded before the upload), its body, one PUT or a
    /// multipart upload.
    pub async fn write_chunk(&self, chunk: &ChunkRef) -> Result<(), WriteError> {
        let key = self.key_for(chunk).await?;
        // The body is made as it is sent: a chunk that ends below multipart_threshold goes up
        // in one PUT; a larger one as a multipart upload, one part in memory at a time.
        let threshold = usize::try_from(self.cfg.multipart_threshold).unwrap_or(usize::MAX);
        let mut body = blocking(|| Body::new(&self.cfg, chunk))?;
        blocking(|| body.fill(threshold))?;
        // An empty body (every event refused by the formatter) is one empty PUT, even with
        // multipart_threshold 0: a multipart upload needs at least one part.
        let (result, size) = if body.ended() && (body.ready() < threshold || body.ready() == 0) {
            let whole = body.take(usize::MAX);
            let size = whole.len();
            (self.put(&key, whole).await, size)
        } else {
            match self.multipart(chunk, &key, &mut body).await {
                Ok(total) => (Ok(()), total),
                Err(e) => (Err(e), 0),
            }
        };
        // A chunk that will be retried keeps its key reserved; a delivered one, or one that
        // goes to the secondary or failed/, frees it.
        if !matches!(result, Err(WriteError::Retryable(_))) {
            if let Ok(mut r) = self.reserved.lock() {
                r.remove(&key);
            }
        }
        result?;
        tracing::debug!(output = %self.cfg.name, chunk_id = %chunk.id(), bytes = size, "wrote s3://{}/{key}", self.cfg.s3_bucket);
        if let (Some(d), Some(t)) = (self.cfg.warn_for_delay, chunk.key().timekey) {
            if t < unix_now() - d.as_secs() as i64 {
                tracing::warn!(output = %self.cfg.name, "out_s3: delayed events were put to s3://{}/{key}", self.cfg.s3_bucket);
            }
        }
        Ok(())
    }
}

impl ChunkSink for S3Output {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(self.write_chunk(chunk))
    }

    /// The body is made from [`ChunkRef::event_reader`], a block at a time: the flusher need
    /// not load the chunk.
    fn reads_whole_chunk(&self) -> bool {
        false
    }
}
