"""Experiments: a baseline config, typed axes over dotted config paths, and stages.

This module is Ray-free. An experiment file in ``search_spaces/`` states only what changes
from the shared baseline (detectron2-style variant configs); every axis path and value is
checked against the config dataclasses when the experiment is constructed, i.e. when the
file is imported.

Grid-like axes (:class:`Grid`, :class:`Cases`, :class:`Seeds`) expand to a cartesian
product of trials with readable variant ids. Search axes (:class:`Choice`,
:class:`LogUniform`, :class:`Uniform`, :class:`IntRange`) are sampled by Optuna (TPE).
A value ``"@best:STAGE"`` or ``"@match:STAGE"`` for ``model.weights`` hands an earlier
stage's checkpoint on: :mod:`orchestrator.study.handover` (only its syntax is checked here).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pose_core.config import ConfigError, TrialConfig, check_path
from pose_core.metrics import METRIC_NAMES

METRICS = METRIC_NAMES


@dataclass(frozen=True, init=False)
class _Values:
    """An axis given by its values: ``Grid(1, 2, 3)`` or ``Grid([1, 2, 3])``."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = tuple(values[0])
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True, init=False)
class Grid(_Values):
    """Every value is a trial (an ablation axis)."""


@dataclass(frozen=True, init=False)
class Choice(_Values):
    """A categorical search axis (Optuna); enumerated like a grid in grid stages."""


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1


@dataclass(frozen=True)
class Cases:
    """Named arms, each a set of dotted-path changes (for non-cartesian designs)."""

    cases: Mapping[str, Mapping[str, Any]]


Axis = Grid | Choice | LogUniform | Uniform | IntRange
SearchAxis = Choice | LogUniform | Uniform | IntRange


@dataclass(frozen=True)
class TrialSpec:
    """One trial of a grid stage: its variant id, its changes, and its seed."""

    stage: str
    variant_id: str
    changes: dict[str, Any]
    seed: int
    case: str | None = None

    @property
    def trial_key(self) -> str:
        return f"{self.stage}/{self.variant_id}/seed={self.seed}"


@dataclass(frozen=True)
class Stage:
    """A set of trials run together. ``search='optuna'`` samples ``axes`` with TPE."""

    name: str = "main"
    axes: Mapping[str, Axis] = field(default_factory=dict)
    cases: Cases | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    search: Literal["grid", "optuna"] = "grid"
    num_samples: int = 0
    # "asha" stops sampled trials early (optuna stages); "halving" runs a grid stage's
    # train.epochs lengths in order and only the best ``keep`` fraction of the other axes'
    # combinations goes on to each longer length (orchestrator.plan.halving).
    scheduler: Literal["fifo", "asha", "halving"] = "fifo"
    keep: float = 0.5
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    """A study: baseline, stages, the metric to optimise and whether ASHA may stop trials."""

    name: str
    description: str
    stages: tuple[Stage, ...]
    baseline: TrialConfig = field(default_factory=TrialConfig)
    metric: str = "AP"
    mode: Literal["max", "min"] = "max"
    early_stopping: bool = False
    datasets: tuple[str, ...] = ()
    table: str | None = None
    seeds: int = 1
    # Per-scale changes, {scale name: {path: value}}, applied after the variant's values.
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"experiment {self.name!r} has no stage {name!r}")

    def scale_changes(self, scale: str) -> dict[str, Any]:
        """This experiment's own changes at ``scale`` (applied after the variant's values)."""
        return dict(self.scales.get(scale, {}))

    def with_seeds(self, seeds: int) -> Experiment:
        return dataclasses.replace(self, seeds=seeds)


def validate(experiment: Experiment) -> None:
    """Check every path and value up front; raise :class:`ConfigError` naming the culprit."""
    where = f"experiment {experiment.name!r}"
    if experiment.metric not in METRICS:
        raise ConfigError(f"{where}: metric {experiment.metric!r} is not one of {METRICS}")
    if not experiment.stages:
        raise ConfigError(f"{where}: needs at least one stage")
    seen: set[str] = set()
    for stage in experiment.stages:
        if stage.name in seen:
            raise ConfigError(f"{where}: duplicate stage name {stage.name!r}")
        for dep in stage.depends_on:
            if dep not in seen:
                raise ConfigError(f"{where}: stage {stage.name!r} depends on unknown or later stage {dep!r}")
        seen.add(stage.name)
        _validate_stage(experiment, stage, f"{where}, stage {stage.name!r}")
    for scale, changes in experiment.scales.items():
        for path, value in changes.items():
            _check(path, value, f"{where}, {scale}")
            for stage in experiment.stages:
                varied = set(stage.axes) | {p for c in (stage.cases.cases.values() if stage.cases
                                                        else ()) for p in c}
                if path in varied:
                    raise ConfigError(f"{where}, {scale}: {path} is varied by stage "
                                      f"{stage.name!r}; a scale change there would relabel "
                                      "its trials")


def _validate_stage(experiment: Experiment, stage: Stage, where: str) -> None:
    for path, value in stage.changes.items():
        _check(path, value, where)
    for path, axis in stage.axes.items():
        if isinstance(axis, (Grid, Choice)):
            if not axis.values:
                raise ConfigError(f"{where}: axis {path!r} has no values")
            for value in axis.values:
                _check(path, value, where)
        elif isinstance(axis, (LogUniform, Uniform)):
            _check(path, float(axis.low), where)
            if not axis.low < axis.high or (isinstance(axis, LogUniform) and axis.low <= 0):
                raise ConfigError(f"{where}: axis {path!r} has an empty or invalid range")
        elif isinstance(axis, IntRange):
            _check(path, axis.low, where)
            if axis.low > axis.high or axis.step < 1:
                raise ConfigError(f"{where}: axis {path!r} has an empty range")
        else:
            raise ConfigError(f"{where}: axis {path!r} has unknown type {type(axis).__name__}")
    if stage.cases is not None:
        for name, changes in stage.cases.cases.items():
            for path, value in changes.items():
                _check(path, value, f"{where}, case {name!r}")
    search_axes = [p for p, a in stage.axes.items() if not isinstance(a, (Grid, Choice))]
    if stage.search == "grid" and search_axes:
        raise ConfigError(f"{where}: continuous axes {search_axes} need search='optuna'")
    if stage.search == "optuna" and stage.num_samples < 1:
        raise ConfigError(f"{where}: an optuna stage needs num_samples >= 1")
    if stage.scheduler == "asha" and not experiment.early_stopping:
        raise ConfigError(f"{where}: ASHA needs early_stopping=True on the experiment")
    if stage.scheduler == "halving":
        epochs = stage.axes.get("train.epochs")
        if stage.search != "grid" or not isinstance(epochs, (Grid, Choice)) \
                or len(set(epochs.values)) < 2:
            raise ConfigError(f"{where}: scheduler='halving' needs a grid stage with a "
                              "train.epochs axis of two or more lengths")
        if not 0 < stage.keep < 1:
            raise ConfigError(f"{where}: keep={stage.keep} must be between 0 and 1 (the "
                              "fraction of arms that trains the next length)")


def _check(path: str, value: Any, where: str) -> None:
    if isinstance(value, str) and value.startswith("@"):
        if path != "model.weights" or not value.startswith(("@best:", "@match:")):
            raise ConfigError(f"{where}: {path}={value!r}: stage references are "
                              "'@best:STAGE' or '@match:STAGE' on model.weights only")
        return
    try:
        check_path(path, value)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def variant_id(changes: Mapping[str, Any], case: str | None = None) -> str:
    """Readable id: ``case,key=value,...`` using the last path component as the key."""
    parts = [case] if case else []
    parts += [f"{path.split('.')[-1]}={format_value(v)}" for path, v in changes.items()]
    return ",".join(parts) or "baseline"


def expand_stage(experiment: Experiment, stage: Stage, seeds: int | None = None) -> list[TrialSpec]:
    """All trials of a grid stage (cases x grid axes x seeds), in a stable order."""
    seeds = experiment.seeds if seeds is None else seeds
    grid_paths = [p for p, a in stage.axes.items() if isinstance(a, (Grid, Choice))]
    grid_values = [stage.axes[p].values for p in grid_paths]  # type: ignore[union-attr]
    cases: Iterable[tuple[str | None, Mapping[str, Any]]] = (
        stage.cases.cases.items() if stage.cases is not None else [(None, {})]
    )
    specs = []
    for case_name, case_changes in cases:
        for combo in itertools.product(*grid_values):
            axis_changes = dict(zip(grid_paths, combo, strict=True))
            changes = {**case_changes, **axis_changes}
            vid = variant_id(axis_changes, case_name)
            for seed in range(seeds):
                specs.append(TrialSpec(stage.name, vid, changes, seed, case_name))
    return specs


def trial_count(experiment: Experiment, stage: Stage) -> int:
    """Trials of a stage before seed repeats (the rows of its table)."""
    if stage.search == "optuna":
        return stage.num_samples
    grid = len(expand_stage(experiment, stage, seeds=1))
    if stage.scheduler == "halving":
        lengths = len(stage.axes["train.epochs"].values)  # type: ignore[union-attr]
        return sum(halving_arms(grid // lengths, lengths, stage.keep))
    return grid


def kept_count(arms: int, keep: float) -> int:
    """Arms that go on to the next length under halving: ``ceil(keep * arms)``, at least 1."""
    return max(1, math.ceil(keep * arms - 1e-9))


def halving_arms(arms: int, lengths: int, keep: float) -> list[int]:
    """Arms that train each length under halving, shortest first."""
    counts = [arms]
    while len(counts) < lengths:
        counts.append(kept_count(counts[-1], keep))
    return counts



def search_space_summary(stage: Stage) -> dict[str, str]:
    return {path: repr(axis) for path, axis in stage.axes.items()}
