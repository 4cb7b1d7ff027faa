"""`berth console`'s first-run setup, backups and live pages in headless Chromium.

    setup_flow.py --url http://127.0.0.1:PORT --password-file FILE --shots DIR \\
        --prefix DIR --site-config FILE --external-url http://127.0.0.1:PORT/ \\
        --services app,postgresql,redis,nginx --name browser-admin

The console runs on an instance without a site config. Steps, in order (each page it
reaches is saved as DIR/NN-<name>.png):
  1. sign-in with a name: the console sends to the setup form;
  2. a refused answer (an ftp:// external URL): the model's message next to the field,
     and nothing written under the prefix (the same tree before and after);
  3. the right URL and shared users (per-instance ones would stay on this machine):
     the review shows the site config and the plan; "apply" leads to the task page,
     which follows `berth up` live, without a reload, until it succeeded; the app then
     answers on its external URL;
  4. the status page lists every service; "Back up now" as a task, the archive in the
     backups table, its Verify as a task;
  5. the history names the console session (`console: NAME (session …`) for the up
     and the backup;
  6. nginx's log followed: a request to the app shows up in the open page;
  7. the upgrades page (no upgrade.source) and the tasks page.

Stops at the first failure, saying what failed (and saving failed-<step>.png and
.html beside the screenshots); exit status 0 only when every step held.
"""

import argparse
import hashlib
import os
import stat
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from selenium.webdriver.support.ui import Select

from browser import Browser, check, run_steps

BAD_URL = "ftp://127.0.0.1/"
UP_WITHIN = 600.0
TASK_WITHIN = 300.0
READY_WITHIN = 60.0
LOG_WITHIN = 30.0


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (itself included) with its kind, owner, mode and
    content (a file's SHA-256, a symlink's target): equal snapshots mean nothing
    changed there."""
    out: dict[str, str] = {}

    def describe(path: Path) -> str:
        st = os.lstat(path)
        owner = f"{st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):o}"
        if stat.S_ISDIR(st.st_mode):
            return f"dir {owner}"
        if stat.S_ISLNK(st.st_mode):
            return f"symlink {owner} -> {os.readlink(path)}"
        if stat.S_ISREG(st.st_mode):
            return f"file {owner} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        return f"other {owner}"

    out["."] = describe(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = describe(path)
    return out


# Straight to the app: no proxy the environment may name.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str) -> int:
    """The status of a GET of `url` (an error status too)."""
    try:
        with DIRECT.open(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


class Flow:
    def __init__(self, browser: Browser, args: argparse.Namespace, password: str):
        self.b = browser
        self.url = args.url.rstrip("/")
        self.password = password
        self.prefix = args.prefix
        self.site_config = args.site_config
        self.external = args.external_url
        self.services = [s for s in args.services.split(",") if s]
        self.name = args.name
        self.archive = ""
        self.tasks: list[str] = []
        self.up_within = args.up_within
        self.health_path = args.health_path
        self.task_output = args.task_output

    def look(self, name: str) -> None:
        """Screenshot of the page, which never shows the password."""
        self.b.shot(name)
        check(self.password not in self.b.driver.page_source, f"the page {name} shows the password")

    def h1(self) -> str:
        return self.b.text("h1")

    def type_into(self, css: str, text: str) -> None:
        field = self.b.find(css)
        field.clear()
        field.send_keys(text)

    def nav(self, link: str, path: str):
        """Follow the navigation link `#nav-<link>` to `path`."""
        page = self.b.click(self.b.find(f"#nav-{link}"))
        check(page.status == 200 and page.path == path, f"{link} led to {page.url} ({page.status})")
        return page

    def mark(self) -> None:
        """A mark on this page: still there later means the page was never reloaded."""
        self.b.driver.execute_script("window.berthTestMark = 'not reloaded';")

    def check_mark(self, what: str) -> None:
        mark = self.b.driver.execute_script("return window.berthTestMark;")
        check(mark == "not reloaded", f"{what}: the page was reloaded, it did not follow by itself")

    def follow_task(self, title: str, shot: str, within: float) -> None:
        """On a task page just reached: wait, without a reload, until the page says the
        task succeeded."""
        check(self.b.find_all("#task-result"), f"not on a task page: {self.b.driver.current_url}")
        check(self.h1() == title, f"the task page's title is {self.h1()!r}, not {title!r}")
        check(self.name in self.b.text("main"), f"the task page does not name {self.name}")
        self.mark()
        started = time.monotonic()
        print(f"  {title}: {self.b.driver.current_url}, {self.b.text('#task-result')!r} at first")
        result = self.b.wait_until(
            f"{title!r} ending on its open page",
            lambda: (r := self.b.text("#task-result").strip()) not in ("", "running") and r,
            timeout=within,
            poll=1.0,
        )
        output = self.b.text("#task-output")
        check(
            result == "succeeded",
            f"{title!r} ended {result!r}; its output ends:\n" + "\n".join(output.splitlines()[-30:]),
        )
        self.check_mark(title)
        check(output.strip() != "", f"{title!r} succeeded with no output on its page")
        print(f"  {title}: succeeded, seen on the open page after {time.monotonic() - started:.1f} s")
        self.tasks.append(title)
        self.look(shot)

    # The steps.

    def sign_in(self) -> None:
        page = self.b.open(self.url + "/")
        check(page.path == "/login", f"not signed in, / should send to /login, not {page.url}")
        check(self.b.find_all("#name"), "the sign-in page has no name field")
        self.type_into("#password", self.password)
        self.type_into("#name", self.name)
        self.look("sign-in")
        page = self.b.click(self.b.find("#signin"))
        check(page.status == 200 and page.path == "/setup", f"signing in led to {page.url} ({page.status}), not /setup")
        check(self.h1() == "First-run setup", f"the setup page's title is {self.h1()!r}")
        links = [a.get_attribute("id") for a in self.b.find_all("nav a")]
        check(links == ["nav-setup", "nav-tasks"], f"without a site config the navigation is {links}")
        check(not self.site_config.exists(), f"{self.site_config} exists before setup")
        check(
            str(self.site_config) in self.b.text("main"),
            f"the setup page does not say it makes {self.site_config}",
        )
        for field in ["external_url", "users", "backup-target"]:
            check(self.b.find_all(f"#f-{field}"), f"the setup form has no #f-{field}")
        self.look("setup-form")

    def refused(self) -> None:
        before = snapshot(self.prefix)
        self.type_into("#f-external_url", BAD_URL)
        Select(self.b.find("#f-users")).select_by_value("shared")
        page = self.b.click(self.b.find("#setup-check"))
        check(page.status == 422, f"a refused answer answered {page.status}, not 422")
        check(page.path == "/setup", f"a refused answer led to {page.url}")
        check(self.b.find_all("#invalid"), "the page does not say some answers are refused")
        errors = self.b.find_all("#error-external_url")
        check(errors, "no message next to the external URL")
        message = errors[0].text.strip()
        check(message != "", "the message next to the external URL is empty")
        print(f"  the message next to the field: {message!r}")
        check(
            "invalid" in self.b.find("#field-external_url").get_attribute("class"),
            "the external URL's field is not marked invalid",
        )
        others = [e.get_attribute("id") for e in self.b.find_all("p.error[id^=error-]")]
        check(others == ["error-external_url"], f"messages at other fields too: {others}")
        shown = self.b.find("#f-external_url").get_attribute("value")
        check(shown == BAD_URL, f"the form shows {shown!r}, not the answer given")
        check(not self.site_config.exists(), f"a refused answer wrote {self.site_config}")
        after = snapshot(self.prefix)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        check(not changed, f"a refused answer changed the prefix: {changed}")
        self.look("setup-refused")

    def setup(self) -> None:
        users = Select(self.b.find("#f-users"))
        check(
            users.first_selected_option.get_attribute("value") == "shared",
            "the refused form forgot the users answer",
        )
        self.type_into("#f-external_url", self.external)
        users.select_by_value("shared")
        self.look("setup-answered")
        page = self.b.click(self.b.find("#setup-check"))
        check(page.status == 200 and page.path == "/setup", f"valid answers led to {page.url} ({page.status})")
        check(self.h1() == "First-run setup: review", f"the review page's title is {self.h1()!r}")
        site = self.b.text("#site")
        for line in [f'external_url = "{self.external}"', 'users = "shared"']:
            check(line in site, f"the site config shown lacks {line!r}:\n{site}")
        plan = self.b.text("#plan")
        check(plan.strip() != "" and not plan.startswith("(the plan cannot be shown"), f"the plan: {plan!r}")
        print(f"  the plan: {len(plan.splitlines())} lines, the site config: {len(site.splitlines())}")
        check(not self.site_config.exists(), f"the review wrote {self.site_config}")
        self.look("setup-review")

        page = self.b.click(self.b.find("#apply"))
        check(page.status == 200 and page.path.startswith("/tasks/"), f"apply led to {page.url} ({page.status})")
        check(self.site_config.exists(), f"apply did not write {self.site_config}")
        self.look("task-up-started")
        self.follow_task("First up", "task-up-succeeded", self.up_within)
        if self.task_output:
            self.task_output.write_text(self.b.text("#task-output"))
        health = self.external.rstrip("/") + self.health_path
        status = http_status(health)
        check(status == 200, f"GET {health} answered {status}")
        print(f"  GET {health}: {status}")

    def status_and_backups(self) -> None:
        page = self.b.open(self.url + "/")
        check(page.status == 200 and page.path == "/", f"/ led to {page.url} ({page.status})")
        check(self.h1() == "Status", f"the status page's title is {self.h1()!r}")
        links = [a.get_attribute("id") for a in self.b.find_all("nav a")]
        check("nav-setup" not in links and "nav-backups" in links, f"set up, the navigation is {links}")
        listed = [r.get_attribute("data-service") for r in self.b.find_all("#services tbody tr")]
        for service in self.services:
            check(service in listed, f"the status page does not list {service}: {listed}")

        def states() -> dict[str, str]:
            rows = self.b.find_all("#services tbody tr")
            return {r.get_attribute("data-service"): r.find_element("css selector", ".state").text for r in rows}

        self.b.wait_until(
            f"every service ready on the status page ({states()})",
            lambda: all(states().get(s) == "ready" for s in self.services),
            timeout=READY_WITHIN,
        )
        self.look("status")

        self.nav("backups", "/backups")
        check(self.h1() == "Backups", f"the backups page's title is {self.h1()!r}")
        check(not self.b.find_all("#error"), f"the backups page says {self.b.text('main')!r}")
        check(not self.b.find_all("#archives tbody tr[data-archive]"), "archives before the first backup")
        check("No archives yet." in self.b.text("#archives"), "an empty target does not say so")
        self.look("backups-empty")
        page = self.b.click(self.b.find("#backup-now"))
        check(page.status == 200 and page.path.startswith("/tasks/"), f"Back up now led to {page.url} ({page.status})")
        self.follow_task("Back up now", "task-backup-succeeded", TASK_WITHIN)

        self.nav("backups", "/backups")
        rows = self.b.find_all("#archives tbody tr[data-archive]")
        check(len(rows) == 1, f"{len(rows)} archive row(s) after one backup")
        self.archive = rows[0].get_attribute("data-archive")
        check(self.archive.startswith("ministack-1.0.0-"), f"the archive is named {self.archive!r}")
        print(f"  archive {self.archive}")
        self.look("backups-one")
        button = self.b.find(f'#archives tr[data-archive="{self.archive}"] form.verify button')
        page = self.b.click(button)
        check(page.status == 200 and page.path.startswith("/tasks/"), f"Verify led to {page.url} ({page.status})")
        self.follow_task(f"Verify {self.archive}", "task-verify-succeeded", TASK_WITHIN)

    def history(self) -> None:
        self.nav("history", "/history")
        check(self.h1() == "History", f"the history page's title is {self.h1()!r}")
        rows = [
            (r.find_element("css selector", "td.kind").text, r.find_element("css selector", "td.actor").text)
            for r in self.b.find_all("#history tbody tr")
        ]
        expected = f"console: {self.name} (session "
        for kind in ["up", "backup"]:
            actors = [actor for k, actor in rows if k == kind]
            check(actors, f"the history has no {kind}: {rows}")
            check(
                any(a.startswith(expected) and a.endswith("from 127.0.0.1)") for a in actors),
                f"no {kind} by {expected}…: {actors}",
            )
        self.look("history")

    def follow_log(self) -> None:
        page = self.b.open(self.url + "/logs/nginx")
        check(page.status == 200 and page.path == "/logs/nginx", f"the log page led to {page.url} ({page.status})")
        check(self.h1() == "Log of nginx", f"the log page's title is {self.h1()!r}")
        canary = f"browser-follow-{uuid.uuid4().hex}"
        check(canary not in self.b.text("#log"), "the canary is in the log already")
        self.mark()
        self.b.find("#follow").click()
        self.b.wait_until(
            "the log page saying it follows",
            lambda: self.b.text("#follow-state") == "following",
            timeout=10,
        )
        check(self.b.text("#follow") == "Stop following", f"the button says {self.b.text('#follow')!r}")
        # A request every few seconds until one shows: the follower may start at the
        # end of the file a moment after the stream opened.
        url = f"{self.external.rstrip('/')}{self.health_path}?{canary}"
        sent = 0
        started = time.monotonic()
        end = started + LOG_WITHIN
        while canary not in self.b.text("#log"):
            check(time.monotonic() < end, f"{sent} request(s) to {url} not in the followed log within {LOG_WITHIN:.0f} s")
            if sent == 0 or time.monotonic() - started > 5 * sent:
                status = http_status(url)
                check(status == 200, f"GET {url} answered {status}")
                sent += 1
            time.sleep(0.25)
        self.check_mark("the followed log")
        lines = [line for line in self.b.text("#log").splitlines() if canary in line]
        print(f"  seen in the followed log after {time.monotonic() - started:.1f} s ({sent} request(s)): {lines[0][:160]}")
        self.look("log-nginx-followed")

    def upgrades_and_tasks(self) -> None:
        self.nav("upgrades", "/upgrades")
        check(self.h1() == "Upgrades", f"the upgrades page's title is {self.h1()!r}")
        check(not self.b.find_all("#error"), f"the upgrades page says {self.b.text('main')!r}")
        check(self.b.find_all("#no-source"), "the upgrades page does not say upgrade.source is unset")
        check(self.b.text("#current") == "1.0.0", f"the running version shown is {self.b.text('#current')!r}")
        self.look("upgrades")

        self.nav("tasks", "/tasks")
        check(self.h1() == "Tasks", f"the tasks page's title is {self.h1()!r}")
        rows = [[td.text for td in r.find_elements("css selector", "td")] for r in self.b.find_all("#tasks tbody tr")]
        titles = [r[0] for r in rows]
        check(titles == list(reversed(self.tasks)), f"the tasks listed are {titles}, not {list(reversed(self.tasks))}")
        for title, _started, actor, result in rows:
            check(actor.startswith(f"console: {self.name} (session "), f"{title} is by {actor!r}")
            check(result == "succeeded", f"{title}: {result!r}")
        self.look("tasks")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the console, e.g. http://127.0.0.1:49390")
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--shots", required=True, type=Path, help="directory for the screenshots")
    parser.add_argument("--prefix", required=True, type=Path, help="the instance's prefix")
    parser.add_argument("--site-config", required=True, type=Path, help="where setup writes the site config")
    parser.add_argument("--external-url", required=True, help="the app's external URL to set up")
    parser.add_argument("--services", required=True, help="every service of the app, comma-separated")
    parser.add_argument("--name", required=True, help="the name to sign in with")
    parser.add_argument("--steps", default="", help="only these steps, comma-separated (default: all)")
    parser.add_argument("--up-within", type=float, default=UP_WITHIN, help="seconds the first up may take")
    parser.add_argument("--health-path", default="/health", help="a path of the app that answers 200 once it is up")
    parser.add_argument("--task-output", type=Path, help="write the first up's output, as its page shows it, here")
    args = parser.parse_args()
    check(urlsplit(args.external_url).scheme == "http", f"--external-url {args.external_url} is not http://")

    password = args.password_file.read_text().strip()
    check(password != "", f"{args.password_file} is empty")

    started = time.monotonic()
    with Browser(args.shots, timeout=60.0) as b:
        print(f"Chromium {b.version}, headless; screenshots in {args.shots}")
        flow = Flow(b, args, password)
        steps = [
            ("sign-in", flow.sign_in),
            ("refused", flow.refused),
            ("setup", flow.setup),
            ("status-and-backups", flow.status_and_backups),
            ("history", flow.history),
            ("follow-log", flow.follow_log),
            ("upgrades-and-tasks", flow.upgrades_and_tasks),
        ]
        if args.steps:
            wanted = args.steps.split(",")
            unknown = [w for w in wanted if w not in dict(steps)]
            check(not unknown, f"no such steps: {unknown}")
            steps = [(n, f) for n, f in steps if n in wanted]
        return run_steps(b, steps, started)


if __name__ == "__main__":
    sys.exit(main())
