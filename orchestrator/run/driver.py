"""The sweep driver: preflight, a Ray cluster, then every stage as Ray Tune runs.

A trial runs in one of two ways (``--runner``, see :mod:`orchestrator.run.worker`):

- ``tune`` (the default with one worker per trial): the Tune function trainable trains in
  its own process. Its resources (CPU, and a GPU or a fraction of one, so small trials pack
  several to a GPU) are the trial's resources, and Tune actors are reused between trials.
- ``train`` (needed for ``--workers N > 1``, data parallel): per RAY_NOTES.md (Ray 2.60,
  Train V2) the trainable launches a ``TorchTrainer`` and reports through
  ``TuneReportCallback``; ``Tuner(trainer)`` does not work.

Rows are written by a Tune callback in this process as each trial ends
(:mod:`orchestrator.run.callback`), from the trial's :class:`~orchestrator.study.trials.TrialJob`.
``--resume`` skips a trial only when a finished row has the same job digest (config and
data sources); changed trials are named and rerun. The sweep's :class:`SweepOutcome` says
what happened; its exit code is 0 only when every trial of every stage ended ``ok`` or was
stopped by ASHA. A stage never starts after a failed or interrupted stage it depends on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plan.cost import SweepPlan, make_plan, render, write_plan
from orchestrator.plan.forking import forking_on, plan_forks, seed_members
from orchestrator.plan.halving import run_levels
from orchestrator.plan.preflight import preflight, problem_lines
from orchestrator.plan.reuse import reuse
from orchestrator.run.callback import SweepCallback
from orchestrator.run.tuner import build_tuner
from orchestrator.store.lock import store_lock
from orchestrator.store.results import ResultsStore, finished_rows
from orchestrator.store.storage import join
from orchestrator.study.experiment import Experiment, Stage
from orchestrator.study.trials import (
    RunSettings,
    SweepOptions,
    TrialJob,
    first_difference,
    referenced_stages,
    resolve_references,
    with_run,
)

log = logging.getLogger(__name__)
TRIAL_DRIVER_CPU = 0.25  # the Tune trial only waits on its Train run
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 3, 130


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
    """Join the cluster we are told to (``--address``, ``RAY_ADDRESS``, which ``ray job
    submit`` and the cluster scripts set) or start a new local one of our own.

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
    if address and address != "local":
        ray.init(address=address, **quiet)  # told to join: --address, RAY_ADDRESS, job submit
        return
    from orchestrator.run.ray_settings import apply_local_ray_settings

    apply_local_ray_settings(address)  # Ray's own token-auth default, stated: no warning
    # Otherwise a cluster of our own, never one another process started: address="local"
    # always starts a new one (plain ray.init() would join a running local cluster, and
    # die with it when the process that started it ends).
    ray.init(address="local", include_dashboard=True,
             dashboard_host=os.environ.get("POSETUNE_DASHBOARD_HOST", "127.0.0.1"),
             dashboard_port=None, **quiet)


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


def absolute(uri: str) -> str:
    """Local paths made absolute; URIs (s3://...) as they are."""
    return uri if "://" in uri else os.path.abspath(os.path.expanduser(uri))


def say_now(line: str) -> None:
    """Progress goes out at once, also when stdout is a file or a pipe (``ray job logs``)."""
    print(line, flush=True)


@dataclass
class SweepOutcome:
    """What a sweep did: trial counts by status, failures, and whether it was cut short."""

    store: ResultsStore
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "stage/variant/seed=N: error"
    interrupted: bool = False
    not_started: list[str] = field(default_factory=list)  # "stage: why"

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.counts.get("failed", 0) or self.not_started:
            return EXIT_FAILED
        return EXIT_OK


def run_sweep(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = say_now
) -> SweepOutcome:
    """Preflight, then every stage in order, holding the results store's lock."""
    # Ray needs absolute local storage paths (a relative one reads as a URI without scheme).
    options = dataclasses.replace(
        options, results=absolute(options.results),
        tune_storage=absolute(options.tune_storage) if options.tune_storage else None,
    )
    choose_runner(options)  # a bad --runner fails before anything starts
    sizes: dict[str, int] = {}
    planned, catalog = preflight(experiment, options, say, sizes)
    store = ResultsStore(options.results)
    with store_lock(store.uri):
        # The plan, as --plan prints it, beside the results: what was to be trained.
        write_plan(make_plan(experiment, planned, sizes, options, catalog.to_dict()),
                   options.results)
        init_ray(options)
        resources = plan_resources(options)
        say(f"resources per trial: {resources.workers} worker(s) x {resources.per_worker}"
            f"{' (GPU)' if resources.use_gpu else ' (CPU only)'}, up to "
            f"{resources.max_concurrent} trial(s) at once, runner {resources.runner}")
        storage = options.tune_storage or join(options.results, "tune")
        run = RunSettings(storage, resources.workers, resources.use_gpu,
                          dict(resources.per_worker), resources.threads,
                          options.max_failures, resources.gpus_per_trial)
        outcome = SweepOutcome(store)
        finished: dict[str, bool] = {}  # stage -> every trial ok/stopped
        for stage_name, jobs in planned.items():
            stage = experiment.stage(stage_name)
            blocked = [d for d in dependencies(stage, jobs) if not finished.get(d, True)]
            if blocked:
                why = f"stage {blocked[0]!r} it depends on did not finish every trial"
                outcome.not_started.append(f"{stage.name}: {why}")
                say(f"[{experiment.name}/{stage.name}] not started: {why}")
                finished[stage.name] = False
                continue
            jobs = [with_run(job, catalog.to_dict(), run) for job in jobs]
            finished[stage.name] = run_stage(experiment, stage, jobs, options, resources,
                                             store, storage, outcome, say)
            if outcome.interrupted:
                break
    return outcome


def plan_sweep(
    experiment: Experiment, options: SweepOptions, throughput: float | None = None,
    say: Callable[[str], None] = say_now, calibrate: bool = False,
    problems: list[str] | None = None,
) -> SweepPlan:
    """``--plan``: the preflight and the cost of every stage, written beside the results;
    nothing is trained and no Ray cluster starts. ``calibrate``: measure the training
    throughput of every backbone and input size first (orchestrator.plan.calibration).
    What only training needs is never refused: each problem the sweep would stop on
    (``problems`` from the caller, then the preflight's) is printed under the plan."""
    from orchestrator.plan.calibration import calibrate as measure

    options = dataclasses.replace(options, results=absolute(options.results))
    sizes: dict[str, int] = {}
    problems = list(problems or [])
    planned, catalog = preflight(experiment, options, say, sizes, problems)
    if calibrate and not throughput:
        measure([job for stage_jobs in planned.values() for job in stage_jobs], say)
    plan = make_plan(experiment, planned, sizes, options, catalog.to_dict(), throughput)
    say(render(plan).rstrip())
    if problems:
        say(problem_lines(problems))
    say(f"plan written to {write_plan(plan, options.results)}")
    return plan


def dependencies(stage: Stage, jobs: list[TrialJob]) -> set[str]:
    """Stages this one needs: declared, and those its weights references name."""
    needed = set(stage.depends_on)
    for job in jobs:
        needed |= referenced_stages(job)
    return needed


def jobs_to_run(
    experiment: Experiment, stage: Stage, jobs: list[TrialJob], store: ResultsStore,
    resume: bool, say: Callable[[str], None], reuse_trials: bool = True,
) -> list[TrialJob]:
    """References resolved; with ``--resume``, grid jobs whose finished row has the same
    digest are skipped, and changed ones are named and rerun; then trials another
    experiment (or stage) of the store already trained are reused, not trained."""
    rows = store.read_trials(latest_only=True).to_pylist()  # once for all three uses
    jobs = [resolve_references(job, rows, experiment) for job in jobs]
    if stage.search != "grid":
        return jobs
    if not resume:
        return reuse(jobs, rows, store, say) if reuse_trials else jobs
    done = finished_rows(rows, experiment.name)
    todo, changed = [], []
    for job in jobs:
        row = done.get(job.key)
        if row is not None and row.get("job_digest") == job.digest:
            continue
        if row is not None:
            old = json_loads(row.get("config_json"))
            changed.append(f"{job.trial_key} ({first_difference(old, job.config.to_dict())})")
        todo.append(job)
    tag = f"[{experiment.name}/{stage.name}]"
    if changed:
        say(f"{tag} {len(changed)} finished trial(s) changed since their rows were written "
            f"and run again: {'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}")
    if len(todo) < len(jobs):
        say(f"{tag} resuming: {len(jobs) - len(todo)} finished trial(s) skipped, "
            f"{len(todo)} to run")
    return reuse(todo, rows, store, say) if reuse_trials else todo


def json_loads(text: str | None) -> dict[str, Any]:
    import json

    try:
        return dict(json.loads(text or "{}"))
    except ValueError:
        return {}


def run_stage(
    experiment: Experiment, stage: Stage, jobs: list[TrialJob], options: SweepOptions,
    resources: Resources, store: ResultsStore, storage: str, outcome: SweepOutcome,
    say: Callable[[str], None],
) -> bool:
    """Run one stage; True when every one of its trials ended ok or stopped."""
    halving = stage.scheduler == "halving"  # reuses level by level, only what it runs
    todo = jobs_to_run(experiment, stage, jobs, store, options.resume, say,
                       options.reuse and not halving)
    if stage.search == "grid" and not todo:
        say(f"[{experiment.name}/{stage.name}] nothing to train: all {len(jobs)} trial(s) "
            "already finished (--resume) or reused from the store")
        outcome.counts["ok"] = outcome.counts.get("ok", 0) + len(jobs)
        return True
    # A grid stage is one Tune run per phase (forking: a phase per length; halving: the
    # lengths in order, deciding between them); an optuna stage is one TPE study per seed
    # (--seeds N: N independent searches, each with its own sampler seed and training seed).
    complete = True  # no trial failed

    def run_group(group: list[TrialJob]) -> bool:
        """Train one group as one Tune run; False when it was interrupted."""
        nonlocal complete
        if any(job.fork_of for job in group):
            group = seed_members(group, storage, say, store.finished_rows(experiment.name))
        total = len(group) if stage.search == "grid" else stage.num_samples
        callback = SweepCallback(experiment, stage.name, store, total, say)
        tuner = build_tuner(experiment, stage, group, options, resources.trial_driver,
                            resources.max_concurrent, resources.runner == "tune", storage,
                            [callback, *tracker_callbacks(options, experiment)])
        started = time.time()
        with interruption_watch(options.debug) as watch:
            grid = tuner.fit()
        say(callback.summary(time.time() - started))
        for status, count in callback.counts().items():
            outcome.counts[status] = outcome.counts.get(status, 0) + count
        outcome.failures += callback.failures
        # Tune handles Ctrl-C itself: it stops the run, saves its state and returns from
        # fit() as if done, saying so only in a log line (watched for here), with trials left
        # pending or running, or fewer samples than asked for.
        trials = grid._experiment_analysis.trials
        unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
        short = stage.search == "optuna" and len(trials) < stage.num_samples
        if watch.interrupted or unfinished or short:
            outcome.interrupted = True
            return False
        complete = complete and callback.counts().get("failed", 0) == 0
        return True

    if stage.search != "grid":
        return all(run_group([job]) for job in todo) and complete
    phases = plan_forks(todo) if forking_on(options) else [todo]
    if halving:
        def run_level(group: list[TrialJob]) -> bool:
            if options.reuse:
                rows = store.read_trials(latest_only=True).to_pylist()
                group = reuse(group, rows, store, say)
            return run_group(group) if group else True

        marked = [job for phase in phases for job in phase]
        keys = {job.key for job in todo}
        ran = run_levels(marked, experiment.metric, experiment.mode, stage.keep,
                         lambda: store.finished_rows(experiment.name), run_level, say,
                         f"[{experiment.name}/{stage.name}]",
                         done=[job for job in jobs if job.key not in keys])
        return ran and complete
    return all(run_group(group) for group in phases if group) and complete


class InterruptionWatch(logging.Handler):
    """Records Tune's "Experiment has been interrupted" (logged by ``ray.tune.tune`` when
    Ctrl-C ended ``fit()``); prints nothing itself."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.interrupted = False

    def emit(self, record: logging.LogRecord) -> None:
        if "has been interrupted" in record.getMessage():
            self.interrupted = True


@contextlib.contextmanager
def interruption_watch(debug: bool) -> Iterator[InterruptionWatch]:
    logger = logging.getLogger("ray.tune.tune")
    watch = InterruptionWatch()
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.WARNING)
    logger.propagate = debug  # the line reaches the terminal only with --debug
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def tracker_callbacks(options: SweepOptions, experiment: Experiment) -> list[Any]:
    """Tune logger callbacks for ``--log`` (MLflow, TensorBoard, W&B)."""
    if not options.loggers:
        return []
    from orchestrator.run.tracker_callbacks import tracker_callbacks as make

    return list(make(list(options.loggers), experiment.name))
