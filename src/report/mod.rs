//! Reports: the original tool's text summary, a JSON document of every decision, and the
//! progress shown while scanning and deleting, and a run's Prometheus metrics. Output
//! only: nothing here reads storage.

pub mod json;
pub mod metrics;
pub mod progress;
pub mod status;
pub mod text;
