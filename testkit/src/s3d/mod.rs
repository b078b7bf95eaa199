//! `regsweep-s3d`: an S3-compatible server holding its buckets in memory, built on the
//! `s3s` crate (HTTP, SigV4, XML), for measuring regsweep's S3 lister where a LIST costs its
//! page, as on S3 (moto re-reads the whole bucket on every LIST). It serves what regsweep,
//! `regsweep-testpush` and the registry's S3 driver call: objects (put, get with ranges,
//! head, copy, delete one or many), LIST v1 and v2, and multipart uploads.

mod multipart;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

use store::{Bucket, Object, Page};

/// The server's state: buckets by name.
#[derive(Clone, Default)]
pub struct Server {
    buckets: Arc<Mutex<BTreeMap<String, Bucket>>>,
    /// Added before every answer: a real S3's round trip (tens of milliseconds).
    latency: std::time::Duration,
}

impl Server {
    /// A server with the empty buckets `buckets`.
    pub fn with_buckets(buckets: &[&str]) -> Server {
        let s = Server::default();
        for b in buckets {
            s.lock().entry((*b).to_owned()).or_default();
        }
        s
    }

    /// The same server, answering every request `latency` later (each request waits on
    /// its own: requests in flight at once overlap, as on a real S3).
    pub fn with_latency(mut self, latency: std::time::Duration) -> Server {
        self.latency = latency;
        self
    }

    /// Serves S3 on `listener` (path-style, SigV4 with the one key pair given) until the
    /// process ends.
    pub async fn serve(self, listener: TcpListener, access: &str, secret: &str) {
        let latency = self.latency;
        let inner = {
            let mut b = S3ServiceBuilder::new(self);
            b.set_auth(SimpleAuth::from_single(access, secret));
            b.build()
        };
        let service = hyper::service::service_fn(move |req| {
            let inner = inner.clone();
            async move {
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                hyper::service::Service::call(&inner, req).await
            }
        });
        let http = Builder::new(TokioExecutor::new());
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    }

    /// Serves on 127.0.0.1 (a free port) from a thread of its own, for the life of the
    /// process; gives its URL.
    pub fn spawn(self, access: &str, secret: &str) -> std::io::Result<String> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let url = format!("http://{}", std_listener.local_addr()?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (access, secret) = (access.to_owned(), secret.to_owned());
        std::thread::spawn(move || {
            rt.block_on(async move {
                match TcpListener::from_std(std_listener) {
                    Ok(l) => self.serve(l, &access, &secret).await,
                    Err(e) => eprintln!("regsweep-s3d: {e}"),
                }
            })
        });
        Ok(url)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Bucket>> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the object `key` in `bucket`, or NoSuchKey.
    fn object(&self, bucket: &str, key: &str) -> S3Result<Object> {
        self.with(bucket, |b| {
            b.objects.get(key).cloned().ok_or_else(|| no_key(key))
        })
    }

    /// The object a copy request names as its source.
    fn source(&self, from: &CopySource) -> S3Result<Object> {
        match from {
            CopySource::Bucket { bucket, key, .. } => self.object(bucket, key),
            _ => Err(s3_error!(NotImplemented, "copy from an access point")),
        }
    }

    /// Runs `f` on bucket `name`, or fails with NoSuchBucket.
    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Bucket) -> S3Result<T>) -> S3Result<T> {
        let mut all = self.lock();
        let b = all
            .get_mut(name)
            .ok_or_else(|| s3_error!(NoSuchBucket, "no bucket {name}"))?;
        f(b)
    }
}

/// A request body, gathered.
async fn collect(body: Option<StreamingBlob>) -> S3Result<Bytes> {
    let mut out = BytesMut::new();
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?);
        }
    }
    Ok(out.freeze())
}

fn etag(e: &str) -> ETag {
    ETag::Strong(e.to_owned())
}

fn blob(data: Bytes) -> StreamingBlob {
    StreamingBlob::from(s3s::Body::from(data))
}

fn no_key(key: &str) -> s3s::S3Error {
    s3_error!(NoSuchKey, "no key {key}")
}

/// `max` from a request's max-keys (S3's default and ceiling: 1000).
fn page_size(max: Option<i32>) -> usize {
    max.map_or(1000, |m| usize::try_from(m).unwrap_or(0).min(1000))
}

fn listed(b: &Bucket, page: &Page) -> (Vec<s3s::dto::Object>, Vec<CommonPrefix>) {
    let objects = page
        .keys
        .iter()
        .filter_map(|k| b.objects.get(k).map(|o| (k, o)))
        .map(|(k, o)| s3s::dto::Object {
            key: Some(k.clone()),
            e_tag: Some(etag(&o.etag)),
            size: Some(o.data.len() as i64),
            last_modified: Some(o.modified.into()),
            ..Default::default()
        })
        .collect();
    let prefixes = page
        .prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(p.clone()),
        })
        .collect();
    (objects, prefixes)
}

#[async_trait::async_trait]
impl S3 for Server {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.lock().entry(req.input.bucket).or_default();
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.with(&req.input.bucket, |_| Ok(()))?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let o = Object::new(collect(input.body).await?);
        let tag = etag(&o.etag);
        self.with(&input.bucket, |b| {
            b.objects.insert(input.key, o);
            Ok(())
        })?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(tag),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let o = self.object(&input.bucket, &input.key)?;
        let len = o.data.len() as u64;
        let (data, content_range) = match input.range {
            None => (o.data.clone(), None),
            Some(r) => {
                let r = r
                    .check(len)
                    .map_err(|_| s3_error!(InvalidRange, "range outside {len} bytes"))?;
                let range = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
                (o.data.slice(r.start as usize..r.end as usize), Some(range))
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(data.len() as i64),
            body: Some(blob(data)),
            content_range,
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(o.modified.into()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let o = self.object(&input.bucket, &input.key)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(o.data.len() as i64),
            e_tag: Some(etag(&o.etag)),
            last_modified: Some(o.modified.into()),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let copy = Object::new(self.source(&input.copy_source)?.data);
        let result = CopyObjectResult {
            e_tag: Some(etag(&copy.etag)),
            last_modified: Some(copy.modified.into()),
            ..Default::default()
        };
        self.with(&input.bucket, |b| {
            b.objects.insert(input.key, copy);
            Ok(())
        })?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.with(&input.bucket, |b| {
            b.objects.remove(&input.key);
            Ok(())
        })?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let deleted = self.with(&input.bucket, |b| {
            Ok(input
                .delete
                .objects
                .into_iter()
                .map(|o| {
                    b.objects.remove(&o.key);
                    DeletedObject {
                        key: Some(o.key),
                        ..Default::default()
                    }
                })
                .collect::<Vec<_>>())
        })?;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = page_size(input.max_keys);
        let out = self.with(&input.bucket, |b| {
            // The marker is exclusive: start just above it.
            let from = input.marker.as_deref().map(|m| format!("{m}\0"));
            let page = b.list(
                &prefix,
                input.delimiter.as_deref(),
                from.as_deref().unwrap_or(""),
                max,
            );
            let (contents, prefixes) = listed(b, &page);
            let last = page.keys.last().max(page.prefixes.last()).cloned();
            Ok(ListObjectsOutput {
                name: Some(input.bucket.clone()),
                prefix: Some(prefix.clone()),
                marker: input.marker.clone(),
                max_keys: Some(max as i32),
                delimiter: input.delimiter.clone(),
                is_truncated: Some(page.next.is_some()),
                next_marker: page.next.as_ref().and(last),
                contents: Some(contents),
                common_prefixes: Some(prefixes),
                ..Default::default()
            })
        })?;
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = page_size(input.max_keys);
        let out = self.with(&input.bucket, |b| {
            // A continuation token is where the next page starts (inclusive);
            // start-after is exclusive.
            let from = match (&input.continuation_token, &input.start_after) {
                (Some(t), _) => t.clone(),
                (None, Some(s)) => format!("{s}\0"),
                (None, None) => String::new(),
            };
            let page = b.list(&prefix, input.delimiter.as_deref(), &from, max);
            let (contents, prefixes) = listed(b, &page);
            Ok(ListObjectsV2Output {
                name: Some(input.bucket.clone()),
                prefix: Some(prefix.clone()),
                max_keys: Some(max as i32),
                delimiter: input.delimiter.clone(),
                key_count: Some((contents.len() + prefixes.len()) as i32),
                continuation_token: input.continuation_token.clone(),
                start_after: input.start_after.clone(),
                is_truncated: Some(page.next.is_some()),
                next_continuation_token: page.next.clone(),
                contents: Some(contents),
                common_prefixes: Some(prefixes),
                ..Default::default()
            })
        })?;
        Ok(S3Response::new(out))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req.input)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req.input).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req.input)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req.input)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req.input)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req.input)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req.input)
    }
}
