//! Secrets a hook makes (`from_hook`), end to end with the `minted` fixture: the value
//! the bootstrap hook hands over lands 0600 in the secret store, is never printed or
//! logged, is in the backup, and comes back on a restore into a new prefix without the
//! hook running again (the restored data goes with the restored value). A hook that
//! plants a symlink instead of a value fails `up`, and nothing is taken.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_tests::{Berth, files_under, fixture, is_root, prefix_dir};
use sha2::{Digest, Sha256};

/// Stops the instance however the test ends.
struct Down<'b>(&'b Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

fn json(r: &berth_tests::Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` (logs, state, config) that holds `value`.
fn holding(dir: &Path, value: &str, except: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p != except && !p.starts_with(dir.join("releases")))
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| b.windows(value.len()).any(|w| w == value.as_bytes()))
        })
        .collect()
}

#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_secret_the_hook_makes_is_kept_backed_up_and_restored_without_minting_again() {
    if !is_root() {
        eprintln!("skipped: the fixture creates its service user and needs root");
        return;
    }
    let dir = prefix_dir("hook-secrets");
    let a = Berth::new(&dir.path().join("a"), &fixture("minted"));
    std::fs::create_dir_all(&a.prefix).unwrap();
    // The fixture's user by its own name (`minted`), not a per-instance one.
    a.write_site("");
    let down_a = Down(&a);
    let r = a.run(&["up"]).expect(0);

    // The value: 32 hex characters, 0600, owned by `readable_by`'s user, and what the
    // app keeps the hash of.
    let file = a.prefix.join("secrets/admin_api_key");
    let value = read(&file);
    assert_eq!(value.len(), 32, "{value:?}");
    assert!(value.chars().all(|c| c.is_ascii_hexdigit()), "{value:?}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let minted = nix::unistd::User::from_name("minted").unwrap().unwrap();
    assert_eq!(meta.uid(), minted.uid.as_raw());
    let www = a.prefix.join("data/www");
    assert_eq!(
        read(&www.join("key.sha256")).trim(),
        hex::encode(Sha256::digest(&value))
    );
    assert_eq!(read(&www.join("minted.txt")), "minted\n");
    assert!(!a.prefix.join("tmp/hook-secrets/bootstrap").exists());
    assert_eq!(
        std::fs::metadata(a.prefix.join("tmp/hook-secrets"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o711
    );
    // Never printed, never logged, nowhere else in the prefix.
    assert!(!r.stdout.contains(&value) && !r.stderr.contains(&value));
    assert!(r.stdout.contains("secrets/admin_api_key"), "{}", r.stdout);
    assert_eq!(holding(&a.prefix, &value, &file), Vec::<PathBuf>::new());

    let shown = a.run(&["config", "show"]).expect(0);
    assert!(
        shown.stdout.contains("admin_api_key = ********")
            && shown.stdout.contains("made by hook `bootstrap`")
            && !shown.stdout.contains(&value),
        "{}",
        shown.stdout
    );

    // Not again: another `up`, and nothing due in a dry run.
    a.run(&["up"]).expect(0);
    let dry = a.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(!dry.stdout.contains("bootstrap"), "{}", dry.stdout);
    assert_eq!(read(&file), value);
    assert_eq!(read(&www.join("minted.txt")), "minted\n");

    // Backed up with the other secrets.
    let key = dir.path().join("backup.key");
    a.run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    let r = a.run(&["backup", "create", "--json"]).expect(0);
    assert_eq!(json(&r)["backup"]["secrets_included"], true, "{}", r.stdout);
    let name = json(&r)["backup"]["archive"].as_str().unwrap().to_owned();
    let archive = dir.path().join(&name);
    std::fs::copy(a.prefix.join("backups").join(&name), &archive).unwrap();
    a.run(&[
        "backup",
        "verify",
        archive.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])
    .expect(0);
    drop(down_a);

    // Restored into a new prefix: the same value, 0600, the app's hash matching it,
    // and the hook did not run there (it would have minted another key).
    let b = Berth::new(&dir.path().join("b"), &fixture("minted"));
    let _down_b = Down(&b);
    let r = b
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .expect(0);
    assert!(!r.stdout.contains(&value) && !r.stderr.contains(&value));
    let restored = b.prefix.join("secrets/admin_api_key");
    assert_eq!(read(&restored), value);
    let meta = std::fs::metadata(&restored).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), minted.uid.as_raw());
    let www_b = b.prefix.join("data/www");
    assert_eq!(
        read(&www_b.join("minted.txt")),
        "minted\n",
        "the hook ran again"
    );
    assert_eq!(
        read(&www_b.join("key.sha256")).trim(),
        hex::encode(Sha256::digest(&value))
    );
    assert!(!b.prefix.join("log/hooks/bootstrap.log").exists());
    let dry = b.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(!dry.stdout.contains("bootstrap"), "{}", dry.stdout);
    assert_eq!(holding(&b.prefix, &value, &restored), Vec::<PathBuf>::new());
}

/// The hook's user plants a symlink to a root-only file where the value goes: `up`
/// fails naming the secret and why, the file is not copied into the store or shown,
/// and the hook is due again.
#[test]
#[allow(clippy::print_stderr)] // a skipped test says why
fn a_hook_handing_over_a_symlink_fails_up_and_nothing_is_taken() {
    if !is_root() {
        eprintln!("skipped: the fixture creates its service user and needs root");
        return;
    }
    let dir = prefix_dir("hook-secrets-link");
    let manifest = dir.path().join("manifest");
    std::fs::create_dir_all(&manifest).unwrap();
    let roots = dir.path().join("roots-own");
    std::fs::write(&roots, "root-only-content\n").unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = read(&fixture("minted").join("berth.toml")).replace(
        r#"printf '%s\n' "$key" > "$BERTH_SECRETS_OUT/admin_api_key""#,
        &format!(
            r#"ln -s {} "$BERTH_SECRETS_OUT/admin_api_key""#,
            roots.display()
        ),
    );
    std::fs::write(manifest.join("berth.toml"), text).unwrap();
    let a = Berth::new(&dir.path().join("a"), &manifest);
    std::fs::create_dir_all(&a.prefix).unwrap();
    // A port of its own: the other test of this file may be running.
    a.write_site("external_url = \"http://127.0.0.1:28081/\"\n");
    let _down = Down(&a);
    let r = a.run(&["up"]).expect(1);
    assert!(
        r.stderr
            .contains("exited 0, but did not hand over the secret `admin_api_key`")
            && r.stderr.contains("symbolic link"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("root-only-content") && !r.stdout.contains("root-only-content"));
    assert!(!a.prefix.join("secrets/admin_api_key").exists());
    assert!(!a.prefix.join("tmp/hook-secrets/bootstrap").exists());
    assert_eq!(read(&roots), "root-only-content\n");
    let dry = a.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(dry.stdout.contains("bootstrap"), "{}", dry.stdout);
}
