//! Putting a hop back: the old release serving again, and, once the switch began
//! (migrations may have run), the database, data and site config restored from the
//! pre-upgrade backup. Journaled like the hop (`rolling_back` in the journal), so a
//! rollback killed half way is finished by `berth upgrade abort`.

use std::path::Path;

use berth_backup::restore::RestoreOptions;
use berth_backup::{BackupError, Result};
use berth_lifecycle::run::Run;
use berth_render::Paths;
use berth_state::RunId;

use crate::journal::{self, Journal};
use crate::steps::remove_maintenance_page;
use crate::{AbortReport, Context};

/// Roll the current hop of `j` back because of `why`, then forget the upgrade.
pub(crate) fn rollback(
    ctx: &Context<'_>,
    prefix: &Path,
    mut j: Journal,
    why: &str,
) -> Result<AbortReport> {
    let paths = Paths::unversioned(prefix);
    let hop = j.hop().cloned().ok_or_else(|| BackupError::Cannot {
        what: "The upgrade journal names no hop".to_owned(),
        hint: format!(
            "remove `{}` once the instance is as it should be",
            paths.upgrade_journal().display()
        ),
    })?;
    if j.rolling_back.is_none() {
        j.rolling_back = Some(why.to_owned());
        journal::save(&paths, &j)?;
    }
    let progress = ctx.progress;
    progress.note(&format!("Rolling back to {} {}: {why}", j.app, hop.from));
    berth_lifecycle::leftovers::stop_leftover_children_at(&paths, progress)?;
    let loc_from = ctx.locate(prefix, &hop.from);
    let restored = j.has_begun("switch");
    let restarted = restored || j.has_begun("maintenance");
    if restored {
        let archive = j.backup.clone().ok_or_else(|| BackupError::Cannot {
            what: "The upgrade switched releases but recorded no pre-upgrade backup".to_owned(),
            hint: "restore the newest backup from before the upgrade: `berth backup list`, then `berth restore ARCHIVE`".to_owned(),
        })?;
        // The hooks the hop ran (migrations) changed the data that is put back now:
        // they must run again on the next attempt.
        if let Some(id) = j.run {
            let db = berth_state::StateDb::open(paths.state_db())?;
            db.forget_hooks_since(RunId(id))?;
        }
        // The restore stops everything, puts the data back and brings the old
        // release up with the old manifest; the page would make its health check fail.
        remove_maintenance_page(&paths)?;
        let opts = RestoreOptions {
            archive: Some(archive),
            // An archive made without a backup key has no secrets: the instance keeps
            // its own, which are the ones it had before the upgrade.
            without_secrets: !paths.backup_key().is_file(),
            resume: paths.restore_journal().exists(),
            no_safety_backup: true,
            ..RestoreOptions::default()
        };
        berth_backup::restore::restore(&loc_from, &opts, ctx.berth_exe, progress)?;
    } else if j.has_begun("maintenance") {
        // Nothing of the old release changed: start what the maintenance step
        // stopped (and anything else down), with the old manifest.
        remove_maintenance_page(&paths)?;
        let inst = berth_lifecycle::instance::open(&loc_from)?;
        berth_lifecycle::up(&inst, &loc_from, ctx.berth_exe, progress)?;
    }
    // Else the old release never stopped serving: only the new release's directory
    // and the journal are to go.
    berth_lifecycle::fault::point("upgrade-abort:back");
    if hop.to != hop.from {
        berth_host::beneath::remove_tree_at(&paths.releases().join(&hop.to))?;
    }
    if let Some(id) = j.run {
        let inst = berth_lifecycle::instance::open(&loc_from)?;
        let run = Run::attach(&inst, RunId(id), progress)?;
        let error = format!("{why}; rolled back to {}", hop.from);
        run.finish(
            Err::<(), _>(BackupError::Cannot {
                what: error,
                hint: String::new(),
            }),
            |()| berth_state::RunOutcome::default(),
        )
        .ok();
    }
    journal::remove(&paths)?;
    Ok(AbortReport {
        version: hop.from,
        restored,
        restarted,
    })
}
