//! A profile's memory budget: `berth status` adds up every service's proportional set
//! size and says whether the stack is within the budget of the profile it runs, and
//! counts being over it as ill health (exit status 3).

use std::path::{Path, PathBuf};

use berth_tests::{Berth, fixture, prefix_dir};

/// The small test stack with two profiles: one it fits in, one it cannot.
fn manifest_with_budgets(dir: &Path) -> PathBuf {
    let to = dir.join("manifest");
    std::fs::create_dir_all(to.join("templates")).unwrap();
    let from = fixture("ministack");
    for entry in std::fs::read_dir(from.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("templates").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(from.join("berth.toml")).unwrap();
    std::fs::write(
        to.join("berth.toml"),
        format!(
            "{text}\n[profiles.roomy]\ndescription = \"Plenty\"\nmemory_budget = \"2GiB\"\n\n\
             [profiles.tight]\ndescription = \"Less than a process takes\"\nmemory_budget = \"1MiB\"\nvalues = {{ \"app.threads\" = 2 }}\n"
        ),
    )
    .unwrap();
    to
}

#[test]
fn status_reports_the_stack_against_its_profiles_budget() {
    let dir = prefix_dir("budget");
    let manifest = manifest_with_budgets(dir.path());
    let prefix = dir.path().join("prefix");
    std::fs::create_dir(&prefix).unwrap();
    let b = Berth::new(&prefix, &manifest);
    let site = |profile: &str| {
        format!(
            "profile = \"{profile}\"\nexternal_url = \"http://127.0.0.1:21080/\"\n\
             [postgresql]\nport = 21432\n[redis]\nport = 21379\n[app]\nport = 21001\nspare_port = 21002\n"
        )
    };
    b.write_site(&site("roomy"));
    let r = b.run(&["up"]);
    if r.code != 0 {
        b.run(&["down"]);
    }
    let _down = scopeguard(&b);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let r = b.run(&["status"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("within the `roomy` profile's memory budget of 2 GiB"),
        "{}",
        r.stdout
    );
    let r = b.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let total = v["memory_pss_bytes"].as_u64().unwrap();
    assert!(total > 10 << 20, "the stack takes some memory: {total}");
    assert_eq!(v["memory_budget"]["profile"], "roomy");
    assert_eq!(v["memory_budget"]["bytes"], 2u64 << 30);
    assert_eq!(v["memory_budget"]["within"], true);

    // A budget the stack cannot meet: status says by how much, and is not healthy.
    b.write_site(&site("tight"));
    let r = b.run(&["reconfigure"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = b.run(&["status"]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("OVER the `tight` profile's memory budget of 1 MiB"),
        "{}",
        r.stdout
    );
    let r = b.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["memory_budget"]["within"], false);
}

/// Stops the instance however the test ends.
fn scopeguard(b: &Berth) -> impl Drop + '_ {
    struct Down<'a>(&'a Berth);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            self.0.run(&["down"]);
        }
    }
    Down(b)
}
