//! S3 access shared by the S3 lister and blob reader: client setup, counted LIST and GET
//! requests, and one clear line for every way a user can get the configuration wrong.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;

use secrecy::{ExposeSecret, SecretString};

/// Objects and common prefixes of a listing, or why it failed.
pub type Listing = Result<(Vec<aws_sdk_s3::types::Object>, Vec<String>), S3Error>;

/// Why an S3 request failed; the text names the bucket and the key or prefix. Callers
/// decide on the kind, never on the text.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The key (for a copy, its source) is not there.
    #[error("{0}")]
    NotFound(String),
    /// The bucket cannot be used as configured (it does not exist, the credentials or the
    /// region are wrong, the registry prefix is empty): one line for the user.
    #[error("{0}")]
    Setup(String),
    /// The server answered a listing inconsistently (truncated without a continuation
    /// token, or the reverse): it is never taken as complete.
    #[error("{0}")]
    BrokenListing(String),
    /// Any other failed request.
    #[error("{0}")]
    Request(String),
}

/// Whether a failed request says the key is not there: S3's `NoSuchKey`, or a 404 that
/// names no error code (a body-less answer).
fn is_not_found<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    match e.code() {
        Some(code) => code == "NoSuchKey",
        None => e.raw_response().is_some_and(|r| r.status().as_u16() == 404),
    }
}

/// How to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// Bucket name (`BUCKET`).
    pub bucket: String,
    /// Region (`REGION`); else the AWS chain, else us-east-1.
    pub region: Option<String>,
    /// S3-compatible endpoint URL.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
    /// Access and secret key; `None` for the standard AWS credential chain.
    pub credentials: Option<(String, SecretString)>,
    /// The registry driver's `rootdirectory` (`REGISTRY_DIR`), slashes as the user wrote them.
    pub root: String,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Requests made, by kind, and bytes read.
#[derive(Debug, Default)]
pub struct S3Stats {
    /// ListObjectsV2 requests.
    pub list: AtomicU64,
    /// GETs of link files the listing could not resolve.
    pub get_link: AtomicU64,
    /// GETs of manifest and config blobs.
    pub get_blob: AtomicU64,
    /// Bytes of object bodies read.
    pub bytes: AtomicU64,
    /// DeleteObjects requests (offline deletion).
    pub delete: AtomicU64,
    /// CopyObject requests (quarantine and restore).
    pub copy: AtomicU64,
}

impl S3Stats {
    /// The counts as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "list_requests": self.list.load(Ordering::Relaxed),
            "get_link_requests": self.get_link.load(Ordering::Relaxed),
            "get_blob_requests": self.get_blob.load(Ordering::Relaxed),
            "bytes_read": self.bytes.load(Ordering::Relaxed),
            "delete_objects_requests": self.delete.load(Ordering::Relaxed),
            "copy_object_requests": self.copy.load(Ordering::Relaxed),
        })
    }
}

/// What a GET is for, for accounting.
#[derive(Clone, Copy, Debug)]
pub enum GetKind {
    /// A link file.
    Link,
    /// A manifest or config blob.
    Blob,
}

/// A connected bucket with the registry's key prefix.
pub struct S3Store {
    client: Client,
    /// Bucket name.
    pub bucket: String,
    /// `<root>/docker/registry/v2/` without a leading slash (or `docker/registry/v2/`).
    pub base: String,
    /// Request accounting.
    pub stats: S3Stats,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// The key prefix of a registry whose driver `rootdirectory` is `root`.
pub fn base_prefix(root: &str) -> String {
    let root = root.trim_matches('/');
    if root.is_empty() {
        "docker/registry/v2/".to_owned()
    } else {
        format!("{root}/docker/registry/v2/")
    }
}

/// One line for an S3 error, naming the bucket and what to check; never a secret.
pub fn explain<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
    o: &S3Options,
    what: &str,
) -> String {
    let endpoint = o.endpoint.as_deref().unwrap_or("AWS S3");
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "cannot reach the S3 endpoint {endpoint} ({what}): {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        ),
        _ => {
            let code = e.code().unwrap_or("");
            let hint = match code {
                "NoSuchBucket" => format!("bucket {:?} does not exist", o.bucket),
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "InvalidToken"
                | "ExpiredToken" => {
                    format!(
                        "S3 rejected the credentials ({}) for bucket {:?}",
                        if o.credentials.is_some() {
                            "ACCESS_KEY/SECRET_KEY"
                        } else {
                            "the AWS credential chain"
                        },
                        o.bucket
                    )
                }
                "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "IllegalLocationConstraintException" => {
                    format!(
                        "bucket {:?} is not in region {:?}: set REGION to the bucket's region",
                        o.bucket,
                        o.region.as_deref().unwrap_or("us-east-1")
                    )
                }
                _ => format!("S3 error on bucket {:?}", o.bucket),
            };
            format!("{hint} ({what}: {code} {})", e.message().unwrap_or(""))
                .trim_end()
                .to_owned()
        }
    }
}

impl S3Store {
    /// Builds the client and checks the bucket and the registry prefix with one listing.
    pub async fn connect(o: &S3Options) -> Result<S3Store, S3Error> {
        let region = RegionProviderChain::first_try(o.region.clone().map(Region::new))
            .or_default_provider()
            .or_else(Region::new("us-east-1"));
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region);
        if let Some((a, s)) = &o.credentials {
            loader = loader.credentials_provider(Credentials::new(
                a,
                s.expose_secret(),
                None,
                None,
                "regsweep",
            ));
        }
        if let Some(e) = &o.endpoint {
            loader = loader.endpoint_url(e);
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(o.path_style)
            .retry_config(RetryConfig::standard().with_max_attempts(6))
            .build();
        let store = S3Store {
            client: Client::from_conf(conf),
            bucket: o.bucket.clone(),
            base: base_prefix(&o.root),
            stats: S3Stats::default(),
            concurrency: o.concurrency.max(1),
        };
        let probe = format!("{}repositories/", store.base);
        let page = store
            .list_page(&probe, Some("/"), None, Some(1))
            .await
            .map_err(|e| {
                S3Error::Setup(explain(
                    &e,
                    o,
                    &format!("listing s3://{}/{probe}", o.bucket),
                ))
            })?;
        if page.key_count().unwrap_or(0) == 0 && page.common_prefixes().is_empty() {
            return Err(S3Error::Setup(format!(
                "REGISTRY_DIR {:?}: s3://{}/{probe} is empty; is REGISTRY_DIR the driver's rootdirectory?",
                o.root, o.bucket
            )));
        }
        Ok(store)
    }

    /// One ListObjectsV2 page.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<
        ListObjectsV2Output,
        SdkError<
            aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error,
            aws_sdk_s3::config::http::HttpResponse,
        >,
    > {
        self.list_page_after(prefix, delimiter, token, max_keys, None)
            .await
    }

    /// One ListObjectsV2 page of the keys after `start_after` (on the first page only).
    async fn list_page_after(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: Option<i32>,
        start_after: Option<&str>,
    ) -> Result<
        ListObjectsV2Output,
        SdkError<
            aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error,
            aws_sdk_s3::config::http::HttpResponse,
        >,
    > {
        self.stats.list.fetch_add(1, Ordering::Relaxed);
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_start_after(start_after.filter(|_| token.is_none()).map(str::to_owned))
            .set_continuation_token(token)
            .max_keys(max_keys.unwrap_or(1000))
            .send()
            .await
    }

    /// Every page under `prefix`: objects and (with a delimiter) common prefixes.
    pub async fn list_all(&self, prefix: &str, delimiter: Option<&str>) -> Listing {
        self.list_all_after(prefix, delimiter, None).await
    }

    /// Every page under `prefix` after the key `start_after`.
    pub async fn list_all_after(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
    ) -> Listing {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .list_page_after(prefix, delimiter, token, None, start_after)
                .await
                .map_err(|e| {
                    S3Error::Request(format!(
                        "listing s3://{}/{prefix}: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ))
                })?;
            objects.extend(page.contents().iter().cloned());
            prefixes.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
            // A listing cut short must never pass for a complete one: lost tag keys would
            // make their revisions look untagged.
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) if !t.is_empty() => token = Some(t.to_owned()),
                (Some(true), _) => {
                    return Err(S3Error::BrokenListing(format!(
                        "listing s3://{}/{prefix}: the server says the listing is truncated but gives no continuation token",
                        self.bucket
                    )));
                }
                (_, Some(t)) if !t.is_empty() => {
                    return Err(S3Error::BrokenListing(format!(
                        "listing s3://{}/{prefix}: the server gives a continuation token without IsTruncated",
                        self.bucket
                    )));
                }
                _ => return Ok((objects, prefixes)),
            }
        }
    }

    /// Deletes keys with DeleteObjects, 1000 per request, several requests at once (the
    /// store's concurrency); returns each key that failed with why.
    pub async fn delete_keys(&self, keys: &[String]) -> Vec<(String, String)> {
        use futures_util::stream::{self, StreamExt};
        stream::iter(keys.chunks(1000).map(|chunk| self.delete_chunk(chunk)))
            .buffer_unordered(self.concurrency.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Deletes keys, each owned by something (a digest, an upload); gives each owner whose
    /// keys could not all be deleted, once, with the first failure.
    pub async fn delete_owned<O: Ord + Clone>(
        &self,
        keys: &[(O, String)],
    ) -> std::collections::BTreeMap<O, String> {
        let owner: std::collections::HashMap<&str, &O> =
            keys.iter().map(|(o, k)| (k.as_str(), o)).collect();
        let all: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
        let mut failed = std::collections::BTreeMap::new();
        for (key, why) in self.delete_keys(&all).await {
            if let Some(o) = owner.get(key.as_str()) {
                failed
                    .entry((*o).clone())
                    .or_insert_with(|| format!("s3://{}/{key}: {why}", self.bucket));
            }
        }
        failed
    }

    /// One DeleteObjects request for at most 1000 keys; the keys that failed, with why.
    async fn delete_chunk(&self, chunk: &[String]) -> Vec<(String, String)> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        self.stats.delete.fetch_add(1, Ordering::Relaxed);
        let ids: Result<Vec<ObjectIdentifier>, _> = chunk
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect();
        let delete =
            ids.and_then(|ids| Delete::builder().set_objects(Some(ids)).quiet(true).build());
        let delete = match delete {
            Ok(d) => d,
            Err(e) => return chunk.iter().map(|k| (k.clone(), e.to_string())).collect(),
        };
        match self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
        {
            Ok(out) => out
                .errors()
                .iter()
                .map(|e| {
                    (
                        e.key().unwrap_or("").to_owned(),
                        format!("{} {}", e.code().unwrap_or(""), e.message().unwrap_or("")),
                    )
                })
                .collect(),
            Err(e) => {
                let why = format!(
                    "DeleteObjects on s3://{}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                );
                chunk.iter().map(|k| (k.clone(), why.clone())).collect()
            }
        }
    }

    /// Whether the object `key` exists (HeadObject).
    pub async fn head(&self, key: &str) -> Result<bool, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(S3Error::Request(format!(
                "s3://{}/{key}: {}",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            ))),
        }
    }

    /// Copies the object `from` to `to` in the bucket (CopyObject: objects up to 5 GiB);
    /// [`S3Error::NotFound`] when `from` is not there.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), S3Error> {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const KEEP: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        self.stats.copy.fetch_add(1, Ordering::Relaxed);
        let source = format!("{}/{from}", self.bucket);
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(utf8_percent_encode(&source, KEEP).to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let why = format!(
                    "copying s3://{}/{from} to {to}: {}",
                    self.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                );
                if is_not_found(&e) {
                    S3Error::NotFound(why)
                } else {
                    S3Error::Request(why)
                }
            })
    }

    /// GETs an object's body.
    pub async fn get(&self, key: &str, kind: GetKind) -> std::io::Result<Vec<u8>> {
        match kind {
            GetKind::Link => self.stats.get_link.fetch_add(1, Ordering::Relaxed),
            GetKind::Blob => self.stats.get_blob.fetch_add(1, Ordering::Relaxed),
        };
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    std::io::ErrorKind::NotFound
                } else {
                    std::io::ErrorKind::Other
                };
                std::io::Error::new(
                    kind,
                    format!(
                        "s3://{}/{key}: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| std::io::Error::other(format!("s3://{}/{key}: {e}", self.bucket)))?
            .into_bytes()
            .to_vec();
        self.stats
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_directory_slashes_are_normalised() {
        for root in ["", "/", "//"] {
            assert_eq!(super::base_prefix(root), "docker/registry/v2/");
        }
        for root in ["registry", "/registry", "/registry/", "registry/"] {
            assert_eq!(super::base_prefix(root), "registry/docker/registry/v2/");
        }
        assert_eq!(super::base_prefix("/a/b/"), "a/b/docker/registry/v2/");
    }
}
