//! `[preflight]`: limits that are numbers and sizes, in order; directories the instance
//! has; distributions, kernels, programs and packages written so they can be checked.

use super::Validator;
use crate::locate::Seg;
use crate::manifest::SizeLimits;
use crate::value::{SIZE_HELP, size_value};

/// The named directories `[[preflight.disk]] path` may give (besides `data/<dir>`).
pub const DISK_PATHS: [&str; 5] = ["prefix", "data", "log", "state", "releases"];

impl Validator<'_> {
    pub(super) fn preflight(&mut self) {
        self.preflight_resources();
        self.preflight_system();
        self.diagnose();
    }

    /// `[diagnose] redact`: regular expressions that compile.
    fn diagnose(&mut self) {
        for (i, pattern) in self.man.diagnose.redact.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                let why = e.to_string();
                let why = why
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned();
                self.at_value(
                    &[Seg::Key("diagnose"), Seg::Key("redact"), Seg::Index(i)],
                    format!(
                        "`{}` is not a regular expression: {why}",
                        pattern.escape_debug()
                    ),
                    Some(
                        "write a Rust `regex` pattern, e.g. `LIC-[A-Z0-9]{20}`; every match is \
                         taken out of support bundles and error reports"
                            .to_owned(),
                    ),
                );
            }
        }
    }

    /// CPUs, memory, disks.
    fn preflight_resources(&mut self) {
        let p = &self.man.preflight;
        if let Some(cpus) = &p.cpus {
            let at = |k| [Seg::Key("preflight"), Seg::Key("cpus"), Seg::Key(k)];
            for (key, n) in [("min", cpus.min), ("recommended", cpus.recommended)] {
                if n == Some(0) {
                    self.at_value(
                        &at(key),
                        format!("`preflight.cpus.{key}` is 0"),
                        Some("give at least 1, or leave the key out".to_owned()),
                    );
                }
            }
            if let (Some(min), Some(rec)) = (cpus.min, cpus.recommended)
                && rec < min
            {
                self.at_value(
                    &at("recommended"),
                    format!("`preflight.cpus.recommended` ({rec}) is below `min` ({min})"),
                    Some("the recommended figure is the larger one".to_owned()),
                );
            }
        }
        if let Some(memory) = &p.memory {
            self.size_limits(&[Seg::Key("preflight"), Seg::Key("memory")], memory);
        }
        for (i, d) in p.disk.iter().enumerate() {
            let base = [Seg::Key("preflight"), Seg::Key("disk"), Seg::Index(i)];
            self.disk_path(&base, &d.path);
            if d.min.is_none() && d.recommended.is_none() {
                let mut at = base.to_vec();
                at.push(Seg::Key("path"));
                self.at_value(
                    &at,
                    format!("`preflight.disk` entry `{}` sets no limit", d.path),
                    Some("give `min`, `recommended` or both".to_owned()),
                );
            }
            self.size_limits(
                &base,
                &SizeLimits {
                    min: d.min.clone(),
                    recommended: d.recommended.clone(),
                },
            );
        }
    }

    /// Kernel, distributions, programs, packages.
    fn preflight_system(&mut self) {
        let p = &self.man.preflight;
        if let Some(kernel) = &p.kernel
            && !is_dotted_version(kernel)
        {
            self.at_value(
                &[Seg::Key("preflight"), Seg::Key("kernel")],
                format!("`{}` is not a kernel release", kernel.escape_debug()),
                Some("write numbers and dots, e.g. `5.10` or `6.1.0`".to_owned()),
            );
        }
        for (i, d) in p.distributions.iter().enumerate() {
            if parse_distribution(d).is_none() {
                self.at_value(
                    &[
                        Seg::Key("preflight"),
                        Seg::Key("distributions"),
                        Seg::Index(i),
                    ],
                    format!("`{}` is not a distribution", d.escape_debug()),
                    Some(
                        "write `ID` or `ID VERSION_ID` as /etc/os-release has them, e.g. \
                         `debian 12`, `ubuntu 24.04`, `debian`"
                            .to_owned(),
                    ),
                );
            }
        }
        for (i, b) in p.binaries.iter().enumerate() {
            let ok = !b.is_empty()
                && !b.chars().any(|c| c.is_whitespace() || c.is_control())
                && (b.starts_with('/') || !b.contains('/'));
            if !ok {
                self.at_value(
                    &[Seg::Key("preflight"), Seg::Key("binaries"), Seg::Index(i)],
                    format!("`{}` is not a program", b.escape_debug()),
                    Some(
                        "give a name looked up on PATH (`rsync`) or an absolute path \
                         (`/usr/bin/rsync`)"
                            .to_owned(),
                    ),
                );
            }
        }
        for (name, version) in &p.packages {
            let at = [Seg::Key("preflight"), Seg::Key("packages"), Seg::Key(name)];
            let name_ok = name.len() >= 2
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                });
            if !name_ok {
                self.at_key(
                    &at,
                    format!("`{}` is not a package name", name.escape_debug()),
                    Some(
                        "package names are lower-case letters, digits, `+`, `-` and `.`".to_owned(),
                    ),
                );
            }
            if version.trim().is_empty() || version.chars().any(char::is_whitespace) {
                self.at_value(
                    &at,
                    format!(
                        "`{}` is not a version for package `{name}`",
                        version.escape_debug()
                    ),
                    Some("write the oldest version that works, e.g. `15.4`".to_owned()),
                );
            }
        }
    }

    /// `min` and `recommended` of a size limit: sizes, the recommended one not smaller.
    fn size_limits(&mut self, base: &[Seg<'_>], limits: &SizeLimits) {
        let mut sizes = [None, None];
        for (n, (key, v)) in [("min", &limits.min), ("recommended", &limits.recommended)]
            .into_iter()
            .enumerate()
        {
            let Some(v) = v else { continue };
            let mut at = base.to_vec();
            at.push(Seg::Key(key));
            match size_value(v) {
                Ok(bytes) => sizes[n] = Some(bytes),
                Err(why) => self.at_value(
                    &at,
                    format!("`{}` is not a size: {why}", super::dotted(&at)),
                    Some(SIZE_HELP.to_owned()),
                ),
            }
        }
        if let [Some(min), Some(rec)] = sizes
            && rec < min
        {
            let mut at = base.to_vec();
            at.push(Seg::Key("recommended"));
            self.at_value(
                &at,
                format!(
                    "`{}` is below `min` ({} < {})",
                    super::dotted(&at),
                    crate::format_size(i64::try_from(rec).unwrap_or(i64::MAX)),
                    crate::format_size(i64::try_from(min).unwrap_or(i64::MAX))
                ),
                Some("the recommended figure is the larger one".to_owned()),
            );
        }
    }

    /// A `[[preflight.disk]] path`: a named directory, or `data/<dir>` of a data
    /// directory some component declares.
    fn disk_path(&mut self, base: &[Seg<'_>], path: &str) {
        let mut at = base.to_vec();
        at.push(Seg::Key("path"));
        if DISK_PATHS.contains(&path) {
            return;
        }
        if let Some(dir) = path.strip_prefix("data/") {
            let declared: Vec<&str> = self
                .man
                .components
                .values()
                .flat_map(|c| c.data_dirs.iter().map(crate::manifest::DataDir::path))
                .collect();
            if declared.contains(&dir) {
                return;
            }
            let help = crate::suggest::help(dir, declared.iter().copied(), "data directories");
            self.at_value(
                &at,
                format!("`{path}` names data directory `{dir}`, which no component declares"),
                help,
            );
            return;
        }
        let known = DISK_PATHS.iter().copied().chain(["data/<dir>"]);
        self.at_value(
            &at,
            format!(
                "`{}` is not a directory of the instance",
                path.escape_debug()
            ),
            crate::suggest::help(path, known, "directories"),
        );
    }
}

/// `5.10`, `6.1.0`: numbers and single dots.
pub fn is_dotted_version(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `"debian 12"` → (`debian`, Some(`12`)); `"debian"` → (`debian`, None).
pub fn parse_distribution(s: &str) -> Option<(&str, Option<&str>)> {
    let mut parts = s.split_whitespace();
    let id = parts.next()?;
    let version = parts.next();
    let id_ok = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let version_ok = version.is_none_or(|v| {
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    });
    (parts.next().is_none() && id_ok && version_ok).then_some((id, version))
}
