//! `berth up` as a normal user: everything lives under the user's prefix and every
//! service runs as that user (no system users, no root).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use berth_tests::{berth_bin, files_under, fixture, http_get, is_root, prefix_dir};

const USER: &str = "nobody";
const PORT: u16 = 58080;

fn berth_as_user(
    bin: &std::path::Path,
    home: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new("/usr/sbin/runuser")
        .args(["-u", USER, "--", "env"])
        .arg(format!("HOME={}", home.display()))
        .arg(bin)
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_normal_user_runs_the_stack_as_itself_under_its_own_prefix() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to the `{USER}` user");
        return;
    }
    let dir = prefix_dir("user-install");
    let home = dir.path();
    // The user must be able to run berth and read the manifest.
    let bin = home.join("berth");
    std::fs::copy(berth_bin(), &bin).unwrap();
    let manifest = home.join("manifest");
    std::fs::create_dir_all(manifest.join("templates")).unwrap();
    let src = fixture("ministack");
    for e in files_under(&src) {
        let rel = e.strip_prefix(&src).unwrap();
        std::fs::copy(&e, manifest.join(rel)).unwrap();
    }
    let prefix = home.join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    std::fs::write(
        prefix.join("site.toml"),
        format!(
            "external_url = \"http://127.0.0.1:{PORT}/\"\n[postgresql]\nport = 55432\n[redis]\nport = 56379\n[app]\nport = 58001\n"
        ),
    )
    .unwrap();
    let uid = nix::unistd::User::from_name(USER).unwrap().unwrap().uid;
    for p in [
        home.to_path_buf(),
        bin.clone(),
        manifest.clone(),
        manifest.join("templates"),
        prefix.clone(),
        prefix.join("site.toml"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&p, Some(uid), None).unwrap();
    }
    let (p, m) = (prefix.to_str().unwrap(), manifest.to_str().unwrap());

    let up = berth_as_user(&bin, home, &["--prefix", p, "--manifest", m, "up"]);
    let down = || berth_as_user(&bin, home, &["--prefix", p, "down"]);
    if !up.status.success() {
        down();
        panic!(
            "up failed: {}\n{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let status = berth_as_user(&bin, home, &["--prefix", p, "status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let (code, _) = http_get(PORT, "/health", "127.0.0.1").unwrap();
    let mut owners = Vec::new();
    for s in st["services"].as_array().unwrap() {
        let pid = s["pid"].as_u64().unwrap();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let real_uid: u32 = text
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        owners.push((s["name"].as_str().unwrap().to_owned(), real_uid));
    }
    let d = down();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert_eq!(code, 200);
    assert!(!owners.is_empty());
    for (name, owner) in owners {
        assert_eq!(
            owner,
            uid.as_raw(),
            "service `{name}` does not run as `{USER}`"
        );
    }
    // Every file berth wrote belongs to the user.
    for f in files_under(&prefix) {
        let meta = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            uid.as_raw(),
            "{}",
            f.display()
        );
    }
}
