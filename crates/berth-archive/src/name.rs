//! Archive file names: `<app>-<version>-<YYYYMMDDTHHMMSSZ>.berth.tar.zst`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// The suffix of every archive file name.
pub const ARCHIVE_SUFFIX: &str = ".berth.tar.zst";

const STAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The file name of an archive of `app` at `version` created at `created`:
/// `<app>-<version>-<YYYYMMDDTHHMMSSZ>.berth.tar.zst`, the time in UTC, whole seconds.
///
/// The name is a label, not a record (the exact values are in the archive's manifest), so
/// it is kept safe to use as a file name and unambiguous to parse:
///
/// - in `app`, every character other than an ASCII letter, digit, `.`, `_`, `+` or `-`
///   becomes `_`;
/// - in `version`, `-` also becomes `_`, because the version is what lies between the last
///   two `-` of the name. `1.0-rc1` is written `1.0_rc1`.
///
/// An empty app or version is written `_`.
pub fn archive_name(app: &str, version: &str, created: Timestamp) -> String {
    format!(
        "{}-{}-{}{ARCHIVE_SUFFIX}",
        sanitize(app, true),
        sanitize(version, false),
        created.strftime(STAMP_FORMAT)
    )
}

/// Splits an archive file name made by [`archive_name`] into app, version and creation
/// time, or `None` if `name` is not such a name.
///
/// The timestamp is what follows the last `-`, the version what lies between the last two
/// `-`, and the app everything before (app names may contain `-`, versions in names never
/// do). The values are returned as written in the name.
pub fn parse_archive_name(name: &str) -> Option<(String, String, Timestamp)> {
    let stem = name.strip_suffix(ARCHIVE_SUFFIX)?;
    let (rest, stamp) = stem.rsplit_once('-')?;
    let (app, version) = rest.rsplit_once('-')?;
    if app.is_empty() || version.is_empty() || stamp.len() != 16 {
        return None;
    }
    // Only what `archive_name` writes: a name listed from a backup target (a network
    // peer) is shown to people, so it cannot bring escape sequences or other bytes.
    if sanitize(app, true) != app || sanitize(version, false) != version {
        return None;
    }
    let created = TimeZone::UTC
        .to_timestamp(DateTime::strptime(STAMP_FORMAT, stamp).ok()?)
        .ok()?;
    Some((app.to_owned(), version.to_owned(), created))
}

fn sanitize(s: &str, dash_ok: bool) -> String {
    if s.is_empty() {
        return "_".to_owned();
    }
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '+' => c,
            '-' if dash_ok => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn name_round_trip() {
        let created = ts("2025-03-04T05:06:07Z");
        for (app, version) in [
            ("netbox", "4.2.1"),
            ("my-app", "1.0"),
            ("a-b-c", "2024.10+build.7"),
            ("x", "v1_beta"),
        ] {
            let name = archive_name(app, version, created);
            assert_eq!(
                parse_archive_name(&name),
                Some((app.to_owned(), version.to_owned(), created)),
                "{name}"
            );
        }
        assert_eq!(
            archive_name("netbox", "4.2.1", created),
            "netbox-4.2.1-20250304T050607Z.berth.tar.zst"
        );
    }

    #[test]
    fn names_are_sanitized() {
        let created = ts("2025-03-04T05:06:07.999Z");
        let name = archive_name("my app/x", "1.0-rc1 / x", created);
        assert_eq!(name, "my_app_x-1.0_rc1___x-20250304T050607Z.berth.tar.zst");
        let (app, version, t) = parse_archive_name(&name).unwrap();
        assert_eq!(
            (app.as_str(), version.as_str()),
            ("my_app_x", "1.0_rc1___x")
        );
        assert_eq!(t, ts("2025-03-04T05:06:07Z"));
        assert_eq!(
            archive_name("", "", created),
            "_-_-20250304T050607Z.berth.tar.zst"
        );
    }

    #[test]
    fn other_names_are_not_archives() {
        for name in [
            "netbox-4.2.1-20250304T050607Z.tar.zst",
            "netbox-20250304T050607Z.berth.tar.zst",
            "-4.2.1-20250304T050607Z.berth.tar.zst",
            "netbox--20250304T050607Z.berth.tar.zst",
            "netbox-4.2.1-20250304T0506Z.berth.tar.zst",
            "netbox-4.2.1-20251304T050607Z.berth.tar.zst",
            "netbox-4.2.1-20250304T050607Z.berth.tar.zst.partial",
            // Attack: an SFTP server lists names with escape sequences or other bytes
            // berth never writes, which `backup list` would print.
            "net\u{1b}]0;pwned\u{7}box-4.2.1-20250304T050607Z.berth.tar.zst",
            "netbox-4.2\n1-20250304T050607Z.berth.tar.zst",
            "net box-4.2.1-20250304T050607Z.berth.tar.zst",
            "nétbox-4.2.1-20250304T050607Z.berth.tar.zst",
        ] {
            assert_eq!(parse_archive_name(name), None, "{name}");
        }
    }
}
