"""The report's HTML renders in a real browser: headless Chromium takes a screenshot of it and
the screenshot has content (text, the table, the embedded figures), not a blank page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from archlab.studies.aggregate import aggregate_study
from archlab.studies.report import write_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (apt-get install -y chromium); the report-render "
           "screenshot test needs /usr/bin/chromium")


def screenshot(html: Path, png: Path, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
         f"--screenshot={png}", "--window-size=1200,2000", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(profile)})


def test_report_html_renders_with_table_and_figures(fake_study_dir, tmp_path):
    from matplotlib.image import imread

    files = write_report(aggregate_study(fake_study_dir))
    png = tmp_path / "report.png"
    proc = screenshot(files.html, png, tmp_path / "profile")
    assert png.exists(), f"chromium wrote no screenshot: {proc.stderr[-2000:]}"
    shutil.copy(png, files.html.with_suffix(".png"))  # next to the report, for a human look
    image = imread(str(png))[..., :3]  # (H, W, 3) floats in [0, 1]
    assert image.shape[:2] == (2000, 1200)
    gray = image.mean(axis=2)
    assert gray.std() > 0.05, "screenshot is (nearly) uniform: the page did not render"
    # Rows of the page that hold something (text, table borders, plots): most of the page.
    busy_rows = (gray < 0.9).any(axis=1)
    assert busy_rows.mean() > 0.3
    # The summary table's header cells have a coloured background (#e8eef6) in the top part.
    header_blue = np.all(np.abs(image[:1000] - np.array([0xE8, 0xEE, 0xF6]) / 255) < 0.02, axis=2)
    assert header_blue.sum() > 2000, "no table header in the top half of the page"
    # The embedded PNG figures render: many saturated plot colours (matplotlib's C0 blue).
    c0 = np.all(np.abs(image - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.08, axis=2)
    assert c0.sum() > 200, "no plot colours: the data: URI images did not render"


def test_blank_page_fails_the_same_checks(tmp_path):
    # The checks above can fail: an empty page gives a uniform screenshot.
    html = tmp_path / "blank.html"
    html.write_text("<!DOCTYPE html><html><body></body></html>")
    png = tmp_path / "blank.png"
    screenshot(html, png, tmp_path / "profile")
    from matplotlib.image import imread

    gray = imread(str(png))[..., :3].mean(axis=2)
    assert gray.std() < 0.05
