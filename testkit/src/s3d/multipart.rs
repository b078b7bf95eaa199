//! Multipart uploads of `regsweep-s3d`: create, upload (or copy) parts, list uploads and
//! parts, complete into one object with S3's `<md5 of part md5s>-<N>` ETag, abort.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use md5::{Digest as _, Md5};
use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};

use super::store::{Object, Upload, hex};
use super::{Server, collect, etag};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn no_upload(id: &str) -> s3s::S3Error {
    s3_error!(NoSuchUpload, "no upload {id}")
}

/// CreateMultipartUpload: a new upload id for the key.
pub fn create(
    s: &Server,
    input: CreateMultipartUploadInput,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let id = format!("upload-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    s.with(&input.bucket, |b| {
        b.uploads.insert(
            id.clone(),
            Upload {
                key: input.key.clone(),
                parts: Default::default(),
                initiated: SystemTime::now(),
            },
        );
        Ok(())
    })?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        ..Default::default()
    }))
}

fn add_part(s: &Server, bucket: &str, id: &str, number: i32, data: Bytes) -> S3Result<String> {
    let tag = hex(&Md5::digest(&data));
    s.with(bucket, |b| {
        let u = b.uploads.get_mut(id).ok_or_else(|| no_upload(id))?;
        u.parts.insert(number, (data, tag.clone()));
        Ok(())
    })?;
    Ok(tag)
}

/// UploadPart.
pub async fn upload_part(
    s: &Server,
    input: UploadPartInput,
) -> S3Result<S3Response<UploadPartOutput>> {
    let data = collect(input.body).await?;
    let tag = add_part(s, &input.bucket, &input.upload_id, input.part_number, data)?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&tag)),
        ..Default::default()
    }))
}

/// UploadPartCopy: a part copied from (a byte range of) an object.
pub fn upload_part_copy(
    s: &Server,
    input: UploadPartCopyInput,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let src = s.source(&input.copy_source)?;
    let data = match input.copy_source_range.as_deref() {
        None => src.data,
        Some(r) => {
            let bad = || s3_error!(InvalidArgument, "copy source range {r:?}");
            let (a, z) = r
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .ok_or_else(bad)?;
            let a: usize = a.parse().map_err(|_| bad())?;
            let z: usize = z.parse().map_err(|_| bad())?;
            if a > z || z >= src.data.len() {
                return Err(bad());
            }
            src.data.slice(a..=z)
        }
    };
    let tag = add_part(s, &input.bucket, &input.upload_id, input.part_number, data)?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&tag)),
            last_modified: Some(SystemTime::now().into()),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// CompleteMultipartUpload: the listed parts, in order, become the object.
pub fn complete(
    s: &Server,
    input: CompleteMultipartUploadInput,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let wanted: Vec<i32> = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.part_number)
        .collect();
    let tag = s.with(&input.bucket, |b| {
        let u = b
            .uploads
            .get(&input.upload_id)
            .ok_or_else(|| no_upload(&input.upload_id))?;
        let mut data = BytesMut::new();
        let mut md5s = Vec::new();
        for n in &wanted {
            let (part, tag) = u
                .parts
                .get(n)
                .ok_or_else(|| s3_error!(InvalidPart, "no part {n}"))?;
            data.extend_from_slice(part);
            md5s.extend(
                (0..tag.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&tag[2 * i..2 * i + 2], 16).ok()),
            );
        }
        let mut o = Object::new(data.freeze());
        o.etag = format!("{}-{}", hex(&Md5::digest(&md5s)), wanted.len());
        let tag = o.etag.clone();
        b.objects.insert(input.key.clone(), o);
        b.uploads.remove(&input.upload_id);
        Ok(tag)
    })?;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(etag(&tag)),
        ..Default::default()
    }))
}

/// AbortMultipartUpload.
pub fn abort(
    s: &Server,
    input: AbortMultipartUploadInput,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    s.with(&input.bucket, |b| {
        b.uploads
            .remove(&input.upload_id)
            .map(drop)
            .ok_or_else(|| no_upload(&input.upload_id))
    })?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

/// ListMultipartUploads: uploads whose key starts with the prefix, by key (one page).
pub fn list_uploads(
    s: &Server,
    input: ListMultipartUploadsInput,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads = s.with(&input.bucket, |b| {
        Ok(b.uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(&prefix))
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(u.initiated.into()),
                ..Default::default()
            })
            .collect::<Vec<_>>())
    })?;
    uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        is_truncated: Some(false),
        uploads: Some(uploads),
        ..Default::default()
    }))
}

/// ListParts: every part of an upload, by number (one page).
pub fn list_parts(s: &Server, input: ListPartsInput) -> S3Result<S3Response<ListPartsOutput>> {
    let parts = s.with(&input.bucket, |b| {
        let u = b
            .uploads
            .get(&input.upload_id)
            .ok_or_else(|| no_upload(&input.upload_id))?;
        Ok(u.parts
            .iter()
            .map(|(n, (data, tag))| Part {
                part_number: Some(*n),
                size: Some(data.len() as i64),
                e_tag: Some(etag(tag)),
                last_modified: Some(u.initiated.into()),
                ..Default::default()
            })
            .collect::<Vec<_>>())
    })?;
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        is_truncated: Some(false),
        parts: Some(parts),
        ..Default::default()
    }))
}
