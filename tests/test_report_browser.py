"""output/report.html in a real headless Chromium (Debian's chromium and chromium-driver,
which `make test` installs when missing): the page loads from the file with no network,
logs no console error, and every chart drew one mark per data point of the marts.

The data is the real thing: the emulator's data loaded by `meltano run tap-bitbucket
target-duckdb dbt-duckdb:build`, and the page is what `make run` writes (scripts/report.py).
The screenshot is kept as docs/report.png.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from scripts import report
from tests.emulator import Emulator, EmulatorConfig
from tests.meltano_helpers import ROOT, MeltanoProject
from tests.test_analytics import copy_transform, require_dbt

SCREENSHOT = ROOT / "docs" / "report.png"


def _browser_binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "Chromium is not installed: `make test` installs it (apt-get install chromium "
            "chromium-driver); this test is never skipped."
        )
    return chromium, driver


def _driver(chromium: str, chromedriver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    options.add_argument("--disable-dev-shm-usage")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def test_report_draws_every_point_without_console_errors(tmp_path: Path) -> None:
    require_dbt()
    chromium, chromedriver = _browser_binaries()
    with Emulator(EmulatorConfig(seed=1, scale=1)) as emu:
        project = MeltanoProject(tmp_path, emu)
        copy_transform(project.root)
        project.run("target-duckdb", then=("dbt-duckdb:build",))
    marts = report.read_marts(project.root / "output" / "demo.duckdb")
    for mart, rows in marts.items():
        assert rows, f"{mart} is empty: nothing to draw"
    page = tmp_path / "report.html"
    html = report.render(marts)
    page.write_text(html, encoding="utf-8")
    # Self-contained: no script, style or image is fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=['\"]?(https?:)?//", html)
    expected = report.expected_points(report.series(marts))
    assert all(expected.values()), f"a chart has no data: {expected}"

    browser = _driver(chromium, chromedriver)
    try:
        browser.get(page.as_uri())
        browser.set_script_timeout(60)
        drawn = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const ids = arguments[0];
            const count = () => Object.fromEntries(ids.map(
                id => [id, document.querySelectorAll('#' + id + ' .point').length]));
            const ready = () => ids.every(id => {
                const gd = document.getElementById(id);
                return gd && gd._fullLayout && gd.querySelector('.main-svg');
            });
            const wait = () => ready() ? done(count()) : setTimeout(wait, 100);
            wait();
            """,
            list(report.CHARTS),
        )
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1200, int(height) + 40)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.quit()
    assert not errors, f"console errors: {errors}"
    assert drawn == expected, f"marks drawn per chart {drawn}, data points {expected}"
