"""The sweep driver: Ray Tune over trials, each trial training pose_core.

A trial runs in one of two ways (``--runner``, see :mod:`orchestrator.worker`):

- ``tune`` (the default with one worker per trial): the Tune function trainable
  :func:`tune_trial_direct` trains in its own process. Its resources (CPU, and a GPU or a
  fraction of one, so small trials pack several to a GPU) are the trial's resources, and Tune
  actors are reused between trials, so a trial starts in seconds.
- ``train`` (needed for ``--workers N > 1``, data parallel): per RAY_NOTES.md (Ray 2.60,
  Train V2) the function trainable :func:`tune_trial` launches a ``TorchTrainer`` and reports
  through ``TuneReportCallback``; ``Tuner(trainer)`` does not work.

Grid stages use Tune's ``grid_search`` with the default searcher (OptunaSearch refuses
grids); optuna stages use a define-by-run OptunaSearch (TPE, seeded, optionally persisted).
ASHA cuts trials on the reported ``epoch``. Rows are written by a Tune callback in this
process as each trial ends, so a finished trial's row exists even if the driver dies later,
and ``--resume`` skips every trial whose ``ok``/``stopped`` row is already stored. Each trial
keeps its checkpoints under a stable name, so an interrupted trial resumes from its own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.catalog import Catalog
from orchestrator.experiment import Experiment, Stage, variant_id
from orchestrator.planning import (
    PlannedTrial,
    SweepOptions,
    preflight,
    resolve_references,
    search_axes,
)
from orchestrator.progress import SweepCallback
from orchestrator.results import ResultsStore
from orchestrator.storage import join, pyarrow_filesystem
from pose_core.config import TrialConfig, with_values

log = logging.getLogger(__name__)
TRIAL_DRIVER_CPU = 0.25  # the Tune trial only waits on its Train run
REDUCTION_FACTOR = 3  # ASHA keeps the best third at each rung


@dataclass(frozen=True)
class Resources:
    use_gpu: bool
    workers: int
    per_worker: dict[str, float]
    threads: int
    max_concurrent: int
    # What the Tune trial itself asks for: with runner "train" a light driver of the Train
    # run; with runner "tune" the trial trains, so it holds the worker's resources.
    trial_driver: dict[str, float]
    runner: str = "train"

    @property
    def gpus_per_trial(self) -> float:
        return self.workers * self.per_worker.get("GPU", 0.0)


def init_ray(options: SweepOptions) -> None:
    """Join the cluster we run on (``ray submit`` / ``ray job submit``) or start a local one.

    The dashboard must run: Train V2 frees a stopped trial's workers through a cleaner that
    polls the State API (RAY_NOTES 0.1). It binds to 127.0.0.1 unless asked otherwise.
    """
    import ray

    if not options.debug:
        # Trial errors land in the result rows and the progress line; Tune's own
        # traceback logging would bury the progress display.
        for name in ("ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # The legacy reporter honours verbose=0; the new one always prints its config box.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every result already lands in Parquet; Tune's own JSON/CSV/TensorBoard loggers wrote
    # each report three more times and took a quarter of the driver's CPU (BENCHMARKS.md, P4).
    # TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0 brings them back.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if ray.is_initialized():
        return
    quiet: dict[str, Any] = {"log_to_driver": options.debug, "logging_level": logging.INFO if options.debug
             else logging.WARNING}
    address = options.ray_address or os.environ.get("RAY_ADDRESS")
    local: dict[str, Any] = {"include_dashboard": True,
             "dashboard_host": os.environ.get("POSETUNE_DASHBOARD_HOST", "127.0.0.1")}
    if address == "local":
        ray.init(**local, **quiet)
    elif address:
        ray.init(address=address, **quiet)
    else:
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError:
            ray.init(**local, **quiet)


def choose_runner(options: SweepOptions) -> str:
    """``auto``: the in-process Tune runner for one worker per trial, Ray Train for DDP."""
    if options.runner == "auto":
        return "tune" if options.workers <= 1 else "train"
    if options.runner == "tune" and options.workers > 1:
        raise ValueError(f"--runner tune trains one process per trial; --workers "
                         f"{options.workers} (data parallel) needs --runner train")
    if options.runner not in ("tune", "train"):
        raise ValueError(f"unknown runner {options.runner!r}; use auto, tune or train")
    return options.runner


def plan_resources(options: SweepOptions) -> Resources:
    """Per-trial resources decided from what the cluster has, never from the driver's own
    devices: ``use_gpu=True`` on a GPU-less cluster would wait forever (RAY_NOTES 3)."""
    import ray

    runner = choose_runner(options)
    total = ray.cluster_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 1.0)
    workers = max(1, options.workers)
    use_gpu = gpus > 0 and options.gpus_per_worker > 0
    if use_gpu:
        gpw = options.gpus_per_worker
        if gpw < 1 and workers > 1:
            raise ValueError("fractional GPUs need --workers 1 (NCCL refuses two workers on "
                             "one GPU: ray#48012)")
        concurrent = max(1, math.floor(gpus / (workers * gpw) + 1e-9))
        if options.max_concurrent:
            concurrent = min(concurrent, options.max_concurrent)
        # Packed trials must also fit the CPUs, or Ray leaves the GPU idle waiting for them.
        cpw = min(options.cpus_per_worker, max(0.5, cpus / (workers * concurrent)))
        per_worker = {"CPU": cpw, "GPU": gpw}
    else:
        concurrent = options.max_concurrent or 1
        driver_cpu = TRIAL_DRIVER_CPU if runner == "train" else 0.0
        cpw = max(0.5, (cpus - driver_cpu * concurrent) / (workers * concurrent))
        per_worker = {"CPU": cpw}
    threads = max(1, int(cpw + 0.25))
    if runner == "tune":
        # The trial is the training process: it must land on a GPU node, never be pinned to
        # the TRAIN_DRIVER head; if a spot node dies Tune retries it from its checkpoint.
        return Resources(use_gpu, workers, per_worker, threads, concurrent, dict(per_worker),
                         runner)
    # Trial drivers only wait on their Train run. On clusters that offer a TRAIN_DRIVER
    # resource (cluster/aws-gpu.yaml puts it on the non-spot head) they go there, so a
    # preempted GPU node never takes a sweep's trial driver with it.
    driver: dict[str, float] = {"CPU": TRIAL_DRIVER_CPU}
    if total.get("TRAIN_DRIVER", 0) > 0:
        driver["TRAIN_DRIVER"] = 1.0
        concurrent = min(concurrent, int(total["TRAIN_DRIVER"]))
    return Resources(use_gpu, workers, per_worker, threads, concurrent, driver, runner)


def storage_arguments(uri: str) -> dict[str, Any]:
    """Ray's ``storage_path`` (and ``storage_filesystem`` for s3://): checkpoints go through
    s3fs with posetune's endpoint and credential rules, like the results store."""
    if "://" not in uri or uri.startswith("file://"):
        return {"storage_path": uri}
    filesystem, path = pyarrow_filesystem(uri)
    return {"storage_path": path, "storage_filesystem": filesystem}


def train_run_name(experiment: str, stage: str, variant: str, seed: int) -> str:
    """Stable per trial (no timestamps): Ray Train auto-resumes a run of the same name."""
    raw = f"{experiment}-{stage}-{variant}-seed{seed}"
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", raw)[:180]


def trial_run_name(config: dict[str, Any], cfg: TrialConfig, variant: str) -> str:
    """Where a trial keeps its checkpoints. Grid trials: by variant and seed, so a rerun of the
    same trial (``--resume`` after the driver died) continues from them. Sampled trials: also
    by Tune trial id (kept by ``Tuner.restore``), since TPE may sample the same values twice."""
    run, spec = config["run"], config["spec"]
    name = train_run_name(run["experiment"], spec["stage"], variant, cfg.train.seed)
    if any("." in key for key in config):
        from ray import tune

        name = f"{name}-{tune.get_context().get_trial_id()}"
    return name


def tune_trial(config: dict[str, Any]) -> None:
    """One Tune trial = one Ray Train run (the Train V2 pattern)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestrator.worker import train_loop_per_worker

    run = config["run"]
    cfg, vid = trial_config_of(config)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"trial": cfg.to_dict(), "catalog": run["catalog"],
                           "threads": run["threads"]},
        scaling_config=ray.train.ScalingConfig(
            num_workers=run["workers"], use_gpu=run["use_gpu"],
            resources_per_worker=run["per_worker"],
        ),
        run_config=ray.train.RunConfig(
            name=trial_run_name(config, cfg, vid),
            **storage_arguments(run["storage"]),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=run["max_failures"]),
        ),
    )
    trainer.fit()


def tune_trial_direct(config: dict[str, Any]) -> None:
    """One Tune trial trained in this process (``--runner tune``)."""
    from orchestrator.worker import TuneSession, run_trial

    run = config["run"]
    cfg, vid = trial_config_of(config)
    name = trial_run_name(config, cfg, vid)
    run_trial({"trial": cfg.to_dict(), "catalog": run["catalog"], "threads": run["threads"]},
              TuneSession(join(run["storage"], name)))


def trial_config_of(config: dict[str, Any]) -> tuple[TrialConfig, str]:
    """The trial's config and variant id; Optuna's suggestions arrive as dotted keys."""
    spec = config["spec"]
    cfg = TrialConfig.from_dict(spec["trial"])
    suggested = {k: v for k, v in config.items() if "." in k}
    if suggested:
        return with_values(cfg, suggested), variant_id(suggested)
    return cfg, spec["variant_id"]


def absolute(uri: str) -> str:
    """Local paths made absolute; URIs (s3://...) as they are."""
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


def say_now(line: str) -> None:
    """Progress goes out at once, also when stdout is a file or a pipe (``ray job logs``)."""
    print(line, flush=True)


def run_sweep(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = say_now
) -> ResultsStore:
    """Preflight, then every stage in order. Returns the results store."""
    # Ray needs absolute local storage paths (a relative one reads as a URI without scheme).
    options = dataclasses.replace(
        options, results=absolute(options.results),
        tune_storage=absolute(options.tune_storage) if options.tune_storage else None,
    )
    choose_runner(options)  # a bad --runner fails before anything starts
    planned, catalog = preflight(experiment, options, say)
    store = ResultsStore(options.results)
    init_ray(options)
    resources = plan_resources(options)
    say(f"resources per trial: {resources.workers} worker(s) x {resources.per_worker}"
        f"{' (GPU)' if resources.use_gpu else ' (CPU only)'}, up to "
        f"{resources.max_concurrent} trial(s) at once, runner {resources.runner}")
    storage = options.tune_storage or join(options.results, "tune")
    for stage_name, trials in planned.items():
        stage = experiment.stage(stage_name)
        run_stage(experiment, stage, trials, options, catalog, resources, store, storage, say)
    return store


def run_stage(
    experiment: Experiment, stage: Stage, trials: list[PlannedTrial], options: SweepOptions,
    catalog: Catalog, resources: Resources, store: ResultsStore, storage: str,
    say: Callable[[str], None],
) -> None:
    run = {
        "experiment": experiment.name, "catalog": catalog.to_dict(), "storage": storage,
        "workers": resources.workers, "use_gpu": resources.use_gpu,
        "per_worker": resources.per_worker, "threads": resources.threads,
        "max_failures": options.max_failures,
    }
    done = store.finished_keys(experiment.name) if options.resume else set()
    specs = []
    for trial in trials:
        key = (stage.name, trial.spec.variant_id, trial.spec.seed)
        if stage.search == "grid" and key in done:
            continue
        config = resolve_references(trial.config, trial.spec, store, experiment)
        specs.append({"stage": stage.name, "variant_id": trial.spec.variant_id,
                      "trial": config.to_dict()})
    if stage.search == "grid" and not specs:
        say(f"[{experiment.name}/{stage.name}] all {len(trials)} trial(s) already finished")
        return
    if stage.search == "grid" and len(specs) < len(trials):
        say(f"[{experiment.name}/{stage.name}] resuming: {len(trials) - len(specs)} finished "
            f"trial(s) skipped, {len(specs)} to run")
    # A grid stage is one Tune run; an optuna stage is one TPE study per seed (--seeds N:
    # N independent searches, each with its own sampler seed and training seed).
    groups = [specs] if stage.search == "grid" else [[spec] for spec in specs]
    for group in groups:
        total = len(group) if stage.search == "grid" else stage.num_samples
        callback = SweepCallback(experiment, stage.name, store, total, say, resources, storage)
        tuner = build_tuner(experiment, stage, group, run, options, resources, storage,
                            callback)
        started = time.time()
        tuner.fit()
        say(callback.summary(time.time() - started))


def build_tuner(
    experiment: Experiment, stage: Stage, specs: list[dict[str, Any]], run: dict[str, Any],
    options: SweepOptions, resources: Resources, storage: str, callback: Any,
) -> Any:
    from ray import tune

    direct = resources.runner == "tune"
    trainable = tune.with_resources(tune_trial_direct if direct else tune_trial,
                                    resources.trial_driver)
    name = f"{experiment.name}-{stage.name}"
    seed = TrialConfig.from_dict(specs[0]["trial"]).train.seed
    if stage.search == "optuna" and seed:
        name += f"-seed{seed}"  # seed 0 keeps the name sweeps had before --seeds applied here
    run_config = tune.RunConfig(
        name=name, verbose=0, callbacks=[callback], **storage_arguments(storage),
        # Ray Train retries its own workers; a direct trial is retried by Tune, from the
        # checkpoint it keeps under its stable name.
        failure_config=tune.FailureConfig(max_failures=options.max_failures if direct else 0),
    )
    if stage.search == "grid":
        return tune.Tuner(
            trainable,
            param_space={"spec": tune.grid_search(specs), "run": run},
            tune_config=tune.TuneConfig(max_concurrent_trials=resources.max_concurrent,
                                        reuse_actors=direct),
            run_config=run_config,
        )
    path = f"{storage.rstrip('/')}/{name}"
    if options.resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=optuna_search(experiment, stage, specs[0], run, options, name, seed),
            scheduler=asha(experiment, stage, specs[0], options.smoke),
            num_samples=stage.num_samples,
            max_concurrent_trials=resources.max_concurrent,
            reuse_actors=direct,
        ),
        run_config=run_config,
    )


class DefineByRun:
    """Optuna define-by-run space over a stage's axes; constants ride along as ``spec``
    and ``run``. A class, not a closure: Tune pickles the searcher with its state."""

    def __init__(self, axes: dict[str, Any], spec: dict[str, Any], run: dict[str, Any]) -> None:
        self.axes, self.spec, self.run = axes, spec, run

    def __call__(self, trial: Any) -> dict[str, Any]:
        from orchestrator.experiment import Choice, Grid, IntRange, LogUniform, Uniform

        for path, axis in self.axes.items():
            if isinstance(axis, (Grid, Choice)):
                trial.suggest_categorical(path, list(axis.values))
            elif isinstance(axis, LogUniform):
                trial.suggest_float(path, axis.low, axis.high, log=True)
            elif isinstance(axis, Uniform):
                trial.suggest_float(path, axis.low, axis.high)
            elif isinstance(axis, IntRange):
                trial.suggest_int(path, axis.low, axis.high, step=axis.step)
        return {"spec": self.spec, "run": self.run}


def optuna_search(
    experiment: Experiment, stage: Stage, spec: dict[str, Any], run: dict[str, Any],
    options: SweepOptions, study_name: str, seed: int,
) -> Any:
    """TPE (seeded by the trial seed), optionally persisted in an Optuna storage URL."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = None
    if options.optuna_storage:
        storage = optuna.storages.RDBStorage(options.optuna_storage)
    return OptunaSearch(
        space=DefineByRun(search_axes(stage, options.smoke), spec, run),
        metric=experiment.metric, mode=experiment.mode, sampler=tpe_sampler(stage, seed),
        storage=storage, study_name=study_name,
    )


def tpe_sampler(stage: Stage, seed: int) -> Any:
    """Optuna's TPE samples its first ``n_startup_trials`` (default 10) at random: a study of
    9 samples would be a random search. A third of the budget (at least 2) explores at random
    here, the rest is modelled; constant liar keeps concurrent trials from sampling alike."""
    import optuna

    startup = max(2, min(10, stage.num_samples // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def asha(experiment: Experiment, stage: Stage, spec: dict[str, Any], smoke: bool) -> Any:
    if stage.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    from orchestrator.experiment import IntRange

    epochs_axis = search_axes(stage, smoke).get("train.epochs")
    base = TrialConfig.from_dict(spec["trial"])
    max_t = epochs_axis.high if isinstance(epochs_axis, IntRange) else base.train.epochs
    # Rungs at grace * 3^k must fall on evaluated epochs: between evaluations a trial reports
    # the last AP it measured (0.0 before the first), and ASHA would rank trials on stale or
    # all-zero values (with grace 1 and eval every 10 epochs it never stopped anything).
    # They also must not come too early: AP after an epoch or two is mostly noise and favours
    # small learning rates (benchmarks/sweep_cost.py cut the best lr at epoch 1 in 2 of 3
    # seeds). So the first rung is the evaluated epoch nearest above max_t / 9: two rungs
    # (30 and 90 of 210 epochs; 3 and 9 of 21).
    interval = max(1, base.eval.interval)
    grace = min(max_t, interval * max(1, math.ceil(max_t / (REDUCTION_FACTOR**2 * interval))))
    # time_attr "epoch" (what we report), not training_iteration: the latter restarts at 1
    # when a trial resumes from a checkpoint (RAY_NOTES 1, resuming).
    return ASHAScheduler(time_attr="epoch", metric=experiment.metric, mode=experiment.mode,
                         max_t=max(1, max_t), grace_period=max(1, grace),
                         reduction_factor=REDUCTION_FACTOR)
