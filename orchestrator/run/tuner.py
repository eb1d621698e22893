"""Ray Tune pieces of a stage: the trainables, the Tuner, Optuna's TPE space and ASHA.

Every trial receives one :class:`~orchestrator.study.trials.TrialJob` as ``config["job"]``:
grid trials from Tune's ``grid_search`` over the planned jobs, sampled trials from
:class:`DefineByRun`, which builds the job from Optuna's sampled values through the same
:func:`~orchestrator.study.trials.build_job` (the sampled values also stay in the config as
dotted keys, which is what Optuna records).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from orchestrator.store.storage import join, pyarrow_filesystem
from orchestrator.study.experiment import (
    Choice,
    Experiment,
    Grid,
    IntRange,
    LogUniform,
    Stage,
    Uniform,
)
from orchestrator.study.handover import with_template_weights
from orchestrator.study.scale import Scale
from orchestrator.study.trials import SweepOptions, TrialJob, build_job, search_axes

REDUCTION_FACTOR = 3  # ASHA keeps the best third at each rung


def storage_arguments(uri: str) -> dict[str, Any]:
    """Ray's ``storage_path`` (and ``storage_filesystem`` for s3://): checkpoints go through
    s3fs with posetune's endpoint and credential rules, like the results store."""
    if "://" not in uri or uri.startswith("file://"):
        return {"storage_path": uri}
    filesystem, path = pyarrow_filesystem(uri)
    return {"storage_path": path, "storage_filesystem": filesystem}


def checkpoint_name(job: TrialJob) -> str:
    trial_id = None
    if job.sampled:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
    return job.checkpoint_name(trial_id)


def tune_trial(config: dict[str, Any]) -> None:
    """One Tune trial = one Ray Train run (``--runner train``; the Train V2 pattern)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from orchestrator.run.worker import train_loop_per_worker

    job: TrialJob = config["job"]
    run = job.run
    assert run is not None
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(
            num_workers=run.workers, use_gpu=run.use_gpu,
            resources_per_worker=dict(run.per_worker),
        ),
        run_config=ray.train.RunConfig(
            name=checkpoint_name(job),
            **storage_arguments(run.storage),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=run.max_failures),
        ),
    )
    trainer.fit()


def tune_trial_direct(config: dict[str, Any]) -> None:
    """One Tune trial trained in this process (``--runner tune``)."""
    from orchestrator.run.worker import TuneSession, run_job

    job: TrialJob = config["job"]
    assert job.run is not None
    run_job(job, TuneSession(join(job.run.storage, checkpoint_name(job)), keep_epoch=job.fork_at))


@dataclass(frozen=True)
class Resources:
    """What each trial gets, decided from the cluster (``orchestrator.run.driver.plan_resources``)."""

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


def build_tuner(
    experiment: Experiment, stage: Stage, jobs: list[TrialJob], options: SweepOptions,
    resources: Resources, storage: str, callbacks: list[Any],
) -> Any:
    """A grid stage: one Tune run over its jobs. An optuna stage: one TPE study for
    ``jobs[0]``'s seed (the job is the template its samples are built from)."""
    from ray import tune

    direct = resources.runner == "tune"
    max_concurrent = resources.max_concurrent
    trainable = tune.with_resources(tune_trial_direct if direct else tune_trial,
                                    resources.trial_driver)
    name = f"{experiment.name}-{stage.name}"
    seed = jobs[0].seed
    if stage.search == "optuna" and seed:
        name += f"-seed{seed}"  # seed 0 keeps the name sweeps had before --seeds applied here
    run_config = tune.RunConfig(
        name=name, verbose=0, callbacks=callbacks, **storage_arguments(storage),
        # Ray Train retries its own workers; a direct trial is retried by Tune, from the
        # checkpoint it keeps under its stable name.
        failure_config=tune.FailureConfig(max_failures=options.max_failures if direct else 0),
    )
    if stage.search == "grid":
        return tune.Tuner(
            trainable,
            param_space={"job": tune.grid_search(jobs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent,
                                        reuse_actors=direct),
            run_config=run_config,
        )
    path = f"{storage.rstrip('/')}/{name}"
    if options.resume and tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    scale = options.scale_of
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=optuna_search(experiment, stage, jobs[0], options, scale, name),
            scheduler=asha(experiment, stage, jobs[0], scale),
            num_samples=stage.num_samples,
            max_concurrent_trials=max_concurrent,
            reuse_actors=direct,
        ),
        run_config=run_config,
    )


class DefineByRun:
    """Optuna define-by-run space over a stage's axes, returning the whole job built from
    the sampled values. A class, not a closure: Tune pickles the searcher with its state."""

    def __init__(self, experiment: Experiment, stage: Stage, template: TrialJob,
                 overrides: dict[str, Any], scale: Scale, redraw_subsets: bool = False) -> None:
        self.experiment, self.stage, self.template = experiment, stage, template
        self.overrides, self.scale = overrides, scale
        self.redraw_subsets = redraw_subsets
        self.axes = search_axes(stage, scale)

    def __call__(self, trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, axis in self.axes.items():
            if isinstance(axis, (Grid, Choice)):
                values[path] = trial.suggest_categorical(path, list(axis.values))
            elif isinstance(axis, LogUniform):
                values[path] = trial.suggest_float(path, axis.low, axis.high, log=True)
            elif isinstance(axis, Uniform):
                values[path] = trial.suggest_float(path, axis.low, axis.high)
            elif isinstance(axis, IntRange):
                values[path] = trial.suggest_int(path, axis.low, axis.high, step=axis.step)
        job = build_job(self.experiment, self.stage, values, self.template.seed, self.scale,
                        self.overrides, sampled=True, redraw_subsets=self.redraw_subsets)
        job = with_template_weights(job, self.template)
        return {"job": dataclasses.replace(job, catalog=self.template.catalog,
                                           run=self.template.run)}


def optuna_search(
    experiment: Experiment, stage: Stage, template: TrialJob, options: SweepOptions,
    scale: Scale, study_name: str,
) -> Any:
    """TPE (seeded by the trial seed), optionally persisted in an Optuna storage URL."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    storage = None
    if options.optuna_storage:
        storage = optuna.storages.RDBStorage(options.optuna_storage)
    return OptunaSearch(
        space=DefineByRun(experiment, stage, template, dict(options.overrides), scale,
                          options.redraw_subsets),
        metric=experiment.metric, mode=experiment.mode,
        sampler=tpe_sampler(stage, template.seed), storage=storage, study_name=study_name,
    )


def tpe_sampler(stage: Stage, seed: int) -> Any:
    """Optuna's TPE samples its first ``n_startup_trials`` (default 10) at random: a study of
    9 samples would be a random search. A third of the budget (at least 2) explores at random
    here, the rest is modelled; constant liar keeps concurrent trials from sampling alike."""
    import optuna

    startup = max(2, min(10, stage.num_samples // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def asha(experiment: Experiment, stage: Stage, template: TrialJob, scale: Scale) -> Any:
    if stage.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    epochs_axis = search_axes(stage, scale).get("train.epochs")
    base = template.config
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

