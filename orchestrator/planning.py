"""Sweep planning (Ray-free): trial configs, --smoke, preflight checks, stage references.

Per RAY_NOTES.md (Ray 2.60, Train V2): a Tune *function* trainable (:func:`tune_trial`)
launches a ``TorchTrainer`` and reports through ``TuneReportCallback``; ``Tuner(trainer)``
does not work. Grid stages use Tune's ``grid_search`` with the default searcher (OptunaSearch
refuses grids); optuna stages use a define-by-run OptunaSearch (TPE, seeded, optionally
persisted). ASHA cuts trials on the reported ``epoch``. Rows are written by a Tune callback
in this process as each trial ends, so a killed worker or trial never loses a finished row,
and ``--resume`` skips every trial whose ``ok``/``stopped`` row is already stored.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.catalog import Catalog
from orchestrator.experiment import (
    Choice,
    Experiment,
    Grid,
    IntRange,
    Stage,
    TrialSpec,
    expand_stage,
    smoke_count,
)
from orchestrator.results import ResultsStore
from pose_core.config import ConfigError, TrialConfig, with_values
from pose_core.skeletons import resolve_sigmas

log = logging.getLogger(__name__)

# Applied in --smoke before the experiment's own changes: a CPU-sized run of any experiment.
SMOKE_BASE: dict[str, Any] = {
    "model.backbone": "hrnet_w18_small",
    "data.input_size": 64,
    "data.loader_workers": 0,
    "data.max_test": 24,
    "train.epochs": 2,
    "train.batch_size": 16,
    "train.warmup_iters": 10,
    "train.bf16": False,
    "eval.interval": 1,
    "eval.flip_test": True,
}


@dataclass(frozen=True)
class SweepOptions:
    results: str
    catalog: str | None = None
    smoke: bool = False
    seeds: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    workers: int = 1
    cpus_per_worker: float = 4.0  # GPU clusters only; CPU-only clusters split their CPUs
    gpus_per_worker: float = 1.0
    max_concurrent: int | None = None
    optuna_storage: str | None = None
    max_failures: int = 2
    stages: tuple[str, ...] = ()
    tune_storage: str | None = None
    ray_address: str | None = None
    debug: bool = False
    runner: str = "auto"  # auto | tune (in-process trial) | train (TorchTrainer, DDP)


@dataclass
class PlannedTrial:
    spec: TrialSpec
    config: TrialConfig


def trial_config(
    experiment: Experiment, stage: Stage, spec: TrialSpec, options: SweepOptions
) -> TrialConfig:
    """Baseline -> smoke base -> stage and axis values (data sizes shrunk in smoke) ->
    the experiment's smoke changes -> ``--set`` overrides."""
    changes = {**stage.changes, **spec.changes}
    config = experiment.baseline
    if options.smoke:
        config = with_values(config, SMOKE_BASE)
        changes = shrink(changes)
        changes = {**changes, **experiment.smoke}
    changes = {**changes, **options.overrides, "train.seed": spec.seed}
    plain = {k: v for k, v in changes.items() if not _is_reference(v)}
    config = with_values(config, plain)
    references = {k: v for k, v in changes.items() if _is_reference(v)}
    if references:
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, weights=references["model.weights"])
        )
    if options.smoke and config.model.init == "imagenet" and config.model.weights is None:
        # No ImageNet file exists on a fresh machine: smoke runs start from random weights.
        config = with_values(config, {"model.init": "random"})
    return config


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("@")


def shrink(changes: dict[str, Any]) -> dict[str, Any]:
    """--smoke: data sizes ~sqrt (still distinct and nested), epochs to 1-3 (50/100/210 ->
    1/2/3, so the hyperparameter grid keeps distinct trials)."""
    out = dict(changes)
    for key in ("data.real_count", "data.synthetic_count"):
        if key in out:
            out[key] = smoke_count(int(out[key]))
    if "train.epochs" in out:
        out["train.epochs"] = max(1, min(3, round(int(out["train.epochs"]) / 60)))
    return out


def search_axes(stage: Stage, smoke: bool) -> dict[str, Any]:
    """A stage's axes; in --smoke, data-size and epoch ranges shrink like grid values do."""
    if not smoke:
        return dict(stage.axes)
    out: dict[str, Any] = {}
    for path, axis in stage.axes.items():
        if isinstance(axis, IntRange) and path in ("data.real_count", "data.synthetic_count"):
            axis = IntRange(smoke_count(axis.low), max(smoke_count(axis.high), smoke_count(axis.low)))
        elif isinstance(axis, IntRange) and path == "train.epochs":
            axis = IntRange(1, 3)
        elif isinstance(axis, (Grid, Choice)) and path in SHRUNK:
            axis = type(axis)(*sorted({shrink({path: v})[path] for v in axis.values}))
        out[path] = axis
    return out


SHRUNK = ("data.real_count", "data.synthetic_count", "train.epochs")


def plan(experiment: Experiment, options: SweepOptions) -> dict[str, list[PlannedTrial]]:
    """Every grid trial of every selected stage with its full config (validated now)."""
    seeds = options.seeds or experiment.seeds
    planned: dict[str, list[PlannedTrial]] = {}
    for stage in selected_stages(experiment, options):
        if stage.search == "optuna":  # one TPE study per seed; its trials are sampled later
            optuna_specs = [TrialSpec(stage.name, "optuna", {}, seed) for seed in range(seeds)]
            planned[stage.name] = [PlannedTrial(spec, trial_config(experiment, stage, spec, options))
                                   for spec in optuna_specs]
            continue
        specs = expand_stage(experiment, stage, seeds)
        planned[stage.name] = [
            PlannedTrial(spec, trial_config(experiment, stage, spec, options)) for spec in specs
        ]
    return planned


def needed_sizes(planned: dict[str, list[PlannedTrial]]) -> dict[str, int]:
    """Images each dataset must provide: the largest count any trial draws from it."""
    needs: dict[str, int] = {}

    def need(name: str | None, count: int | None) -> None:
        if name and count:
            needs[name] = max(needs.get(name, 0), count)

    for trials in planned.values():
        for trial in trials:
            data = trial.config.data
            need(data.base, data.base_count)
            need(data.real, data.real_count)
            need(data.synthetic, data.synthetic_count)
            need(data.test, data.max_test)
    return needs


def make_catalog(options: SweepOptions, planned: dict[str, list[PlannedTrial]]) -> Catalog:
    needs = needed_sizes(planned)
    if options.catalog:
        return Catalog.from_file(options.catalog, options.smoke, needs)
    return Catalog.default(options.smoke, needs=needs)


def selected_stages(experiment: Experiment, options: SweepOptions) -> list[Stage]:
    if not options.stages:
        return list(experiment.stages)
    names = {s.name for s in experiment.stages}
    unknown = sorted(set(options.stages) - names)
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; {experiment.name} has {sorted(names)}")
    return [s for s in experiment.stages if s.name in options.stages]


def preflight(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = print,
) -> tuple[dict[str, list[PlannedTrial]], Catalog]:
    """Everything that can fail before GPU time is spent: configs, data, weights, storage."""
    planned = plan(experiment, options)
    catalog = make_catalog(options, planned)
    names: set[str] = set()
    for trials in planned.values():
        for trial in trials:
            data = trial.config.data
            names.update(n for n in (data.base, data.test) if n)
            if data.real and data.real_count:
                names.add(data.real)
            if data.synthetic and data.synthetic_count:
                names.add(data.synthetic)
            check_weights(trial.config, catalog)
    say(f"checking {len(names)} dataset(s): {', '.join(sorted(names))}")
    available, skeletons = {}, {}
    for name, (report, images, skeleton) in catalog.validate(names, say).items():
        say("  " + report.summary())
        available[name], skeletons[name] = images, skeleton
    for trials in planned.values():
        for trial in trials:
            # A sigma set that does not fit the test skeleton fails here, not in a worker.
            resolve_sigmas(trial.config.eval.sigmas, skeletons[trial.config.data.test])
    for name, count in needed_sizes(planned).items():
        if count > available.get(name, count):
            raise ValueError(
                f"a trial draws {count} images from dataset {name!r} but it has only "
                f"{available[name]} ({catalog.entry(name).kind} entry in {catalog.source})"
            )
    ResultsStore(options.results).check_writable()
    return planned, catalog


def check_weights(config: TrialConfig, catalog: Catalog) -> None:
    model = config.model
    if model.init == "imagenet" and model.weights is None:
        catalog.weights_for(model.backbone)
    weights = model.weights
    if weights and not _is_reference(weights) and "://" not in weights:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"model.weights {weights!r} does not exist")


def resolve_references(
    config: TrialConfig, spec: TrialSpec, store: ResultsStore, experiment: Experiment
) -> TrialConfig:
    """Replace ``@best:STAGE`` / ``@match:STAGE`` by the checkpoint URI of that stage's trial."""
    weights = config.model.weights
    if not _is_reference(weights):
        return config
    kind, stage = str(weights)[1:].split(":", 1)
    rows = [
        r for r in store.read_trials().to_pylist()
        if r["experiment"] == experiment.name and r["stage"] == stage and r["status"] == "ok"
        and r["checkpoint_uri"]
    ]
    if kind == "match":
        rows = [r for r in rows if r["seed"] == spec.seed]
    if not rows:
        raise RuntimeError(
            f"{spec.trial_key}: model.weights={weights} but stage {stage!r} has no finished "
            "trial with a checkpoint in the results store; run that stage first"
        )
    sign = 1 if experiment.mode == "max" else -1

    def score(row: dict[str, Any]) -> float:
        value = row[experiment.metric]
        return float("-inf") if value is None else sign * value

    best = max(rows, key=score)
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, weights=best["checkpoint_uri"])
    )
