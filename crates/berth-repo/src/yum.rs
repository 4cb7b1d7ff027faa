//! A yum/dnf repository's metadata, rendered from what it holds (pure): `primary`,
//! `filelists` and `other` (gzip, named by their SHA-256 as createrepo_c names them)
//! and `repomd.xml`, which lists them with their sizes and hashes and is what the
//! signature covers (`repomd.xml.asc`, checked by dnf's `repo_gpgcheck`).

use std::fmt::Write as _;
use std::io::Write as _;

use sha2::Digest as _;

/// A dependency as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dep {
    /// The capability.
    pub name: String,
    /// `EQ`, `LT`, `LE`, `GT`, `GE`, or none.
    pub flags: Option<String>,
    /// Epoch, version and release, when there is a version.
    pub evr: Option<(String, String, String)>,
    /// Needed before the package's scriptlets run.
    pub pre: bool,
}

/// A package in the repository: what its header says, and where and what its file is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct YumPackage {
    /// `Name`.
    pub name: String,
    /// `Arch`.
    pub arch: String,
    /// `Epoch`.
    pub epoch: u32,
    /// `Version`.
    pub version: String,
    /// `Release`.
    pub release: String,
    /// `Summary`.
    pub summary: String,
    /// `Description`.
    pub description: String,
    /// `Packager`.
    pub packager: String,
    /// `URL`.
    pub url: String,
    /// `License`.
    pub license: String,
    /// `Vendor`.
    pub vendor: String,
    /// `Group`.
    pub group: String,
    /// `Buildhost`.
    pub buildhost: String,
    /// `Sourcerpm`.
    pub sourcerpm: String,
    /// `Buildtime`.
    pub build_time: u64,
    /// Bytes the installed files take.
    pub installed_size: u64,
    /// Where the header starts and ends in the file.
    pub header_range: (u64, u64),
    /// What it provides.
    pub provides: Vec<Dep>,
    /// What it requires.
    pub requires: Vec<Dep>,
    /// What it recommends.
    pub recommends: Vec<Dep>,
    /// Its files, and whether each is a directory.
    pub files: Vec<(String, bool)>,
    /// Its changelog: author, time, text.
    pub changelog: Vec<(String, u64, String)>,
    /// The file's path from the repository's root.
    pub location: String,
    /// The file's size.
    pub size: u64,
    /// The file's SHA-256 (its id in the metadata).
    pub sha256: String,
}

/// A metadata file under `repodata/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFile {
    /// `primary`, `filelists` or `other`.
    pub kind: &'static str,
    /// The XML.
    pub xml: Vec<u8>,
    /// The XML, gzip-compressed.
    pub gz: Vec<u8>,
}

impl MetaFile {
    fn new(kind: &'static str, xml: String) -> Self {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(xml.as_bytes())
            .expect("writing to memory");
        Self {
            kind,
            gz: encoder.finish().expect("writing to memory"),
            xml: xml.into_bytes(),
        }
    }

    /// Its path from the repository's root: `repodata/<sha256>-<kind>.xml.gz`.
    pub fn location(&self) -> String {
        format!("repodata/{}-{}.xml.gz", sha256(&self.gz), self.kind)
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `text` escaped for XML character data and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not allowed in XML 1.0 at all: left out rather than written broken.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Files `primary` lists (as createrepo_c does): those under `/etc`, in a `bin`
/// directory, and `/usr/lib/sendmail`; `filelists` has them all.
fn primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path.contains("bin/") || path == "/usr/lib/sendmail"
}

fn entries(out: &mut String, tag: &str, deps: &[Dep]) {
    if deps.is_empty() {
        return;
    }
    let _ = writeln!(out, "    <rpm:{tag}>");
    for d in deps {
        let _ = write!(out, "      <rpm:entry name=\"{}\"", escape(&d.name));
        if let (Some(flags), Some((e, v, r))) = (&d.flags, &d.evr) {
            let _ = write!(
                out,
                " flags=\"{flags}\" epoch=\"{}\" ver=\"{}\"",
                escape(e),
                escape(v)
            );
            if !r.is_empty() {
                let _ = write!(out, " rel=\"{}\"", escape(r));
            }
        }
        if d.pre {
            out.push_str(" pre=\"1\"");
        }
        out.push_str("/>\n");
    }
    let _ = writeln!(out, "    </rpm:{tag}>");
}

fn version(p: &YumPackage) -> String {
    format!(
        "<version epoch=\"{}\" ver=\"{}\" rel=\"{}\"/>",
        p.epoch,
        escape(&p.version),
        escape(&p.release)
    )
}

/// `primary`, `filelists` and `other` of `packages` (in name, version and file order).
pub fn metadata(packages: &[YumPackage]) -> Vec<MetaFile> {
    let mut sorted: Vec<&YumPackage> = packages.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.location).cmp(&(&b.name, &b.location)));
    let n = sorted.len();
    let mut primary = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{n}\">\n"
    );
    let mut filelists = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<filelists xmlns=\"http://linux.duke.edu/metadata/filelists\" packages=\"{n}\">\n"
    );
    let mut other = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<otherdata xmlns=\"http://linux.duke.edu/metadata/other\" packages=\"{n}\">\n"
    );
    for p in sorted {
        let e = escape;
        let _ = write!(
            primary,
            "<package type=\"rpm\">\n  <name>{}</name>\n  <arch>{}</arch>\n  {}\n  \
             <checksum type=\"sha256\" pkgid=\"YES\">{}</checksum>\n  <summary>{}</summary>\n  \
             <description>{}</description>\n  <packager>{}</packager>\n  <url>{}</url>\n  \
             <time file=\"{}\" build=\"{}\"/>\n  <size package=\"{}\" installed=\"{}\" archive=\"{}\"/>\n  \
             <location href=\"{}\"/>\n  <format>\n    <rpm:license>{}</rpm:license>\n    \
             <rpm:vendor>{}</rpm:vendor>\n    <rpm:group>{}</rpm:group>\n    \
             <rpm:buildhost>{}</rpm:buildhost>\n    <rpm:sourcerpm>{}</rpm:sourcerpm>\n    \
             <rpm:header-range start=\"{}\" end=\"{}\"/>\n",
            e(&p.name),
            e(&p.arch),
            version(p),
            p.sha256,
            e(&p.summary),
            e(&p.description),
            e(&p.packager),
            e(&p.url),
            p.build_time,
            p.build_time,
            p.size,
            p.installed_size,
            p.installed_size,
            e(&p.location),
            e(&p.license),
            e(&p.vendor),
            e(&p.group),
            e(&p.buildhost),
            e(&p.sourcerpm),
            p.header_range.0,
            p.header_range.1,
        );
        entries(&mut primary, "provides", &p.provides);
        entries(&mut primary, "requires", &p.requires);
        entries(&mut primary, "recommends", &p.recommends);
        for (path, dir) in &p.files {
            if primary_file(path) {
                let kind = if *dir { " type=\"dir\"" } else { "" };
                let _ = writeln!(primary, "    <file{kind}>{}</file>", e(path));
            }
        }
        primary.push_str("  </format>\n</package>\n");
        let _ = writeln!(
            filelists,
            "<package pkgid=\"{}\" name=\"{}\" arch=\"{}\">\n  {}",
            p.sha256,
            e(&p.name),
            e(&p.arch),
            version(p)
        );
        for (path, dir) in &p.files {
            let kind = if *dir { " type=\"dir\"" } else { "" };
            let _ = writeln!(filelists, "  <file{kind}>{}</file>", e(path));
        }
        filelists.push_str("</package>\n");
        let _ = writeln!(
            other,
            "<package pkgid=\"{}\" name=\"{}\" arch=\"{}\">\n  {}",
            p.sha256,
            e(&p.name),
            e(&p.arch),
            version(p)
        );
        for (author, date, text) in &p.changelog {
            let _ = writeln!(
                other,
                "  <changelog author=\"{}\" date=\"{date}\">{}</changelog>",
                e(author),
                e(text)
            );
        }
        other.push_str("</package>\n");
    }
    primary.push_str("</metadata>\n");
    filelists.push_str("</filelists>\n");
    other.push_str("</otherdata>\n");
    vec![
        MetaFile::new("primary", primary),
        MetaFile::new("filelists", filelists),
        MetaFile::new("other", other),
    ]
}

/// `repomd.xml` listing `files`, made at `revision` (seconds).
pub fn repomd(files: &[MetaFile], revision: u32) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n  <revision>{revision}</revision>\n"
    );
    for f in files {
        let _ = write!(
            out,
            "  <data type=\"{}\">\n    <checksum type=\"sha256\">{}</checksum>\n    \
             <open-checksum type=\"sha256\">{}</open-checksum>\n    <location href=\"{}\"/>\n    \
             <timestamp>{revision}</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            f.kind,
            sha256(&f.gz),
            sha256(&f.xml),
            f.location(),
            f.gz.len(),
            f.xml.len()
        );
    }
    out.push_str("</repomd>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> YumPackage {
        YumPackage {
            name: name.into(),
            arch: "x86_64".into(),
            epoch: 0,
            version: version.into(),
            release: "1".into(),
            summary: "a <demo> & more".into(),
            description: "Long text.".into(),
            packager: "Vendor <vendor@example.org>".into(),
            url: String::new(),
            license: "MIT".into(),
            vendor: "Vendor".into(),
            group: "Applications/System".into(),
            buildhost: "berth".into(),
            sourcerpm: String::new(),
            build_time: 1_700_000_000,
            installed_size: 1000,
            header_range: (4504, 9000),
            provides: vec![Dep {
                name: name.into(),
                flags: Some("EQ".into()),
                evr: Some(("0".into(), version.into(), "1".into())),
                pre: false,
            }],
            requires: vec![
                Dep {
                    name: "/bin/sh".into(),
                    flags: None,
                    evr: None,
                    pre: true,
                },
                Dep {
                    name: "libssl.so.3()(64bit)".into(),
                    flags: None,
                    evr: None,
                    pre: false,
                },
            ],
            recommends: vec![],
            files: vec![
                ("/etc/demo/site.toml".into(), false),
                ("/opt/demo".into(), true),
                ("/usr/bin/demo-ctl".into(), false),
            ],
            changelog: vec![("Vendor - 1.0-1".into(), 1_700_000_000, "- Release.".into())],
            location: format!("Packages/d/{name}-{version}-1.x86_64.rpm"),
            size: 123,
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn the_metadata_of_a_small_repository() {
        let files = metadata(&[package("demo", "1.1"), package("demo", "1.0")]);
        let shown: Vec<String> = files
            .iter()
            .map(|f| format!("== {}\n{}", f.kind, String::from_utf8_lossy(&f.xml)))
            .collect();
        insta::assert_snapshot!(shown.join("\n"));
        let repomd = repomd(&files, 1_700_000_000);
        assert!(repomd.contains(&files[0].location()));
        assert_eq!(escape("a\u{1}<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
