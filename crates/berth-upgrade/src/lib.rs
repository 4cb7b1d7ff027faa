//! Upgrade planning, pure: which hops take an instance from its version to the
//! target, through every required stop the vendor declared (`[upgrade]` in the
//! manifest), how each hop's migrations run (online or offline), which settings the
//! site config sets that the way renames or removes, and the site config rewritten
//! for the renames (`berth config migrate`). Nothing here touches the host: the
//! lifecycle reads the instance and hands the facts in.

mod migrate;
mod plan;

pub use migrate::{MigrateError, migrate_site};
pub use plan::{Hop, Migrations, Refused, SettingChange, Step, UpgradePlan, plan};
