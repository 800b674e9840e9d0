"""The report page in a real browser: headless Chromium through selenium and chromedriver.

Where no browser is installed these tests skip with the reason; CI installs Debian's `chromium` and
`chromium-driver` and the `browser` extra (selenium), see `.ci/run`.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_report_page import report_rows

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _found(names: tuple[str, ...]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[browser]'")
    binary, driver = _found(BROWSERS), _found(DRIVERS)
    if not binary or not driver:
        pytest.skip("no headless Chromium here (apt-get install chromium chromium-driver); CI installs it")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,1000", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    from featurekit.report import write_html_report

    root = tmp_path_factory.mktemp("report")
    return write_html_report(report_rows(root / "faces"), root / "report.html", "browser test")


@pytest.fixture(scope="module")
def loaded(browser, page):
    """The page opened once; the logs of that load (console and network)."""
    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")
    return {"console": browser.get_log("browser"), "network": browser.get_log("performance")}


def requests_made(performance_log: list[dict]) -> list[str]:
    """URLs of every request the page made, from the DevTools network events."""
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_no_console_error(loaded):
    errors = [entry for entry in loaded["console"] if entry["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors


def test_no_network_request(loaded, page):
    outside = [url for url in requests_made(loaded["network"]) if not url.startswith("data:") and url != page.as_uri()]
    assert not outside, outside


def test_every_picture_loads(browser, loaded):
    sizes = browser.execute_script(
        "return Array.from(document.images).map(i => [i.className, i.complete, i.naturalWidth]);")
    gallery = browser.execute_script("return document.querySelectorAll('.gallery img').length;")
    assert gallery >= 1 and len(sizes) >= gallery + 3  # the forest plot, ROC and PR curves beside the thumbnails
    assert all(complete and width > 0 for _, complete, width in sizes), sizes


def test_the_screenshot_is_not_blank(browser, loaded):
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"), dtype=float)
    assert shot.std() > 20 and (shot < 128).mean() > 0.01  # text and plots, not an empty white page


def test_clicking_a_header_sorts_the_table(browser, loaded):
    from selenium.webdriver.common.by import By

    def column(name: str) -> list[str]:
        return browser.execute_script(
            "const t = document.getElementById('rows');"
            "const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.trim() === arguments[0]);"
            "return Array.from(t.tBodies[0].rows).map(r => r.cells[i].getAttribute('data-sort'));", name)

    before = [float(v) for v in column("ROC AUC [95% CI]")]
    assert before != sorted(before)  # the page lists rows in their own order first
    header = browser.find_element(By.XPATH, "//table[@id='rows']//th[normalize-space()='ROC AUC [95% CI]']")
    header.click()
    ascending = [float(v) for v in column("ROC AUC [95% CI]")]
    assert ascending == sorted(before) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(v) for v in column("ROC AUC [95% CI]")] == sorted(before, reverse=True)
    browser.find_element(By.XPATH, "//table[@id='rows']//th[normalize-space()='probe']").click()
    probes = column("probe")
    assert probes == sorted(probes)
