//! Secrets a hook makes (`from_hook`): the hand-over directory, and what berth, as
//! root, accepts back from it. The hook's user owns that directory and may plant
//! anything there; only a regular file of that user, of one link and at most 4 KiB,
//! holding one line of text, is ever read into the store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_host::HostError;
use berth_host::secrets::SecretStore;
use berth_host::secrets::handover::Handover;
use berth_render::SecretSpec;

/// What a root-only file of the host holds: must never reach the store or a message.
const ROOTS_OWN: &str = "root-only-content";

fn spec(name: &str, alphabet: &str) -> SecretSpec {
    SecretSpec {
        name: name.to_owned(),
        length: 0,
        alphabet: alphabet.to_owned(),
        owner: None,
        from_hook: Some("bootstrap".to_owned()),
    }
}

/// The hook's user: `nobody` as root, else whoever runs the tests.
fn hook_user() -> Option<(u32, u32)> {
    berth_host::users::is_root().then(|| berth_host::users::lookup("nobody").unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

struct Setup {
    _tmp: tempfile::TempDir,
    prefix: PathBuf,
    store: SecretStore,
    /// A file only root may read, outside the hand-over directory.
    roots_file: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("inst");
    std::fs::create_dir(&prefix).unwrap();
    let store = SecretStore::open(prefix.join("secrets")).unwrap();
    let roots_file = tmp.path().join("shadow");
    std::fs::write(&roots_file, ROOTS_OWN).unwrap();
    std::fs::set_permissions(&roots_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    Setup {
        _tmp: tmp,
        prefix,
        store,
        roots_file,
    }
}

/// Writes `bytes` to `name` in the hand-over directory as the hook's user would.
fn write_as_hook(h: &Handover, name: &str, bytes: &[u8]) -> PathBuf {
    let path = h.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    if let Some((uid, gid)) = hook_user() {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    path
}

/// The error of taking `s`, with what it must never show checked.
fn refused(h: &Handover, s: &SecretSpec, value: &str) -> String {
    let err = h.take(s).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, HostError::HookSecret { .. }), "{shown}");
    assert!(!shown.contains(ROOTS_OWN), "{shown}");
    if !value.trim().is_empty() {
        assert!(
            !shown.contains(value.trim()),
            "the value was shown: {shown}"
        );
    }
    err.to_string()
}

/// The directory is made empty, 0700 and the hook user's inside a 0711 parent of
/// root's; the value comes back without its newline, lands 0600 in the store, and the
/// hand-over directory is gone.
#[test]
fn a_value_lands_private_in_the_store_and_the_hand_over_is_removed() {
    let s = setup();
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    assert_eq!(h.path(), s.prefix.join("tmp/hook-secrets/bootstrap"));
    assert_eq!(mode(h.path()), 0o700);
    assert_eq!(mode(&s.prefix.join("tmp/hook-secrets")), 0o711);
    assert_eq!(mode(&s.prefix.join("tmp")), 0o711);
    let meta = std::fs::metadata(h.path()).unwrap();
    if let Some(ids) = hook_user() {
        assert_eq!((meta.uid(), meta.gid()), ids);
        assert_eq!(
            std::fs::metadata(s.prefix.join("tmp/hook-secrets"))
                .unwrap()
                .uid(),
            0
        );
    }
    write_as_hook(&h, "admin_api_key", b"tok_3f9a-Z.+/=\n");
    write_as_hook(&h, "other", b"c0ffee\r\n");
    let key = spec("admin_api_key", "");
    let other = spec("other", "0123456789abcdef");
    let stored = h.store_all(&[&key, &other], &s.store).unwrap();
    assert_eq!(stored, ["admin_api_key", "other"]);
    assert!(!s.prefix.join("tmp/hook-secrets/bootstrap").exists());
    let file = s.prefix.join("secrets/admin_api_key");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok_3f9a-Z.+/=");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(s.store.get("other").unwrap().as_deref(), Some("c0ffee"));
    assert!(s.store.contains("admin_api_key").unwrap());
    // Once in the store, it is loaded like any other secret, never generated.
    let values = s.store.ensure(&[key, spec("missing", "")]).unwrap();
    assert_eq!(values["admin_api_key"], "tok_3f9a-Z.+/=");
    assert!(!values.contains_key("missing"));
    assert!(!s.prefix.join("secrets/missing").exists());
}

/// The hook user plants a symlink to a root-only file where the value goes: refused,
/// never followed; nothing reaches the store.
#[test]
fn a_symlink_planted_in_the_hand_over_directory_is_refused() {
    let s = setup();
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    std::os::unix::fs::symlink(&s.roots_file, h.path().join("admin_api_key")).unwrap();
    let key = spec("admin_api_key", "");
    let why = refused(&h, &key, "");
    assert!(why.contains("symbolic link"), "{why}");
    assert!(h.store_all(&[&key], &s.store).is_err());
    assert!(!s.store.contains("admin_api_key").unwrap());
    // Refused or not, nothing is left lying in the hand-over directory.
    assert!(!s.prefix.join("tmp/hook-secrets/bootstrap").exists());
    assert_eq!(std::fs::read_to_string(&s.roots_file).unwrap(), ROOTS_OWN);

    // A symlink on the way (a directory of the hook's pointing elsewhere) is not
    // followed either.
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    let nested = spec("nested", "");
    std::os::unix::fs::symlink(s.roots_file.parent().unwrap(), h.path().join("nested")).unwrap();
    refused(&h, &nested, "");
}

/// A file bigger than 4 KiB is refused from its size, without being read; 4 KiB and
/// a newline is the most accepted.
#[test]
fn an_oversized_value_is_refused() {
    let s = setup();
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    let key = spec("admin_api_key", "");
    let mut big = vec![b'a'; 4096];
    big.push(b'\n');
    write_as_hook(&h, "admin_api_key", &big);
    assert_eq!(h.take(&key).unwrap().len(), 4096);
    write_as_hook(&h, "admin_api_key", &vec![b'a'; 1 << 20]);
    let why = refused(&h, &key, "");
    assert!(why.contains("1048576 bytes"), "{why}");
    write_as_hook(&h, "admin_api_key", &vec![b'a'; 4097]);
    refused(&h, &key, "");
}

/// A file of another user in the hand-over directory (root's here, or one hard-linked
/// in) is refused: only the hook's own single-link file is its value.
#[test]
fn a_file_not_the_hook_users_own_is_refused() {
    let s = setup();
    let Some(user) = hook_user() else {
        return; // without root, every file is the hook user's
    };
    let h = Handover::prepare(&s.prefix, "bootstrap", Some(user)).unwrap();
    let key = spec("admin_api_key", "");
    let path = h.path().join("admin_api_key");
    std::fs::write(&path, "planted-by-root\n").unwrap();
    let why = refused(&h, &key, "planted-by-root");
    assert!(why.contains("belongs to uid 0"), "{why}");

    // A second link to a file of the hook's own (the other one could be anywhere).
    std::fs::remove_file(&path).unwrap();
    let elsewhere = s.prefix.join("data-of-the-hook-user");
    std::fs::write(&elsewhere, "linked\n").unwrap();
    std::os::unix::fs::chown(&elsewhere, Some(user.0), Some(user.1)).unwrap();
    std::fs::hard_link(&elsewhere, &path).unwrap();
    let why = refused(&h, &key, "linked");
    assert!(why.contains("2 hard links"), "{why}");
}

/// A FIFO (which would hang a reader), a directory, a missing value and values that
/// are not one line of text are refused, each saying why and never what it holds.
#[test]
fn what_is_not_a_value_is_refused() {
    let s = setup();
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    let key = spec("admin_api_key", "");
    let path = h.path().join("admin_api_key");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(refused(&h, &key, "").contains("not a regular file"));
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(refused(&h, &key, "").contains("not a regular file"));
    std::fs::remove_dir(&path).unwrap();

    write_as_hook(&h, "admin_api_kye", b"typo\n");
    let why = refused(&h, &key, "");
    assert!(
        why.contains("nothing was written to") && why.contains("it wrote admin_api_kye"),
        "{why}"
    );
    for (bytes, because) in [
        (&b"\n"[..], "empty"),
        (b"two\nlines\n", "control character"),
        (b"nul\0inside", "control character"),
        (b"\x1b]0;title\x07", "control character"),
        (b"\xff\xfe", "UTF-8"),
    ] {
        write_as_hook(&h, "admin_api_key", bytes);
        let why = refused(&h, &key, &String::from_utf8_lossy(bytes));
        assert!(why.contains(because), "{because}: {why}");
    }
    let hex = spec("admin_api_key", "0123456789abcdef");
    write_as_hook(&h, "admin_api_key", b"NOT-HEX\n");
    assert!(refused(&h, &hex, "NOT-HEX").contains("alphabet"));
}

/// What an earlier, killed run left in the hand-over directory is gone before the
/// hook runs again: a stale value is never taken for a new one.
#[test]
fn a_leftover_hand_over_directory_is_made_empty_again() {
    let s = setup();
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    write_as_hook(&h, "admin_api_key", b"stale\n");
    std::os::unix::fs::symlink(&s.roots_file, h.path().join("link")).unwrap();
    drop(h);
    let h = Handover::prepare(&s.prefix, "bootstrap", hook_user()).unwrap();
    assert_eq!(std::fs::read_dir(h.path()).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(&s.roots_file).unwrap(), ROOTS_OWN);
    assert!(h.take(&spec("admin_api_key", "")).is_err());
    h.remove().unwrap();
    assert!(!s.prefix.join("tmp/hook-secrets/bootstrap").exists());
}

/// A symlink in the store where a secret goes is refused by `contains` (which decides
/// whether the hook is due), not taken for the secret.
#[test]
fn a_symlink_in_the_store_is_not_a_secret() {
    let s = setup();
    std::os::unix::fs::symlink(&s.roots_file, s.prefix.join("secrets/admin_api_key")).unwrap();
    assert!(matches!(
        s.store.contains("admin_api_key"),
        Err(HostError::SymlinkRefused { .. })
    ));
}
