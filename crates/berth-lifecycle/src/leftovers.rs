//! Before a lifecycle operation acts: stop what the children of an interrupted one
//! (a berth killed while a hook, a build or a database tool ran) left running, so
//! nothing still writes into the files the new operation is about to touch.

use crate::error::Result;
use crate::instance::Instance;
use crate::progress::Progress;

/// Kill every recorded process group whose berth has ended, wait until it is gone,
/// and say so. Groups of a berth that still runs are left alone.
pub fn stop_leftover_children(inst: &Instance, progress: &dyn Progress) -> Result<()> {
    stop_leftover_children_at(&inst.paths, progress)
}

/// [`stop_leftover_children`] for the instance at `paths`, before its manifest is known
/// (a restore into a new prefix reads it from the archive).
pub fn stop_leftover_children_at(
    paths: &berth_render::Paths,
    progress: &dyn Progress,
) -> Result<()> {
    let children = berth_host::children::ChildRecords::new(paths.child_records());
    for left in children.stop_leftovers()? {
        if left.killed {
            progress.note(&format!(
                "Stopped `{}` (process group {}), left running by an interrupted berth",
                left.what, left.pgid
            ));
        }
    }
    Ok(())
}
