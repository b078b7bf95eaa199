//! Test and demo support: pushes realistic images to a real registry over its HTTP API.

pub mod generate;
pub mod push;
pub mod s3fill;
pub mod scenario;

pub use push::{ImageSpec, Pushed, Pusher, push_untagged};
