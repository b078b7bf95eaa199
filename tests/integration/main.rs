//! The integration tests as one binary, as ripgrep has them: one link step instead of one
//! per file (each test binary links the whole of regsweep and its dependencies). Each module
//! was a `tests/NAME.rs` of its own; run one with `cargo test --test integration NAME::`
//! (a filter is a substring: `gc::` also runs `online_gc::`).

mod common;

mod bytes_freed;
mod delete;
mod dry_run;
mod gc;
mod generate;
mod go_reading;
mod hostile;
mod in_use;
mod metrics;
mod new_user;
mod online_attacks;
mod online_gc;
mod parsers_never_panic;
mod plan_apply;
mod progress;
mod review;
mod s3;
mod safety;
mod secrets;
mod shapes;
mod shard;
mod token;
