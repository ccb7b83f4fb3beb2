"""/docs in a real browser (Debian's headless Chromium, driven by its chromedriver): Swagger
UI renders every operation of the document, and the page asks nothing of any origin but
the service's own. In `make test-deep`, which installs Chromium where it can."""

import json
import shutil
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from tests.api.liveserver import serving

pytestmark = [pytest.mark.deep, pytest.mark.slow]

METHODS = {"get", "put", "post", "patch", "delete"}
# Nothing of Chromium's own goes out meanwhile either: no updates, no sync, no field
# trials, no safe-browsing lists, and a profile made for the test.
QUIET_CHROMIUM = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
]


@contextmanager
def chromium(user_data_dir):
    """A fresh headless Chromium that logs every request its pages make."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip(
            "Chromium is not installed: `apt-get install -y chromium chromium-driver`"
            " (make test-deep does, as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # Both paths given: selenium-manager has nothing to look up or download.
    options.binary_location = binary
    for argument in [*QUIET_CHROMIUM, f"--user-data-dir={user_data_dir}"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield browser
    finally:
        browser.quit()


def requested_urls(browser) -> list[str]:
    """Every URL the browser asked for since the last call: the DevTools protocol's
    Network.requestWillBeSent, sent before a request is made, so before any policy or
    network failure could hide it."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def document_operations(document) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def rendered_operations(browser) -> set[tuple[str, str]]:
    """The operation blocks Swagger UI drew: each block's method and path as shown."""
    return {
        tuple(pair)
        for pair in browser.execute_script(
            """return Array.from(document.querySelectorAll('.opblock')).map(block => [
                 block.querySelector('.opblock-summary-method').textContent,
                 block.querySelector('.opblock-summary-path').dataset.path])"""
        )
    }


def test_the_docs_page_renders_every_operation_from_the_service_alone(pooled_app, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    with serving(pooled_app) as base, chromium(tmp_path / "profile") as browser:
        document = pooled_app.test_client().get("/openapi.json").get_json()
        expected = document_operations(document)
        browser.get("about:blank")
        requested_urls(browser)  # the new tab's own, before the page
        browser.get(f"{base}/docs")
        WebDriverWait(browser, 30).until(
            lambda b: len(b.find_elements("css selector", ".opblock")) >= len(expected)
        )
        rendered = rendered_operations(browser)
        assert rendered == expected
        assert len(browser.find_elements("css selector", ".opblock")) == len(expected)
        assert browser.find_elements("css selector", ".info .title")[0].text.startswith(
            document["info"]["title"]
        )

        urls = requested_urls(browser)
        origin = urlsplit(base)._replace(path="", query="", fragment="").geturl()
        assert f"{base}/docs" in urls and f"{base}/openapi.json" in urls
        # data: URLs are the stylesheet's own images: read from it, never fetched.
        fetched = [url for url in urls if not url.startswith("data:image/")]
        assert [url for url in fetched if not url.startswith(origin + "/")] == []
        # The page's own script ran under its Content-Security-Policy, and nothing it
        # tried was refused: a refusal would be a console error.
        problems = [
            entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
        ]
        assert problems == []
