//! What an interrupted online collection left in quarantine: put back before any
//! collection that deletes marks, or on its own (`regsweep gc --restore-quarantine`).

use anyhow::{Result, anyhow};

use super::quarantine::Quarantine;
use crate::config::Config;
use crate::delete::journal::{Journal, Record};
use crate::exit::Exit;

/// Before marking: a collection that deletes puts leftovers back first (and stops when
/// that fails or was all it was asked to do); a dry run only says they are there.
pub(super) fn before_marking(cfg: &Config, q: &Quarantine) -> Result<Option<Exit>> {
    if cfg.restore_quarantine {
        return restore(cfg, q, true).map(Some);
    }
    if !cfg.dry_run {
        let exit = restore(cfg, q, false)?;
        return Ok((exit != Exit::Ok).then_some(exit));
    }
    if let Ok(left) = q.held()
        && !left.is_empty()
    {
        crate::logging::warn(format_args!(
            "{} blobs sit in the quarantine {} (an interrupted online collection); \
             a collection that deletes puts them back first",
            left.len(),
            q.shown()
        ));
    }
    Ok(None)
}

/// Puts back whatever sits in quarantine (`regsweep gc --restore-quarantine`, or before
/// any collection that deletes); gives the exit code.
pub(super) fn restore(cfg: &Config, q: &Quarantine, asked: bool) -> Result<Exit> {
    let left = match q.held() {
        Ok(l) => l,
        Err(e) => {
            crate::logging::error(format_args!("the quarantine {}: {e}", q.shown()));
            return Ok(Exit::Fatal);
        }
    };
    if left.is_empty() {
        if asked {
            println!(
                "The quarantine {} is empty: nothing to put back.",
                q.shown()
            );
        }
        return Ok(Exit::Ok);
    }
    let failed = q.restore(&left);
    if let Some(path) = &cfg.journal {
        let j = Journal::open(path).map_err(|e| anyhow!(e))?;
        j.record(Record::GcRestored {
            digests: left.iter().map(|d| d.to_string()).collect(),
            why: "left in quarantine by an interrupted online collection".into(),
        });
        if let Err(e) = j.close() {
            crate::logging::error(format_args!("{e}"));
        }
    }
    let line = format!(
        "Put back {} of {} blobs an interrupted online collection left in quarantine ({}).",
        left.len() - failed.len(),
        left.len(),
        q.shown()
    );
    if asked {
        println!("{line}");
    } else {
        crate::logging::note(format_args!("{line}"));
    }
    for (d, why) in &failed {
        crate::logging::failed(format_args!("blob {d}: {why}"));
    }
    Ok(if failed.is_empty() {
        Exit::Ok
    } else {
        Exit::Partial
    })
}
