//! Encrypting and decrypting a backup's secrets.

mod common;

use std::fs;

use berth_archive::ArchiveError;
use berth_archive::secrets::{
    decrypt_to_dir, encrypt_dir, generate_identity, identity_file_text, parse_identity,
    parse_recipient,
};
use common::{mode_of, write_file};

#[test]
fn round_trip_keeps_names_and_owner_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("secrets");
    write_file(&src.join("django_secret_key"), b"s3cr3t-value", 0o600);
    write_file(&src.join("db_password"), b"hunter2", 0o400);
    write_file(&src.join("shared"), b"group-readable", 0o640);
    write_file(&src.join("tls/key.pem"), b"-----BEGIN-----", 0o600);

    let (identity, recipient) = generate_identity();
    assert!(identity.starts_with("AGE-SECRET-KEY-1"));
    assert!(recipient.starts_with("age1"));
    let blob = encrypt_dir(&src, &recipient).unwrap();
    assert!(blob.starts_with(b"age-encryption.org/v1\n"));
    assert!(!blob.windows(7).any(|w| w == b"hunter2"));

    let identity = parse_identity(&identity).unwrap();
    assert_eq!(identity.recipient(), recipient);
    let dest = tmp.path().join("restored/secrets");
    let files = decrypt_to_dir(&blob, &identity, &dest).unwrap();
    assert_eq!(
        files,
        ["db_password", "django_secret_key", "shared", "tls/key.pem"]
    );
    assert_eq!(mode_of(&dest), 0o700);
    assert_eq!(
        fs::read(dest.join("django_secret_key")).unwrap(),
        b"s3cr3t-value"
    );
    assert_eq!(
        fs::read(dest.join("tls/key.pem")).unwrap(),
        b"-----BEGIN-----"
    );
    assert_eq!(mode_of(&dest.join("django_secret_key")), 0o600);
    assert_eq!(mode_of(&dest.join("db_password")), 0o400);
    // Group and other bits are dropped: secrets stay private to their owner.
    assert_eq!(mode_of(&dest.join("shared")), 0o600);
    assert_eq!(mode_of(&dest.join("tls")), 0o700);

    // Existing files are never replaced.
    let err = decrypt_to_dir(&blob, &identity, &dest).unwrap_err();
    assert!(matches!(err, ArchiveError::Io { .. }), "{err:?}");
    assert_eq!(fs::read(dest.join("db_password")).unwrap(), b"hunter2");
}

#[test]
fn a_different_key_is_a_wrong_key() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("secrets");
    write_file(&src.join("a"), b"value", 0o600);
    let (_, recipient) = generate_identity();
    let blob = encrypt_dir(&src, &recipient).unwrap();

    let (other, other_recipient) = generate_identity();
    let other = parse_identity(&other).unwrap();
    let dest = tmp.path().join("out");
    let err = decrypt_to_dir(&blob, &other, &dest).unwrap_err();
    match &err {
        ArchiveError::WrongKey { recipient } => assert_eq!(recipient, &other_recipient),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "this backup's secrets were encrypted to a different backup key \
             (the key given has recipient {other_recipient})"
        )
    );
    assert!(
        !dest.exists(),
        "nothing is created before the key is known to fit"
    );
}

#[test]
fn damaged_secrets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("secrets");
    write_file(&src.join("a"), &vec![7; 100_000], 0o600);
    let (identity, recipient) = generate_identity();
    let identity = parse_identity(&identity).unwrap();
    let mut blob = encrypt_dir(&src, &recipient).unwrap();
    let last = blob.len() - 10;
    blob[last] ^= 1;
    let err = decrypt_to_dir(&blob, &identity, &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, ArchiveError::Secrets { .. }), "{err:?}");

    let err = decrypt_to_dir(b"not age at all", &identity, &tmp.path().join("out2")).unwrap_err();
    assert!(matches!(err, ArchiveError::Secrets { .. }), "{err:?}");
}

#[test]
fn identity_files_parse_with_comments() {
    let (identity, recipient) = generate_identity();
    let created: jiff::Timestamp = "2025-03-04T05:06:07Z".parse().unwrap();
    let text = identity_file_text(&identity, &recipient, created);
    assert_eq!(
        text,
        format!("# created: 2025-03-04T05:06:07Z\n# public key: {recipient}\n{identity}\n")
    );
    assert_eq!(parse_identity(&text).unwrap().recipient(), recipient);

    // As age-keygen writes it, with blank lines and indentation.
    let keygen = format!(
        "# created: 2025-03-04T06:06:07+01:00\n#   public key: {recipient}\n\n  {identity}  \n\n"
    );
    assert_eq!(parse_identity(&keygen).unwrap().recipient(), recipient);

    // The secret never shows in Debug output or errors.
    let parsed = parse_identity(&text).unwrap();
    assert!(!format!("{parsed:?}").contains(&identity[16..]));
    assert!(format!("{parsed:?}").contains(&recipient));
    let broken = identity.replace('Q', "P").replace('7', "8");
    for bad in [
        String::new(),
        "# only a comment\n".to_owned(),
        format!("{identity}\n{identity}\n"),
        recipient.clone(),
        broken.clone(),
        format!("# public key: age1qqqqqq\n{identity}\n"),
    ] {
        let err = parse_identity(&bad).unwrap_err();
        assert!(matches!(err, ArchiveError::InvalidKey { .. }), "{err:?}");
        let message = err.to_string();
        assert!(!message.contains(&identity[16..]), "{message}");
        assert!(
            !message.contains(&broken[16..]) || broken == identity,
            "{message}"
        );
    }

    let parsed = parse_recipient(&recipient).unwrap();
    assert_eq!(parsed.to_string(), recipient);
    assert!(matches!(
        parse_recipient("age1nope"),
        Err(ArchiveError::InvalidKey { .. })
    ));
    assert!(matches!(
        parse_recipient(&identity),
        Err(ArchiveError::InvalidKey { .. })
    ));
}
