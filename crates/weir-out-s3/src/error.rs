//! Errors of the S3 output at start-up.

/// Why [`crate::S3Output::start`] failed. Each message says what to check.
#[derive(Debug, Clone, thiserror::Error)]
pub enum S3Error {
    /// `check_apikey_on_start`: listing the bucket failed for a reason other than a missing
    /// bucket (wrong keys, wrong region, no permission, endpoint unreachable).
    #[error(
        "can't call S3 API. Please check your credentials or s3_region configuration. error = {0}"
    )]
    ApiKeyCheck(String),
    /// `check_bucket` with `auto_create_bucket false`: the bucket is not there.
    #[error("The specified bucket does not exist: bucket = {0}")]
    NoSuchBucket(String),
    /// Checking or creating the bucket failed.
    #[error("bucket {bucket}: {message}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What went wrong, with the SDK's detail.
        message: String,
    },
    /// The credentials configuration could not be turned into a provider.
    #[error("credentials: {0}")]
    Credentials(String),
}
