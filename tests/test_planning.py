"""One trial config builder: precedence, scales, --set on swept paths, job identity (Ray-free)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

import search_spaces
from orchestrator.study.experiment import Cases, Experiment, Grid, LogUniform, Stage
from orchestrator.study.scale import SCALES, get_scale
from orchestrator.study.trials import SweepOptions, build_job, plan
from pose_core.config import ConfigError, TrialConfig, with_values
from pose_core.pretrain.recipe import start_marker

BASE = with_values(TrialConfig(), {"model.init": "random", "train.lr": 2e-3})


def experiment(**stage: object) -> Experiment:
    return Experiment(name="exp", description="x", baseline=BASE,
                      stages=(Stage(**stage),),
                      scales={"smoke": {"model.kit_dim": 32}})  # type: ignore[arg-type]


def test_precedence_baseline_scale_stage_values_experiment_overrides_seed() -> None:
    exp = experiment(axes={"data.real_count": Grid(100, 400)},
                     changes={"train.epochs": 210, "data.input_size": 192})
    stage = exp.stages[0]
    smoke = SCALES["smoke"]
    job = build_job(exp, stage, {"data.real_count": 400}, 2, smoke,
                    {"data.input_size": 96, "train.batch_size": 8})
    cfg = job.config
    assert cfg.train.lr == 2e-3  # baseline
    assert cfg.model.backbone == "hrnet_w18_small"  # scale
    assert cfg.train.epochs == 3  # stage value, mapped by the scale (210 -> 3)
    assert cfg.data.real_count == 20 and job.values == {"data.real_count": 20}  # sqrt(400)
    assert cfg.model.kit_dim == 32  # the experiment's own smoke change
    assert cfg.data.input_size == 96 and cfg.train.batch_size == 8  # --set wins
    assert cfg.train.seed == 2 and job.seed == 2
    # The variant id names the design value, the same at every scale; the row records both.
    assert job.variant_id == "real_count=400" and job.scale == "smoke"
    full = build_job(exp, stage, {"data.real_count": 400}, 0)
    assert full.config.data.real_count == 400 and full.config.train.epochs == 210


def test_set_on_a_swept_path_is_refused_in_one_line(tmp_path: Path) -> None:
    exp = search_spaces.load_experiment("hyperparameters")
    with pytest.raises(ConfigError) as error:
        plan(exp, SweepOptions(results=str(tmp_path), overrides={"train.lr": 1e-3}))
    message = str(error.value)
    assert "--set train.lr" in message and "stage 'main'" in message and "axis Grid" in message
    assert "\n" not in message
    for path, what in (("train.seed", "seeds"), ("data.augment", "case")):
        exp2 = experiment(cases=Cases({"a": {"data.augment": "blur"}, "b": {}}))
        with pytest.raises(ConfigError, match=what):
            plan(exp2, SweepOptions(results=str(tmp_path), overrides={path: "none"
                                                                        if "aug" in path else 1}))
    # A path no stage varies is applied to every trial, and the rows will say so.
    planned = plan(exp, SweepOptions(results=str(tmp_path), overrides={"train.batch_size": 8}))
    assert {job.config.train.batch_size for jobs in planned.values() for job in jobs} == {8}


def test_cli_set_on_a_swept_path_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from orchestrator.cli import main

    code = main(["sweep", "hyperparameters", "--smoke", "--results", str(tmp_path),
                 "--set", "train.lr=0.001"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--set train.lr" in err[0] and "hyperparameters varies train.lr" in err[0]


def test_sampled_values_are_not_rescaled_and_ids_name_them() -> None:
    exp = experiment(search="optuna", num_samples=2, axes={"train.lr": LogUniform(1e-4, 1e-2)})
    exp = Experiment(name="exp", description="x", baseline=BASE, stages=(
        Stage(search="optuna", num_samples=2,
              axes={"train.lr": LogUniform(1e-4, 1e-2), "data.real_count": Grid(3, 5)}),))
    job = build_job(exp, exp.stages[0], {"train.lr": 3e-4, "data.real_count": 5}, 1,
                    SCALES["smoke"], sampled=True)
    assert job.config.data.real_count == 5 and job.config.train.lr == 3e-4
    assert job.variant_id == "lr=0.0003,real_count=5" and job.sampled


def test_scales_are_validated_and_smoke_is_an_alias(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scale 'tiny'; valid scales: full, smoke, mini"):
        get_scale("tiny")
    exp = experiment(axes={"data.real_count": Grid(10, 20)})
    a = plan(exp, SweepOptions(results=str(tmp_path), smoke=True))
    b = plan(exp, SweepOptions(results=str(tmp_path), scale="smoke"))
    assert [j.config for j in a["main"]] == [j.config for j in b["main"]]
    with pytest.raises(ConfigError, match="unknown scale"):
        plan(exp, SweepOptions(results=str(tmp_path), scale="huge"))


def test_experiment_smoke_changes_may_not_touch_a_swept_path() -> None:
    with pytest.raises(ConfigError, match="varied by stage"):
        Experiment(name="bad", description="x", stages=(Stage(axes={"train.lr": Grid(1e-3)}),),
                   scales={"smoke": {"train.lr": 1e-2}})


def test_job_pickles_whole_and_its_digest_tracks_config_and_data(tmp_path: Path) -> None:
    exp = experiment(axes={"data.real_count": Grid(10, 20)})
    jobs = plan(exp, SweepOptions(results=str(tmp_path)))["main"]
    catalog = {"datasets": {"lynx-train": {"coco": "a.json"}, "unused": {"coco": "b.json"}}}
    job = dataclasses.replace(jobs[0], catalog=catalog)
    again = pickle.loads(pickle.dumps(job))
    assert again == job and again.digest == job.digest
    assert jobs[0].digest != jobs[1].digest  # 10 vs 20 real images
    other_data = dataclasses.replace(
        job, catalog={"datasets": {"lynx-train": {"coco": "c.json"}}})
    assert other_data.digest != job.digest
    unused = dataclasses.replace(job, catalog={
        "datasets": {"lynx-train": {"coco": "a.json"}, "unused": {"coco": "z.json"}}})
    assert unused.digest == job.digest  # a dataset the trial does not read changes nothing


def test_missing_weights_file_fails_the_preflight_in_one_line(tmp_path: Path) -> None:
    from orchestrator.data.weights import WeightsError
    from orchestrator.plan.preflight import preflight

    exp = Experiment(name="w", description="x", baseline=with_values(BASE, {
        "model.init": "imagenet", "model.weights": str(tmp_path / "nope.pth")}),
        stages=(Stage(),))
    with pytest.raises(WeightsError) as error:
        preflight(exp, SweepOptions(results=str(tmp_path / "r")), lambda line: None)
    assert "nope.pth" in str(error.value) and "no such file" in str(error.value)
    assert "\n" not in str(error.value)


def test_local_store_lock_refuses_a_second_sweep_with_one_line(tmp_path: Path) -> None:
    from orchestrator.store.lock import StoreBusy, store_lock

    with store_lock(str(tmp_path)):
        with pytest.raises(StoreBusy) as busy:
            with store_lock(str(tmp_path)):
                pass
    message = str(busy.value)
    assert str(tmp_path) in message and f"pid {__import__('os').getpid()}" in message
    assert pickle.loads(pickle.dumps(busy.value)).store == str(tmp_path)
    with store_lock(str(tmp_path)):  # released
        pass


def _other(path: str, value: object) -> object:
    """A different valid value for a config path."""
    from typing import Literal, get_args, get_origin

    from pose_core.config import leaf_type

    kind = leaf_type(path)
    if get_origin(kind) is not Literal and get_args(kind):  # X | None
        kind = next(a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is Literal:
        return next(o for o in get_args(kind) if o != value)
    if kind is bool:
        return not value
    if kind is int:
        return (value or 0) + 1  # type: ignore[operator]
    if kind is float:
        return (value or 0.25) * 2  # type: ignore[operator]
    return f"{value or ''}x"


def test_every_identity_field_changes_the_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reuse and resume are conservative: a change to any config field, to a catalog entry
    the trial reads, to its backbone's weights entry or to the training code is a new
    training."""

    from orchestrator.study import trials as planning

    exp = experiment()
    base = build_job(exp, exp.stages[0], {}, 0)
    base = dataclasses.replace(base, catalog={
        "datasets": {"lynx-test": {"coco": "t.json"}, "animalpose": {"coco": "a.json"}},
        "weights": {base.config.model.backbone: "w.pth"}})
    seen = {base.digest}
    for path, value in base.config.flat().items():
        changed = dataclasses.replace(base, config=with_values(base.config,
                                                               {path: _other(path, value)}))
        assert changed.digest not in seen, path
    for catalog in ({"datasets": {"lynx-test": {"coco": "t2.json"},
                                  "animalpose": {"coco": "a.json"}},
                     "weights": base.catalog["weights"]},
                    {"datasets": base.catalog["datasets"],
                     "weights": {base.config.model.backbone: "w2.pth"}}):
        assert dataclasses.replace(base, catalog=catalog).digest != base.digest
    before = base.digest
    monkeypatch.setattr(planning, "code_digest", lambda: "another-loop")
    assert base.digest != before


def test_mini_scale_maps_the_baseline_axes_and_backbones_and_names_the_design() -> None:
    mini = get_scale("mini")
    real = search_spaces.load_experiment("real_amount")
    planned = plan(real, SweepOptions(results="unused", scale="mini"))
    pretrain, main = planned["pretrain"][0], planned["main"]
    # The baseline's HRNet-w32 and 210 epochs are mapped like any stage or axis value.
    assert pretrain.config.model.backbone == "hrnet_w18_small"
    assert pretrain.config.train.epochs == 21 and pretrain.config.data.input_size == 128
    # No ImageNet file on a fresh machine: the generated-pretrained start stands in for it,
    # in the Animal-Pose checkpoint's pretraining as in the ImageNet arm.
    generated = start_marker("mini", "hrnet_w18_small")
    assert (pretrain.config.model.init, pretrain.config.model.weights) == ("imagenet", generated)
    imagenet = [j for j in main if j.config.model.init == "imagenet"]
    assert imagenet and {j.config.model.weights for j in imagenet} == {generated}
    counts = {j.variant_id: j.config.data.real_count for j in main}
    assert counts["checkpoint,real=10"] == 6 and counts["checkpoint,real=1000"] == 63
    ordered = [counts[f"checkpoint,real={n}"] for n in (10, 50, 100, 500, 1000)]
    assert ordered == sorted(set(ordered))  # nested sizes stay distinct
    backbones = plan(search_spaces.load_experiment("backbones"),
                     SweepOptions(results="unused", scale="mini"))["main"]
    ran = {j.variant_id: j.config.model.backbone for j in backbones}
    assert ran == {"backbone=resnet50": "resnet18", "backbone=resnet101": "resnet26",
                   "backbone=resnet152": "resnet34", "backbone=hrnet_w32": "hrnet_w18_small",
                   "backbone=hrnet_w48": "hrnet_w18_small_v2"}
    assert mini.epochs(50) == 5 and mini.epochs(100) == 10 and mini.count(10000) == 200
    # The stand-in pools hold every mapped size (the largest subsets are whole pools).
    assert mini.dataset_sizes is not None
    assert mini.dataset_sizes["lynx-train"] >= mini.count(1000)
    assert mini.dataset_sizes["lynx-synthetic"] >= mini.count(10000)


def test_redraw_subsets_ties_the_subset_seed_to_the_trial_seed(tmp_path: Path) -> None:
    exp = experiment(axes={"data.real_count": Grid(10, 20)})
    fixed = plan(exp, SweepOptions(results=str(tmp_path), seeds=3))["main"]
    assert {j.config.data.subset_seed for j in fixed} == {0}
    redrawn = plan(exp, SweepOptions(results=str(tmp_path), seeds=3,
                                     redraw_subsets=True))["main"]
    assert all(j.config.data.subset_seed == j.seed == j.config.train.seed for j in redrawn)
    assert len({j.digest for j in redrawn}) == len(redrawn)
    # Nested within a seed: the two sizes of one seed share the seed's subset seed.
    by_seed = {(j.seed, j.config.data.real_count): j.config.data.subset_seed for j in redrawn}
    assert by_seed[(1, 10)] == by_seed[(1, 20)] == 1
    with pytest.raises(ConfigError, match="--set data.subset_seed.*--redraw-subsets"):
        plan(exp, SweepOptions(results=str(tmp_path), redraw_subsets=True,
                               overrides={"data.subset_seed": 4}))
    # Without --redraw-subsets the user may fix the subsets' seed for every trial.
    same = plan(exp, SweepOptions(results=str(tmp_path), overrides={"data.subset_seed": 4}))
    assert {j.config.data.subset_seed for j in same["main"]} == {4}


def test_per_scale_experiment_changes_apply_at_their_scale_only() -> None:
    exp = Experiment(name="exp", description="x", baseline=BASE,
                     stages=(Stage(axes={"data.real_count": Grid(10, 20)}),),
                     scales={"mini": {"model.kit_dim": 48}, "smoke": {"model.kit_dim": 32}})
    stage = exp.stages[0]
    dims = {name: build_job(exp, stage, {"data.real_count": 10}, 0, SCALES[name]).config
            .model.kit_dim for name in ("full", "smoke", "mini")}
    assert dims == {"full": TrialConfig().model.kit_dim, "smoke": 32, "mini": 48}
    with pytest.raises(ConfigError, match="mini: data.real_count is varied"):
        Experiment(name="bad", description="x", stages=exp.stages,
                   scales={"mini": {"data.real_count": 5}})
