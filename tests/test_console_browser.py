"""The console in a real browser: headless Chromium from Debian (``scripts/chromium``)
driven by selenium, against a real ``slurp dev`` process (API, console, worker and
ticker in one) on the session's MongoDB-wire server.

One browser and one ``slurp dev`` for the module. Every page visited is saved as a
screenshot under ``tests/artifacts/screenshots/`` (README: "The console"). Without
Chromium the module is skipped locally and fails under ``CI``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.history import History
from storage.jobs import JobRegistry
from storage.store import Store, connect
from tests.dev_harness import DevProcess, dev_env, user_json

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "tests" / "artifacts" / "screenshots"
WAIT_S = 30.0
WIDE = (1280, 900)
PHONE = (390, 844)
NARROW_PASSWORD = "narrow-pw-1"

JOBS = """
jobs:
  - name: users
    description: Users from an inline list, upserted by id (admins dropped by the slurper).
    datasources:
      - name: users
        type: inline
        records:
          - {id: 1, name: Leanne Graham, username: Bret, role: admin}
          - {id: 2, name: Ervin Howell, username: Antonette, role: user,
             address: {city: Wisokyburgh, geo: {lat: -43.95, lng: -34.46}}}
          - {id: 3, name: Clementine Bauch, username: Samantha, role: user,
             address: {city: McKenziehaven, geo: {lat: -68.61, lng: -47.06}}}
          - {id: 4, name: Patricia Lebsack, username: Karianne, role: user,
             address: {city: South Elvis, geo: {lat: 29.45, lng: -164.29}}}
    slurper: examples.slurpers:drop_admins
    schedule: {cron: "0 4 * * 1-5", timezone: Europe/Zurich}
    collection: {type: upserted, name: users, upsert_key: id}
  - name: cities
    description: Cities, kept as the last 3 versions.
    datasources:
      - name: cities
        type: inline
        records:
          - {name: Zurich, country: CH, population: 421878}
          - {name: Basel, country: CH, population: 173863}
          - {name: Lyon, country: FR, population: 522250}
    schedule: {cron: "30 6 * * *", timezone: America/New_York}
    collection: {type: versioned, name: cities, keep_versions: 3}
  - name: slow
    description: A slurper taking a few seconds, to watch a run live.
    datasources:
      - {name: rows, type: inline, records: [{id: 1}, {id: 2}, {id: 3}, {id: 4}, {id: 5}, {id: 6}]}
    slurper: slowpoke:slowly
    collection: {type: upserted, name: slow, upsert_key: id}
  - name: broken
    description: Its records lack the upsert key, so every run fails.
    datasources:
      - {name: rows, type: inline, records: [{no_id: 1}]}
    schedule: {cron: "*/15 * * * *", timezone: UTC}
    collection: {type: upserted, name: broken, upsert_key: id}
  - name: internal
    description: Data the narrow reader may not see.
    datasources:
      - {name: rows, type: inline, records: [{id: 1, secret: internal-data}]}
    collection: {type: normal, name: internal}
"""
SLOWPOKE = """
import time


def slowly(ctx, data_map):
    for row in data_map["rows"]:
        time.sleep(0.5)  # a slow transformation, so the run page shows it running
        yield row
"""


def _unavailable(what: str, detail: str) -> None:
    message = f"{what} is not available: {detail}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def _chromium() -> tuple[str, str] | str:
    """(browser, driver) from ``scripts/chromium`` (installing them if missing), or
    why they cannot be had."""
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "chromium")], capture_output=True, text=True, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2:
        return done.stderr.strip()[-2000:] or f"exit code {done.returncode}"
    return lines[0], lines[1]


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    found = _chromium()
    if isinstance(found, str):
        _unavailable("Chromium (scripts/chromium)", found)
        raise AssertionError("unreachable")
    browser, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        "--lang=en-US", f"--window-size={WIDE[0]},{WIDE[1]}", "--hide-scrollbars",
    ):  # fmt: skip
        options.add_argument(argument)
    # The viewer is in New York: pages show times in the job's zone and in this one.
    service = Service(executable_path=chromedriver, env={**os.environ, "TZ": "America/New_York"})
    try:
        browser_driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        _unavailable("Chromium (headless start)", exc.msg or str(exc))
        raise AssertionError("unreachable") from exc
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield browser_driver
    browser_driver.quit()


@pytest.fixture(scope="module")
def dev(
    mongo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DevProcess, Store]]:
    folder = tmp_path_factory.mktemp("console")
    (folder / "jobs.yaml").write_text(JOBS)
    (folder / "slowpoke.py").write_text(SLOWPOKE)
    database = f"t_console_{folder.name[-6:]}".replace("-", "_")
    users = [user_json("narrow", NARROW_PASSWORD, "reader", ["users"])]
    env = dev_env(
        mongo_url, database, folder / ".slurp",
        SLURP_SLURPER_MODULES="examples,slowpoke", SLURP_API_USERS=json.dumps(users),
        # Runs are visible (and publish progress) from their first moment: the slow
        # job's only progress report comes when its inline source ends, at once.
        SLURP_START_REPORT_DELAY_S="0",
    )  # fmt: skip
    process = DevProcess(folder, env, "jobs.yaml").start()
    store = connect(mongo_url, database)
    yield process, store
    process.stop()
    store.client.drop_database(database)
    store.close()


# -- helpers ----------------------------------------------------------------------


def wait(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(check, message=what)


def shot(driver: WebDriver, name: str, size: tuple[int, int] = WIDE) -> Path:
    """Save the whole page (the window grown to its height) as ``name``.png."""
    width, height = size
    full = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, max(height, min(full, 4000)))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)
    return path


def text(driver: WebDriver, selector: str = "main") -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def sign_in(driver: WebDriver, dev: DevProcess, username: str, password: str) -> None:
    driver.delete_all_cookies()
    driver.get(dev.url + "/")
    wait(driver, lambda d: d.find_elements(By.ID, "username"), "the login form")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit].primary").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.jobs, .empty"), "the jobs")


def as_admin(driver: WebDriver, dev: DevProcess) -> None:
    """Signed in as the dev admin (signing in again if needed)."""
    driver.get(dev.url + "/")
    users = driver.find_elements(By.CSS_SELECTOR, ".who .user")
    if not users or not users[0].text.startswith(dev.username + " "):
        sign_in(driver, dev, dev.username, dev.password)


def run_now(driver: WebDriver, dev: DevProcess, job: str, params: str = "") -> str:
    """Click Run now on the job's page; the run's id (from the page it lands on)."""
    driver.get(f"{dev.url}/jobs/{job}")
    if params:
        driver.find_element(By.ID, "params").send_keys(params)
    driver.find_element(By.ID, "run-now").click()
    wait(driver, lambda d: "/runs/" in d.current_url, "the run's page")
    found = re.search(r"/runs/([0-9a-f-]{36})", driver.current_url)
    assert found is not None, driver.current_url
    return found.group(1)


def run_status(driver: WebDriver) -> str:
    """The run page's status (read in one script call: the live part is replaced
    while the run goes on)."""
    return str(
        driver.execute_script(
            "const s = document.querySelector('.run-state'); return s ? s.dataset.status : '';"
        )
    )


def live_text(driver: WebDriver, element_id: str) -> str:
    return str(
        driver.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
            element_id,
        )
    )


# -- tests ------------------------------------------------------------------------


def test_sign_in_and_jobs_list(driver: WebDriver, dev: tuple[DevProcess, Store]) -> None:
    process, _ = dev
    driver.get(process.url + "/jobs/users")
    assert "/login?next=/jobs/users" in driver.current_url
    shot(driver, "01-login")
    driver.find_element(By.ID, "username").send_keys(process.username)
    driver.find_element(By.ID, "password").send_keys("not the password")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"), "the refusal")
    assert "Wrong username or password." in text(driver, "[role=alert]")
    driver.find_element(By.ID, "password").send_keys(process.password)
    driver.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait(driver, lambda d: d.current_url.endswith("/jobs/users"), "back to the asked page")
    driver.get(process.url + "/")
    jobs = text(driver, "table.jobs")
    for name in ("users", "cities", "slow", "broken", "internal"):
        assert name in jobs
    assert "at 04:00, on Monday to Friday" in jobs and "Europe/Zurich" in jobs
    # The next fire in the job's zone, and in the viewer's (the script rewrote it).
    times = driver.find_elements(By.CSS_SELECTOR, "time[data-local]")
    assert times and all(not t.text.endswith("UTC") for t in times)
    assert any(re.search(r"[EC][SD]T|GMT", t.text) for t in times)
    # The filter box filters as one types.
    driver.find_element(By.ID, "filter").send_keys("cit")
    visible = [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr") if r.is_displayed()
    ]
    assert len(visible) == 1 and "cities" in visible[0].text
    driver.find_element(By.ID, "filter").clear()


def test_run_now_succeeds_with_its_record_count(
    driver: WebDriver, dev: tuple[DevProcess, Store]
) -> None:
    process, store = dev
    as_admin(driver, process)
    for _ in range(4):  # some history for the chart
        run_id = run_now(driver, process, "users")
        wait(driver, lambda d: run_status(d) == "succeeded", "a users run to succeed")
    run_id = run_now(driver, process, "users", params="note=from the console")
    wait(driver, lambda d: run_status(d) == "succeeded", "the run to succeed")
    assert live_text(driver, "records-written") == "3"
    page = text(driver)
    assert "Attempts" in page and f"local:{process.proc.pid}" in page  # type: ignore[union-attr]
    assert History(store).get(run_id)["status"] == "succeeded"  # type: ignore[index]
    shot(driver, "04-run")
    driver.get(f"{process.url}/jobs/users")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar.ok"), "the chart")
    assert run_id[:8] in text(driver, "table.history")
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.history tbody tr")) == 5
    shot(driver, "03-job")


def test_the_run_page_follows_a_running_run(
    driver: WebDriver, dev: tuple[DevProcess, Store]
) -> None:
    process, _ = dev
    as_admin(driver, process)
    run_now(driver, process, "slow")
    driver.execute_script("window.notReloaded = true;")
    wait(driver, lambda d: run_status(d) == "running", "the run to show as running")
    wait(driver, lambda d: live_text(d, "items-fetched") == "6", "its live progress")
    shot(driver, "05-run-running")
    wait(driver, lambda d: run_status(d) == "succeeded", "the slow run to end")
    assert driver.execute_script("return window.notReloaded === true;")  # no page reload
    assert live_text(driver, "records-written") == "6"


def test_pause_and_resume(driver: WebDriver, dev: tuple[DevProcess, Store]) -> None:
    process, store = dev
    as_admin(driver, process)
    driver.get(f"{process.url}/jobs/cities")
    driver.find_element(By.ID, "pause").click()
    wait(driver, lambda d: d.find_elements(By.ID, "resume"), "the Resume button")
    assert "Paused: no scheduled runs" in text(driver, "[role=status]")
    assert JobRegistry(store).require("cities").definition.paused is True
    driver.get(process.url + "/")
    row = driver.find_element(By.XPATH, "//tr[.//a[text()='cities']]")
    assert "paused" in (row.get_attribute("class") or "") and "paused" in row.text
    driver.get(f"{process.url}/jobs/cities")
    driver.find_element(By.ID, "resume").click()
    wait(driver, lambda d: d.find_elements(By.ID, "pause"), "the Pause button")
    assert "Resumed" in text(driver, "[role=status]")
    assert JobRegistry(store).require("cities").definition.paused is False
    driver.get(f"{process.url}/jobs/slow")  # stays paused (for the screenshots)
    driver.find_element(By.ID, "pause").click()
    wait(driver, lambda d: d.find_elements(By.ID, "resume"), "slow paused")


def test_a_failing_job_shows_its_error(driver: WebDriver, dev: tuple[DevProcess, Store]) -> None:
    process, _ = dev
    as_admin(driver, process)
    run_now(driver, process, "broken")
    wait(driver, lambda d: run_status(d) == "failed", "the run to fail")
    error = text(driver, ".run-error")
    assert "record at position 0: upsert key 'id' is missing" in error
    assert "upsert key 'id' is missing" in text(driver, "table.attempts")
    shot(driver, "06-run-failed")
    driver.get(process.url + "/")
    row = driver.find_element(By.XPATH, "//tr[.//a[text()='broken']]")
    assert "failing" in (row.get_attribute("class") or "") and "failed" in row.text


def test_collection_page_shows_the_new_version(
    driver: WebDriver, dev: tuple[DevProcess, Store]
) -> None:
    process, _ = dev
    as_admin(driver, process)
    for _ in range(2):
        run_now(driver, process, "cities")
        wait(driver, lambda d: run_status(d) == "succeeded", "a cities run")
    version = driver.find_element(By.PARTIAL_LINK_TEXT, "version 2 of cities")
    version.click()
    wait(driver, lambda d: "version=2" in d.current_url, "the version's page")
    assert "Records of version 2" in text(driver)
    run_now(driver, process, "cities")
    wait(driver, lambda d: run_status(d) == "succeeded", "the third cities run")
    driver.get(f"{process.url}/collections/cities")
    versions = text(driver, "table.versions")
    assert re.search(r"^3 live", versions, re.M), versions
    assert "Live records" in text(driver) and "Zurich" in text(driver, "table.records")
    assert f"{process.url}/api/collections/cities" in text(driver, ".api-url")
    select = driver.find_element(By.ID, "version")
    Select(select).select_by_value("1")
    assert Select(select).first_selected_option.get_attribute("value") == "1"
    select.find_element(By.XPATH, "./ancestor::form//button[@type='submit']").click()
    wait(driver, lambda d: "version=1" in d.current_url, "version 1")
    driver.get(f"{process.url}/collections/users")
    assert "Wisokyburgh" in text(driver, "table.records")  # nested fields, compactly
    shot(driver, "07-collection")
    driver.get(f"{process.url}/collections/cities")
    shot(driver, "08-collection-versioned")


def test_phone_width(driver: WebDriver, dev: tuple[DevProcess, Store]) -> None:
    process, _ = dev
    as_admin(driver, process)
    shot(driver, "02-jobs")  # wide, with the runs of the tests before
    driver.set_window_size(*PHONE)
    try:
        driver.get(process.url + "/")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;"
        )
        assert not overflow, "the jobs list is wider than a phone"
        shot(driver, "09-jobs-phone", PHONE)
        driver.get(f"{process.url}/jobs/users")
        button = driver.find_element(By.ID, "run-now")
        assert button.is_displayed()
        shot(driver, "10-job-phone", PHONE)
    finally:
        driver.set_window_size(*WIDE)


def test_keyboard_reaches_run_now(driver: WebDriver, dev: tuple[DevProcess, Store]) -> None:
    process, _ = dev
    as_admin(driver, process)
    driver.get(f"{process.url}/jobs/users")
    body = driver.find_element(By.TAG_NAME, "body")
    for _ in range(40):
        body.send_keys("\t")
        if driver.switch_to.active_element.get_attribute("id") == "run-now":
            break
    assert driver.switch_to.active_element.get_attribute("id") == "run-now"
    for field in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), textarea"):
        label = driver.find_elements(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']")
        assert label, f"no label for {field.get_attribute('outerHTML')}"


def test_a_reader_cannot_see_or_trigger_what_its_acl_excludes(
    driver: WebDriver, dev: tuple[DevProcess, Store]
) -> None:
    process, store = dev
    driver.get(process.url + "/")
    driver.find_element(By.CSS_SELECTOR, ".who button").click()  # log out
    wait(driver, lambda d: "/login" in d.current_url, "the login page")
    sign_in(driver, process, "narrow", NARROW_PASSWORD)
    jobs = text(driver, "table.jobs")
    assert "users" in jobs
    for hidden in ("cities", "slow", "broken", "internal"):
        assert hidden not in jobs
    driver.get(f"{process.url}/jobs/users")
    assert not driver.find_elements(By.ID, "run-now")
    assert not driver.find_elements(By.ID, "pause")
    shot(driver, "11-job-reader")
    # By direct URL.
    driver.get(f"{process.url}/jobs/internal")
    assert "Not found" in text(driver, "h1")
    driver.get(f"{process.url}/collections/internal")
    assert "Not allowed" in text(driver, "h1") and "internal-data" not in driver.page_source
    # A forged POST without a CSRF token, and one with the reader's own token.
    before = len(History(store).last_runs("users", limit=1000))
    forge = """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        if (arguments[1]) {
            const token = document.createElement('input');
            token.type = 'hidden'; token.name = 'csrf'; token.value = arguments[1];
            form.appendChild(token);
        }
        document.body.appendChild(form);
        form.submit();
    """
    driver.get(f"{process.url}/jobs/users")
    driver.execute_script(forge, f"{process.url}/jobs/users/run", "")
    wait(driver, lambda d: "/run" in d.current_url, "the forged POST's answer")
    assert "security token" in text(driver, "[role=alert]")
    driver.get(f"{process.url}/jobs/users")
    token = driver.find_element(By.CSS_SELECTOR, ".who input[name=csrf]").get_attribute("value")
    driver.execute_script(forge, f"{process.url}/jobs/users/run", token)
    wait(driver, lambda d: d.current_url.endswith("/run"), "the reader's POST's answer")
    assert "Only admins can run" in text(driver, "[role=alert]")
    driver.execute_script(forge, f"{process.url}/jobs/internal/pause", token)
    wait(driver, lambda d: d.current_url.endswith("/pause"), "the hidden job's answer")
    assert "Not found" in text(driver, "h1")
    assert len(History(store).last_runs("users", limit=1000)) == before
    assert JobRegistry(store).require("internal").definition.paused is False
