//! berth killed by a real SIGKILL at an exact moment (a fault point), then the next
//! command on the small fixture stack: what the killed run left undone is finished.

use std::time::Duration;

use berth_lifecycle::fault;
use berth_tests::{Berth, fixture, http_get, prefix_dir};

const NGINX_PORT: u16 = 33080;

fn site(greeting: &str) -> String {
    format!(
        "external_url = \"http://127.0.0.1:{NGINX_PORT}/\"\n\
         [postgresql]\nport = 33432\n[redis]\nport = 33379\n\
         [app]\nport = 33001\ngreeting = \"{greeting}\"\n"
    )
}

/// What the app answers on `/` (its greeting and pid), through nginx.
fn greeting() -> serde_json::Value {
    let (code, body) = http_get(NGINX_PORT, "/", "127.0.0.1").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Stops the stack and removes its prefix however the test ends.
struct Stack {
    berth: Berth,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.berth.run(&["down"]);
    }
}

/// Stops: a reconfigure killed after writing `app.json` but before restarting the app
/// leaving the app on the old greeting for good: the next reconfigure said "Nothing
/// changed", the dry run "No file changes", and nothing acted on the interrupted run.
#[test]
fn a_reconfigure_killed_between_writing_and_restarting_is_finished_by_the_next() {
    let dir = prefix_dir("crash");
    let s = Stack {
        berth: Berth::new(dir.path(), &fixture("ministack")),
        _dir: dir,
    };
    let berth = &s.berth;
    berth.write_site(&site("hello"));
    berth.run(&["up"]).expect(0);
    let before = berth.pids();
    assert_eq!(greeting()["greeting"], "hello");

    // Killed right after the files and the plan are written.
    berth.write_site(&site("hello again"));
    let killed = berth.run_env(&["reconfigure"], &[(fault::ENV, "change:written")]);
    assert_eq!(
        killed.code, -1,
        "not killed by a signal:\n{}{}",
        killed.stdout, killed.stderr
    );
    let app_json = std::fs::read_to_string(berth.prefix.join("etc/app/app.json")).unwrap();
    assert!(app_json.contains("hello again"), "{app_json}");
    assert_eq!(
        berth.pids(),
        before,
        "something was restarted before the kill"
    );
    assert_eq!(
        greeting()["greeting"],
        "hello",
        "the app still runs the old file"
    );

    // The dry run says what the interrupted run left to do; it changes nothing.
    let plan = berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(plan.stdout.contains("No file changes."), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("was interrupted before it acted on its services"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("  restart: app\n"), "{}", plan.stdout);
    assert_eq!(berth.pids(), before);

    // The next reconfigure finishes it: the app restarts and reads the new file.
    let r = berth.run(&["reconfigure"]).expect(0);
    assert!(
        r.stderr
            .contains("was interrupted before it acted on its services: restarted app"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    berth.wait_all_ready(Duration::from_mins(1));
    let after = berth.pids();
    assert_ne!(after["app"], before["app"], "the app was not restarted");
    for svc in ["postgresql", "redis", "nginx"] {
        assert_eq!(after[svc], before[svc], "{svc} was restarted for nothing");
    }
    let answer = greeting();
    assert_eq!(answer["greeting"], "hello again", "{answer}");
    assert_eq!(answer["pid"].as_u64(), Some(after["app"]));

    // The history shows the restart in the run that did it, and the killed run as
    // interrupted.
    let hist = berth.run(&["history", "--json"]).expect(0);
    let runs: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    let latest = &runs[0];
    assert_eq!(latest["kind"], "reconfigure", "{latest:#}");
    assert_eq!(
        latest["outcome"]["status"]["status"], "succeeded",
        "{latest:#}"
    );
    assert_eq!(
        latest["outcome"]["services_restarted"],
        serde_json::json!(["app"]),
        "{latest:#}"
    );
    assert!(runs[1]["outcome"].is_null(), "{:#}", runs[1]);

    // Finished once: nothing is pending any more, and nothing changes.
    let plan = berth.run(&["reconfigure", "--dry-run"]).expect(0);
    assert!(!plan.stdout.contains("interrupted"), "{}", plan.stdout);
    let r = berth.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(berth.pids(), after);

    // `up` finishes such a run too (here one of its own kind, killed at the same moment).
    berth.write_site(&site("hello from up"));
    let killed = berth.run_env(&["up"], &[(fault::ENV, "change:written")]);
    assert_eq!(killed.code, -1, "{}{}", killed.stdout, killed.stderr);
    assert_eq!(
        berth.pids(),
        after,
        "something was restarted before the kill"
    );
    let r = berth.run(&["up"]).expect(0);
    assert!(
        r.stderr
            .contains("(up) was interrupted before it acted on its services: restarted app"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    berth.wait_all_ready(Duration::from_mins(1));
    let again = berth.pids();
    assert_ne!(again["app"], after["app"], "the app was not restarted");
    assert_eq!(again["postgresql"], after["postgresql"]);
    assert_eq!(greeting()["greeting"], "hello from up");
}
