"""The sweep driver: preflight, a Ray cluster, then every stage as Ray Tune runs.

A trial runs in one of two ways (``--runner``, see :mod:`orchestrator.run.worker`):

- ``tune`` (the default with one worker per trial): the Tune function trainable trains in
  its own process. Its resources (CPU, and a GPU or a fraction of one, so small trials pack
  several to a GPU) are the trial's resources, and Tune actors are reused between trials.
- ``train`` (needed for ``--workers N > 1``, data parallel): per RAY_NOTES.md (Ray 2.60,
  Train V2) the trainable launches a ``TorchTrainer`` and reports through
  ``TuneReportCallback``; ``Tuner(trainer)`` does not work.

Each stage runs with its scheduler's runner (:mod:`orchestrator.run.stages`: grid, halving,
Optuna). Rows are written by a Tune callback in this process as each trial ends
(:mod:`orchestrator.run.callback`), from the trial's :class:`~orchestrator.study.trials.TrialJob`.
``--resume`` skips a trial only when a finished row has the same job digest (config and
data sources); changed trials are named and rerun. The sweep's :class:`SweepOutcome` says
what happened; its exit code is 0 only when every trial of every stage ended ``ok`` or was
stopped by ASHA. A stage never starts after a failed or interrupted stage it depends on.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plan.cost import SweepPlan, make_plan, render, write_plan
from orchestrator.plan.preflight import Planned, preflight, problem_lines
from orchestrator.plan.pretraining import check_starts
from orchestrator.run.interrupt import EXIT_INTERRUPTED, sigterm_as_ctrl_c
from orchestrator.run.stages import StageResult, SweepContext, run_stage
from orchestrator.run.tuner import Resources
from orchestrator.store.compact import compact
from orchestrator.store.lock import store_lock
from orchestrator.store.results import ResultsStore
from orchestrator.store.storage import join
from orchestrator.study.experiment import Experiment
from orchestrator.study.handover import dependencies
from orchestrator.study.trials import RunSettings, SweepOptions, with_run

log = logging.getLogger(__name__)
TRIAL_DRIVER_CPU = 0.25  # the Tune trial only waits on its Train run
EXIT_OK, EXIT_FAILED = 0, 3


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

    def add(self, stage: StageResult) -> None:
        for status, count in stage.counts.items():
            self.counts[status] = self.counts.get(status, 0) + count
        self.failures += stage.failures
        self.interrupted = self.interrupted or stage.interrupted


def run_sweep(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = say_now
) -> SweepOutcome:
    """Every stage in order, holding the results store's lock from before the preflight (a
    second sweep into the store is refused at once). SIGTERM ends the sweep as Ctrl-C does;
    either, wherever it comes, ends it with an outcome marked interrupted."""
    # Ray needs absolute local storage paths (a relative one reads as a URI without scheme).
    options = dataclasses.replace(
        options, results=absolute(options.results),
        tune_storage=absolute(options.tune_storage) if options.tune_storage else None,
    )
    choose_runner(options)  # a bad --runner fails before anything starts
    store = ResultsStore(options.results)
    try:
        return locked_sweep(experiment, options, store, say)
    except KeyboardInterrupt:  # Ctrl-C outside Tune's fit(): the same ending as inside it
        return SweepOutcome(store, interrupted=True)


def locked_sweep(
    experiment: Experiment, options: SweepOptions, store: ResultsStore,
    say: Callable[[str], None],
) -> SweepOutcome:
    with sigterm_as_ctrl_c(), store_lock(store.uri):
        sizes: dict[str, int] = {}
        planned, catalog = preflight(experiment, options, say, sizes)
        check_starts(planned, say, build=True)
        # The plan, as --plan prints it, beside the results: what was to be trained.
        write_plan(make_plan(experiment, planned, sizes, options, catalog.to_dict()),
                   options.results)
        init_ray(options)
        with sigterm_as_ctrl_c():  # again: ray.init installs a SIGTERM handler of its own
            resources = plan_resources(options)
            say(f"resources per trial: {resources.workers} worker(s) x "
                f"{resources.per_worker}{' (GPU)' if resources.use_gpu else ' (CPU only)'}, "
                f"up to {resources.max_concurrent} trial(s) at once, runner {resources.runner}")
            storage = options.tune_storage or join(options.results, "tune")
            sweep = SweepContext(experiment, options, resources, store, storage, say)
            return run_stages(sweep, planned, catalog.to_dict())


def run_stages(sweep: SweepContext, planned: Planned, catalog: dict[str, Any]) -> SweepOutcome:
    """Each stage with its scheduler's runner (orchestrator.run.stages), in order; a stage
    whose dependencies did not finish every trial is not started; Ctrl-C ends the loop."""
    experiment, resources = sweep.experiment, sweep.resources
    run = RunSettings(sweep.storage, resources.workers, resources.use_gpu,
                      dict(resources.per_worker), resources.threads,
                      sweep.options.max_failures, resources.gpus_per_trial)
    outcome = SweepOutcome(sweep.store)
    finished: dict[str, bool] = {}  # stage -> every trial ok/stopped
    for stage_name, jobs in planned.items():
        stage = experiment.stage(stage_name)
        blocked = [d for d in dependencies(stage, jobs) if not finished.get(d, True)]
        if blocked:
            why = f"stage {blocked[0]!r} it depends on did not finish every trial"
            outcome.not_started.append(f"{stage.name}: {why}")
            sweep.say(f"[{experiment.name}/{stage.name}] not started: {why}")
            finished[stage.name] = False
            continue
        result = run_stage(sweep, stage, [with_run(job, catalog, run) for job in jobs])
        outcome.add(result)
        finished[stage.name] = result.finished
        if outcome.interrupted:
            break
        compact_stage(sweep, stage.name)
    return outcome


def compact_stage(sweep: SweepContext, stage: str) -> None:
    """The stage's small row files into a few sorted ones (the sweep holds the lock). A file
    compaction cannot read stops only the compaction: the rows are already safe, and
    ``posetune compact`` names the file."""
    try:
        done = compact(sweep.store, say=lambda line: None, lock=False)
    except Exception as error:  # noqa: BLE001 - a failed compaction never fails the sweep
        first = (str(error).strip().splitlines() or [""])[0]
        sweep.say(f"[{sweep.experiment.name}/{stage}] results not compacted "
                  f"({type(error).__name__}: {first}); run posetune compact {sweep.store.uri}")
        return
    if done.rows:
        sweep.say(f"[{sweep.experiment.name}/{stage}] {done.summary(sweep.store.uri)}")


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
    check_starts(planned, say, build=False)
    if calibrate and not throughput:
        measure([job for stage_jobs in planned.values() for job in stage_jobs], say)
    plan = make_plan(experiment, planned, sizes, options, catalog.to_dict(), throughput)
    say(render(plan).rstrip())
    if problems:
        say(problem_lines(problems))
    say(f"plan written to {write_plan(plan, options.results)}")
    return plan
