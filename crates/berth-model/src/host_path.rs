//! Which paths outside the prefix a manifest may put a file or a symlink at
//! (`[[host_files]] path`).
//!
//! berth runs as root: a path here replaces whatever the system has there. So a path
//! must be absolute and plain (no `.`, `..`, `//`, trailing `/`, control characters
//! or templates), at least three levels deep (never a top-level directory nor
//! something directly in one, such as `/etc/passwd` or `/usr/bin`), and outside the
//! trees the system owns or that other users write to.

/// Trees no host file may be in (or be).
pub const REFUSED_TREES: [&str; 30] = [
    "/bin",
    "/boot",
    "/dev",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var/tmp",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/spool/cron",
    "/etc/apt",
    "/etc/init.d",
    "/etc/ld.so.conf.d",
    "/etc/pam.d",
    "/etc/polkit-1",
    "/etc/profile.d",
    "/etc/security",
    "/etc/ssh",
    "/etc/sudoers.d",
    "/etc/systemd",
    "/etc/udev",
];

/// Why `path` may not be a host file, or `Ok` when it may. The text completes
/// "`<path>` …".
pub fn check_host_path(path: &str) -> Result<(), String> {
    if path.contains("{{") || path.contains("{%") {
        return Err("is a template, but a host file's path is written out".to_owned());
    }
    if path.chars().any(crate::is_unsafe_char) {
        return Err("has a control character".to_owned());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("is not an absolute path".to_owned());
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.contains(&"..") {
        return Err("has a `..`".to_owned());
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(
            "is not written plainly (an empty part, `//`, `.` or a trailing `/`)".to_owned(),
        );
    }
    if let Some(tree) = REFUSED_TREES
        .iter()
        .find(|t| path == **t || path.strip_prefix(**t).is_some_and(|r| r.starts_with('/')))
    {
        return Err(format!("is in `{tree}`, which the system owns"));
    }
    if parts.len() < 3 {
        return Err(
            "is a top-level directory or directly in one (e.g. `/etc` or `/etc/passwd`)".to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_host_path;

    #[test]
    fn only_plain_deep_paths_outside_system_trees() {
        for ok in [
            "/etc/nginx/sites-enabled/wiki.conf",
            "/etc/cron.d/wiki",
            "/var/www/wiki/static",
            "/opt/wiki/LocalSettings.php",
            "/etc/mediawiki/LocalSettings.php",
        ] {
            assert_eq!(check_host_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("etc/cron.d/wiki", "not an absolute path"),
            ("/etc/../root/x/y", "`..`"),
            ("/etc//cron.d/x", "not written plainly"),
            ("/etc/cron.d/", "not written plainly"),
            ("/etc/./cron.d/x", "not written plainly"),
            ("/etc", "top-level"),
            ("/etc/passwd", "top-level"),
            ("/srv/wiki", "top-level"),
            ("/", "not written plainly"),
            ("/usr", "`/usr`"),
            ("/usr/local/bin/wiki", "`/usr`"),
            ("/bin/sh", "`/bin`"),
            ("/etc/sudoers.d/wiki", "`/etc/sudoers.d`"),
            ("/etc/systemd/system/wiki.service", "`/etc/systemd`"),
            ("/tmp/wiki/x", "`/tmp`"),
            ("/etc/cron.d/{{ app.name }}", "template"),
            ("/etc/cron.d/a\nb", "control character"),
        ] {
            let err = check_host_path(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        // A tree's name as a prefix of another name is not the tree.
        assert_eq!(check_host_path("/usrdata/wiki/x"), Ok(()));
    }
}
