//! Debian packages as components: the packages dpkg's database says are installed in
//! a root tree (an image's base root, or `/`), each with its licence from its
//! machine-readable copyright file.
//!
//! Everything is read beneath the root: a symlink in it (`/etc/os-release`, a
//! `-dev` package's doc directory pointing at its library's) is resolved as if the
//! root were `/`, never out of it.

use std::path::{Component as PathPart, Path, PathBuf};

use berth_host::beneath::SafeDir;

use crate::SbomError;
use crate::component::{Component, Kind};
use crate::licence::{Licence, LicenceText};

/// The `Format:` of a machine-readable copyright file (DEP-5), without its scheme.
const DEP5_FORMAT: &str = "www.debian.org/doc/packaging-manuals/copyright-format/1.0";

/// One paragraph of a deb822 file: its fields in order, names as written, values
/// with continuation lines joined by `\n` (a `.` line is an empty line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    fields: Vec<(String, String)>,
}

impl Paragraph {
    /// The value of `name` (field names are case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first line of `name`'s value, trimmed, if not empty.
    pub fn first_line(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|v| v.lines().next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// The paragraphs of a deb822 text (a dpkg status file, a copyright file): separated
/// by blank lines; `Name: value` fields; lines starting with a space or tab continue
/// the field before. Comment lines (`#`) and lines that are neither are skipped.
pub fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, value)) = cur.fields.last_mut() {
                let rest = line[1..].trim_end();
                value.push('\n');
                if rest != "." {
                    value.push_str(rest);
                }
            }
        } else if line.starts_with('#') {
        } else if let Some((name, value)) = line.split_once(':')
            && !name.is_empty()
            && !name.contains(char::is_whitespace)
        {
            cur.fields.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    out
}

/// An installed package, as dpkg's status file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package:`.
    pub name: String,
    /// `Version:`, epoch and all (`1:2.4.47-2+b1`).
    pub version: String,
    /// `Architecture:` (`amd64`, `all`).
    pub architecture: String,
    /// The source package it was built from: `Source:`'s name and the version in
    /// parentheses, else the package's own name and version.
    pub source: (String, String),
    /// `Maintainer:` (`Name <address>`).
    pub maintainer: Option<String>,
    /// `Homepage:`.
    pub homepage: Option<String>,
    /// `Description:`'s first line (the synopsis).
    pub description: Option<String>,
}

/// The packages of a dpkg status file whose state is `installed` (`Status: install ok
/// installed`, or `hold ok installed`): what `dpkg-query` reports as
/// `${db:Status-Status}` = `installed`. Half-installed, config-files-only and
/// not-installed entries are left out, as are paragraphs without a name or version.
pub fn installed(status: &str) -> Vec<Package> {
    paragraphs(status)
        .iter()
        .filter(|p| {
            p.first_line("Status")
                .is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"))
        })
        .filter_map(|p| {
            let name = p.first_line("Package")?.to_owned();
            let version = p.first_line("Version")?.to_owned();
            let source = match p.first_line("Source") {
                Some(s) => match s.split_once('(') {
                    Some((n, v)) => (
                        n.trim().to_owned(),
                        v.trim_end_matches(')').trim().to_owned(),
                    ),
                    None => (s.to_owned(), version.clone()),
                },
                None => (name.clone(), version.clone()),
            };
            Some(Package {
                architecture: p.first_line("Architecture").unwrap_or("all").to_owned(),
                source,
                maintainer: p.first_line("Maintainer").map(str::to_owned),
                homepage: p.first_line("Homepage").map(str::to_owned),
                description: p.first_line("Description").map(str::to_owned),
                name,
                version,
            })
        })
        .collect()
}

/// A purl string, percent-encoded as the purl specification says: letters, digits and
/// `.-_~` as they are, and `:` too (never encoded, so a Debian epoch `1:` stays);
/// everything else (`+` in `2.4.47-2+b1`) as `%XX`.
fn purl_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The package URL of a Debian package: `pkg:deb/<vendor>/<name>@<version>?arch=<arch>`
/// and, when known, `&distro=<vendor>-<release>` (`debian-12`); qualifiers in key
/// order, as the purl specification's canonical form has them.
pub fn deb_purl(
    vendor: &str,
    name: &str,
    version: &str,
    arch: &str,
    distro: Option<&str>,
) -> String {
    let mut purl = format!(
        "pkg:deb/{}/{}@{}?arch={}",
        purl_encode(&vendor.to_ascii_lowercase()),
        purl_encode(&name.to_ascii_lowercase()),
        purl_encode(version),
        purl_encode(arch)
    );
    if let Some(d) = distro {
        purl.push_str("&distro=");
        purl.push_str(&purl_encode(d));
    }
    purl
}

/// The SPDX identifier a Debian licence short name (DEP-5 §7.2) stands for, when it
/// stands for exactly one: Debian's own names (`GPL-2+`, `Expat`, `BSD-3-clause`), and
/// names that are already an SPDX identifier spelt exactly (`Apache-2.0`, `Zlib`),
/// except those Debian says several licences answer to (`MIT`).
pub fn spdx_of_debian(name: &str) -> Option<String> {
    // Debian's GNU names, and SPDX's deprecated ones (`GPL-2.0+`), which say exactly
    // what they mean.
    let mapped = match name {
        "Expat" => "MIT",
        "BSD-2-clause" => "BSD-2-Clause",
        "BSD-3-clause" => "BSD-3-Clause",
        "BSD-4-clause" => "BSD-4-Clause",
        "GPL-1" | "GPL-1.0" => "GPL-1.0-only",
        "GPL-1+" | "GPL-1.0+" => "GPL-1.0-or-later",
        "GPL-2" | "GPL-2.0" => "GPL-2.0-only",
        "GPL-2+" | "GPL-2.0+" => "GPL-2.0-or-later",
        "GPL-3" | "GPL-3.0" => "GPL-3.0-only",
        "GPL-3+" | "GPL-3.0+" => "GPL-3.0-or-later",
        "LGPL-2" | "LGPL-2.0" => "LGPL-2.0-only",
        "LGPL-2+" | "LGPL-2.0+" => "LGPL-2.0-or-later",
        "LGPL-2.1" => "LGPL-2.1-only",
        "LGPL-2.1+" => "LGPL-2.1-or-later",
        "LGPL-3" | "LGPL-3.0" => "LGPL-3.0-only",
        "LGPL-3+" | "LGPL-3.0+" => "LGPL-3.0-or-later",
        "AGPL-3" | "AGPL-3.0" => "AGPL-3.0-only",
        "AGPL-3+" | "AGPL-3.0+" => "AGPL-3.0-or-later",
        "GFDL-1.2" => "GFDL-1.2-only",
        "GFDL-1.2+" => "GFDL-1.2-or-later",
        "GFDL-1.3" => "GFDL-1.3-only",
        "GFDL-1.3+" => "GFDL-1.3-or-later",
        "MPL-1.1" | "MPL-2.0" | "Apache-2.0" | "CC0-1.0" => name,
        "Apache-2" => "Apache-2.0",
        // There is one CC0.
        "CC0" => "CC0-1.0",
        "PSF-2" => "PSF-2.0",
        // Several licences answer to these (DEP-5 says so of MIT; Debian's
        // `Artistic` is Perl's, not SPDX's Artistic-1.0): no mapping.
        "MIT" | "Artistic" | "Artistic-1.0" | "BSD" | "GPL" | "LGPL" => return None,
        other => {
            let id = spdx::license_id(other)?;
            return (id.name == other && !id.is_deprecated()).then(|| other.to_owned());
        }
    };
    Some(mapped.to_owned())
}

/// One `License:` short-name line of a Files paragraph as an SPDX expression: a name,
/// or names all joined by `or`, or all by `and`. Anything else (an exception with
/// `with`, commas setting precedence, a name that maps to nothing) is not one.
fn line_expression(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ops: Vec<&str> = words.iter().skip(1).step_by(2).copied().collect();
    let names: Vec<&str> = words.iter().step_by(2).copied().collect();
    if words.is_empty() || words.len().is_multiple_of(2) {
        return None;
    }
    let op = match ops.first() {
        None => "",
        Some(&"or") => "OR",
        Some(&"and") => "AND",
        Some(_) => return None,
    };
    if ops.iter().any(|o| *o != ops[0]) {
        return None;
    }
    let ids = names
        .iter()
        .map(|n| spdx_of_debian(n))
        .collect::<Option<Vec<_>>>()?;
    Some(ids.join(&format!(" {op} ")))
}

/// The licence of a package from its copyright file's text: for a machine-readable
/// file (DEP-5), the `License:` short names of its Files paragraphs, as one SPDX
/// expression (several joined by `AND`: each applies to some of the files) when every
/// one maps to SPDX, else Debian's own words; for any other file no licence, which
/// berth never guesses from prose. The text itself is kept for the licence page.
pub fn copyright_licence(text: &str) -> Licence {
    let texts = vec![LicenceText {
        file: "copyright".to_owned(),
        text: text.to_owned(),
    }];
    let paras = paragraphs(text);
    let is_dep5 = paras
        .first()
        .and_then(|p| p.first_line("Format"))
        .is_some_and(|f| {
            let f = f
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            f == DEP5_FORMAT
        });
    let mut lines: Vec<&str> = Vec::new();
    if is_dep5 {
        for p in paras.iter().filter(|p| p.get("Files").is_some()) {
            if let Some(l) = p.first_line("License")
                && !lines.contains(&l)
            {
                lines.push(l);
            }
        }
    }
    if lines.is_empty() {
        return Licence {
            texts,
            ..Licence::default()
        };
    }
    let exprs: Option<Vec<String>> = lines.iter().map(|l| line_expression(l)).collect();
    let expression = exprs.and_then(|mut e| {
        e.sort();
        e.dedup();
        let joined = if e.len() == 1 {
            e.remove(0)
        } else {
            e.iter()
                .map(|x| {
                    if x.contains(' ') {
                        format!("({x})")
                    } else {
                        x.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        spdx::Expression::parse(&joined).ok().map(|_| joined)
    });
    match expression {
        Some(e) => Licence {
            expression: Some(e),
            source: Some("copyright".to_owned()),
            texts,
            ..Licence::default()
        },
        None => Licence {
            declared_as: Some(
                lines
                    .iter()
                    .map(|l| {
                        if l.contains(' ') && lines.len() > 1 {
                            format!("({l})")
                        } else {
                            (*l).to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            source: Some("copyright".to_owned()),
            texts,
            ..Licence::default()
        },
    }
}

/// At most this many symlinks are followed resolving one path (as Linux's 40).
const MAX_LINKS: usize = 40;

/// `path` (relative to `root`) with its symlinks resolved as if `root` were `/`:
/// an absolute target starts again at `root`, `..` stops at it. `None` when a part is
/// missing or there are too many links.
fn resolve_in_root(root: &SafeDir, path: &Path) -> Option<PathBuf> {
    let mut todo: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            PathPart::Normal(n) => Some(PathBuf::from(n)),
            PathPart::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part.as_os_str() == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let st = root.stat(&next).ok()??;
        if st.is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = root.read_link(&next).ok()??;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            for c in target.components().rev() {
                match c {
                    PathPart::Normal(n) => todo.push(PathBuf::from(n)),
                    PathPart::ParentDir => todo.push(PathBuf::from("..")),
                    _ => {}
                }
            }
        } else {
            done = next;
        }
    }
    Some(done)
}

/// The regular file `path` of the tree at `root`, read with its symlinks resolved
/// within the tree; `None` if there is none.
fn read_in_root(root: &SafeDir, path: &Path) -> Option<String> {
    let resolved = resolve_in_root(root, path)?;
    if !root.stat(&resolved).ok()??.is_file() {
        return None;
    }
    let bytes = root.read(&resolved).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The vendor (`debian`) and distro qualifier (`debian-12`) from the tree's
/// `/etc/os-release` (or `/usr/lib/os-release`): `ID` and `VERSION_ID`.
fn os_release(root: &SafeDir) -> (String, Option<String>) {
    let text = read_in_root(root, Path::new("etc/os-release"))
        .or_else(|| read_in_root(root, Path::new("usr/lib/os-release")))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
            .filter(|v| !v.is_empty())
    };
    let id = field("ID").unwrap_or_else(|| "debian".to_owned());
    let distro = field("VERSION_ID").map(|v| format!("{id}-{v}"));
    (id, distro)
}

/// Every package installed in the tree at `root` (`/` for this host) as a component,
/// sorted by name and architecture. No dpkg database (`var/lib/dpkg/status`) is an
/// error; a package without a copyright file has no licence.
pub fn debian_components(root: &Path) -> Result<Vec<Component>, SbomError> {
    let dir = SafeDir::open_trusted(root).map_err(|e| SbomError::Input {
        what: format!("Failed to open the root tree `{}`: {e}", root.display()),
    })?;
    let status_path = Path::new("var/lib/dpkg/status");
    let status = read_in_root(&dir, status_path).ok_or_else(|| SbomError::Input {
        what: format!(
            "`{}` has no dpkg database (`{}`): give the root of a Debian tree",
            root.display(),
            root.join(status_path).display()
        ),
    })?;
    let (vendor, distro) = os_release(&dir);
    let mut out: Vec<Component> = installed(&status)
        .into_iter()
        .map(|p| {
            let copyright = Path::new("usr/share/doc").join(&p.name).join("copyright");
            let licence = read_in_root(&dir, &copyright)
                .map(|t| copyright_licence(&t))
                .unwrap_or_default();
            Component {
                kind: Kind::Library,
                purl: deb_purl(
                    &vendor,
                    &p.name,
                    &p.version,
                    &p.architecture,
                    distro.as_deref(),
                ),
                source: Some(deb_purl(
                    &vendor,
                    &p.source.0,
                    &p.source.1,
                    "source",
                    distro.as_deref(),
                )),
                supplier: p.maintainer,
                name: p.name,
                version: p.version,
                licence,
                hashes: Vec::new(),
                summary: p.description,
                homepage: p.homepage,
                author: None,
                within: None,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.purl).cmp(&(&b.name, &b.purl)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libpq5
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 1000
Maintainer: Debian PostgreSQL Maintainers <team+postgresql@tracker.debian.org>
Architecture: amd64
Multi-Arch: same
Source: postgresql-15 (15.13-0+deb12u1)
Version: 15.13-0+deb12u1
Depends: libc6 (>= 2.34),
 libgssapi-krb5-2 (>= 1.17)
Description: PostgreSQL C client library
 libpq is a C library that enables user programs to communicate with
 the PostgreSQL database server.
 .
 A second paragraph.
Homepage: http://www.postgresql.org/

Package: attr
Status: install ok installed
Architecture: amd64
Version: 1:2.5.1-4
Description: utilities for manipulating filesystem extended attributes

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: never
Status: purge ok not-installed
Architecture: amd64

Package: held
Status: hold ok installed
Architecture: all
Version: 2.0+b1
";

    #[test]
    fn the_status_file_gives_the_installed_packages() {
        let p = installed(STATUS);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libpq5", "attr", "held"]);
        assert_eq!(p[0].version, "15.13-0+deb12u1");
        assert_eq!(
            p[0].source,
            ("postgresql-15".to_owned(), "15.13-0+deb12u1".to_owned())
        );
        assert_eq!(
            p[0].maintainer.as_deref(),
            Some("Debian PostgreSQL Maintainers <team+postgresql@tracker.debian.org>")
        );
        assert_eq!(
            p[0].description.as_deref(),
            Some("PostgreSQL C client library")
        );
        assert_eq!(p[0].homepage.as_deref(), Some("http://www.postgresql.org/"));
        assert_eq!(p[1].source, ("attr".to_owned(), "1:2.5.1-4".to_owned()));
        // Continuation lines belong to their field, `.` lines are empty lines.
        let para = &paragraphs(STATUS)[0];
        assert_eq!(
            para.get("depends"),
            Some("libc6 (>= 2.34),\nlibgssapi-krb5-2 (>= 1.17)")
        );
        assert!(
            para.get("Description")
                .unwrap()
                .contains("server.\n\nA second")
        );
    }

    #[test]
    fn purls_keep_the_epoch_colon_and_encode_the_rest() {
        assert_eq!(
            deb_purl(
                "debian",
                "attr",
                "1:2.4.47-2+b1",
                "amd64",
                Some("debian-12")
            ),
            "pkg:deb/debian/attr@1:2.4.47-2%2Bb1?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            deb_purl("debian", "curl", "7.50.3-1", "i386", None),
            "pkg:deb/debian/curl@7.50.3-1?arch=i386"
        );
    }

    const DEP5: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo
Comment: the header's licence is not a Files paragraph's
License: Artistic

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: lib/*
Copyright: 2021 Other
License: Expat

Files: compat/*
Copyright: 2019 Third
License: LGPL-2.1+ or BSD-3-clause

Files: debian/*
Copyright: 2022 Packager
License: GPL-2+

License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 .
 it under the terms of the GNU General Public License.

License: Expat
 Permission is hereby granted, free of charge, …
";

    #[test]
    fn a_dep5_file_gives_an_spdx_expression() {
        let l = copyright_licence(DEP5);
        assert_eq!(
            l.expression.as_deref(),
            Some("GPL-2.0-or-later AND (LGPL-2.1-or-later OR BSD-3-Clause) AND MIT")
        );
        assert_eq!(l.source.as_deref(), Some("copyright"));
        assert_eq!(l.texts.len(), 1);
        assert_eq!(l.texts[0].text, DEP5);
    }

    #[test]
    fn names_without_one_spdx_licence_stay_debians_words() {
        let text = DEP5.replace("License: Expat\n", "License: public-domain\n");
        let l = copyright_licence(&text);
        assert_eq!(l.expression, None);
        assert_eq!(
            l.declared_as.as_deref(),
            Some("GPL-2+ and public-domain and (LGPL-2.1+ or BSD-3-clause)")
        );
        for (name, id) in [
            ("GPL-2+", Some("GPL-2.0-or-later")),
            ("LGPL-2.1+", Some("LGPL-2.1-or-later")),
            ("Expat", Some("MIT")),
            ("BSD-3-clause", Some("BSD-3-Clause")),
            ("Apache-2.0", Some("Apache-2.0")),
            ("Zlib", Some("Zlib")),
            ("MIT", None),
            ("public-domain", None),
            ("Artistic", None),
            ("GPL-2.0", Some("GPL-2.0-only")),
            ("GPL-2.0+", Some("GPL-2.0-or-later")),
            ("BSD-3-Clause", Some("BSD-3-Clause")),
            ("BSL-1.0", Some("BSL-1.0")),
            ("OpenLDAP-2.8", None),
            ("GPL", None),
            ("zlib", None),
        ] {
            assert_eq!(spdx_of_debian(name).as_deref(), id, "{name}");
        }
        assert_eq!(line_expression("GPL-2+ with OpenSSL exception"), None);
        assert_eq!(line_expression("GPL-2+, and BSD-3-clause or MIT"), None);
        assert_eq!(line_expression("GPL-2+ or"), None);
    }

    #[test]
    fn a_prose_copyright_file_declares_nothing_but_keeps_its_text() {
        let text = "This package was debianized by someone.\n\nIt is under the GPL, \
                    see /usr/share/common-licenses/GPL-2.\n";
        let l = copyright_licence(text);
        assert_eq!((l.expression, l.declared_as, l.source), (None, None, None));
        assert_eq!(l.texts[0].text, text);
        // A Format line of another format is not DEP-5.
        let l = copyright_licence("Format: something else\n\nFiles: *\nLicense: GPL-2+\n");
        assert_eq!(l.expression, None);
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn a_tree_is_read_within_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        write(&root.join("var/lib/dpkg/status"), STATUS);
        write(
            &root.join("usr/lib/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        write(&root.join("usr/share/doc/libpq5/copyright"), DEP5);
        // attr's doc directory points at libpq5's, absolutely: resolved in the tree.
        std::os::unix::fs::symlink("/usr/share/doc/libpq5", root.join("usr/share/doc/attr"))
            .unwrap();
        // held's points out of the tree, by `..` past the root and absolutely.
        write(&outside.join("copyright"), DEP5);
        std::os::unix::fs::symlink("../../../../outside", root.join("usr/share/doc/held")).unwrap();

        let c = debian_components(&root).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["attr", "held", "libpq5"]);
        assert_eq!(
            c[0].purl,
            "pkg:deb/debian/attr@1:2.5.1-4?arch=amd64&distro=debian-12"
        );
        assert!(c[0].licence.expression.is_some(), "{:?}", c[0].licence);
        assert_eq!(
            c[1].licence,
            Licence::default(),
            "nothing read outside the root"
        );
        assert_eq!(
            c[2].source.as_deref(),
            Some("pkg:deb/debian/postgresql-15@15.13-0%2Bdeb12u1?arch=source&distro=debian-12")
        );
        assert_eq!(c[2].kind, Kind::Library);
        assert_eq!(c[2].within, None);

        // Absolute, too.
        std::fs::remove_file(root.join("usr/share/doc/held")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("usr/share/doc/held")).unwrap();
        let c = debian_components(&root).unwrap();
        assert_eq!(c[1].licence, Licence::default());

        // No database: an error naming it.
        let err = debian_components(&outside).unwrap_err().to_string();
        assert!(err.contains("var/lib/dpkg/status"), "{err}");
    }
}
