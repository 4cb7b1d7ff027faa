//! The `.rpm` of a release bundle: the `.deb`'s tree and maintainer scripts in RPM's
//! terms, for RPM-based systems.
//!
//! - `Requires:` the `rpm_packages` of the system components the instance always runs
//!   (a component with packages but no `rpm_packages` is an error naming it), and the
//!   shared libraries the built components need, by soname as RPM names them
//!   (`libssl.so.3()(64bit)`): no package names to guess, any distribution's
//!   packages that provide them satisfy them.
//! - `Recommends:` the optional components' `rpm_packages`.
//! - `/etc/<app>/site.toml` is `%config(noreplace)`; the unit goes to
//!   `/usr/lib/systemd/system`.
//! - `%pre` refuses a downgrade or a skipped required stop (comparing with
//!   `sort -V`), `%post` runs `up --bundle` on an install (`$1` = 1) and
//!   `upgrade apply --bundle` on an upgrade, `%preun` stops the instance on an erase.
//!
//! Written with the `rpm` crate; every file's time is clamped to the epoch, so the same
//! bundle gives the same package. Given a repository key, the header is signed with it
//! (an OpenPGP signature in the signature header, as `rpmsign` makes): `rpm -K` and
//! dnf's `gpgcheck=1` check it. ed25519 signatures are deterministic and carry the
//! epoch as their time, so a signed package is the same bytes every time too.

use std::path::PathBuf;

use berth_model::manifest::{ComponentSource, Manifest};

use crate::PackageError;
use crate::deb::Content;
use crate::debian::{DebInput, Opened, prefix};

/// A package written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltRpm {
    /// Where.
    pub path: PathBuf,
    /// `Name:`.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Requires:`.
    pub requires: Vec<String>,
    /// `Recommends:`.
    pub recommends: Vec<String>,
    /// Its size in bytes.
    pub bytes: u64,
    /// The fingerprint of the key its header is signed with, if it is.
    pub signed_by: Option<String>,
}

/// RPM's name of a Debian architecture (`amd64` → `x86_64`).
pub fn rpm_arch(debian: &str) -> &str {
    match debian {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "i386" => "i686",
        "armhf" => "armv7hl",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

fn rpm_error(e: &rpm::Error) -> PackageError {
    PackageError::Input {
        what: format!("the RPM package cannot be written: {e}"),
    }
}

/// Writes `<app>-<version>-1.<arch>.rpm` of `input.bundle`, once the bundle checks out.
pub fn build(
    input: &DebInput<'_>,
    signer: Option<&berth_repo::openpgp::RepoKey>,
) -> Result<BuiltRpm, PackageError> {
    let Opened {
        tmp,
        manifest,
        version,
        bundle_file,
        sbom,
    } = crate::debian::open(input)?;
    let app = manifest.app.name.clone();
    let arch = rpm_arch(input.architecture);
    let payload = tmp.path().join("payload");
    let (requires, recommends) = dependencies(&manifest, &payload)?;
    let summary = crate::debian::synopsis(&app, &manifest.app.summary);
    let config = rpm::BuildConfig::default()
        .compression(rpm::CompressionType::Gzip)
        .source_date(u32::try_from(input.source_date_epoch).unwrap_or(u32::MAX));
    let mut builder = rpm::PackageBuilder::new(&app, &version, "LicenseRef-vendor", arch, &summary);
    builder
        .using_config(config)
        .release("1")
        .description(
            crate::debian::wrap(&crate::debian::description_text(&manifest))
                .lines()
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .group("Applications/System")
        .vendor(input.maintainer)
        .packager(input.maintainer)
        .build_host("berth");
    builder.add_changelog_entry(
        format!("{} - {version}-1", input.maintainer),
        format!("- Release {version}, packaged by berth from the vendor's release bundle."),
        u32::try_from(input.source_date_epoch).unwrap_or(0),
    );
    for r in &requires {
        builder.requires(rpm::Dependency::any(r.clone()));
    }
    for r in &recommends {
        builder.recommends(rpm::Dependency::any(r.clone()));
    }
    let files = crate::debian::files(
        &manifest,
        input,
        &tmp.path().join("bin/berth"),
        &bundle_file,
    );
    for f in files.into_iter().chain(sbom) {
        if f.path.starts_with("/usr/share/lintian/") || f.path.ends_with("/changelog.gz") {
            continue;
        }
        let dest = match f.path.strip_prefix("/lib/systemd/system/") {
            Some(unit) => format!("/usr/lib/systemd/system/{unit}"),
            None => f.path.clone(),
        };
        let mut options =
            rpm::FileOptions::new(dest.clone()).permissions(u16::try_from(f.mode).unwrap_or(0o644));
        if dest == format!("/etc/{app}/site.toml") {
            options = options.config().noreplace();
        }
        if dest.starts_with("/usr/share/doc/") {
            options = options.doc();
        }
        match &f.content {
            Content::Bytes(bytes) => builder.with_file_contents(bytes.clone(), options),
            Content::File(path) => builder.with_file(path, options),
        }
        .map_err(|e| rpm_error(&e))?;
    }
    let scripts = scripts(&manifest, &bundle_file);
    builder.pre_install_script(scripts.pre);
    builder.post_install_script(scripts.post);
    builder.pre_uninstall_script(scripts.preun);
    let mut package = builder.build().map_err(|e| rpm_error(&e))?;
    if let Some(key) = signer {
        sign(&mut package, key, input.source_date_epoch)?;
    }
    drop(tmp);
    let path = write(
        &package,
        input.out_dir,
        &format!("{app}-{version}-1.{arch}.rpm"),
    )?;
    Ok(BuiltRpm {
        bytes: std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default(),
        path,
        name: app,
        version,
        requires,
        recommends,
        signed_by: signer.map(|k| k.public().fingerprint()),
    })
}

/// Signs `package`'s header with `key`, as of `epoch`: the signature header gains an
/// OpenPGP signature of the main header's bytes (what `rpmsign --addsign` adds).
fn sign(
    package: &mut rpm::Package,
    key: &berth_repo::openpgp::RepoKey,
    epoch: u64,
) -> Result<(), PackageError> {
    let header = package.header_bytes().map_err(|e| rpm_error(&e))?;
    let signature = key
        .sign_detached_binary(&header, u32::try_from(epoch).unwrap_or(u32::MAX))
        .map_err(|e| PackageError::Input {
            what: format!("the RPM package cannot be signed: {e}"),
        })?;
    package
        .apply_signature(signature)
        .map_err(|e| rpm_error(&e))
}

/// Writes `package` as `file` in `dir`, never over an existing file.
fn write(
    package: &rpm::Package,
    dir: &std::path::Path,
    file: &str,
) -> Result<PathBuf, PackageError> {
    let path = dir.join(file);
    if path.exists() {
        return Err(PackageError::Input {
            what: format!(
                "`{}` exists already: a package is never overwritten; move it away first",
                path.display()
            ),
        });
    }
    let (parent, name) = berth_host::beneath::in_parent(&path)?;
    parent.write_new_with(
        &name,
        &mut |file| {
            let mut out = std::io::BufWriter::new(file);
            package
                .write(&mut out)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            std::io::Write::flush(&mut out)
        },
        0o644,
        None,
    )?;
    Ok(path)
}

/// `Requires:` (the always-on components' RPM names, the libraries the payload needs
/// by soname) and `Recommends:` (the optional components').
fn dependencies(
    manifest: &Manifest,
    payload: &std::path::Path,
) -> Result<(Vec<String>, Vec<String>), PackageError> {
    let mut requires = system_packages(manifest, false)?;
    if payload.is_dir() {
        for (name, (_, wide)) in crate::shlibs::needed_from_outside(payload)? {
            requires.push(if wide {
                format!("{name}()(64bit)")
            } else {
                name
            });
        }
    }
    requires.sort();
    requires.dedup();
    let mut recommends = system_packages(manifest, true)?;
    recommends.retain(|r| !requires.contains(r));
    Ok((requires, recommends))
}

/// The `rpm_packages` of the system components that are (`optional`) or are not
/// optional; a component with Debian packages and no RPM names is an error.
fn system_packages(manifest: &Manifest, optional: bool) -> Result<Vec<String>, PackageError> {
    let mut out = Vec::new();
    for (name, c) in &manifest.components {
        if c.source != ComponentSource::System || c.optional != optional {
            continue;
        }
        if c.rpm_packages.is_empty() && !c.packages.is_empty() {
            return Err(PackageError::Input {
                what: format!(
                    "component `{name}` names its Debian packages ({}) and no `rpm_packages`: \
                     add the names they have on RPM-based systems to `[components.{name}]`",
                    c.packages.join(", ")
                ),
            });
        }
        out.extend(c.rpm_packages.iter().cloned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The scriptlets.
struct Scripts {
    pre: String,
    post: String,
    preun: String,
}

/// The scriptlets: values in them are the app's name and version, its required stops
/// and the bundle's file name, all checked to be plain.
fn scripts(manifest: &Manifest, bundle_file: &str) -> Scripts {
    let app = &manifest.app.name;
    let version = &manifest.app.version;
    let stops = manifest.upgrade.stops.join(" ");
    let ctl = format!("/usr/bin/{app}-ctl");
    let bundle = format!("/opt/{app}/releases/{bundle_file}");
    let key = format!("/opt/{app}/vendor.pub");
    let skip = format!("/etc/{app}/skip-auto-reconfigure");
    let prefix = prefix(app);
    Scripts {
        pre: format!(
            r#"# Before rpm changes anything: refuse a downgrade, and a required stop skipped.
new={version}
stops="{stops}"
# Whether $1 sorts before $2 as versions (and differs).
older() {{ [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]; }}
if [ "$1" -ge 2 ]; then
    old=$(rpm -q --qf '%{{VERSION}}' {app} 2>/dev/null | head -n 1)
    if [ -n "$old" ] && older "$new" "$old"; then
        echo "{app}: $new is older than the installed $old; berth does not downgrade (restore a backup of $new instead)" >&2
        exit 1
    fi
    for stop in $stops; do
        case "$old" in "$stop" | "$stop".*) continue ;; esac
        case "$new" in "$stop" | "$stop".*) continue ;; esac
        if older "$old" "$stop"; then
            echo "{app}: $new must be reached through a $stop release: install the newest $stop first, then $new" >&2
            exit 1
        fi
    done
fi
exit 0
"#
        ),
        post: format!(
            r#"# berth installs or upgrades the instance from the bundle this package carries.
if [ -e {skip} ]; then
    echo "{app}: {skip} exists: run \`{app}-ctl up --bundle {bundle} --public-key {key}\` yourself" >&2
    exit 0
fi
if [ "$1" -ge 2 ] && [ -d {prefix}/state ]; then
    exec {ctl} upgrade apply --bundle {bundle} --public-key {key}
fi
exec {ctl} up --bundle {bundle} --public-key {key}
"#
        ),
        preun: format!(
            r#"# The instance stops when the package is erased; its data in {prefix} stays.
if [ "$1" -eq 0 ] && [ -x {ctl} ]; then
    {ctl} down || true
fi
exit 0
"#
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `%pre`, run by `sh` as rpm runs it (`$1`: how many versions there will be): a
    /// downgrade and a skipped required stop are refused; an upgrade through the stop
    /// and an install pass. `rpm -q` is stood in for by a function.
    #[test]
    fn the_pre_scriptlet_refuses_a_downgrade_and_a_skipped_stop() {
        let text = "[app]\nname = \"demo\"\nversion = \"1.2.0\"\n\n[upgrade]\nstops = [\"1.1\"]\n";
        let m: Manifest = toml::from_str(text).unwrap();
        let pre = scripts(&m, "demo-1.2.0.berth-release.tar.zst").pre;
        let run = |installed: &str, arg: &str| {
            let script = format!("rpm() {{ printf '%s' '{installed}'; }}\n{pre}");
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .arg("pre")
                .arg(arg)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (code, err) = run("1.0.5", "2");
        assert_eq!(code, Some(1));
        assert!(
            err.contains("must be reached through a 1.1 release"),
            "{err}"
        );
        let (code, err) = run("1.3.0", "2");
        assert_eq!(code, Some(1));
        assert!(err.contains("does not downgrade"), "{err}");
        assert_eq!(run("1.1.4", "2").0, Some(0));
        assert_eq!(run("1.2.0", "2").0, Some(0));
        assert_eq!(run("", "1").0, Some(0));
        assert_eq!(run("1.10.0", "2").0, Some(1), "1.10.0 is newer than 1.2.0");
    }

    #[test]
    fn architectures_have_rpms_names() {
        assert_eq!(rpm_arch("amd64"), "x86_64");
        assert_eq!(rpm_arch("arm64"), "aarch64");
        assert_eq!(rpm_arch("x86_64"), "x86_64");
    }
}
