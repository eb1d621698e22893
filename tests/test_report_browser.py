"""The report in a real browser: headless Chromium opens it from disk, every image loads and
the console stays clean. Skips (saying so) where Chromium is not installed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.report.page import build_report
from orchestrator.store.results import ResultsStore
from tests.browser import chromium, open_page
from tests.test_report import fill
from tests.test_tables import write_experiment

needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="chromium not installed (apt-get install -y chromium)")


@needs_chromium
@pytest.mark.timeout(180)
def test_report_opens_from_disk_with_every_image_and_no_errors(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "other"))  # rows of a study experiment, then ours
    fill(store, write_experiment(ResultsStore(str(tmp_path / "scratch")), "augmentations"))
    page = build_report(store.uri, tmp_path / "report")
    check = open_page(page)
    assert len(check.images) == 3 and all(ok for _, ok in check.images), check.images
    assert check.errors == ()
    with Image.open(io.BytesIO(check.screenshot)) as shot:
        assert shot.format == "PNG" and shot.width == 1200 and shot.height > 2000

    (page.parent / check.images[0][0]).unlink()  # the check must notice a missing figure
    broken = open_page(page)
    assert [ok for _, ok in broken.images] == [False, True, True]
    assert any("ERR_FILE_NOT_FOUND" in error for error in broken.errors), broken.errors
