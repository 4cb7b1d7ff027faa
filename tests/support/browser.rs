//! Headless Chromium for the browser tests: Debian's chromium and chromedriver, driven
//! by Selenium from the test tools' virtualenv (`tests/browser/*.py`).
#![allow(clippy::print_stderr)] // a skipped test says why; a browser run shows its transcript

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{is_root, root};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The test tools' Python with Selenium, or why there is none.
pub fn selenium_python() -> Result<PathBuf, String> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            return Err(format!(
                "{tool} is missing (Debian packages chromium and chromium-driver; scripts/test.sh installs them)"
            ));
        }
    }
    let bin = std::env::var_os("BERTH_TEST_TOOLS")
        .ok_or("BERTH_TEST_TOOLS is not set (scripts/test.sh sets it to the test tools' bin/)")?;
    let python = PathBuf::from(bin).join("python");
    let selenium = Command::new(&python)
        .args(["-c", "import selenium"])
        .output()
        .map_err(|e| format!("{} cannot be run: {e}", python.display()))?;
    if !selenium.status.success() {
        return Err(format!(
            "{} has no selenium (scripts/test.sh installs it): {}",
            python.display(),
            String::from_utf8_lossy(&selenium.stderr).trim()
        ));
    }
    Ok(python)
}

/// The Python to drive the browser with, or `None` when the test is skipped (it said
/// why): not root, or a tool missing outside CI (under `CI=true` that fails).
pub fn browser_python() -> Option<PathBuf> {
    if !is_root() {
        eprintln!("skipped: `up` makes service users (root only)");
        return None;
    }
    match selenium_python() {
        Ok(python) => Some(python),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must run the browser test: {why}")
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// `dir`, made, without the last run's pictures and pages.
pub fn fresh_shots(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png" || e == "html") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    dir.to_path_buf()
}

/// Runs `python -B tests/browser/<script>` with the arguments `args` gives it (its
/// output into `shots/driver.log`) for at most `within`, shows its transcript, and
/// fails the test unless it exited 0.
pub fn drive(
    python: &Path,
    script: &str,
    shots: &Path,
    within: Duration,
    args: impl FnOnce(&mut Command) -> &mut Command,
) {
    let driver_log = shots.join("driver.log");
    let out = File::create(&driver_log).unwrap();
    let started = Instant::now();
    // -B: no __pycache__ in the source tree.
    let mut cmd = Command::new(python);
    cmd.arg("-B").arg(root().join("tests/browser").join(script));
    let mut driver = args(&mut cmd)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let ok = wait_or_kill(&mut driver, within);
    let transcript = std::fs::read_to_string(&driver_log).unwrap_or_default();
    eprintln!(
        "{transcript}(browser run: {:.1} s; screenshots and logs in {})",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        ok,
        "the browser run failed (see above, and {}):\n{transcript}",
        shots.display()
    );
}

/// Every screenshot in `names` is a PNG of the browser's window (1280x900).
pub fn assert_shots(shots: &Path, names: &[&str]) {
    for name in names {
        let path = shots.join(format!("{name}.png"));
        let (width, height) = png_size(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            width >= 800 && height >= 600,
            "{}: {width}x{height}",
            path.display()
        );
    }
}

/// Width and height of a PNG file, or why it is not one.
pub fn png_size(path: &Path) -> Result<(u32, u32), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 33 || !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || &bytes[12..16] != b"IHDR" {
        return Err(format!(
            "{} is not a PNG ({} bytes)",
            path.display(),
            bytes.len()
        ));
    }
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Ok((be(16), be(20)))
}

/// Waits for `child` until `within`, killing it past that; whether it exited 0.
pub fn wait_or_kill(child: &mut Child, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser run did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
