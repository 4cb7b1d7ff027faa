"""`berth console` in headless Chromium, as an administrator uses it.

    console_flow.py --url http://127.0.0.1:PORT --password-file FILE --shots DIR \\
        --services app,postgresql,redis,nginx --kill app

Steps, in order (each page it reaches is saved as DIR/NN-<name>.png):
  1. sign-in: the sign-in page; a wrong password says "Wrong password."; the right
     one lands on the status page, which lists every service;
  2. live status: the service `--kill` is killed (kill -9 of the pid the page shows)
     and, without a reload, its row's restart count goes up;
  3. the history page, and the log page of that service;
  4. a sign-out form without its CSRF token is refused (403) and the session lives on;
  5. sign-out: the status page then sends to the sign-in page;
  6. lockout: after five wrong passwords the right one is refused too (last: it locks
     sign-in for this console process for 15 minutes).

Stops at the first failure, saying what failed (and saving failed-<step>.png and
.html beside the screenshots); exit status 0 only when every step held.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from browser import Browser, check, run_steps

LOCKOUT_FAILURES = 5
RESTART_WITHIN = 30.0


class Flow:
    def __init__(self, browser: Browser, url: str, password: str, services: list[str]):
        self.b = browser
        self.url = url.rstrip("/")
        self.password = password
        self.services = services

    def look(self, name: str) -> None:
        """Screenshot of the page, which never shows the password."""
        self.b.shot(name)
        check(self.password not in self.b.driver.page_source, f"the page {name} shows the password")

    def sign_in_with(self, password: str):
        """Type `password` into the sign-in form (the browser is on it) and submit."""
        field = self.b.find("#password")
        field.clear()
        field.send_keys(password)
        return self.b.click(self.b.find("#signin"))

    def message(self) -> str:
        found = self.b.find_all("#message")
        return found[0].text if found else ""

    def row(self, service: str):
        return self.b.find(f'#services tbody tr[data-service="{service}"]')

    def cell(self, service: str, cls: str) -> str:
        return self.row(service).find_element("css selector", f".{cls}").text.strip()

    # The steps.

    def sign_in(self) -> None:
        page = self.b.open(self.url + "/")
        check(page.path == "/login", f"not signed in, / should send to /login, not {page.url}")
        check(page.status == 200, f"the sign-in page answered {page.status}")
        check(self.b.text("h1") == "Sign in", f"the sign-in page's title is {self.b.text('h1')!r}")
        check("berth-console-password" in self.b.text(".hint"), "the page does not say where the password is")
        check(self.b.cookie("berth_session") is None, "a session cookie before signing in")
        self.look("sign-in")

        page = self.sign_in_with("not-the-password")
        check(page.status == 401, f"a wrong password answered {page.status}, not 401")
        check(self.message() == "Wrong password.", f"a wrong password says {self.message()!r}")
        check(self.b.cookie("berth_session") is None, "a wrong password gave a session")
        self.look("wrong-password")

        page = self.sign_in_with(self.password)
        check(page.status == 200 and page.path == "/", f"the right password led to {page.url} ({page.status})")
        check(self.b.text("h1") == "Status", f"the status page's title is {self.b.text('h1')!r}")
        session = self.b.cookie("berth_session")
        check(session is not None, "no session cookie after signing in")
        check(session.get("httpOnly") is True, f"the session cookie is not HttpOnly: {session}")
        check(session.get("sameSite") == "Strict", f"the session cookie is not SameSite=Strict: {session}")
        listed = [r.get_attribute("data-service") for r in self.b.find_all("#services tbody tr")]
        for service in self.services:
            check(service in listed, f"the status page does not list {service}: {listed}")
            check(self.cell(service, "state") == "ready", f"{service} is {self.cell(service, 'state')!r}, not ready")
        self.look("status")

    def live_status(self, service: str) -> None:
        check(self.b.find_all("#services tbody"), "not on the status page")
        pid = int(self.cell(service, "pid"))
        restarts = int(self.cell(service, "restarts"))
        check(pid > 1 and Path(f"/proc/{pid}").exists(), f"{service}'s pid {pid} is not a running process")
        # A mark on this page: still there afterwards means the page was never reloaded.
        self.b.driver.execute_script("window.berthTestMark = 'not reloaded';")
        print(f"  kill -9 {pid} ({service}, {restarts} restart(s) so far)")
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        self.b.wait_until(
            f"{service}'s restart count going past {restarts} on the open page",
            lambda: int(self.cell(service, "restarts") or 0) > restarts,
            timeout=RESTART_WITHIN,
        )
        print(f"  the page showed the restart after {time.monotonic() - started:.1f} s")
        new_pid = self.b.wait_until(
            f"{service}'s new pid on the open page",
            lambda: self.cell(service, "pid") not in ("", str(pid)) and self.cell(service, "pid"),
            timeout=RESTART_WITHIN,
        )
        mark = self.b.driver.execute_script("return window.berthTestMark;")
        check(mark == "not reloaded", "the status page was reloaded: the live refresh did not do it")
        print(f"  {service}: pid {pid} -> {new_pid}, restarts {restarts} -> {self.cell(service, 'restarts')}")
        self.look("status-after-restart")

    def history_and_log(self, service: str) -> None:
        page = self.b.click(self.b.find('nav a[href="/history"]'))
        check(page.status == 200 and page.path == "/history", f"History led to {page.url} ({page.status})")
        check(self.b.text("h1") == "History", f"the history page's title is {self.b.text('h1')!r}")
        operations = [r.text for r in self.b.find_all("#history tbody tr td:nth-child(3)")]
        check("up" in operations, f"the history does not show the `up`: {operations}")
        self.look("history")

        page = self.b.click(self.b.find('nav a[href="/"]'))
        check(page.status == 200 and page.path == "/", f"Status led to {page.url} ({page.status})")
        page = self.b.click(self.row(service).find_element("css selector", f'a[href="/logs/{service}"]'))
        check(page.status == 200 and page.path == f"/logs/{service}", f"the log link led to {page.url} ({page.status})")
        check(self.b.text("h1") == f"Log of {service}", f"the log page's title is {self.b.text('h1')!r}")
        check(self.b.find_all("pre#log"), "the log page has no log")
        self.look(f"log-{service}")

    def csrf_refused(self) -> None:
        page = self.b.open(self.url + "/")
        check(page.path == "/", f"signed in, / led to {page.url}")
        self.b.driver.execute_script(
            "document.querySelector('form[action=\"/logout\"] input[name=csrf]').remove();"
        )
        check(
            not self.b.find_all('form[action="/logout"] input[name=csrf]'),
            "the sign-out form still has its token",
        )
        page = self.b.click(self.b.find('form[action="/logout"] button'))
        check(page.status == 403, f"a sign-out without its token answered {page.status}, not 403")
        check("did not come from this console" in self.b.text(), f"the refusal says {self.b.text()!r}")
        self.look("csrf-refused")

        page = self.b.open(self.url + "/")
        check(page.status == 200 and page.path == "/", f"after the refusal / led to {page.url} ({page.status})")
        check(self.b.find_all("#services tbody tr"), "after the refusal the status page lists nothing")
        self.look("status-after-refusal")

    def sign_out(self) -> None:
        page = self.b.click(self.b.find('form[action="/logout"] button'))
        check(page.path == "/login" and page.status == 200, f"sign-out led to {page.url} ({page.status})")
        check(self.b.cookie("berth_session") is None, "the session cookie outlived sign-out")
        self.look("signed-out")

        page = self.b.open(self.url + "/")
        check(page.path == "/login", f"signed out, / led to {page.url}, not the sign-in page")
        self.look("status-sends-to-sign-in")

    def lockout(self) -> None:
        self.b.open(self.url + "/login")
        for n in range(1, LOCKOUT_FAILURES + 1):
            page = self.sign_in_with(f"guess-{n}")
            check(page.status == 401, f"wrong password {n} answered {page.status}, not 401")
            check(self.message() == "Wrong password.", f"wrong password {n} says {self.message()!r}")
            self.look(f"wrong-password-{n}")
        page = self.sign_in_with(self.password)
        check(page.status == 429, f"the right password after {LOCKOUT_FAILURES} failures answered {page.status}, not 429")
        check("locked" in self.message(), f"the lockout says {self.message()!r}")
        check(page.path == "/login", f"locked, the right password led to {page.url}")
        check(self.b.cookie("berth_session") is None, "locked, the right password gave a session")
        self.look("locked")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the console, e.g. http://127.0.0.1:49290")
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--shots", required=True, type=Path, help="directory for the screenshots")
    parser.add_argument("--services", required=True, help="every service of the app, comma-separated")
    parser.add_argument("--kill", required=True, help="the service to kill -9 for the live status")
    args = parser.parse_args()

    password = args.password_file.read_text().strip()
    check(password != "", f"{args.password_file} is empty")
    services = [s for s in args.services.split(",") if s]
    check(args.kill in services, f"--kill {args.kill} is not among --services")

    started = time.monotonic()
    with Browser(args.shots) as b:
        print(f"Chromium {b.version}, headless; screenshots in {args.shots}")
        flow = Flow(b, args.url, password, services)
        steps = [
            ("sign-in", flow.sign_in),
            ("live-status", lambda: flow.live_status(args.kill)),
            ("history-and-log", lambda: flow.history_and_log(args.kill)),
            ("csrf-refused", flow.csrf_refused),
            ("sign-out", flow.sign_out),
            ("lockout", flow.lockout),
        ]
        return run_steps(b, steps, started)


if __name__ == "__main__":
    sys.exit(main())
