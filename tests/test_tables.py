"""Tables and figures rendered from a results store written with fake metric values.

The rows come from the shipped experiments' own planned configs, so the row labels are
checked against what a sweep would really write (metrics are made up: rendering is what
is tested here, not training).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.plan.cost import halving_jobs
from orchestrator.report.tables import TABLES, render_plot, render_table
from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import TrialRecord
from orchestrator.study.stats import mean_interval
from orchestrator.study.trials import SweepOptions, plan
from pose_core.config import TrialConfig, with_values
from search_spaces import load_experiment
from tests.test_search_spaces import TRIALS

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEYPOINTS = ["left_eye", "right_eye", "nose", "throat", "tail_base"]
# The study's Table 1, so the backbones table is checked against real-looking numbers.
TABLE1 = {
    "resnet50": (0.251, 0.087, 0.010, 0.613, 25.6),
    "resnet101": (0.309, 0.113, 0.005, 0.641, 44.6),
    "resnet152": (0.333, 0.157, 0.010, 0.655, 60.2),
    "hrnet_w32": (0.403, 0.277, 0.013, 0.697, 41.2),
    "hrnet_w48": (0.379, 0.199, 0.010, 0.678, 77.5),
}


def record(
    experiment: str, stage: str, variant: str, config: TrialConfig, index: int, **overrides: Any
) -> TrialRecord:
    ap, ap75, ap85, pck, params = (
        TABLE1[config.model.backbone]
        if experiment == "backbones"
        else (0.3 + 0.01 * index, 0.2, 0.05, 0.6 + 0.01 * index, 28.5)
    )
    values: dict[str, Any] = dict(
        experiment=experiment,
        stage=stage,
        variant_id=variant,
        trial_id=f"{experiment}-{stage}-{variant}-{config.train.seed}",
        seed=config.train.seed,
        status="ok",
        error=None,
        backbone=config.model.backbone,
        head=config.model.head,
        init=config.model.init,
        init_checkpoint=None,
        lr=config.train.lr,
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        augment=config.data.augment,
        real_count=config.data.real_count,
        synthetic_count=config.data.synthetic_count,
        datasets="",
        input_size=256,
        loss="mse",
        schedule="study",
        config_json=json.dumps(config.to_dict()),
        subset_digest="d",
        AP=ap,
        AP50=0.9,
        AP75=ap75,
        AP85=ap85,
        AR=0.5,
        PCK05=pck,
        pck_per_keypoint=[0.5 + 0.1 * i for i in range(5)],
        keypoint_names=KEYPOINTS,
        sigma_set=config.eval.sigmas,
        sigma_digest="0123456789abcdef",
        area_rule="given",
        pck_normaliser="bbox",
        params_m=params,
        gflops=7.1,
        best_epoch=1,
        epochs_run=1,
        wall_s=1.0,
        gpu_hours=0.0,
        train_images_per_s=None,
        checkpoint_uri=f"/ckpt/{experiment}/{stage}/{variant}/{config.train.seed}",
        posetune_version="0.1.0",
        torch_version="2",
        timm_version="1",
        ray_version="2.60",
        git_commit=None,
        started_at=T0 + timedelta(minutes=index),
        ended_at=T0 + timedelta(minutes=index + 1),
        node=None,
        workers=1,
        use_gpu=False,
    )
    values.update(overrides)
    return TrialRecord(**values)


def write_experiment(store: ResultsStore, name: str, seeds: int = 1) -> list[TrialRecord]:
    """One ok row per planned trial; ``@match:STAGE`` resolved like the driver does."""
    experiment = load_experiment(name)
    planned = plan(experiment, SweepOptions(results=str(store.uri), seeds=seeds))
    written: list[TrialRecord] = []
    for stage, trials in planned.items():
        if trials[0].sampled:  # sampled: make up nine samples
            base = trials[0].config
            trials = [
                dataclasses.replace(
                    trials[0], variant_id=f"lr={lr:g},epochs={epochs}",
                    config=with_values(base, {"train.lr": lr, "train.epochs": epochs}),
                )
                for lr in (3e-4, 1e-4, 2e-5)
                for epochs in (60, 120, 200)
            ]
        if experiment.stage(stage).scheduler == "halving":  # the trials halving runs
            trials, _ = halving_jobs(trials, experiment.stage(stage).keep, {})
        for trial in trials:
            config, source = trial.config, None
            if config.model.weights and config.model.weights.startswith("@"):
                ref = config.model.weights.split(":")[1]
                source = next(
                    r.checkpoint_uri
                    for r in written
                    if r.stage == ref and r.seed == config.train.seed
                )
            written.append(
                record(
                    name, stage, trial.variant_id, config, len(written), init_checkpoint=source
                )
            )
    for row in written:
        store.append_trial(row)
    return written


def body_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def csv_rows(text: str) -> list[dict[str, str]]:
    data = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    return list(csv.DictReader(io.StringIO(data)))


LABELS = {
    "backbones": ["ResNet-50", "ResNet-101", "ResNet-152", "HRNet-w32", "HRNet-w48"],
    "synthetic_amount": ["Animal-Pose", "Animal-Pose + 10000 synthetic"],
    "augmentations": [
        "no augmentation",
        "+ blur",
        "+ Gaussian noise",
        "+ HSV shift",
        "+ brightness/contrast",
        "+ grayscale",
        "+ all",
    ],
    "hyperparameters": ["5e-4", "1e-4", "1e-5"],
    "hyperparameters_tpe": ["3e-4", "2e-5"],
    "hyperparameters_halving": ["5e-4", "1e-4", "1e-5"],
    "real_amount": [
        "ImageNet + Animal-Pose, 0 real",
        "ImageNet + Animal-Pose, 100 real",
        "Animal-Pose checkpoint, 10 real",
        "Animal-Pose checkpoint, 1000 real",
    ],
    "real_plus_synthetic": [
        "Animal-Pose checkpoint, 10 real",
        "Animal-Pose checkpoint, 500 real + 1000 synthetic",
    ],
    "two_stage": [
        "Animal-Pose + 1000 synthetic checkpoint, 10 real",
        "Animal-Pose + 1000 synthetic checkpoint, 1000 real",
    ],
    "kitpose": ["HRNet-w32 + heatmap head", "HRNet-w32 + KITPose head"],
    "quickstart": [
        "random init + Animal-Pose, 0 real",
        "random init + Animal-Pose, 40 real + 100 synthetic",
    ],
}
ROWS = TRIALS  # one table row per final-stage trial


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store holding every shipped experiment (one seed each)."""
    store = ResultsStore(str(tmp_path_factory.mktemp("study")))
    for name in ROWS:
        write_experiment(store, name)
    return str(store.uri)


def test_every_table_lists_every_layout() -> None:
    assert set(TABLES) == set(ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_table_has_the_study_columns_and_labels(study: str, name: str) -> None:
    markdown = render_table(name, study, "markdown")
    header = markdown.splitlines()[2]
    assert header.endswith("| Seeds | AP | AP.75 | AP.85 | PCK.05 |")
    rows = body_rows(markdown)
    labels = [" ".join(r[: len(TABLES[name].columns)]) for r in rows]
    assert len(rows) == ROWS[name]
    assert len(set(labels)) == len(labels)  # every row distinguishable
    for label in LABELS[name]:
        assert any(label == row[0] for row in rows), (label, labels)
    table = csv_rows(render_table(name, study, "csv"))
    assert len(table) == ROWS[name]
    assert {"Seeds", "AP", "AP_ci95", "AP.75", "AP.85", "PCK.05_ci95"} <= set(table[0])
    assert [r[TABLES[name].columns[0]] for r in table] == [r[0] for r in rows]


def test_backbones_table_matches_the_study(study: str) -> None:
    markdown = render_table("backbones", study)
    assert markdown.startswith("**Table 1.")
    rows = {r[0]: r for r in body_rows(markdown)}
    assert list(rows) == ["ResNet-50", "ResNet-101", "ResNet-152", "HRNet-w32", "HRNet-w48"]
    assert rows["HRNet-w32"][1:3] == ["41.2", "7.1"]  # Params (M), GFLOPs
    assert rows["HRNet-w32"][4:] == ["**0.403**", "**0.277**", "**0.013**", "**0.697**"]
    assert rows["ResNet-50"][4] == "0.251"
    table = csv_rows(render_table("backbones", study, "csv"))
    assert table[0]["Params (M)"] == "25.6" and table[0]["AP"] == "0.251"
    assert table[0]["AP_ci95"] == ""  # one seed: no interval


def test_footer_names_the_evaluation_and_earlier_stages(study: str) -> None:
    markdown = render_table("real_amount", study)
    assert "One run per row" in markdown
    assert (
        "Test set: lynx-test. OKS sigmas: animalpose (digest 01234567). OKS area: given. "
        "PCK normalised by: bbox size, threshold 0.05."
    ) in markdown
    assert "Stage 'pretrain' (Animal-Pose from ImageNet): AP " in markdown
    text = render_table("two_stage", study, "csv")
    assert "# Stage 'stage1' (Animal-Pose + 1000 synthetic from ImageNet)" in text
    assert "Not tabulated" not in text


def test_three_seeds_give_mean_and_t_interval(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    written = write_experiment(store, "kitpose", seeds=3)
    for row in written:  # heatmap head: AP 0.40, 0.42, 0.44
        if row.head == "heatmap":
            store.append_trial(
                dataclasses.replace(
                    row, AP=0.40 + 0.02 * row.seed, ended_at=row.ended_at + timedelta(hours=1)
                )
            )
    markdown = render_table("kitpose", str(tmp_path))
    rows = {r[0]: r for r in body_rows(markdown)}
    # 4.303 (t, 2 df) * 0.02 / sqrt(3) = 0.0497
    assert rows["HRNet-w32 + heatmap head"][1:3] == ["3", "**0.420 ± 0.050**"]
    assert "Mean ± 95% interval (t-distribution) over up to 3 seeds" in markdown
    table = csv_rows(render_table("kitpose", str(tmp_path), "csv"))
    assert float(table[0]["AP"]) == pytest.approx(0.42)
    assert float(table[0]["AP_ci95"]) == pytest.approx(4.303 * 0.02 / 3**0.5, rel=1e-4)


def test_t_interval_matches_scipy() -> None:
    from scipy import stats

    for n in (2, 3, 10, 31, 45, 200):
        values = [0.3 + 0.01 * (i % 7) for i in range(n)]
        mean, half = mean_interval(values)
        low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=stats.sem(values))
        assert half == pytest.approx((high - low) / 2, rel=2e-4)
    assert mean_interval([0.5]) == (0.5, None)


def test_failed_and_stopped_rows_are_excluded_and_counted(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    written = write_experiment(store, "backbones")
    late = timedelta(hours=1)
    store.append_trial(
        dataclasses.replace(
            written[0], status="failed", error="OOM", AP=None, ended_at=written[0].ended_at + late
        )
    )
    store.append_trial(
        dataclasses.replace(
            written[1], status="stopped", AP=0.999, ended_at=written[1].ended_at + late
        )
    )
    markdown = render_table("backbones", str(tmp_path))
    labels = [r[0] for r in body_rows(markdown)]
    assert labels == ["ResNet-152", "HRNet-w32", "HRNet-w48"]
    assert "0.999" not in markdown
    assert "Not tabulated: 1 failed, 1 stopped trial(s)." in markdown
    assert "# Not tabulated: 1 failed, 1 stopped" in render_table("backbones", str(tmp_path), "csv")


def test_rows_that_disagree_on_evaluation_are_flagged(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    written = write_experiment(store, "augmentations")
    store.append_trial(
        dataclasses.replace(
            written[0],
            sigma_set="animalpose-corrected",
            ended_at=written[0].ended_at + timedelta(hours=1),
        )
    )
    markdown = render_table("augmentations", str(tmp_path))
    assert "OKS sigmas: ROWS DISAGREE: animalpose (digest 01234567) (6 rows), " in markdown
    assert "animalpose-corrected (digest 01234567) (1 rows)" in markdown


def test_quickstart_renders_under_its_table_name(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    write_experiment(store, "quickstart")
    by_table = render_table("quickstart", str(tmp_path))  # quickstart's table=
    assert by_table.startswith("**Quickstart.")
    with pytest.raises(ValueError, match="it holds quickstart"):
        render_table("backbones", str(tmp_path))


def test_unknown_names_and_empty_results_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid tables are backbones, synthetic_amount"):
        render_table("table9", str(tmp_path))
    with pytest.raises(ValueError, match="valid figures are synthetic_amount, pck_per_keypoint"):
        render_plot("figure9", str(tmp_path), str(tmp_path / "x.png"))
    empty = tmp_path / "empty"
    with pytest.raises(ValueError, match=f"no trial results in {empty}"):
        render_table("backbones", str(empty))
    with pytest.raises(ValueError, match=f"no trial results in {empty}"):
        render_plot("pck_per_keypoint", str(empty), str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="unknown table format"):
        render_table("backbones", str(empty), "latex")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["synthetic_amount", "pck_per_keypoint"])
def test_figures_are_real_pngs(study: str, tmp_path: Path, name: str) -> None:
    out = render_plot(name, study, str(tmp_path / "figs" / f"{name}.png"))
    assert out == str(tmp_path / "figs" / f"{name}.png")
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size[0] >= 800 and image.size[1] >= 500
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # something was drawn
    assert Path(out).stat().st_size > 10_000


def test_pck_figure_needs_per_keypoint_values(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(record("x", "main", "v", TrialConfig(), 0, pck_per_keypoint=None))
    with pytest.raises(ValueError, match="has per-keypoint PCK"):
        render_plot("pck_per_keypoint", str(tmp_path), str(tmp_path / "x.png"))
