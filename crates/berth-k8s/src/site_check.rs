//! Settings a host has and a cluster has no use for: refused by name and position, so
//! a site config means the same thing on both or is refused, never half ignored.

use berth_model::{Diagnostic, Diagnostics, SiteConfig};

/// Why each of berth's own settings groups does not apply in a cluster, and what to do.
const GROUPS: [(&str, &str, &str); 4] = [
    (
        berth_model::builtin::UPGRADE_GROUP,
        "in a cluster an upgrade is the next version's render, with its images, applied by kubectl; berth's automatic upgrades and kept releases are a host's",
        "remove `[upgrade]` from the site config `berth k8s render` reads",
    ),
    (
        berth_model::builtin::METRICS_GROUP,
        "the metrics endpoint is berth's supervisor's, and in a cluster each container is its own first process, without it",
        "remove `[metrics]`; scrape the services' own endpoints",
    ),
    (
        berth_model::builtin::CONSOLE_GROUP,
        "berth's console runs beside a host's supervisor, which a cluster does not have",
        "remove `[console]`",
    ),
    (
        berth_model::builtin::DIAGNOSE_GROUP,
        "error reports are written by berth on a host",
        "remove `[diagnose]`",
    ),
];

/// The `[backup]` settings that are a host's: the backup CronJob writes to its claim.
const BACKUP_KEYS: [&str; 3] = ["target", "ssh_identity", "ssh_known_hosts"];

/// Every setting of `site` (the text of `file`) that cannot apply in a cluster.
pub fn refuse_host_settings(site: &SiteConfig, file: &str, text: &str) -> Result<(), Diagnostics> {
    let mut d = Diagnostics::default();
    let at = |span: std::ops::Range<usize>, msg: String, help: &str| {
        Diagnostic::at(file, text, span, msg).with_help(help)
    };
    if let Some(v) = &site.instance {
        d.push(at(
            v.span(),
            "`instance` names the OS users of one instance of a host; in a cluster an instance is a namespace (`--env`), and the images have one user".to_owned(),
            "remove `instance` from the site config `berth k8s render` reads",
        ));
    }
    if let Some(v) = &site.users {
        d.push(at(
            v.span(),
            "`users` chooses how a host's OS users are named; the images run as one user of their own".to_owned(),
            "remove `users` from the site config `berth k8s render` reads",
        ));
    }
    if let Some(v) = &site.roles {
        d.push(at(
            v.span(),
            "`roles` is one fleet node's; `berth k8s render` makes a workload of every role"
                .to_owned(),
            "render from the fleet's shared site config, without `roles`",
        ));
    }
    if let Some(v) = &site.fleet {
        d.push(at(
            v.span(),
            "`[fleet]` is written by `berth fleet up` for one node; a cluster is not a fleet of machines".to_owned(),
            "render from the fleet's shared site config, without `[fleet]`",
        ));
    }
    if let Some(keys) = site.settings.get(berth_model::builtin::BACKUP_GROUP) {
        for (key, s) in keys
            .iter()
            .filter(|(k, _)| BACKUP_KEYS.contains(&k.as_str()))
        {
            d.push(at(
                s.span.clone(),
                format!(
                    "`backup.{key}` does not apply in a cluster: the backup CronJob keeps its archives in its claim (`<app>-backups`), not on a host's directory or SFTP server"
                ),
                "remove it; copy archives off the claim (docs/kubernetes.md), or let your cluster's volume backups take them",
            ));
        }
    }
    for (group, why, help) in GROUPS {
        if let Some(keys) = site.settings.get(group) {
            for (key, s) in keys {
                d.push(at(
                    s.span.clone(),
                    format!("`{group}.{key}` does not apply in a cluster: {why}"),
                    help,
                ));
            }
        }
    }
    if d.is_empty() { Ok(()) } else { Err(d) }
}
