"""The search page and the run report in a real browser: Debian's chromium, driven by
selenium through Debian's /usr/bin/chromedriver (headless, no sandbox, no GPU, no
network of its own, a fresh profile each time; selenium-manager is never asked to
download anything, because the driver's path is given).

The app runs as its command line does (`python -m wat_jax.tools.app --port=0`, on a
private copy of a smoke run); a query typed into the page must list the same windows
in the same order, with the same scores, as the search command line prints with --json.
Screenshots go to pytest's tmp_path, and also to $WAT_JAX_SCREENSHOTS when set.

Skipped, with the reason, only where chromium, chromium-driver or selenium is missing;
.ci/run installs them (apt-get install chromium chromium-driver; selenium is in
requirements.txt), and under CI=true (as .ci/run runs) a missing one fails instead."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests import cli

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 120


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements.txt"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless chromium under chromedriver, with a fresh profile."""
    reason = _missing()
    if reason and os.environ.get("CI") == "true":  # .ci/run installs them: never skip there
        pytest.fail(f"CI must run the browser tests: {reason}")
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={folder / 'profile'}",
        "--window-size=1300,1000",
    ):
        options.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def wait_for(driver, condition, what: str, timeout: float = WAIT_S):
    """Polls `condition(driver)` until it is truthy; fails naming `what` and the page's
    message line."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except Exception as e:  # selenium's TimeoutException, with what the page said
        message = driver.execute_script(
            "const m = document.getElementById('message'); return m ? m.textContent : ''"
        )
        raise AssertionError(f"waited {timeout} s for {what}; the page says {message!r}") from e


def screenshot(driver, path, full_page: bool = False) -> str:
    """Saves a PNG of the window (or of the whole page, by growing the window)."""
    if full_page:
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1300, min(int(height) + 100, 12000))
        time.sleep(1.0)  # let the page lay out and paint again at the new size
    assert driver.save_screenshot(str(path))
    extra = os.environ.get("WAT_JAX_SCREENSHOTS")
    if extra:
        os.makedirs(extra, exist_ok=True)
        shutil.copy(path, os.path.join(extra, os.path.basename(path)))
    return str(path)


class App:
    """`python -m wat_jax.tools.app --port=0` on a workdir, started and read for its URL."""

    def __init__(self, workdir, log_dir):
        self.out = open(os.path.join(log_dir, "app.out"), "w+")
        self.err = open(os.path.join(log_dir, "app.err"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wat_jax.tools.app", f"--workdir={workdir}", "--port=0"],
            cwd=cli.ROOT,
            env=cli.env(),
            stdout=self.out,
            stderr=self.err,
            text=True,
        )
        self.url = self._url()

    def _url(self) -> str:
        deadline = time.time() + 600
        while time.time() < deadline:
            self.out.seek(0)
            for line in self.out.read().splitlines():
                if line.startswith("serving ") and " at http://" in line:
                    return line.split(" at ", 1)[1].split()[0]
            if self.proc.poll() is not None:
                self.err.seek(0)
                raise AssertionError(f"the app exited {self.proc.returncode}: {self.err.read()}")
            time.sleep(0.2)
        raise AssertionError("the app printed no 'serving ... at http://' line in 600 s")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def cli_search(workdir, query: str, k: int) -> list[dict]:
    """The search command line's hits for `query`, from its --json output."""
    proc = cli.run(
        ["wat_jax.tools.search", f"--workdir={workdir}", f"--query={query}", f"--top_k={k}"]
        + ["--json"],
        check=True,
    )
    return json.loads(proc.stdout)["results"][0]["hits"]


@pytest.mark.parametrize(
    "smoke,query", [("babel_smoke", "a person jumps"), ("densegait_smoke", "a person with a bag")]
)
def test_search_page_lists_what_the_search_cli_ranks(request, browser, tmp_path, smoke, query):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    trained = request.getfixturevalue(smoke)
    workdir = cli.copy_run(trained.workdir, tmp_path / "run")
    app = App(workdir, tmp_path)
    try:
        browser.set_window_size(1300, 1000)
        browser.get(app.url)
        wait_for(
            browser,
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"),
            "the run's info",
        )
        examples = browser.find_elements(By.CSS_SELECTOR, "#examples button.example")
        assert examples, "no example queries offered"

        box = browser.find_element(By.ID, "query")
        box.send_keys(query, Keys.ENTER)
        k = 10
        hits = wait_for(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#hits .hit"),
            "the hits",
        )
        assert len(hits) == k
        shown = [
            (int(h.get_attribute("data-row")), float(h.get_attribute("data-score"))) for h in hits
        ]
        expected = cli_search(workdir, query, k)
        assert [row for row, _ in shown] == [h["row"] for h in expected]
        for (_, score), hit in zip(shown, expected):
            assert abs(score - hit["score"]) < 1e-6
        assert (
            hits[0]
            .find_element(By.CLASS_NAME, "source")
            .text.startswith(str(expected[0]["source"]))
        )
        # every hit's skeleton is drawn (its canvas holds non-blank pixels)
        wait_for(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits canvas[data-drawn='1']")) == k,
            "the skeletons",
        )
        inked = browser.execute_script(
            "return Array.from(document.querySelectorAll('#hits canvas')).map(c => {"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })"
        )
        assert all(n > 50 for n in inked), inked

        # motion to texts: the first hit's nearest class or attribute texts
        hits[0].click()
        wait_for(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#texts tbody tr")) == 5,
            "the nearest texts",
        )
        if smoke == "babel_smoke":  # the timeline of the top hit's sequence, with the query
            browser.find_element(By.CSS_SELECTOR, "#timeline-form button").click()
            wait_for(
                browser,
                lambda d: d.find_elements(By.CSS_SELECTOR, "#intervals li"),
                "the query's intervals",
            )
            assert browser.find_element(By.ID, "timeline-canvas").get_attribute("data-drawn")
        else:
            assert not browser.find_element(By.ID, "timeline-panel").is_displayed()
        screenshot(browser, tmp_path / f"search_{smoke.split('_')[0]}.png", full_page=True)

        # bad queries: a message on the page, the hits left as they were
        for bad, words in (("", "empty query"), ("x" * 10_000, "10,000 characters is too long")):
            browser.execute_script("document.getElementById('query').value = arguments[0]", bad)
            browser.find_element(By.ID, "go").click()
            wait_for(
                browser,
                lambda d, words=words: words in d.find_element(By.ID, "message").text,
                f"the message {words!r}",
            )
            assert "error" in browser.find_element(By.ID, "message").get_attribute("class")
            assert "Traceback" not in browser.page_source
        assert len(browser.find_elements(By.CSS_SELECTOR, "#hits .hit")) == k
    finally:
        app.stop()


def test_report_shows_every_image(browser, babel_smoke, tmp_path):
    from selenium.webdriver.common.by import By

    workdir = cli.copy_run(babel_smoke.workdir, tmp_path / "run")
    cli.run(["wat_jax.tools.report", f"--workdir={workdir}", "--examples=2"], check=True)
    browser.set_window_size(1300, 1000)
    browser.get("file://" + os.path.join(workdir, "report.html"))
    wait_for(
        browser,
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every(i => i.complete)"
        ),
        "the report's images",
    )
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.src.slice(0, 15), i.naturalWidth,"
        " i.naturalHeight])"
    )
    assert len(images) >= 8
    broken = [i for i in images if not (i[1] > 0 and i[2] > 0)]
    assert not broken, broken
    assert all(src.startswith("data:image/") for src, _, _ in images)
    assert browser.find_element(By.ID, "examples").find_elements(By.TAG_NAME, "img")
    screenshot(browser, tmp_path / "report_babel.png", full_page=True)
