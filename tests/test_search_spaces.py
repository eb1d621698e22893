"""The shipped experiments: they import (validated), expand to the study's trial counts,
repeat with seeds, and plan to CPU-sized configs in --smoke."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import search_spaces
from orchestrator.report.tables import TABLES
from orchestrator.study.experiment import Cases, Experiment, Grid, Stage, expand_stage, trial_count
from orchestrator.study.trials import SweepOptions, plan
from pose_core.config import ConfigError

# Final-stage trials before seed repeats: the rows of each table of the study.
TRIALS = {
    "backbones": 5,
    "synthetic_amount": 10,
    "augmentations": 7,
    "hyperparameters": 18,  # 3 lr x 3 epochs, without and with all augmentations
    "hyperparameters_tpe": 9,
    "hyperparameters_halving": 11,  # of the same 18: 6 arms x 50 epochs, 3 x 100, 2 x 210
    "real_amount": 9,
    "real_plus_synthetic": 10,  # {10, 50, 100, 500, 1000} real x {0, 1k} synthetic
    "two_stage": 5,
    "kitpose": 2,
    "quickstart": 4,
}
NAMES = sorted(TRIALS)


def test_every_shipped_experiment_is_counted_here() -> None:
    assert search_spaces.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_experiment_imports_and_has_the_study_trial_count(name: str) -> None:
    module = importlib.import_module(f"search_spaces.{name}")
    experiment = module.EXPERIMENT
    assert experiment.name == name
    assert module.__doc__ and experiment.description == module.__doc__
    summary = search_spaces.describe(experiment)
    assert summary["trials"] == TRIALS[name]
    assert summary["table"] in TABLES  # a renderer exists for its table
    for stage in experiment.stages:
        references = [str(changes.get("model.weights")) for changes in _changes(stage)]
        for ref in (r for r in references if r.startswith("@")):
            assert ref.split(":", 1)[1] in stage.depends_on, (stage.name, ref)


def _changes(stage: Stage) -> list[dict[str, object]]:
    cases = list(stage.cases.cases.values()) if stage.cases else []
    return [dict(stage.changes), *(dict(c) for c in cases)]


@pytest.mark.parametrize("name", NAMES)
def test_variant_ids_are_unique_and_seeds_multiply(name: str) -> None:
    experiment = search_spaces.load_experiment(name)
    for stage in experiment.stages:
        if stage.search != "grid":
            continue
        once = expand_stage(experiment, stage, seeds=1)
        ids = [spec.variant_id for spec in once]
        assert len(set(ids)) == len(ids)
        assert trial_count(experiment, stage) == (len(ids) if stage.scheduler != "halving"
                                                  else TRIALS[name])
        thrice = expand_stage(experiment.with_seeds(3), stage)
        assert len(thrice) == 3 * len(once)
        assert len({spec.trial_key for spec in thrice}) == len(thrice)
        assert {spec.seed for spec in thrice} == {0, 1, 2}


def test_seeds_option_triples_the_planned_grid(tmp_path: Path) -> None:
    experiment = search_spaces.load_experiment("real_amount")
    planned = plan(experiment, SweepOptions(results=str(tmp_path), seeds=3))
    assert {stage: len(trials) for stage, trials in planned.items()} == {"pretrain": 3, "main": 27}


def test_paper_values_are_on_the_axes() -> None:
    from pose_core.augment import AUGMENT_SETS

    augment = search_spaces.load_experiment("augmentations").final_stage.axes["data.augment"]
    assert isinstance(augment, Grid) and set(augment.values) == set(AUGMENT_SETS)
    hyper = search_spaces.load_experiment("hyperparameters").final_stage.axes
    assert hyper["train.lr"] == Grid(5e-4, 1e-4, 1e-5)
    assert hyper["train.epochs"] == Grid(50, 100, 210)
    tpe = search_spaces.load_experiment("hyperparameters_tpe")
    assert tpe.early_stopping and tpe.final_stage.scheduler == "asha"
    assert tpe.final_stage.search == "optuna" and tpe.final_stage.num_samples == 9


def test_tpe_search_runs_one_study_per_seed_with_rungs_on_evaluated_epochs(
    tmp_path: Path,
) -> None:
    from orchestrator.run.tuner import asha, tpe_sampler
    from orchestrator.study.scale import SCALES

    experiment = search_spaces.load_experiment("hyperparameters_tpe")
    stage = experiment.final_stage
    planned = plan(experiment, SweepOptions(results=str(tmp_path), seeds=3))
    assert [(t.seed, t.config.train.seed) for t in planned[stage.name]] == [
        (0, 0), (1, 1), (2, 2)]
    config = planned[stage.name][0].config
    scheduler = asha(experiment, stage, planned[stage.name][0], SCALES["full"])
    milestones = sorted(m for m, _ in scheduler._brackets[0]._rungs)
    # ASHA compares trials where they were just evaluated (every eval.interval epochs), never
    # on the 0.0 reported before a first evaluation, and not in the noisy first epochs.
    assert config.eval.interval == 10 and milestones == [30, 90]
    # 9 samples: 3 random, then modelled (Optuna's default would be 10 random: no TPE at all).
    assert tpe_sampler(stage, seed=1)._n_startup_trials == 3


@pytest.mark.parametrize(
    "axes, message",
    [
        ({"train.lrr": Grid(1e-3)}, "unknown key 'lrr'"),
        ({"train.epochs": Grid(10, "ten")}, "expected an integer"),
        ({"model.head": Grid("heatmap", "vitpose")}, "not one of"),
        ({"data.base": Grid("@best:main")}, "stage references"),
    ],
)
def test_broken_experiment_fails_at_construction(axes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Experiment(name="broken", description="x", stages=(Stage(axes=axes),))


def test_broken_case_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="case 'b'.*expected an integer"):
        Experiment(
            name="broken",
            description="x",
            stages=(
                Stage(cases=Cases({"a": {"data.real_count": 1}, "b": {"data.real_count": 1.5}})),
            ),
        )


@pytest.mark.parametrize("name", NAMES)
def test_smoke_plan_is_cpu_sized_and_keeps_sizes_nested(name: str, tmp_path: Path) -> None:
    experiment = search_spaces.load_experiment(name)
    full = plan(experiment, SweepOptions(results=str(tmp_path)))
    smoke = plan(experiment, SweepOptions(results=str(tmp_path), smoke=True))
    assert list(full) == list(smoke)
    for stage in full:
        pairs = [(f.config.data, s.config) for f, s in zip(full[stage], smoke[stage], strict=True)]
        for _, config in pairs:
            assert config.model.backbone == "hrnet_w18_small" or config.data.input_size <= 64
            assert config.data.input_size <= 128 and config.train.epochs <= 3
            assert config.model.kit_dim <= 128 or config.model.head != "kitpose"
            # No ImageNet file on a fresh machine: an ImageNet start is the generated one,
            # named in the config by its recipe, backbone and digest.
            assert config.model.init != "imagenet" or config.model.weights.startswith(
                f"generated:smoke/{config.model.backbone}/")
            assert config.data.real_count <= 40  # the smoke catalog has 40 real images
            assert config.data.synthetic_count <= 100
        for field in ("real_count", "synthetic_count"):
            # a larger full size stays strictly larger (distinct and nested)
            sizes = sorted({(getattr(d, field), getattr(c.data, field)) for d, c in pairs})
            shrunk = [small for _, small in sizes]
            assert shrunk == sorted(set(shrunk)), (stage, field, sizes)
