"""Headless Chromium from Debian (``chromium``, ``chromium-driver``) driven by Selenium, axe-core
(npm, pinned, installed by ``scripts/test``) for accessibility, and screenshots as artifacts.

Never a downloaded browser: the driver is ``/usr/bin/chromedriver`` and the browser
``/usr/bin/chromium``, started with an empty profile and no background networking."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE_VERSION = "4.14.1"
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("DTMFGRAPH_ARTIFACTS", ROOT / "test-artifacts")) / "console"
MISSING = (
    "headless Chromium is not installed: run scripts/test, which installs Debian's chromium "
    f"and chromium-driver and axe-core@{AXE_VERSION} from npm"
)
T = TypeVar("T")


def require_browser() -> None:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), MISSING
    assert AXE.exists(), MISSING + f" (no {AXE})"


def start_browser(profile: Path) -> WebDriver:
    require_browser()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(CHROMEDRIVER))
    driver.set_script_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(check: Callable[[], T | None], timeout: float = 15.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (wide margins: a loaded CI box)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the page may be between two renders
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}: {last}")


def ready(driver: WebDriver) -> None:
    """Wait until the page's script has run (it marks ``body[data-ready]``)."""
    wait_for(
        lambda: driver.execute_script("return document.body && document.body.dataset.ready"),
        what=f"the page {driver.current_url} to be ready",
    )


def axe_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """Run axe-core in the page; the serious and critical violations it finds."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(JSON.stringify(r.violations)))"
        ".catch(e => done(JSON.stringify({error: String(e)})));"
    )
    found = json.loads(result)
    assert isinstance(found, list), found
    return [v for v in found if v.get("impact") in ("serious", "critical")]


def check_page(driver: WebDriver, name: str) -> Path:
    """Screenshot the page into the artifacts, then assert axe finds nothing serious."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, max(800, min(height + 140, 6000)))  # the whole page
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(1280, 1600)
    bad = axe_violations(driver)
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes'][:3]]}" for v in bad
    )
    return path


def fetch_json(
    driver: WebDriver, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Any:
    """``fetch`` from inside the page (its cookies), returning ``{"status", "body"}``."""
    return driver.execute_async_script(
        "const [path, method, headers, done] = arguments;"
        "fetch(path, {method, headers, credentials: 'same-origin'})"
        ".then(async r => done({status: r.status, body: await r.text()}))"
        ".catch(e => done({status: 0, body: String(e)}));",
        path,
        method,
        headers or {},
    )
