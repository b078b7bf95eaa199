//! regsweep: finds and deletes unreachable manifests in Docker Registry v2 storage.
//! The stages are modules of their own: `storage` (the scan) → `meta` (manifest bodies) →
//! `plan` (pure verdicts) → `report` → `delete`; `app` runs them, `config` configures them.

pub mod app;
pub mod clock;
pub mod config;
pub mod delete;
pub mod digest;
pub mod evidence;
pub mod exit;
pub mod gc;
pub mod logging;
pub mod meta;
pub mod outcome;
pub mod pipeline;
pub mod plan;
pub mod planfile;
pub mod policy_file;
pub mod record;
pub mod report;
pub mod s3;
pub mod secret;
pub mod signals;
pub mod storage;
pub mod timefmt;
pub mod values;
