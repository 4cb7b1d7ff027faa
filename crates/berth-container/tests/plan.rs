//! Which image each service of the example apps gets: its packages, the components it
//! carries, its user, ports and health check (pure: the manifest rendered with the
//! images' prefix).
#![allow(clippy::missing_panics_doc, missing_docs)]

use std::fmt::Write as _;
use std::path::Path;

use berth_container::build::plans;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The plans of the manifest in `dir` (relative to the repository), as text.
fn plans_of(dir: &str, only: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(&repo.join(dir), &tmp.path().join("manifest"));
    let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
    let mut out = String::new();
    for p in plans(tmp.path(), &only, 1_700_000_000).unwrap() {
        let c = &p.config;
        writeln!(
            out,
            "{} ({}): tag {}, name {}\n  components {:?}\n  packages {:?}\n  payload {:?}\n  \
             user {} as {}, data {:?}\n  entrypoint {:?} cmd {:?} workdir {:?}\n  ports {:?}\n  \
             health {:?}\n  env {:?}\n  labels {:?}",
            p.service,
            p.component,
            p.tag,
            p.repo_tag,
            p.components,
            p.packages,
            p.payload,
            p.user,
            c.user,
            p.data_dirs,
            c.entrypoint,
            c.cmd,
            c.working_dir,
            c.exposed_ports,
            c.healthcheck.as_ref().map(|h| (&h.test, h.start_period)),
            c.env,
            c.labels,
        )
        .unwrap();
    }
    out
}

#[test]
fn netbox_images() {
    let text = plans_of("examples/netbox", &[]);
    // The worker's readiness script calls redis-cli: its image has Redis's packages;
    // the web image does not.
    assert!(text.contains("worker (netbox): tag worker-4.7.3"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn ministack_images() {
    insta::assert_snapshot!(plans_of("tests/fixtures/ministack", &["app", "postgresql"]));
}

#[test]
fn an_unknown_service_is_refused_with_the_closest() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(
        &repo.join("tests/fixtures/ministack"),
        &tmp.path().join("manifest"),
    );
    let Err(err) = plans(tmp.path(), &["ap".to_owned()], 0) else {
        panic!("`ap` was taken")
    };
    assert!(
        err.to_string()
            .contains("no service `ap`; did you mean `app`?"),
        "{err}"
    );
}
