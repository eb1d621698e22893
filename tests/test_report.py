"""``posetune report`` from hand-made rows: every section, figure and link, and its speed."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.cli import main
from orchestrator.report.page import build_report, parse_markdown_table
from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import EpochRecord, TrialRecord
from pose_core.config import TrialConfig, with_values
from tests.test_tables import T0, record, write_experiment

# test_tables.KEYPOINTS: left_eye/right_eye are a mirror pair, the rest lie on the centre line.
NAN = float("nan")


def with_keypoints(row: TrialRecord, index: int) -> TrialRecord:
    return dataclasses.replace(
        row,
        ap_per_keypoint=[0.2 + 0.1 * j + 0.01 * index for j in range(5)],
        error_per_keypoint=[0.05 * (j + 1) for j in range(5)],
        swap_rate_per_keypoint=[0.1 + 0.01 * index, 0.2, NAN, NAN, NAN],
    )


def epochs_of(row: TrialRecord, count: int = 4) -> list[EpochRecord]:
    return [
        EpochRecord(
            experiment=row.experiment, stage=row.stage, variant_id=row.variant_id,
            trial_id=row.trial_id, seed=row.seed, epoch=e, loss=1.0 / e, lr=1e-3,
            AP=0.1 * e if e % 2 == 0 else None, PCK05=None, wall_s=float(e),
            images_per_s=None, restarted=False,
        )
        for e in range(1, count + 1)
    ]


def fill(store: ResultsStore, rows: list[TrialRecord]) -> None:
    for index, row in enumerate(rows):
        store.append_trial(with_keypoints(row, index))
        store.append_epochs(epochs_of(row))


def image_sources(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_report_of_a_study_experiment_has_every_part(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "results"))
    rows = write_experiment(store, "augmentations", seeds=2)
    for index, row in enumerate(rows):  # a later row per trial, now with per-keypoint values
        store.append_trial(dataclasses.replace(with_keypoints(row, index),
                                               ended_at=row.ended_at + timedelta(seconds=1)))
        store.append_epochs(epochs_of(row))
    page = build_report(store.uri, tmp_path / "report")
    html = page.read_text()
    assert "Table 2. Augmentations" in html  # the study's own table, via render_table
    assert "+ Gaussian noise" in html and "±" in html
    sources = image_sources(html)
    assert len(sources) == 3  # curves, keypoint heatmaps, swaps; no gallery (no checkpoint)
    for source in sources:
        assert not source.startswith(("/", "http")), source  # relative: opens from disk or S3
        with Image.open(page.parent / source) as image:
            assert image.format == "PNG" and image.width > 200
    assert "not drawn: FileNotFoundError: checkpoint /ckpt/augmentations" in html  # named
    assert "<code>data.augment</code>: none &rarr; noise" in html  # diff from the baseline
    assert "baseline of search_spaces/augmentations" in html
    assert "GPU-hours" in html and "2.60" in html and "2026-01-02" in html


def test_unknown_experiment_falls_back_to_per_variant_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultsStore(str(tmp_path / "results"))
    base = TrialConfig()
    rows = [
        record("my-ablation", "main", f"lr={lr:g}", with_values(base, {"train.lr": lr,
               "train.seed": seed}), n)
        for n, (lr, seed) in enumerate((lr, s) for lr in (1e-3, 1e-4) for s in (0, 1))
    ]
    fill(store, rows)

    def first_table(html: str) -> str:
        table = re.search(r"<table>(.*?)</table>", html, re.S)
        assert table is not None
        return table.group(1)

    # whatever render_table makes of an experiment without a study layout: one row a variant
    html = build_report(store.uri, tmp_path / "report", pose_images=0).read_text()
    assert first_table(html).count("<tr>") == 3  # header + 2 variants
    assert "most common value of each key" in html and "Pose images not requested" in html

    def no_table(name: str, uri: str) -> str:
        raise ValueError(f"no table named {name!r}")

    monkeypatch.setattr("orchestrator.report.page.render_table", no_table)
    html = build_report(store.uri, tmp_path / "fallback", pose_images=0).read_text()
    assert "Per-variant means" in html and "No study table for my-ablation" in html
    assert first_table(html).count("<tr>") == 3 and "0.305 ± " in first_table(html)  # 0.30, 0.31


def test_parse_markdown_table_keeps_bold_and_footer() -> None:
    table = parse_markdown_table("**Title**\n\n| A | B |\n| --- | ---: |\n| x | **0.5** |\n\nfoot\n")
    assert (table.title, table.headers, table.rows, table.notes) == (
        "Title", ("A", "B"), (("x", "**0.5**"),), ("foot",))


def test_report_cli_errors_and_single_experiment(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    store = ResultsStore(str(tmp_path / "results"))
    fill(store, [record("one", "main", "baseline", TrialConfig(), 0),
                 record("two", "main", "baseline", TrialConfig(), 1)])
    out = tmp_path / "report"
    assert main(["report", store.uri, "--experiment", "two", "--out", str(out),
                 "--pose-images", "0"]) == 0
    html = (out / "index.html").read_text()
    assert 'id="two"' in html and 'id="one"' not in html
    assert main(["report", store.uri, "--experiment", "three", "--out", str(out)]) == 2
    assert "holds one, two" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty"), "--out", str(out)]) == 2


def test_report_of_100_trials_takes_seconds(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "results"))
    base = TrialConfig()
    rows = [
        record("big", "main", f"lr={lr:g}", with_values(base, {"train.lr": lr,
               "train.seed": seed}), n, started_at=T0, ended_at=T0 + timedelta(hours=1))
        for n, (lr, seed) in enumerate((1e-4 * (v + 1), s) for v in range(50) for s in (0, 1))
    ]
    fill(store, rows)
    start = time.perf_counter()
    html = build_report(store.uri, tmp_path / "report", pose_images=0).read_text()
    seconds = time.perf_counter() - start
    print(f"report of {len(rows)} trials, {4 * len(rows)} epoch rows: {seconds:.1f} s")
    assert html.count("<tr><td>lr=") == 50
    assert seconds < 30, seconds  # measured 5-7 s on 2 busy cores; 30 s flags a regression
