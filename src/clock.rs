//! The run's clock: a run's verdicts are measured from one policy time, and a policy time
//! read back from a file (a plan, a journal) is checked before any verdict uses it.

use anyhow::{Result, anyhow};

/// Checks a policy time read from a file: a time in the future would turn the grace
/// period off, one before 1970 is no time regsweep wrote.
pub fn policy_time(what: &str, now: i64) -> Result<i64> {
    let real = chrono::Utc::now().timestamp();
    if now < 0 || now > real.saturating_add(300) {
        return Err(anyhow!(
            "{what}: its time {now} is not a past time (now is {real}): refusing a grace period measured from it"
        ));
    }
    Ok(now)
}
