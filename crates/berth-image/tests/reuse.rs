//! A layer known from an earlier build (`Layer::with_known`) is not written again when
//! the layout holds its blob with that digest, and is written from its tree when the
//! blob is missing or not what the record says: the record alone is never trusted.

use std::path::Path;

use berth_image::{ImageConfig, Layer, LayerOptions, write_layout};

const EPOCH: u64 = 1_700_000_000;

fn options() -> LayerOptions {
    LayerOptions {
        source_date_epoch: EPOCH,
        created_by: "berth: test".to_owned(),
        ..LayerOptions::default()
    }
}

fn config() -> ImageConfig {
    let mut c = ImageConfig::new(EPOCH);
    c.entrypoint = vec!["/bin/true".to_owned()];
    c
}

#[test]
fn a_known_layer_is_reused_only_when_its_blob_checks_out() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "hello\n").unwrap();
    let layout = tmp.path().join("layout");
    let first = write_layout(
        &layout,
        &[Layer::from_dir(&tree, options())],
        &config(),
        "a",
    )
    .unwrap();
    let known = first.layers[0].clone();

    // The tree is gone: only the recorded blob can give the layer.
    let gone = tmp.path().join("gone");
    let again = write_layout(
        &layout,
        &[Layer::from_dir(&gone, options()).with_known(known.clone())],
        &config(),
        "b",
    )
    .unwrap();
    assert_eq!(again.manifest_digest, first.manifest_digest);

    // A blob changed behind the record's back (same size) is not reused: the layer is
    // written from its tree, which is gone here, so the build fails.
    let blob = layout
        .join("blobs/sha256")
        .join(known.digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(
        write_layout(
            &layout,
            &[Layer::from_dir(&gone, options()).with_known(known.clone())],
            &config(),
            "c",
        )
        .is_err()
    );
    // With its tree, the layer is written again and the blob is put right.
    std::fs::remove_file(&blob).unwrap();
    let rewritten = write_layout(
        &layout,
        &[Layer::from_dir(&tree, options()).with_known(known.clone())],
        &config(),
        "d",
    )
    .unwrap();
    assert_eq!(rewritten.manifest_digest, first.manifest_digest);
    assert!(Path::new(&blob).exists());

    // A record of another layer (another `created_by`) is not taken for this one.
    let mut other = options();
    other.created_by = "berth: another".to_owned();
    assert!(
        write_layout(
            &layout,
            &[Layer::from_dir(&gone, other).with_known(known)],
            &config(),
            "e",
        )
        .is_err()
    );
}
