//! Before a lifecycle operation acts: stop what the children of an interrupted one
//! (a berth killed while a hook, a build or a database tool ran) left running, so
//! nothing still writes into the files the new operation is about to touch.

use crate::error::Result;
use crate::instance::Instance;
use crate::progress::Progress;

/// Kill every recorded process group whose berth has ended, wait until it is gone,
/// and say so. Groups of a berth that still runs are left alone.
pub fn stop_leftover_children(inst: &Instance, progress: &dyn Progress) -> Result<()> {
    for left in inst.children().stop_leftovers()? {
        if left.killed {
            progress.note(&format!(
                "Stopped `{}` (process group {}), left running by an interrupted berth",
                left.what, left.pgid
            ));
        }
    }
    Ok(())
}
