//! The secret store against real files.

use std::os::unix::fs::PermissionsExt;

use berth_host::HostError;
use berth_host::secrets::SecretStore;
use berth_render::SecretSpec;

fn spec(name: &str, length: usize) -> SecretSpec {
    SecretSpec {
        name: name.to_owned(),
        length,
        alphabet: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".to_owned(),
        owner: None,
        from_hook: None,
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn generates_once_with_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);

    let specs = [spec("db_password", 32), spec("secret_key", 50)];
    let first = store.ensure(&specs).unwrap();
    assert_eq!(first["db_password"].len(), 32);
    assert_eq!(first["secret_key"].len(), 50);
    assert_ne!(first["db_password"], first["secret_key"][..32]);
    for name in ["db_password", "secret_key"] {
        assert_eq!(mode(&dir.join(name)), 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join(name)).unwrap(),
            first[name]
        );
    }

    // Reopened and ensured again (even with a different declared length): unchanged.
    let store = SecretStore::open(&dir).unwrap();
    let second = store
        .ensure(&[spec("db_password", 64), spec("secret_key", 50)])
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(
        store.get("db_password").unwrap().as_deref(),
        Some(first["db_password"].as_str())
    );
    assert_eq!(store.get("missing").unwrap(), None);
}

#[test]
fn keeps_a_secret_written_by_the_administrator() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
    let path = tmp.path().join("api_token");
    std::fs::write(&path, "chosen-by-admin\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let values = store.ensure(&[spec("api_token", 10)]).unwrap();
    assert_eq!(values["api_token"], "chosen-by-admin");
}

#[test]
fn refuses_readable_or_empty_secret_files_without_showing_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
    let path = tmp.path().join("db_password");
    std::fs::write(&path, "hunter2-do-not-print").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let err = store.ensure(&[spec("db_password", 10)]).unwrap_err();
    assert!(
        matches!(err, HostError::SecretExposed { mode: 0o640, .. }),
        "{err}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("chmod 600"), "{shown}");
    // Nothing was regenerated.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "hunter2-do-not-print"
    );

    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = store.ensure(&[spec("db_password", 10)]).unwrap_err();
    assert!(matches!(err, HostError::SecretEmpty { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
}

#[test]
fn tightens_a_loose_store_directory_and_refuses_bad_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = SecretStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for bad in ["../escape", "", ".hidden"] {
        let err = store.ensure(&[spec(bad, 8)]).unwrap_err();
        assert!(
            matches!(err, HostError::InvalidSecretSpec { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn secret_files_belong_to_their_owner_as_root() {
    use std::os::unix::fs::MetadataExt;
    if !berth_host::users::is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = SecretStore::open(tmp.path()).unwrap();
    let mut owned = spec("worker_key", 16);
    owned.owner = Some("nobody".to_owned());
    let value = store.ensure(&[owned.clone()]).unwrap()["worker_key"].clone();
    let ids = berth_host::users::lookup("nobody").unwrap();
    let path = tmp.path().join("worker_key");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), ids);

    // An existing secret handed to root is given back to its owner, unchanged.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    assert_eq!(store.ensure(&[owned]).unwrap()["worker_key"], value);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), ids);
}
