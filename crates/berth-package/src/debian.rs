//! The `.deb` of a release bundle: what it installs, its control file and its
//! maintainer scripts (see the crate's documentation).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_archive::PublicKey;
use berth_model::manifest::{ComponentSource, Manifest};

use crate::PackageError;
use crate::deb::{Content, DataFile, Deb};

/// What a package is made from.
#[derive(Debug)]
pub struct DebInput<'a> {
    /// The release bundle.
    pub bundle: &'a Path,
    /// The vendor's public key it must be signed with (shipped, to check it again).
    pub key: &'a PublicKey,
    /// `Maintainer:` (`Name <address>`).
    pub maintainer: &'a str,
    /// `Architecture:` (`amd64`, `arm64`): the machine the bundle's components were built for.
    pub architecture: &'a str,
    /// Every entry's time (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// The directory the package is written to.
    pub out_dir: &'a Path,
}

/// A package written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltDeb {
    /// Where.
    pub path: PathBuf,
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Depends:`.
    pub depends: Vec<String>,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Where the instance of a packaged app lives: berth's default prefix for root.
pub fn prefix(app: &str) -> String {
    format!("/var/opt/berth/{app}")
}

/// A bundle checked and unpacked for packaging.
pub(crate) struct Opened {
    /// Where its manifest, berth and payload are (removed when dropped).
    pub tmp: tempfile::TempDir,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its version.
    pub version: String,
    /// The bundle's file name.
    pub bundle_file: String,
    /// Its bills of materials, CycloneDX and SPDX, as the package ships them under
    /// `/opt/<app>/share/sbom/`.
    pub sbom: Vec<DataFile>,
}

/// Checks `input.bundle` against the key and unpacks what a package carries of it;
/// refuses names and versions a package cannot take.
pub(crate) fn open(input: &DebInput<'_>) -> Result<Opened, PackageError> {
    let tmp = tempfile::tempdir().map_err(PackageError::io("create", std::env::temp_dir()))?;
    // Extracting checks every entry of the bundle against its signed index, those it
    // leaves out too: no separate verify pass.
    let (archive, info) = berth_release::open(input.bundle, &[*input.key])?;
    archive.extract(
        tmp.path(),
        &|p| p.starts_with("manifest/") || p == "bin/berth" || p.starts_with("payload/"),
        &mut |_| {},
    )?;
    let manifest = berth_model::LoadedManifest::load(&tmp.path().join("manifest"))?.manifest;
    let app = &manifest.app.name;
    if !valid_package_name(app) {
        return Err(PackageError::Input {
            what: format!(
                "`{app}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; at least two characters)"
            ),
        });
    }
    check_plain("version", &manifest.app.version, true)?;
    for stop in &manifest.upgrade.stops {
        check_plain("required stop", stop, true)?;
    }
    check_maintainer(input.maintainer)?;
    check_plain("architecture", input.architecture, false)?;
    let bundle_file = berth_release::bundle_name(app, &manifest.app.version);
    let sbom = sbom_files(&manifest, tmp.path(), input, &info.berth_version)?;
    Ok(Opened {
        tmp,
        manifest,
        version: info.version,
        bundle_file,
        sbom,
    })
}

/// The bills of materials of the extracted bundle in `root`, as files the package ships:
/// `/opt/<app>/share/sbom/<app>-<version>.cdx.json` (CycloneDX 1.6) and `.spdx.json`
/// (SPDX 2.3), timed at the package's epoch; and its licence page,
/// `/opt/<app>/share/licences/licences.html` and `.json`.
fn sbom_files(
    manifest: &Manifest,
    root: &Path,
    input: &DebInput<'_>,
    berth_version: &str,
) -> Result<Vec<DataFile>, PackageError> {
    let app = &manifest.app.name;
    let version = &manifest.app.version;
    let mut inventory = berth_sbom::inventory::of_release(
        root,
        berth_sbom::Subject {
            name: app.clone(),
            version: version.clone(),
            summary: Some(manifest.app.summary.clone()).filter(|s| !s.is_empty()),
        },
        input.source_date_epoch,
        berth_version,
    )
    .map_err(|e| PackageError::Input {
        what: format!("the bill of materials cannot be made: {e}"),
    })?;
    if let Some(policy) = &manifest.licences {
        berth_sbom::policy::apply(&mut inventory, policy);
    }
    Ok(vec![
        DataFile {
            path: format!("/opt/{app}/share/sbom/{app}-{version}.cdx.json"),
            mode: 0o644,
            content: Content::Bytes(berth_sbom::cyclonedx::document(&inventory).into_bytes()),
        },
        DataFile {
            path: format!("/opt/{app}/share/sbom/{app}-{version}.spdx.json"),
            mode: 0o644,
            content: Content::Bytes(berth_sbom::spdx::document(&inventory).into_bytes()),
        },
        DataFile {
            path: format!("/opt/{app}/share/licences/licences.html"),
            mode: 0o644,
            content: Content::Bytes(berth_sbom::licences::html(&inventory).into_bytes()),
        },
        DataFile {
            path: format!("/opt/{app}/share/licences/licences.json"),
            mode: 0o644,
            content: Content::Bytes(berth_sbom::licences::json(&inventory).into_bytes()),
        },
    ])
}

/// Writes the `.deb` of `input.bundle`, once the bundle checks out against the key.
pub fn build(input: &DebInput<'_>) -> Result<BuiltDeb, PackageError> {
    let Opened {
        tmp,
        manifest,
        version,
        bundle_file,
        sbom,
    } = open(input)?;
    let app = &manifest.app.name;
    let payload = tmp.path().join("payload");
    let libraries = if payload.is_dir() {
        crate::shlibs::library_packages(&payload)?
    } else {
        Vec::new()
    };
    let depends = depends(&manifest, &libraries);
    let deb = Deb {
        control: control(&manifest, input, &depends),
        conffiles: vec![format!("/etc/{app}/site.toml")],
        scripts: scripts(&manifest, &bundle_file),
        files: files(
            &manifest,
            input,
            &tmp.path().join("bin/berth"),
            &bundle_file,
        )
        .into_iter()
        .chain(sbom)
        .collect(),
        epoch: input.source_date_epoch,
    };
    let arch = input.architecture;
    let path = input.out_dir.join(format!("{app}_{version}_{arch}.deb"));
    if path.exists() {
        return Err(PackageError::Input {
            what: format!(
                "`{}` exists already: a package is never overwritten; move it away first",
                path.display()
            ),
        });
    }
    crate::deb::write(&deb, &path)?;
    Ok(BuiltDeb {
        bytes: std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default(),
        path,
        package: app.clone(),
        version,
        depends,
    })
}

/// The files the package installs.
pub(crate) fn files(
    manifest: &Manifest,
    input: &DebInput<'_>,
    berth: &Path,
    bundle_file: &str,
) -> Vec<DataFile> {
    let app = &manifest.app.name;
    vec![
        DataFile {
            path: format!("/opt/{app}/bin/berth"),
            mode: 0o755,
            content: Content::File(berth.to_owned()),
        },
        DataFile {
            path: format!("/opt/{app}/releases/{bundle_file}"),
            mode: 0o644,
            content: Content::File(input.bundle.to_owned()),
        },
        DataFile {
            path: format!("/opt/{app}/vendor.pub"),
            mode: 0o644,
            content: Content::Bytes(format!("{}\n", input.key).into_bytes()),
        },
        DataFile {
            // The supervisor at boot: `up` enables this unit where systemd runs.
            path: format!(
                "/lib/systemd/system/{}",
                berth_lifecycle::systemd::unit_name(app)
            ),
            mode: 0o644,
            content: Content::Bytes(unit(manifest).into_bytes()),
        },
        DataFile {
            path: format!("/usr/bin/{app}-ctl"),
            mode: 0o755,
            content: Content::Bytes(ctl(app).into_bytes()),
        },
        DataFile {
            path: format!("/etc/{app}/site.toml"),
            mode: 0o644,
            content: Content::Bytes(site_template(app).into_bytes()),
        },
        DataFile {
            path: format!("/usr/share/doc/{app}/copyright"),
            mode: 0o644,
            content: Content::Bytes(copyright(manifest, input).into_bytes()),
        },
        DataFile {
            path: format!("/usr/share/doc/{app}/changelog.gz"),
            mode: 0o644,
            content: Content::Bytes(crate::deb::gzip(changelog(manifest, input).as_bytes())),
        },
        DataFile {
            path: format!("/usr/share/lintian/overrides/{app}"),
            mode: 0o644,
            content: Content::Bytes(lintian_overrides(app).into_bytes()),
        },
    ]
}

/// A value that goes into the maintainer scripts and file names as it is: letters,
/// digits and `.+~` (and, when it need not be a Debian version, `-`), starting with a
/// digit when it is a version.
pub(crate) fn check_plain(what: &str, value: &str, version: bool) -> Result<(), PackageError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c) || (!version && c == '-'))
        && (!version || value.starts_with(|c: char| c.is_ascii_digit()));
    if ok {
        return Ok(());
    }
    Err(PackageError::Input {
        what: format!(
            "the {what} `{}` cannot be a Debian package's: use letters, digits and `.+~`{}",
            value.escape_debug(),
            if version {
                ", starting with a digit"
            } else {
                ""
            }
        ),
    })
}

/// `Maintainer:` is `Name <address>` on one line.
pub(crate) fn check_maintainer(maintainer: &str) -> Result<(), PackageError> {
    if maintainer.contains(['\n', '\r']) || !maintainer.contains('<') {
        return Err(PackageError::Input {
            what: format!(
                "the maintainer `{}` is not `Name <address>` on one line",
                maintainer.escape_debug()
            ),
        });
    }
    Ok(())
}

/// Debian's rule for package names.
fn valid_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// The packages of the system components an instance always runs, and those of the
/// shared libraries the built components need (`libraries`): the bundled components'
/// own `packages` are what building them needs, and the package carries them built.
fn depends(manifest: &Manifest, libraries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = system_packages(manifest, false)
        .into_iter()
        .chain(libraries.iter().cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The packages of the optional system components (on unless the site config switches
/// them off): recommended, so apt installs them with the package by default. The
/// postinst cannot install them itself (dpkg holds the lock), so a component left on
/// without its packages stops `up` with the command to run.
fn recommends(manifest: &Manifest) -> Vec<String> {
    let always = system_packages(manifest, false);
    let mut out: Vec<String> = system_packages(manifest, true)
        .into_iter()
        .filter(|p| !always.contains(p))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn system_packages(manifest: &Manifest, optional: bool) -> Vec<String> {
    manifest
        .components
        .values()
        .filter(|c| c.source == ComponentSource::System && c.optional == optional)
        .flat_map(|c| c.packages.iter().cloned())
        .collect()
}

fn control(manifest: &Manifest, input: &DebInput<'_>, depends: &[String]) -> Vec<(String, String)> {
    let app = &manifest.app;
    let summary = synopsis(&app.name, &app.summary);
    let mut fields = vec![
        ("Package".to_owned(), app.name.clone()),
        ("Version".to_owned(), app.version.clone()),
        ("Architecture".to_owned(), input.architecture.to_owned()),
        ("Maintainer".to_owned(), input.maintainer.to_owned()),
    ];
    if !depends.is_empty() {
        fields.push(("Depends".to_owned(), depends.join(", ")));
    }
    let recommends = recommends(manifest);
    if !recommends.is_empty() {
        fields.push(("Recommends".to_owned(), recommends.join(", ")));
    }
    fields.extend([
        ("Section".to_owned(), "misc".to_owned()),
        ("Priority".to_owned(), "optional".to_owned()),
        (
            "Description".to_owned(),
            format!(
                "{}\n{}",
                one_line(&summary),
                wrap(&description_text(manifest))
            ),
        ),
    ]);
    fields
}

/// What the package is, in a paragraph (the extended description).
pub(crate) fn description_text(manifest: &Manifest) -> String {
    let app = &manifest.app;
    format!(
        "{} {} with its own interpreter and libraries under /opt/{}, installed, \
         configured and kept running by berth. The instance lives in {}; its \
         site config is /etc/{}/site.toml; {}-ctl runs berth for it.",
        app.name,
        app.version,
        app.name,
        prefix(&app.name),
        app.name,
        app.name
    )
}

/// The extended description: lines of at most 79 characters, each after one space.
pub(crate) fn wrap(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > 78 {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
        .iter()
        .map(|l| format!(" {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The description's first line: the summary without the app's name in front (Debian's
/// policy: the synopsis does not repeat the package name), or a line of berth's.
pub(crate) fn synopsis(name: &str, summary: &str) -> String {
    let summary = one_line(summary);
    let starts_with_name = summary
        .get(..name.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(name))
        && summary[name.len()..]
            .chars()
            .next()
            .is_none_or(|c| ":-, ".contains(c));
    let rest = if starts_with_name {
        summary[name.len()..].trim_start_matches([':', '-', ',', ' '])
    } else {
        summary.as_str()
    };
    if rest.is_empty() {
        format!("{name} (installed and run by berth)")
    } else {
        rest.to_owned()
    }
}

/// A control field's first line: one line, no leading space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `/usr/bin/<app>-ctl`.
fn ctl(app: &str) -> String {
    format!(
        "#!/bin/sh\n# berth for the {app} instance this package installed.\n\
         exec /opt/{app}/bin/berth --prefix {} --config /etc/{app}/site.toml \"$@\"\n",
        prefix(app)
    )
}

/// The systemd unit of the packaged instance (the one `up` would write for it).
fn unit(manifest: &Manifest) -> String {
    let app = &manifest.app.name;
    let prefix = PathBuf::from(prefix(app));
    let paths = berth_render::Paths::for_prefix(&prefix, &manifest.app.version);
    berth_lifecycle::systemd::packaged_unit_text(app, &paths, &paths.installed_berth())
}

fn site_template(app: &str) -> String {
    format!(
        "# Site config of {app}: every setting you change from the defaults goes here.\n\
         # `{app}-ctl config show` prints every setting with its value;\n\
         # `{app}-ctl reconfigure` applies this file.\n"
    )
}

/// The year of the epoch, and the epoch as RFC 2822 (`Tue, 14 Nov 2023 22:13:20 +0000`).
pub(crate) fn dates(epoch: u64) -> (i16, String) {
    let t = jiff::Timestamp::from_second(i64::try_from(epoch).unwrap_or(0))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let zoned = t.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    (
        zoned.year(),
        zoned.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
    )
}

fn copyright(manifest: &Manifest, input: &DebInput<'_>) -> String {
    let (year, _) = dates(input.source_date_epoch);
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {}\n\n\
         Files: *\n\
         Copyright: {year} {}\n\
         License: other\n \
         The licences of the components this package carries are listed by the vendor.\n",
        manifest.app.name, input.maintainer
    )
}

/// A native package's changelog: one entry, this release.
fn changelog(manifest: &Manifest, input: &DebInput<'_>) -> String {
    let (_, date) = dates(input.source_date_epoch);
    format!(
        "{} ({}) unstable; urgency=medium\n\n  \
         * Release {}, packaged by berth from the vendor's release bundle.\n\n \
         -- {}  {date}\n",
        manifest.app.name, manifest.app.version, manifest.app.version, input.maintainer
    )
}

/// What Debian's policy checker reports of this package that is so on purpose.
fn lintian_overrides(app: &str) -> String {
    format!(
        "# An add-on package from the app's vendor, self-contained under /opt as the\n\
         # FHS has it for add-on software (its own interpreter and libraries).\n\
         {app}: dir-or-file-in-opt [opt/{app}/*]\n\
         {app}: dir-or-file-in-opt [opt/{app}/]\n\
         # {app}-ctl is berth bound to this instance; `{app}-ctl --help` documents it.\n\
         {app}: no-manual-page [usr/bin/{app}-ctl]\n"
    )
}

/// The maintainer scripts. Values in them are the app's name and version and the
/// bundle's file name, all checked to be plain (`[a-z0-9+.-]`, the bundle's name
/// berth made).
pub(crate) fn scripts(manifest: &Manifest, bundle_file: &str) -> BTreeMap<String, String> {
    let app = &manifest.app.name;
    let version = &manifest.app.version;
    let stops = manifest.upgrade.stops.join(" ");
    let ctl = format!("{app}-ctl");
    let bundle = format!("/opt/{app}/releases/{bundle_file}");
    let key = format!("/opt/{app}/vendor.pub");
    let skip = format!("/etc/{app}/skip-auto-reconfigure");
    let mut out = BTreeMap::new();
    out.insert(
        "preinst".to_owned(),
        format!(
            r#"#!/bin/sh
# Before dpkg changes anything: refuse a downgrade, and a required stop skipped.
set -e
new={version}
stops="{stops}"
if [ "$1" = upgrade ] && [ -n "$2" ]; then
    old="$2"
    if dpkg --compare-versions "$new" lt "$old"; then
        echo "{app}: $new is older than the installed $old; berth does not downgrade (restore a backup of $new instead)" >&2
        exit 1
    fi
    for stop in $stops; do
        case "$old" in "$stop" | "$stop".*) continue ;; esac
        case "$new" in "$stop" | "$stop".*) continue ;; esac
        if dpkg --compare-versions "$old" lt "$stop"; then
            echo "{app}: $new must be reached through a $stop release: install the newest $stop first, then $new" >&2
            exit 1
        fi
    done
fi
exit 0
"#
        ),
    );
    out.insert(
        "postinst".to_owned(),
        format!(
            r#"#!/bin/sh
# berth installs or upgrades the instance from the bundle this package carries.
set -e
if [ "$1" != configure ]; then
    exit 0
fi
if [ -e {skip} ]; then
    echo "{app}: {skip} exists: run \`{app}-ctl up --bundle {bundle} --public-key {key}\` yourself" >&2
    exit 0
fi
if [ -n "$2" ] && [ -d {prefix}/state ]; then
    {ctl} upgrade apply --bundle {bundle} --public-key {key}
else
    {ctl} up --bundle {bundle} --public-key {key}
fi
"#,
            prefix = prefix(app)
        ),
    );
    out.insert(
        "prerm".to_owned(),
        format!(
            r#"#!/bin/sh
# The instance stops when the package is removed; its data stays.
set -e
if [ "$1" = remove ] && command -v {ctl} >/dev/null; then
    {ctl} down || true
fi
exit 0
"#
        ),
    );
    out.insert(
        "postrm".to_owned(),
        format!(
            r#"#!/bin/sh
# Purge removes the package's configuration (dpkg removes the conffiles);
# the instance's data in {prefix} is never removed by the package.
set -e
if [ "$1" = purge ]; then
    rm -f {skip}
    rmdir /etc/{app} 2>/dev/null || true
    echo "{app}: the instance's data stays in {prefix}; remove it yourself once it is no longer needed" >&2
fi
exit 0
"#,
            prefix = prefix(app)
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preinst, run by `sh` as dpkg runs it: a downgrade and a skipped required
    /// stop are refused with the reason; an upgrade through the stop, a first install
    /// and a reinstall pass.
    #[test]
    fn the_preinst_refuses_a_downgrade_and_a_skipped_stop() {
        let text = "[app]\nname = \"demo\"\nversion = \"1.2.0\"\n\n[upgrade]\nstops = [\"1.1\"]\n";
        let m: Manifest = toml::from_str(text).unwrap();
        let preinst = scripts(&m, "demo-1.2.0.berth-release.tar.zst")["preinst"].clone();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&preinst)
                .arg("preinst")
                .args(args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, err) = run(&["upgrade", "1.0.5"]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains("must be reached through a 1.1 release"),
            "{err}"
        );
        let (code, err) = run(&["upgrade", "1.3.0"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("does not downgrade"), "{err}");
        for ok in [
            &["upgrade", "1.1.4"][..],
            &["upgrade", "1.2.0"],
            &["install"],
            &["upgrade", "1.1"],
        ] {
            assert_eq!(run(ok).0, Some(0), "{ok:?}");
        }
    }

    #[test]
    fn the_synopsis_does_not_start_with_the_name() {
        assert_eq!(
            synopsis("netbox", "NetBox: network source of truth"),
            "network source of truth"
        );
        assert_eq!(synopsis("demo", "A demo app"), "A demo app");
        assert_eq!(synopsis("demo", ""), "demo (installed and run by berth)");
        assert_eq!(
            synopsis("demo", "Demo"),
            "demo (installed and run by berth)"
        );
        assert_eq!(
            synopsis("demo", "Democracy, as a service"),
            "Democracy, as a service"
        );
    }

    #[test]
    fn descriptions_wrap_and_names_are_checked() {
        let long = "word ".repeat(40);
        assert!(
            wrap(&long)
                .lines()
                .all(|l| l.len() <= 80 && l.starts_with(' '))
        );
        assert!(valid_package_name("netbox") && !valid_package_name("NetBox"));
        assert!(check_plain("version", "4.7.3", true).is_ok());
        assert!(check_plain("version", "4.7.3\"; rm -rf /", true).is_err());
        assert!(check_plain("version", "v1", true).is_err());
    }
}
