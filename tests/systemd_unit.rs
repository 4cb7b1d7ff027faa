//! Where systemd is PID 1, `berth up` runs the supervisor as a systemd unit.
//!
//! systemd cannot run as PID 1 on the machines these tests run on, so a stand-in
//! `systemctl` plays its part: it records its arguments and, on `enable --now`,
//! starts the unit's `ExecStart=` line in the background as systemd would. The unit
//! file, the `systemctl` calls and the supervisor started from the unit's command
//! line are real.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use berth_lifecycle::systemd::Systemd;
use berth_render::Paths;
use berth_supervisor_protocol::Request;
use berth_tests::{berth_bin, prefix_dir};

#[test]
fn the_unit_is_written_enabled_and_runs_the_supervisor() {
    let dir = prefix_dir("systemd");
    let unit_dir = dir.path().join("units");
    std::fs::create_dir(&unit_dir).unwrap();
    let calls = dir.path().join("systemctl.calls");
    let systemctl = dir.path().join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\n\
             # Stand-in for systemctl (see the module comment).\n\
             echo \"$*\" >> '{calls}'\n\
             if [ \"$1\" = enable ] && [ \"$2\" = --now ]; then\n\
               cmd=$(sed -n 's/^ExecStart=//p' '{units}'/\"$3\")\n\
               setsid sh -c \"exec $cmd\" </dev/null >>'{calls}.out' 2>&1 &\n\
             fi\n",
            calls = calls.display(),
            units = unit_dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let prefix = dir.path().join("prefix");
    let paths = Paths::for_prefix(&prefix, "1.0.0");
    for d in [&paths.state, &paths.run, &paths.log] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(paths.supervision_plan(), r#"{"services": [], "jobs": []}"#).unwrap();

    let systemd = Systemd {
        unit_dir: unit_dir.clone(),
        systemctl,
    };
    let bin = berth_bin();
    let started = systemd.install_and_start("demo", &paths, &bin);
    let stop = || {
        let _ = berth_lifecycle::supervisor::request(&paths, &Request::Shutdown);
        let t = Instant::now();
        while berth_lifecycle::supervisor::is_running(&paths)
            && t.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if let Err(e) = &started {
        stop();
        panic!(
            "{e}: {}",
            std::fs::read_to_string(format!("{}.out", calls.display())).unwrap_or_default()
        );
    }
    assert!(berth_lifecycle::supervisor::is_running(&paths));

    let unit = std::fs::read_to_string(unit_dir.join("berth-demo.service")).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={} --prefix {} supervise --autostart\n",
            bin.display(),
            prefix.display()
        )),
        "{unit}"
    );
    assert!(unit.contains("KillMode=mixed"));
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable --now berth-demo.service\n"
    );

    // Without the marker a successful `up` leaves, the boot-time supervisor starts nothing.
    assert!(!paths.autostart_marker().exists());

    // Unchanged unit: no daemon-reload the second time.
    stop();
    systemd.install_and_start("demo", &paths, &bin).unwrap();
    stop();
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "daemon-reload\nenable --now berth-demo.service\nenable --now berth-demo.service\n"
    );
}
