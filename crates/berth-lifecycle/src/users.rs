//! What the manifest's users are called on this host: chosen when the instance is set
//! up (its own, `<instance>-<user>`, unless the site config says `users = "shared"`),
//! then kept in `state/users.json` for ever, since files on disk belong to them.

use std::path::Path;

use berth_model::{LoadedManifest, ResolvedConfig, UserNaming};
use berth_render::{Paths, UserNames};

use crate::error::{LifecycleError, Result};

/// The user names of the instance at `paths`.
///
/// - Recorded (`state/users.json`): those, and for users the manifest added since,
///   names made the same way. A site config asking for another naming is an error.
/// - Not recorded, but set up by a berth from before per-instance users (it has
///   `state/managed-files.json`): the manifest's names, shared, as its users are.
/// - A new instance: `users` of the site config, by default `per-instance`, named
///   after `instance` (by default the prefix's last directory).
///
/// Without root nobody is created and everything runs as the invoking user: the
/// names are the manifest's and nothing is checked.
///
/// A new instance whose names cannot be made (an instance name the prefix does not
/// give, a name too long) gets the manifest's names here and the problem as
/// [`Naming::problem`]: `up` (and so a restore) refuses to make users with it, while
/// a restore into a new prefix, whose site config arrives with the archive, and
/// commands that make nothing can still open the instance.
///
/// # Errors
///
/// [`LifecycleError::Users`] for a site config that contradicts the recorded names.
pub fn names(
    paths: &Paths,
    manifest: &LoadedManifest,
    config: &ResolvedConfig,
    is_root: bool,
) -> Result<Naming> {
    if !is_root {
        return Ok(Naming::ok(UserNames::shared()));
    }
    if let Some(recorded) = recorded(paths)? {
        check_unchanged(paths, config, &recorded, "recorded when it was set up")?;
        return Ok(Naming::ok(recorded.complete(manifest)?));
    }
    if paths.managed_files().exists() {
        let shared = UserNames::shared();
        check_unchanged(
            paths,
            config,
            &shared,
            "set up before berth gave each instance users of its own",
        )?;
        return Ok(Naming::ok(shared.complete(manifest)?));
    }
    let chosen = match config.users.unwrap_or(UserNaming::PerInstance) {
        UserNaming::Shared => Ok(UserNames::shared()),
        UserNaming::PerInstance => match &config.instance {
            Some(name) => Ok(UserNames::per_instance(name)),
            None => instance_from_prefix(&paths.prefix).map(|i| UserNames::per_instance(&i)),
        },
    }
    .and_then(|names| Ok(names.complete(manifest)?));
    match chosen {
        Ok(names) => Ok(Naming::ok(names)),
        Err(LifecycleError::Users { why, hint }) => Ok(Naming {
            names: UserNames::shared().complete(manifest)?,
            problem: Some((why, hint)),
        }),
        Err(LifecycleError::Render(e)) => Ok(Naming {
            names: UserNames::shared().complete(manifest)?,
            problem: Some((e.to_string(), "see above".to_owned())),
        }),
        Err(e) => Err(e),
    }
}

/// The user names of an instance, and why they cannot be used, if they cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The names.
    pub names: UserNames,
    /// Why a new instance's users cannot be named (what is wrong, how to fix it).
    pub problem: Option<(String, String)>,
}

impl Naming {
    fn ok(names: UserNames) -> Self {
        Self {
            names,
            problem: None,
        }
    }

    /// The names, or the error saying why they cannot be used.
    ///
    /// # Errors
    ///
    /// [`LifecycleError::Users`] with the problem.
    pub fn usable(&self) -> Result<&UserNames> {
        match &self.problem {
            None => Ok(&self.names),
            Some((why, hint)) => Err(LifecycleError::Users {
                why: why.clone(),
                hint: hint.clone(),
            }),
        }
    }
}

/// The names recorded in `state/users.json`, if any. `state/` is root's (0700).
pub fn recorded(paths: &Paths) -> Result<Option<UserNames>> {
    let path = paths.users_record();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LifecycleError::Users {
                why: format!("`{}` cannot be read: {e}", path.display()),
                hint: "it holds the names of the instance's users; put back the copy from a \
                       backup of the prefix, or write it again with the names in /etc/passwd"
                    .to_owned(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LifecycleError::io("read", &path)(e)),
    }
}

/// Records `names` in `state/users.json` (0644, written whole and renamed into place)
/// unless it holds them already.
pub fn record(paths: &Paths, names: &UserNames) -> Result<()> {
    if recorded(paths)?.as_ref() == Some(names) {
        return Ok(());
    }
    let path = paths.users_record();
    let mut text = serde_json::to_string_pretty(names)?;
    text.push('\n');
    berth_host::fsutil::write_atomic(&path, text.as_bytes(), 0o644, None)
        .map_err(LifecycleError::from)
}

/// The site config may restate the naming an instance has, never change it.
fn check_unchanged(
    paths: &Paths,
    config: &ResolvedConfig,
    has: &UserNames,
    since: &str,
) -> Result<()> {
    let has_naming = if has.instance.is_some() {
        UserNaming::PerInstance
    } else {
        UserNaming::Shared
    };
    let wants_other_naming = config.users.is_some_and(|u| u != has_naming);
    let wants_other_name = config
        .instance
        .as_ref()
        .is_some_and(|i| has.instance.as_ref() != Some(i));
    if !wants_other_naming && !wants_other_name {
        return Ok(());
    }
    let now = match &has.instance {
        Some(i) => format!("users = \"per-instance\" with instance = \"{i}\""),
        None => "users = \"shared\" (the manifest's user names)".to_owned(),
    };
    Err(LifecycleError::Users {
        why: format!(
            "the instance at `{}` has its users named by {now}, {since}; the site config \
             asks for other names",
            paths.prefix.display()
        ),
        hint: format!(
            "remove `users` and `instance` from the site config, or write {now}: users are \
             never renamed, since the instance's files belong to them (to move to other \
             users, back up and restore into a new prefix)"
        ),
    })
}

/// The instance name a prefix gives: its last directory, lowercase, with `.`, `_` and
/// `+` as `-` (`/var/opt/berth/NetBox_2` → `netbox-2`).
fn instance_from_prefix(prefix: &Path) -> Result<String> {
    let last = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = last
        .chars()
        .map(|c| match c {
            '.' | '_' | '+' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if berth_model::is_instance_name(&name) {
        Ok(name)
    } else {
        Err(LifecycleError::Users {
            why: format!(
                "the instance at `{}` gets users of its own, named after the instance, and \
                 `{last}` does not make an instance name",
                prefix.display()
            ),
            hint: "set `instance = \"<name>\"` in the site config (a lowercase letter, then \
                   lowercase letters, digits and `-`), or `users = \"shared\"`"
                .to_owned(),
        })
    }
}

/// Refuses a per-instance user that exists already and is not this instance's (its
/// passwd home is not `home/<user>` under this prefix): another instance with the same
/// name, or a user someone else made.
pub fn check_own(paths: &Paths, naming: &Naming) -> Result<()> {
    let names = naming.usable()?;
    let Some(instance) = &names.instance else {
        return Ok(());
    };
    for name in names.names.values() {
        let Some(home) = berth_host::users::passwd_home(name) else {
            continue;
        };
        if home != paths.user_home(name) {
            return Err(LifecycleError::Users {
                why: format!(
                    "the user `{name}` this instance (`{instance}`) is to run as exists \
                     already, with the home `{}`: it belongs to another instance or program",
                    home.display()
                ),
                hint: "name this instance otherwise with `instance = \"<name>\"` in the site \
                       config (before its first `berth up`)"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new instance gets users of its own, named after its prefix; one set up by an
    /// older berth (it has written config files) keeps the shared names; recorded names
    /// are kept, and a site config asking for others is refused.
    #[test]
    fn new_old_and_recorded_instances_are_named_as_they_must_be() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = crate::testing::instance(&tmp.path().join("blue"));
        let names = |inst: &crate::Instance, config: &ResolvedConfig| {
            super::names(&inst.paths, &inst.manifest, config, true).map(|n| n.names)
        };
        let fresh = names(&inst, &inst.config).unwrap();
        assert_eq!(fresh.instance.as_deref(), Some("blue"));
        assert_eq!(fresh.of("ministack-pg"), "blue-ministack-pg");
        // Not root: the manifest's names, nothing checked.
        let plain = super::names(&inst.paths, &inst.manifest, &inst.config, false)
            .unwrap()
            .names;
        assert_eq!(plain.of("ministack-pg"), "ministack-pg");

        // Shared on request.
        let mut shared = inst.config.clone();
        shared.users = Some(UserNaming::Shared);
        assert_eq!(names(&inst, &shared).unwrap().of("ministack"), "ministack");

        // Set up before: shared, and asking for per-instance users is refused.
        std::fs::create_dir_all(&inst.paths.state).unwrap();
        std::fs::write(inst.paths.managed_files(), "[]").unwrap();
        assert_eq!(names(&inst, &inst.config).unwrap().instance, None);
        let mut own = inst.config.clone();
        own.users = Some(UserNaming::PerInstance);
        let err = names(&inst, &own).unwrap_err().to_string();
        assert!(
            err.contains("before berth gave each instance users"),
            "{err}"
        );

        // Recorded: kept, whatever the site says now, and another name is refused.
        record(&inst.paths, &fresh).unwrap();
        assert_eq!(names(&inst, &inst.config).unwrap(), fresh);
        let mut renamed = inst.config.clone();
        renamed.instance = Some("green".to_owned());
        let err = names(&inst, &renamed).unwrap_err().to_string();
        assert!(err.contains("never renamed"), "{err}");
        assert!(err.contains("instance = \"blue\""), "{err}");
        renamed.instance = Some("blue".to_owned());
        assert_eq!(names(&inst, &renamed).unwrap(), fresh);
    }

    #[test]
    fn the_prefix_names_the_instance() {
        for (prefix, name) in [
            ("/var/opt/berth/netbox", "netbox"),
            ("/srv/NetBox_2", "netbox-2"),
            ("/srv/a.b+c", "a-b-c"),
        ] {
            assert_eq!(instance_from_prefix(Path::new(prefix)).unwrap(), name);
        }
        let err = instance_from_prefix(Path::new("/srv/2024")).unwrap_err();
        assert!(err.to_string().contains("instance = "), "{err}");
    }

    /// A new instance whose users cannot be named opens (a restore brings its site
    /// config later), with the manifest's names, but is refused users.
    #[test]
    fn a_name_that_cannot_be_made_is_a_problem_for_making_users_only() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = crate::testing::instance(&tmp.path().join("a-prefix-name-far-too-long"));
        let naming = super::names(&inst.paths, &inst.manifest, &inst.config, true).unwrap();
        assert_eq!(naming.names.of("ministack"), "ministack");
        let err = naming.usable().unwrap_err().to_string();
        assert!(err.contains("longer than 32 characters"), "{err}");
        let err = check_own(&inst.paths, &naming).unwrap_err().to_string();
        assert!(err.contains("set a shorter `instance"), "{err}");
    }
}
