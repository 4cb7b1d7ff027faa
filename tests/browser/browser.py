"""Headless Chromium for berth's browser tests, driven by Selenium.

Debian's own browser and driver (packages chromium and chromium-driver, which
scripts/test.sh installs): Selenium is given both paths, so it never looks for or
downloads a browser of its own.

    with Browser(shots_dir) as b:
        page = b.open("http://127.0.0.1:49290/")   # Page(status, url)
        b.shot("sign-in")                           # 01-sign-in.png
        page = b.click(b.find("#signin"))           # waits for the next page

`open` and `click` wait for the page they lead to and return its HTTP status, read
from Chromium's own network log (Selenium has no API for it).
"""

import json
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# What lets Chromium run headless as root in a container: no sandbox (it needs user
# namespaces), and /tmp rather than a small /dev/shm for shared memory.
ARGUMENTS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
]


class Failed(Exception):
    """A check of a test step did not hold."""


def check(condition: bool, message: str) -> None:
    """Fail the step with `message` unless `condition` holds."""
    if not condition:
        raise Failed(message)


def _gone(element: WebElement) -> bool:
    """Whether `element` is no longer in the page (the browser left the document).

    Selenium's `staleness_of` only knows the standard error; while a document is being
    replaced (a redirect after a form, say) chromedriver may answer with an inspector
    error about the node instead, which means the same."""
    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as e:
        if "does not belong to the document" in str(e) or "No node with given id" in str(e):
            return True
        raise


class Page(NamedTuple):
    """The page a navigation ended on: its HTTP status and URL (after redirects)."""

    status: int
    url: str

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


class Browser:
    """One headless Chromium; screenshots numbered in the order they are taken."""

    def __init__(self, shots: Path, timeout: float = 20.0):
        self.shots = Path(shots)
        self.shots.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.taken: list[Path] = []
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ARGUMENTS:
            options.add_argument(argument)
        # The network log gives each answer's status.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(timeout)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *_exc) -> None:
        self.quit()

    def quit(self) -> None:
        self.driver.quit()

    @property
    def version(self) -> str:
        return self.driver.capabilities.get("browserVersion", "?")

    # Pages.

    def open(self, url: str) -> Page:
        """Load `url` (following redirects); the page it ends on."""
        self._drain()
        self.driver.get(url)
        self._wait_loaded()
        return self._page()

    def click(self, element: WebElement) -> Page:
        """Click something that leads to another page (a link, a form's button) and
        wait for that page."""
        self._drain()
        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        WebDriverWait(self.driver, self.timeout).until(
            lambda _: _gone(old),
            "the click did not lead to another page",
        )
        self._wait_loaded()
        return self._page()

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        return self.find(css).text

    def wait_until(self, what: str, condition, timeout: float | None = None, poll: float = 0.5):
        """Wait until `condition()` is truthy (and return it), without touching the
        page; fail naming `what` past the timeout."""
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                raise Failed(f"{what}: not within {timeout or self.timeout:.0f} s")
            time.sleep(poll)

    def cookie(self, name: str) -> dict | None:
        """A cookie of the current site, HttpOnly ones included."""
        return self.driver.get_cookie(name)

    # Screenshots.

    def shot(self, name: str) -> Path:
        """A PNG of the window, `NN-name.png` in the screenshots directory."""
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        png = self.driver.get_screenshot_as_png()
        check(png.startswith(b"\x89PNG"), f"the screenshot {path.name} is not a PNG")
        path.write_bytes(png)
        self.taken.append(path)
        return path

    def keep_failure(self, name: str) -> list[Path]:
        """What the browser shows when a step failed: a screenshot and the HTML."""
        kept = []
        try:
            png = self.shots / f"failed-{name}.png"
            png.write_bytes(self.driver.get_screenshot_as_png())
            html = self.shots / f"failed-{name}.html"
            html.write_text(self.driver.page_source)
            kept = [png, html]
        except Exception as e:  # the browser itself may be what failed
            print(f"(no screenshot of the failure: {e})")
        return kept

    # Internals.

    def _wait_loaded(self) -> None:
        WebDriverWait(self.driver, self.timeout).until(
            lambda d: d.execute_script("return document.readyState") == "complete",
            "the page did not finish loading",
        )

    def _drain(self) -> None:
        self.driver.get_log("performance")

    def _page(self) -> Page:
        """The status of the last document received since the last drain."""
        url = self.driver.current_url
        status = None
        end = time.monotonic() + 5
        while status is None and time.monotonic() < end:
            for entry in self.driver.get_log("performance"):
                message = json.loads(entry["message"])["message"]
                if message.get("method") != "Network.responseReceived":
                    continue
                params = message["params"]
                if params.get("type") == "Document":
                    status = params["response"]["status"]
            if status is None:
                time.sleep(0.1)
        check(status is not None, f"no HTTP status seen for {url}")
        return Page(int(status), url)


def run_steps(b: "Browser", steps: list, started: float) -> int:
    """Run `steps` (name, callable) in order: stop at the first failure, saying what
    failed (and keeping failed-<step>.png and .html); 0 when every step held."""
    for name, step in steps:
        t = time.monotonic()
        try:
            step()
        except Exception as e:
            if isinstance(e, Failed):
                print(f"FAILED at step {name}: {e}")
            else:
                traceback.print_exc(file=sys.stdout)
                first = (str(e).strip().splitlines() or [""])[0]
                print(f"FAILED at step {name}: {type(e).__name__}: {first}")
            for kept in b.keep_failure(name):
                print(f"  kept {kept}")
            return 1
        print(f"ok   {name} ({time.monotonic() - t:.1f} s)")
    print(f"{len(steps)} steps passed in {time.monotonic() - started:.1f} s, {len(b.taken)} screenshots")
    return 0
