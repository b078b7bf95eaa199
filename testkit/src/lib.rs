//! Test and demo support (a workspace member, never part of the product): pushes realistic
//! images to a real registry over its HTTP API, generates storage trees, fills S3 buckets.
//! Only tests, benches and scripts use it.

pub mod generate;
pub mod push;
pub mod s3d;
pub mod s3fill;
pub mod scenario;
pub mod stress;

pub use push::{ImageSpec, Pushed, Pusher, push_untagged};
