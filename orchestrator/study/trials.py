"""Sweep planning (Ray-free): every trial as one frozen :class:`TrialJob`, built in one place.

:func:`build_job` is the only code that turns an experiment, a stage, a variant's values, a
seed, a scale and the user's ``--set`` overrides into a trial configuration. The job crosses
Ray whole (grid trials carry it in Tune's param space; sampled trials get it from the
define-by-run search space, which calls :func:`build_job` with the sampled values), the
trial trains exactly ``job.config``, and the result row is written from the same job. So a
row can never say something other than what ran.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.study.experiment import (
    Choice,
    Experiment,
    Grid,
    IntRange,
    Stage,
    expand_stage,
    variant_id,
)
from orchestrator.study.scale import (
    BACKBONE_PATH,
    COUNT_PATHS,
    EPOCH_PATH,
    SCALES,
    Scale,
    get_scale,
)
from pose_core.config import ConfigError, TrialConfig, flatten, with_values
from pose_core.pretrain import start_marker


@dataclass(frozen=True)
class SweepOptions:
    results: str
    catalog: str | None = None
    scale: str = "full"
    smoke: bool = False  # alias of scale="smoke" (the --smoke flag)
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
    loggers: tuple[str, ...] = ()  # --log mlflow[=URI] | tensorboard | wandb
    reuse: bool = True  # trials already trained in the store (any experiment) are not rerun
    fork: bool = True  # grid trials differing only in epochs share their common prefix
    # Each seed also redraws the data subsets (data.subset_seed = the trial's seed), so an
    # interval over seeds covers which images were drawn as well as the initialisation.
    redraw_subsets: bool = False

    @property
    def scale_of(self) -> Scale:
        if self.smoke and self.scale not in ("full", "smoke"):
            raise ConfigError(f"--smoke is --scale smoke; it cannot be combined with --scale "
                              f"{self.scale}")
        return SCALES["smoke"] if self.smoke else get_scale(self.scale)


@dataclass(frozen=True)
class RunSettings:
    """How the trial runs on the cluster (decided after Ray starts, the same for a stage)."""

    storage: str  # where trials keep their checkpoints (local folder or s3://)
    workers: int = 1
    use_gpu: bool = False
    per_worker: Mapping[str, float] = field(default_factory=dict)
    threads: int = 1
    max_failures: int = 0
    gpus_per_trial: float = 0.0


@dataclass(frozen=True)
class TrialJob:
    """One trial, whole: what the trial trains and what its row says.

    ``values`` are the changes that name the variant (its case and axis values, at the
    sweep's scale); ``catalog`` is the data catalog as plain data; ``run`` is filled in when
    Ray has started. ``digest`` identifies the training: a finished row with the same digest
    is the same trial (``--resume`` skips it), any other is rerun.
    """

    experiment: str
    stage: str
    variant_id: str
    seed: int
    config: TrialConfig
    values: Mapping[str, Any] = field(default_factory=dict)
    scale: str = "full"
    sampled: bool = False  # drawn by Optuna (two samples may share values)
    catalog: Mapping[str, Any] = field(default_factory=dict)
    run: RunSettings | None = None
    # Digest of the exact training and test instances (set by the preflight): two trials
    # with the same subsets train on the same data whatever size a generated set was made.
    data_digest: str = ""
    # Schedule forking (orchestrator.plan.forking), never part of the training identity: a
    # prefix keeps a copy of its checkpoint after ``fork_at`` epochs; a member starts from
    # the copy of prefix (variant id, seed) ``fork_of`` after ``fork_epoch`` epochs, found in
    # the prefix's checkpoint folder ``fork_source``.
    fork_at: int = 0
    fork_of: tuple[str, int] | None = None
    fork_epoch: int = 0
    fork_source: str = ""  # the prefix's checkpoint folder name

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.stage, self.variant_id, self.seed)

    @property
    def trial_key(self) -> str:
        return f"{self.stage}/{self.variant_id}/seed={self.seed}"

    @property
    def digest(self) -> str:
        """The training identity: the full config, the catalog entries of the datasets it
        reads (hence the same subsets), where its initial weights come from, and the source
        of the code its training runs (:func:`code_digest`). Equal digests train the same thing: ``--resume``
        skips such a finished trial, and any experiment may reuse it (orchestrator.plan.reuse)."""
        data = self.config.data
        used = {n for n in (data.base, data.real, data.synthetic, data.test) if n}
        entries = {n: _source(e) for n, e in self.catalog.get("datasets", {}).items()
                   if n in used}
        weights = self.catalog.get("weights", {}).get(self.config.model.backbone)
        blob = json.dumps({"config": self.config.to_dict(), "datasets": entries,
                           "data": self.data_digest, "weights": weights,
                           "code": code_digest()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def checkpoint_name(self, tune_trial_id: str | None = None) -> str:
        """Where the trial keeps its checkpoints: stable per training identity (no
        timestamps), so a rerun of the same training (``--resume``, a retry) continues from
        them while a changed one (another config, data or training code) starts afresh instead
        of re-reporting the old run; a sampled trial adds its Tune trial id (kept by
        ``Tuner.restore``), since TPE may sample the same values twice."""
        raw = f"{self.experiment}-{self.stage}-{self.variant_id}-seed{self.seed}"
        name = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", raw)[:160] + f"-{self.digest[:10]}"
        return f"{name}-{tune_trial_id}" if self.sampled and tune_trial_id else name


def _source(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog entry as a data source: where the files are and how they are read; for a
    generated set its style and seed, not how many images were rendered (image i depends
    only on the seed, and the data digest holds which instances a trial drew)."""
    out = dict(entry)
    if isinstance(out.get("generate"), Mapping):
        out["generate"] = {k: v for k, v in out["generate"].items() if k != "images"}
    return out


# The code a trial's training runs, by dotted module name: every pose_core module and every
# orchestrator.data module that the worker's entry (orchestrator.run.worker) reaches, imports
# inside functions included: the model, the loop, the metrics, and what decides the content of
# the data it trains on (the catalog's readers, label formats and synthetic generator, run on
# the node, and the trial's data assembly). The rest the worker reaches (the session, storage,
# the job's definition) is plumbing: what it decides about the training is in the config,
# which the identity hashes itself. The source of these modules is part of the training
# identity (code_digest); tests/test_code_identity.py keeps the list equal to that import
# graph, so a module the training starts to use cannot be left out, and a module it does not
# run (the per-keypoint text table, throughput figures) does not make finished trials look
# changed.
TRAINING_MODULES: tuple[str, ...] = (
    "orchestrator.data.catalog",
    "orchestrator.data.label_content",
    "orchestrator.data.label_frames",
    "orchestrator.data.labels",
    "orchestrator.data.labels_dlc",
    "orchestrator.data.labels_sleap",
    "orchestrator.data.pretrained",
    "orchestrator.data.trialdata",
    "orchestrator.data.weights",
    "pose_core.augment",
    "pose_core.batch_augment",
    "pose_core.checks",
    "pose_core.coco",
    "pose_core.codecs",
    "pose_core.config",
    "pose_core.czechlynx",
    "pose_core.dataset",
    "pose_core.engine",
    "pose_core.epoch_report",
    "pose_core.eval_inputs",
    "pose_core.geometry",
    "pose_core.image_check",
    "pose_core.image_store",
    "pose_core.keypoint_metrics",
    "pose_core.kitpose_head",
    "pose_core.loop",
    "pose_core.losses",
    "pose_core.metrics",
    "pose_core.mixing",
    "pose_core.model_info",
    "pose_core.models",
    "pose_core.pck",
    "pose_core.pretrain",
    "pose_core.pretrain.recipe",
    "pose_core.readers",
    "pose_core.records",
    "pose_core.skeletons",
    "pose_core.synth",
    "pose_core.synth.body",
    "pose_core.synth.camera",
    "pose_core.synth.camera_trap",
    "pose_core.synth.generator",
    "pose_core.synth.occluders",
    "pose_core.synth.paint",
    "pose_core.synth.scene",
    "pose_core.trainer",
)


ROOT = Path(__file__).resolve().parents[2]  # the folder holding pose_core/ and orchestrator/


def module_source(name: str, root: Path = ROOT) -> Path:
    """The source file of project module ``name`` (a package: its ``__init__.py``)."""
    path = root.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def source_digest(root: Path) -> str:
    """Hash of the source of :data:`TRAINING_MODULES` under ``root``, each module as its
    dotted name and its bytes."""
    digest = hashlib.sha256()
    for name in sorted(TRAINING_MODULES):
        digest.update(name.encode() + b"\0" + module_source(name, root).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    """The training code's part of the training identity: any change to the code a trial's
    training runs is a new identity, and a change anywhere else is not. (Until this release
    the hash covered every file directly in ``pose_core/``, by file name; see RELIABILITY.md,
    "Training identity across releases".)"""
    return source_digest(ROOT)


def build_job(
    experiment: Experiment, stage: Stage, values: Mapping[str, Any], seed: int,
    scale: Scale = SCALES["full"], overrides: Mapping[str, Any] | None = None,
    case: str | None = None, sampled: bool = False, redraw_subsets: bool = False,
) -> TrialJob:
    """The one trial config builder. Precedence, later wins:

    1. the experiment's baseline;
    2. the scale's mapping of the baseline's data sizes, epochs and backbone, then the
       scale's changes (e.g. smoke: a small model at 64 px);
    3. the stage's changes;
    4. the variant's values: its case, then its axis values (case and axis values name the
       variant; data sizes and epochs mapped by the scale, like the stage's own values);
    5. the experiment's own changes for this scale (``Experiment.scale_changes``);
    6. the user's ``--set`` overrides (never on a path the stage varies: see
       :func:`check_overrides`, run by :func:`plan`);
    7. ``train.seed`` = the trial's seed, and with ``redraw_subsets`` also
       ``data.subset_seed`` (subsets stay nested within one seed);
    8. at a scale without weights files, ImageNet init with no file becomes the scale's
       generated-pretrained start (``model.weights = "generated:RECIPE/BACKBONE/DIGEST"``).

    ``values`` holds the case's changes and the axis values; ``case`` names the case.
    """
    axis_values = {k: v for k, v in values.items() if k in stage.axes}
    vid = variant_id(axis_values, case)
    # Sampled values come from the search space at this scale already (search_axes).
    values = dict(values) if sampled else scale.values(values)
    changes = {**scale.values(stage.changes), **values}
    changes |= experiment.scale_changes(scale.name)
    changes |= dict(overrides or {})
    changes["train.seed"] = seed
    if redraw_subsets:
        changes["data.subset_seed"] = seed
    config = with_values(experiment.baseline, {**scaled_baseline(experiment.baseline, scale),
                                               **scale.changes})
    # A stage reference on model.weights ("@best:STAGE") stays as written: it is resolved
    # when its stage starts (orchestrator.study.handover).
    config = with_values(config, changes)
    if (scale.generated_start and config.model.init == "imagenet"
            and config.model.weights is None):
        config = with_values(config, {"model.weights": start_marker(scale.generated_start,
                                                                    config.model.backbone)})
    return TrialJob(experiment.name, stage.name, vid, seed, config, values, scale.name, sampled)


def variant_config(experiment: Experiment, stage: Stage, changes: Mapping[str, Any],
                   seed: int) -> TrialConfig:
    """The full-scale config of one variant (through :func:`build_job`)."""
    return build_job(experiment, stage, changes, seed).config


def check_builds(experiment: Experiment) -> Experiment:
    """The first trial of every grid stage builds a full config: conflicting changes fail
    when the experiment is loaded, not when its stage starts."""
    for stage in experiment.stages:
        for spec in expand_stage(experiment, stage)[:1] if stage.search == "grid" else []:
            variant_config(experiment, stage, spec.changes, spec.seed)
    return experiment


def scaled_baseline(baseline: TrialConfig, scale: Scale) -> dict[str, Any]:
    """The baseline's data sizes, epochs and backbone as the scale maps them."""
    values = {BACKBONE_PATH: baseline.model.backbone, EPOCH_PATH: baseline.train.epochs,
              **{path: getattr(baseline.data, path.split(".")[1]) for path in COUNT_PATHS}}
    return scale.values(values)


def varied_paths(experiment: Experiment, stage: Stage,
                 redraw_subsets: bool = False) -> dict[str, str]:
    """Every config path a stage varies, with what varies it (for error messages)."""
    out = {path: f"axis {type(axis).__name__}" for path, axis in stage.axes.items()}
    if stage.cases is not None:
        for name, changes in stage.cases.cases.items():
            for path in changes:
                out.setdefault(path, f"case {name!r}")
    out["train.seed"] = "the trial seeds (use --seeds)"
    if redraw_subsets:
        out["data.subset_seed"] = "the trial seeds (--redraw-subsets)"
    return out


def check_overrides(experiment: Experiment, stages: list[Stage],
                    overrides: Mapping[str, Any], redraw_subsets: bool = False) -> None:
    """``--set`` on a path a stage varies would relabel trials (ids naming values that did
    not run): refused in one line naming the path, what varies it and the stage."""
    for path in overrides:
        for stage in stages:
            varied = varied_paths(experiment, stage, redraw_subsets)
            if path in varied:
                raise ConfigError(
                    f"--set {path}: stage {stage.name!r} of {experiment.name} varies {path} "
                    f"({varied[path]}); every trial would run one value while its variant id "
                    "names another. Remove the --set, or run an experiment file that fixes it"
                )


def selected_stages(experiment: Experiment, options: SweepOptions) -> list[Stage]:
    if not options.stages:
        return list(experiment.stages)
    names = {s.name for s in experiment.stages}
    unknown = sorted(set(options.stages) - names)
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; {experiment.name} has {sorted(names)}")
    return [s for s in experiment.stages if s.name in options.stages]


def plan(experiment: Experiment, options: SweepOptions) -> dict[str, list[TrialJob]]:
    """Every trial of every selected stage, validated now. An optuna stage plans one job per
    seed (its TPE study); its trials are built from the sampled values when Tune asks."""
    scale = options.scale_of
    seeds = options.seeds or experiment.seeds
    stages = selected_stages(experiment, options)
    redraw = options.redraw_subsets
    check_overrides(experiment, stages, options.overrides, redraw)
    planned: dict[str, list[TrialJob]] = {}
    for stage in stages:
        if stage.search == "optuna":
            planned[stage.name] = [
                build_job(experiment, stage, {}, seed, scale, options.overrides, sampled=True,
                          redraw_subsets=redraw)
                for seed in range(seeds)]
            continue
        planned[stage.name] = [
            build_job(experiment, stage, spec.changes, spec.seed, scale, options.overrides,
                      case=spec.case, redraw_subsets=redraw)
            for spec in expand_stage(experiment, stage, seeds)]
    return planned


def search_axes(stage: Stage, scale: Scale) -> dict[str, Any]:
    """A stage's search axes at a scale: data-size and epoch ranges map like grid values."""
    out: dict[str, Any] = {}
    for path, axis in stage.axes.items():
        if isinstance(axis, IntRange) and path in (*COUNT_PATHS, EPOCH_PATH):
            low, high = scale.value(path, axis.low), scale.value(path, axis.high)
            axis = IntRange(low, max(low, high), axis.step if (low, high) == (axis.low,
                                                                             axis.high) else 1)
        elif isinstance(axis, (Grid, Choice)) and path in (*COUNT_PATHS, EPOCH_PATH):
            axis = type(axis)(*sorted({scale.value(path, v) for v in axis.values}))
        out[path] = axis
    return out


def with_run(job: TrialJob, catalog: Mapping[str, Any], run: RunSettings) -> TrialJob:
    return dataclasses.replace(job, catalog=catalog, run=run)


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``train.epochs 2 -> 3``: the first dotted path whose value differs."""
    flat_old, flat_new = flatten(old), flatten(new)
    for path in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(path) != flat_new.get(path):
            return f"{path} {flat_old.get(path)!r} -> {flat_new.get(path)!r}"
    return "same config: the training code or the data catalog entries changed"

