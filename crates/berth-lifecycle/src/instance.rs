//! Finding an instance: its prefix, its manifest and its site config, then loading,
//! validating and resolving them. Nothing here writes to the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_model::{Facts, LoadedManifest, ResolvedConfig};
use berth_render::Paths;

use crate::error::{LifecycleError, Result};

/// How to find the instance: the command line's `--prefix`, `--manifest`, `--config`.
#[derive(Debug, Clone, Default)]
pub struct Locate {
    /// `--prefix`.
    pub prefix: Option<PathBuf>,
    /// `--manifest`.
    pub manifest: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The manifest built into the binary: `berth.toml` text and the other files by relative path.
    pub embedded: Option<(String, BTreeMap<String, String>)>,
    /// Bundled components built already (one directory each, named after the
    /// component), from a verified release bundle: moved into the release instead of
    /// being built here. On the prefix's filesystem.
    pub payload: Option<PathBuf>,
}

/// Where the manifest came from.
#[derive(Debug, Clone)]
pub enum ManifestOrigin {
    /// `--manifest DIR`.
    Dir(PathBuf),
    /// The copy kept in `<prefix>/manifest` when the instance was set up.
    Stored(PathBuf),
    /// Built into the binary.
    Embedded,
}

/// A located instance with its validated manifest and resolved config.
pub struct Instance {
    /// Directory layout.
    pub paths: Paths,
    /// The manifest.
    pub manifest: LoadedManifest,
    /// Where it came from.
    pub origin: ManifestOrigin,
    /// The site config file (may not exist yet).
    pub config_path: PathBuf,
    /// Whether the site config file exists.
    pub config_exists: bool,
    /// The effective config.
    pub config: ResolvedConfig,
    /// Host facts.
    pub facts: Facts,
    /// What the manifest's users are called on this host ([`crate::users::names`]).
    pub users: berth_render::UserNames,
    /// Those names, and why they cannot be used for making users, if they cannot.
    pub naming: crate::users::Naming,
    /// Why this node cannot be brought up as it is configured: `roles` leaves out
    /// roles that run services and no `[fleet]` says where they are. `config check`
    /// accepts such a file (a plan writes them); rendering refuses it.
    pub unplaced: Option<berth_model::Diagnostic>,
}

/// The default prefix for an app.
pub fn default_prefix(app: &str, is_root: bool) -> PathBuf {
    if is_root {
        return PathBuf::from("/var/opt/berth").join(app);
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data_home.join("berth").join(app)
}

fn load_embedded(loc: &Locate) -> Result<LoadedManifest> {
    let Some((text, files)) = &loc.embedded else {
        return Err(LifecycleError::NoDefaultManifest);
    };
    let mut loaded = LoadedManifest::from_sources("<built-in>/berth.toml", text, files.clone())?;
    // As `--manifest DIR` reads them: the templates `[[files]]` name, nothing else
    // beside them (a README, a script with its own braces).
    let named: std::collections::BTreeSet<String> = loaded
        .manifest
        .files
        .iter()
        .map(|f| f.template.clone())
        .collect();
    loaded.templates.retain(|name, _| named.contains(name));
    Ok(loaded)
}

fn load_dir(dir: &Path) -> Result<LoadedManifest> {
    // Anything at that path (a directory, a FIFO ...) is `load`'s to report.
    if std::fs::symlink_metadata(dir.join("berth.toml")).is_err() {
        return Err(LifecycleError::NoManifest(dir.join("berth.toml")));
    }
    Ok(LoadedManifest::load(dir)?)
}

/// Find the prefix and the manifest, without resolving the site config.
///
/// The prefix (given, or the default) must pass [`berth_model::check_prefix`]; it is
/// checked before anything is read from it, and returned normalised.
pub fn locate(global: &Locate, facts: &Facts) -> Result<(PathBuf, LoadedManifest, ManifestOrigin)> {
    let given = global.prefix.as_deref().map(checked_prefix).transpose()?;
    let (manifest, origin) = match (&global.manifest, &given) {
        (Some(dir), _) => (load_dir(dir)?, ManifestOrigin::Dir(dir.clone())),
        (None, Some(prefix)) if stored_manifest(prefix).join("berth.toml").is_file() => {
            let dir = stored_manifest(prefix);
            (load_dir(&dir)?, ManifestOrigin::Stored(dir))
        }
        (None, _) => {
            let embedded = load_embedded(global)?;
            let prefix = default_prefix(&embedded.manifest.app.name, facts.is_root);
            let dir = stored_manifest(&prefix);
            if given.is_none() && dir.join("berth.toml").is_file() {
                (load_dir(&dir)?, ManifestOrigin::Stored(dir))
            } else {
                (embedded, ManifestOrigin::Embedded)
            }
        }
    };
    berth_model::validate(&manifest)?;
    let prefix = match given {
        Some(p) => p,
        None => checked_prefix(&default_prefix(&manifest.manifest.app.name, facts.is_root))?,
    };
    Ok((prefix, manifest, origin))
}

/// The paths of the instance `global` names, without reading its site config: for
/// commands that only look at it or talk to its supervisor (`status`, `tail`, `down`,
/// `history`).
pub fn paths(global: &Locate) -> Result<Paths> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, _) = locate(global, &facts)?;
    Ok(Paths::for_prefix(&prefix, &manifest.manifest.app.version))
}

/// The manifest `global` names (`--manifest`, the instance's own copy, else the
/// built-in one), validated, without reading any site config: for commands that only
/// read the app (`plan topology`).
pub fn manifest(global: &Locate) -> Result<LoadedManifest> {
    let facts = berth_host::facts::probe();
    Ok(locate(global, &facts)?.1)
}

/// The copy of the manifest an instance at `prefix` was set up with (the version is
/// not known before it is read).
fn stored_manifest(prefix: &Path) -> PathBuf {
    Paths::unversioned(prefix).manifest_dir()
}

/// `p` made absolute (against the current directory), then checked and normalised.
///
/// # Errors
///
/// [`LifecycleError::Invalid`] naming the prefix and how to choose one berth accepts.
pub fn checked_prefix(p: &Path) -> Result<PathBuf> {
    Ok(berth_model::check_prefix(&absolute(p)?)?)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(LifecycleError::io("read the current directory", "."))?
            .join(p))
    }
}

/// The site config file of the instance at `prefix`: `--config`, else `<prefix>/site.toml`.
pub fn config_path(global: &Locate, prefix: &Path) -> Result<PathBuf> {
    match &global.config {
        Some(c) => absolute(c),
        None => Ok(Paths::unversioned(prefix).site_config()),
    }
}

/// Locate, load and resolve everything. Pure apart from reading files.
pub fn open(global: &Locate) -> Result<Instance> {
    open_amended(global, &|_, name, text| {
        Ok((name.to_owned(), text.to_owned()))
    })
}

/// What [`open_amended`] calls with the manifest, the site config's name and its text
/// (empty when there is none): the name and text to parse instead.
pub type SiteAmend<'a> = dyn Fn(&LoadedManifest, &str, &str) -> Result<(String, String)> + 'a;

/// As [`open`], with the site config's text amended by `amend` before it is parsed
/// (a container's settings from its environment): diagnostics point into the amended
/// text, under the name `amend` gives it.
pub fn open_amended(global: &Locate, amend: &SiteAmend<'_>) -> Result<Instance> {
    let facts = berth_host::facts::probe();
    let (prefix, manifest, origin) = locate(global, &facts)?;
    let config_path = config_path(global, &prefix)?;
    // A missing default `site.toml` means "all defaults"; a `--config` that names
    // nothing is a typo, and must not reset a live instance to the defaults.
    let fix = if global.config.is_some() {
        "check the path given to `--config` (or `BERTH_CONFIG`); leave it out to use \
         `<prefix>/site.toml`"
    } else {
        "the site config must be a regular UTF-8 file"
    };
    let (text, config_exists) = match berth_model::read_input(&config_path, "the site config", fix)
    {
        Ok(t) => (t, true),
        Err(berth_model::InputError::Missing(_)) if global.config.is_none() => {
            (String::new(), false)
        }
        Err(e) => return Err(e.into_diagnostics().into()),
    };
    let (name, text) = amend(&manifest, &config_path.display().to_string(), &text)?;
    let site = berth_model::parse_site(&name, &text, &manifest)?;
    refuse_external(&site, &name, &text)?;
    // The paths first: a setting's `derive` may use them (`paths.data ~ '/images'`).
    let paths = Paths::for_prefix(&prefix, &manifest.manifest.app.version);
    let mut config = berth_model::resolve_at(
        &manifest,
        &site,
        &facts,
        Some(&berth_render::derive_paths(&paths)),
    )?;
    let (manifest, unplaced) = node_app(manifest, &mut config, &name);
    let naming = crate::users::names(&paths, &manifest, &config, facts.is_root)?;
    Ok(Instance {
        paths,
        manifest,
        origin,
        config_path,
        config_exists,
        config,
        facts,
        users: naming.names.clone(),
        naming,
        unplaced,
    })
}

/// `[external]` is a cluster's for now (`berth k8s render`): on a host, every role
/// runs on this machine or on a node of its fleet.
fn refuse_external(site: &berth_model::SiteConfig, file: &str, text: &str) -> Result<()> {
    let Some(external) = &site.external else {
        return Ok(());
    };
    let roles: Vec<String> = external
        .get_ref()
        .keys()
        .map(|r| format!("`{r}`"))
        .collect();
    Err(berth_model::Diagnostics::from(
        berth_model::Diagnostic::at(
            file,
            text,
            external.span(),
            format!(
                "`[external]` ({}) is for a Kubernetes deployment (`berth k8s render`); on a host, berth runs every role itself",
                roles.join(", ")
            ),
        )
        .with_help(
            "remove `[external]` from this host's site config; to run the database on another machine, make it a node of a fleet (`berth fleet up`, docs/fleet.md)",
        ),
    )
    .into())
}

/// The app as this node runs it: whole, or, on a node of a fleet (`roles` in the site
/// config), narrowed to the services of its roles and the components they use, with
/// the `once` hooks and jobs only on the one node that runs them.
fn node_app(
    manifest: LoadedManifest,
    config: &mut berth_model::ResolvedConfig,
    site_name: &str,
) -> (LoadedManifest, Option<berth_model::Diagnostic>) {
    let Some(roles) = config.roles.clone() else {
        return (manifest, None);
    };
    let m = &manifest.manifest;
    let missing = m.roles_left_out(&roles);
    if config.fleet.is_none() && !missing.is_empty() {
        let tick = |v: &[&str]| {
            v.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let taken: Vec<&str> = roles.iter().map(String::as_str).collect();
        let refusal = berth_model::Diagnostic::without_position(
            site_name,
            format!(
                "this node takes the roles {} but not {}, and the site config does not say where the nodes that do are",
                tick(&taken),
                tick(&missing)
            ),
        )
        .with_help(
            "a node that runs part of the app is set up by `berth fleet up`, which writes `[fleet]` with every node's address; list every role, or remove the `roles` line, to run the whole app here",
        );
        return (manifest, Some(refusal));
    }
    let app = berth_topology::node::localize(&manifest, &roles, config.fleet.as_ref());
    config.app_components = Some(config.enabled_components.clone());
    app.narrow(&mut config.enabled_components);
    (app.manifest, None)
}

impl Instance {
    /// Where the children of this instance's lifecycle steps are recorded while they run.
    pub fn children(&self) -> berth_host::children::ChildRecords {
        berth_host::children::ChildRecords::new(self.paths.child_records())
    }
    /// Every file of the manifest directory (berth.toml + templates), for storing a copy.
    pub fn manifest_files(&self, loc: &Locate) -> Result<BTreeMap<String, String>> {
        match &self.origin {
            ManifestOrigin::Embedded => {
                let (text, mut files) = loc.embedded.clone().unwrap_or_default();
                files.insert("berth.toml".to_owned(), text);
                Ok(files)
            }
            ManifestOrigin::Dir(dir) | ManifestOrigin::Stored(dir) => {
                let mut files = BTreeMap::new();
                let path = dir.join("berth.toml");
                let text = std::fs::read_to_string(&path)
                    .map_err(LifecycleError::io("read the manifest", &path))?;
                files.insert("berth.toml".to_owned(), text);
                for (name, src) in &self.manifest.templates {
                    files.insert(name.clone(), src.clone());
                }
                Ok(files)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{LifecycleError, checked_prefix};

    /// The fixture app's manifest with a setting derived from the instance's paths, in
    /// `dir`.
    pub(crate) fn manifest_deriving_from_paths(dir: &Path) -> std::path::PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/ministack");
        let to = dir.join("manifest");
        std::fs::create_dir_all(to.join("templates")).unwrap();
        for entry in std::fs::read_dir(from.join("templates")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
        }
        let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
        std::fs::write(
            to.join("berth.toml"),
            text + "\n[settings.app.uploads]\ntype = \"string\"\n\
                    derive = \"paths.data ~ '/app/uploads'\"\n",
        )
        .unwrap();
        to
    }

    /// A setting whose default is derived from `paths.*` resolves when an instance is
    /// opened, to the directory of that instance (it used to be refused: the paths
    /// were not known when settings were resolved).
    #[test]
    fn a_setting_derived_from_paths_resolves_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = manifest_deriving_from_paths(tmp.path());
        let prefix = tmp.path().join("inst");
        let inst = super::open(&super::Locate {
            prefix: Some(prefix.clone()),
            manifest: Some(manifest),
            ..super::Locate::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            inst.config.settings["app"]["uploads"].value,
            berth_model::SettingValue::String(format!("{}/data/app/uploads", prefix.display()))
        );
    }

    /// A relative `--prefix` is taken from the current directory and normalised; one
    /// that climbs out with `..` or holds shell syntax is bad input.
    #[test]
    fn prefixes_are_made_absolute_normalised_and_checked() {
        let cwd = std::env::current_dir().unwrap();
        if berth_model::check_prefix(&cwd).is_err() {
            return; // the checkout itself lives under an odd path
        }
        assert_eq!(
            checked_prefix(Path::new("inst/./a//")).unwrap(),
            cwd.join("inst/a")
        );
        for bad in ["../inst", "/srv/$(id)", "/"] {
            assert!(
                matches!(
                    checked_prefix(Path::new(bad)),
                    Err(LifecycleError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
