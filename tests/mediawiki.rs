//! The second reference app end to end: `berth up` with the MediaWiki manifest from
//! `examples/mediawiki` gives a working wiki — PHP-FPM and a job runner on Debian's
//! `mediawiki` package, PostgreSQL, nginx in front — and every lifecycle step works on
//! it as on NetBox: an API login and edit, an upload nginx serves, a no-op
//! `reconfigure`, one setting that reloads only what reads it, kill -9 of each PHP
//! service, and a backup restored into a new prefix with the same pages, the same
//! files and the same admin password.
//!
//! berth installs the PHP packages itself (they are the component's `packages`), so
//! on a machine without them this test needs the package archive.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::{Berth, prefix_dir, root, snapshot_tree};

const PORT: u16 = 38081;

const SITE: &str = "external_url = \"http://127.0.0.1:38081/\"\n\
    [postgresql]\nport = 35434\n[fpm]\nport = 39081\nmax_children = 3\n";

struct Down<'a>(&'a Berth);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// `curl` against the wiki with a cookie jar, as a browser or bot would talk to it:
/// (HTTP status, body).
struct Client {
    jar: std::path::PathBuf,
}

impl Client {
    fn new(dir: &Path) -> Self {
        Self {
            jar: dir.join("cookies.txt"),
        }
    }

    fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "120", "-b"])
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("http://127.0.0.1:{PORT}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// The bytes at `path` (an uploaded file), or the status when it is not 200.
    fn download(&self, path: &str) -> Result<Vec<u8>, u16> {
        let (code, _) = self.curl(path, &["-o", "/dev/null"]);
        if code != 200 {
            return Err(code);
        }
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "120"])
            .arg(format!("http://127.0.0.1:{PORT}{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
        Ok(out.stdout)
    }

    fn api(&self, query: &str, form: &[&str]) -> serde_json::Value {
        let mut args = Vec::new();
        for f in form {
            args.extend(["--data-urlencode", f]);
        }
        let (code, body) = self.curl(&format!("/api.php?format=json&{query}"), &args);
        assert_eq!(code, 200, "{query}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
        assert!(v.get("error").is_none(), "{query}: {v:#}");
        v
    }

    fn token(&self, kind: &str) -> String {
        let v = self.api(&format!("action=query&meta=tokens&type={kind}"), &[]);
        v["query"]["tokens"][format!("{kind}token")]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs in through the API (`clientlogin`, MediaWiki's login for real accounts).
    fn login(&self, user: &str, password: &str) {
        let token = self.token("login");
        let v = self.api(
            "action=clientlogin",
            &[
                &format!("username={user}"),
                &format!("password={password}"),
                &format!("loginreturnurl=http://127.0.0.1:{PORT}/"),
                &format!("logintoken={token}"),
            ],
        );
        assert_eq!(v["clientlogin"]["status"], "PASS", "{v:#}");
    }

    fn edit(&self, title: &str, text: &str) {
        let token = self.token("csrf");
        let v = self.api(
            "action=edit",
            &[
                &format!("title={title}"),
                &format!("text={text}"),
                &format!("token={token}"),
            ],
        );
        assert_eq!(v["edit"]["result"], "Success", "{v:#}");
    }

    fn upload(&self, name: &str, file: &Path) {
        let token = self.token("csrf");
        let (code, body) = self.curl(
            "/api.php?format=json",
            &[
                "-F",
                "action=upload",
                "-F",
                &format!("filename={name}"),
                "-F",
                "ignorewarnings=1",
                "-F",
                &format!("token={token}"),
                "-F",
                &format!("file=@{};type=image/png", file.display()),
            ],
        );
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["upload"]["result"], "Success", "{v:#}");
    }

    /// The current wikitext of `title`, read without logging in.
    fn page(&self, title: &str) -> Option<String> {
        let v = self.api(
            &format!(
                "action=query&prop=revisions&rvprop=content&rvslots=main&formatversion=2&titles={title}"
            ),
            &[],
        );
        v["query"]["pages"][0]["revisions"][0]["slots"]["main"]["content"]
            .as_str()
            .map(str::to_owned)
    }

    fn sitename(&self) -> String {
        let v = self.api("action=query&meta=siteinfo", &[]);
        v["query"]["general"]["sitename"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The URL nginx serves an uploaded file at.
    fn file_url(&self, name: &str) -> String {
        let v = self.api(
            &format!(
                "action=query&prop=imageinfo&iiprop=url|sha1&formatversion=2&titles=File:{name}"
            ),
            &[],
        );
        let url = v["query"]["pages"][0]["imageinfo"][0]["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no file {name}: {v:#}"));
        url.strip_prefix(&format!("http://127.0.0.1:{PORT}"))
            .unwrap_or(url)
            .to_owned()
    }
}

/// A small valid PNG, made with the standard library.
const MAKE_PNG: &str = "\
import struct, sys, zlib
w = h = 32
raw = b''.join(b'\\x00' + bytes((x * 7 + y * 3) % 256 for x in range(w * 3)) for y in range(h))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
png = b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
png += chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
";

fn hook_runs(b: &Berth, hook: &str) -> usize {
    let log =
        std::fs::read_to_string(b.prefix.join(format!("log/hooks/{hook}.log"))).unwrap_or_default();
    log.matches(&format!("--- berth: running hook `{hook}`"))
        .count()
}

#[test]
fn mediawiki_comes_up_on_php_fpm_and_survives_every_lifecycle_step() {
    let dir = prefix_dir("mediawiki");
    let scratch = prefix_dir("mediawiki-scratch");
    let b = Berth::new(dir.path(), &root().join("examples/mediawiki"));
    b.write_site(SITE);
    let _down = Down(&b);
    let up = b.run(&["up"]).expect(0);
    assert!(
        up.stdout.contains(&format!("http://127.0.0.1:{PORT}/")),
        "{}",
        up.stdout
    );
    let pw_file = dir.path().join("secrets/admin_password");
    assert!(
        up.stdout.contains(&pw_file.display().to_string()),
        "{}",
        up.stdout
    );
    let password = std::fs::read_to_string(&pw_file).unwrap().trim().to_owned();
    assert!(!up.stdout.contains(&password) && !up.stderr.contains(&password));
    // Nothing of the instance lands in the package's own configuration places.
    assert!(!Path::new("/etc/mediawiki/LocalSettings.php").exists());

    // Pages through PHP-FPM, and a static file nginx serves itself.
    let web = Client::new(scratch.path());
    let (code, body) = web.curl("/index.php?title=Main_Page", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("MediaWiki has been installed"),
        "not the wiki's main page"
    );
    let (code, _) = web.curl("/resources/assets/change-your-logo.svg", &[]);
    assert_eq!(code, 200, "static files are not served");
    // Neither the code tree's internals nor PHP outside the entry points.
    let (code, _) = web.curl("/maintenance/update.php", &[]);
    assert_eq!(code, 403);
    assert_eq!(web.sitename(), "Berth Wiki");

    // The administrator logs in with the generated password, edits and uploads.
    web.login("Admin", &password);
    web.edit(
        "Berth_Test_Page",
        "Written by the end-to-end test. [[Category:Berth]]",
    );
    assert_eq!(
        web.page("Berth_Test_Page").as_deref(),
        Some("Written by the end-to-end test. [[Category:Berth]]")
    );
    let png = scratch.path().join("diagram.png");
    assert!(
        Command::new("python3")
            .args(["-c", MAKE_PNG])
            .arg(&png)
            .status()
            .unwrap()
            .success()
    );
    web.upload("Berth_Diagram.png", &png);
    // nginx serves the upload as it was sent.
    assert_eq!(
        web.download(&web.file_url("Berth_Diagram.png")),
        Ok(std::fs::read(&png).unwrap())
    );

    // The job runner is supervised and empties the queue the edit filled.
    jobs_drain(&b);

    // A second reconfigure changes nothing and restarts nothing; schema upgrades ran
    // once, and follow the package, not the run.
    let pids = b.pids();
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("Nothing changed"), "{}", r.stdout);
    assert_eq!(b.pids(), pids);
    assert_eq!(hook_runs(&b, "install"), 1);
    assert_eq!(hook_runs(&b, "update"), 1);

    one_setting_reloads_php_fpm(&b, &web);
    killed_services_come_back(&b, &web);
    b.assert_secrets_private_and_unshown(4, &[&["config", "show"], &["plan"], &["history"]]);
    assert_eq!(
        hook_runs(&b, "update"),
        1,
        "update.php ran again without a package change"
    );

    backup_destroy_restore(&b, &web, &password, scratch.path());
}

fn jobs_drain(b: &Berth) {
    let start = Instant::now();
    loop {
        let out = berth_tests::run_as_service(
            &b.prefix,
            "jobrunner",
            &[
                "/usr/bin/php8.2",
                "/usr/share/mediawiki/maintenance/showJobs.php",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if text.trim() == "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "the job runner left {} job(s) queued",
            text.trim()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The wiki's name is in LocalSettings.php, which PHP reads on every request: PHP-FPM
/// is reloaded (same master), the job runner restarted, nothing else touched.
fn one_setting_reloads_php_fpm(b: &Berth, web: &Client) {
    let before = b.pids();
    b.write_site(&format!(
        "{SITE}[wiki]\nname = \"Berth's \\\"Wiki\\\" $wgSitename {{}}\"\n"
    ));
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("LocalSettings.php"), "{}", r.stdout);
    let after = b.pids();
    assert_ne!(
        after["jobrunner"], before["jobrunner"],
        "jobrunner was not restarted"
    );
    for svc in ["php-fpm", "postgresql", "nginx"] {
        assert_eq!(after[svc], before[svc], "{svc} was restarted");
    }
    // A value with quotes, `$` and braces is one PHP string, read back as written.
    assert_eq!(web.sitename(), "Berth's \"Wiki\" $wgSitename {}");

    // PHP-FPM's own file restarts it, and only it.
    let before = b.pids();
    b.write_site(&SITE.replace("max_children = 3", "max_children = 4"));
    let r = b.run(&["reconfigure"]).expect(0);
    assert!(r.stdout.contains("php-fpm.conf"), "{}", r.stdout);
    let after = b.pids();
    assert_ne!(
        after["php-fpm"], before["php-fpm"],
        "php-fpm was not restarted"
    );
    for svc in ["postgresql", "nginx"] {
        assert_eq!(after[svc], before[svc], "{svc} was restarted");
    }
    assert_eq!(web.sitename(), "Berth Wiki");
    b.wait_all_ready(Duration::from_mins(1));
}

/// kill -9 of PHP-FPM's master (its workers still hold the port) and of the job
/// runner: each comes back, ready, and the wiki answers.
fn killed_services_come_back(b: &Berth, web: &Client) {
    for svc in ["php-fpm", "jobrunner"] {
        let before = b.pids();
        let old = before[svc];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(old).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let start = Instant::now();
        while b.pids().get(svc).is_none_or(|p| *p == old) {
            assert!(
                start.elapsed() < Duration::from_mins(1),
                "{svc} not restarted"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        b.wait_all_ready(Duration::from_mins(2));
        let after = b.pids();
        for (other, pid) in &before {
            if other != svc {
                assert_eq!(after[other], *pid, "{other} was restarted");
            }
        }
        let (code, body) = web.curl("/index.php?title=Berth_Test_Page", &[]);
        assert_eq!(code, 200, "{body}");
    }
}

fn backup_destroy_restore(b: &Berth, web: &Client, password: &str, scratch: &Path) {
    for i in 0..3 {
        web.edit(
            &format!("Backup_Page_{i}"),
            &format!("Page {i} before the backup."),
        );
    }
    let images = b.prefix.join("data/mediawiki/images");
    let before_images = snapshot_tree(&images);
    assert!(
        before_images
            .keys()
            .any(|p| p.to_string_lossy().ends_with("Berth_Diagram.png")),
        "no upload under {}: {before_images:?}",
        images.display()
    );
    let file_url = web.file_url("Berth_Diagram.png");
    let file = web.download(&file_url).unwrap();

    let key = scratch.join("backup.key");
    b.run(&["backup", "key", "--export", key.to_str().unwrap()])
        .expect(0);
    let r = b.run(&["backup", "create", "--json"]).expect(0);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let name = report["backup"]["archive"].as_str().unwrap().to_owned();
    assert_eq!(
        report["backup"]["quiesced"],
        serde_json::json!(["php-fpm", "jobrunner"])
    );
    let archive = scratch.join(&name);
    std::fs::copy(b.prefix.join("backups").join(&name), &archive).unwrap();

    // The instance is destroyed.
    b.run(&["down"]).expect(0);
    std::fs::remove_dir_all(&b.prefix).unwrap();
    assert!(berth_tests::http_request("GET", PORT, "/", &[], None).is_err());

    // Restored into a new prefix, as on a new machine.
    let dir2 = prefix_dir("mediawiki-restored");
    let b2 = Berth::new(dir2.path(), &root().join("examples/mediawiki"));
    let _down = Down(&b2);
    let r = b2
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .expect(0);
    assert!(r.stdout.contains("Restored mediawiki 1.39"), "{}", r.stdout);
    b2.wait_all_ready(Duration::from_mins(2));
    // Restored, not installed again: a new prefix runs the `once` hooks it has no
    // record of, and `install` finds the restored schema and does nothing.
    let install_log =
        std::fs::read_to_string(dir2.path().join("log/hooks/install.log")).unwrap_or_default();
    assert!(!install_log.contains("Creating tables"), "{install_log}");
    // The pages, the upload and the old password are back.
    let web2 = Client::new(dir2.path());
    for i in 0..3 {
        assert_eq!(
            web2.page(&format!("Backup_Page_{i}")).as_deref(),
            Some(format!("Page {i} before the backup.").as_str())
        );
    }
    assert_eq!(
        web2.page("Berth_Test_Page").as_deref(),
        Some("Written by the end-to-end test. [[Category:Berth]]")
    );
    assert_eq!(
        snapshot_tree(&dir2.path().join("data/mediawiki/images")),
        before_images
    );
    assert_eq!(web2.download(&file_url), Ok(file));
    web2.login("Admin", password);
    web2.edit("After_Restore", "The restored wiki takes edits.");
}
