"""How one stage runs: a runner per scheduler, each training its groups as Ray Tune runs.

- :class:`GridRunner`: a grid stage is one Tune run per phase (with schedule forking, a
  phase per length, orchestrator.plan.forking; otherwise one phase).
- :class:`HalvingRunner`: a grid stage with ``scheduler="halving"`` trains its lengths in
  order and decides between them (orchestrator.plan.halving); trials already in the store
  are reused level by level, only for what the level runs.
- :class:`OptunaRunner`: an optuna stage is one TPE study per seed (``--seeds N``: N
  independent searches, each with its own sampler seed and training seed).

:class:`StageRunner` holds what they share: the jobs to run (stage references resolved,
:mod:`orchestrator.study.handover`; with ``--resume`` finished grid trials skipped; trials
the store already holds reused), fork members seeded from their prefixes, one Tune run with
the sweep callback and the ``--log`` trackers, and watching for Ctrl-C. Each stage ends in a
:class:`StageResult`; the driver (:mod:`orchestrator.run.driver`) adds it to the sweep's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.plan.forking import forking_on, phases_to_run, seed_members
from orchestrator.plan.halving import run_levels, still_to_run
from orchestrator.plan.reuse import reuse
from orchestrator.run.callback import SweepCallback
from orchestrator.run.interrupt import interruption_watch
from orchestrator.run.tuner import Resources, build_tuner
from orchestrator.store.results import ResultsStore, finished_rows
from orchestrator.study.experiment import Experiment, Stage
from orchestrator.study.handover import resolve_references
from orchestrator.study.trials import SweepOptions, TrialJob, first_difference


@dataclass(frozen=True)
class SweepContext:
    """What every stage of one sweep shares."""

    experiment: Experiment
    options: SweepOptions
    resources: Resources
    store: ResultsStore
    storage: str  # where trials keep their checkpoints
    say: Callable[[str], None]


@dataclass
class StageResult:
    """Finished trials by status, failures ("stage/variant/seed=N: error"), and whether the
    stage was cut short (Ctrl-C, SIGTERM) or had a trial fail."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False
    failed: bool = False

    @property
    def finished(self) -> bool:
        """Every trial ended ok or stopped: the stages that depend on this one may start."""
        return not (self.interrupted or self.failed)

    def add(self, counts: dict[str, int], failures: list[str]) -> None:
        for status, count in counts.items():
            self.counts[status] = self.counts.get(status, 0) + count
        self.failures += failures
        self.failed = self.failed or counts.get("failed", 0) > 0


class StageRunner:
    """One stage: :meth:`run` finds the jobs to run and hands them to :meth:`train_jobs`,
    which each scheduler's runner defines; :meth:`train` runs one group as one Tune run."""

    def __init__(self, sweep: SweepContext, stage: Stage, jobs: list[TrialJob]) -> None:
        self.sweep, self.stage, self.jobs = sweep, stage, jobs
        self.experiment, self.options = sweep.experiment, sweep.options
        self.tag = f"[{self.experiment.name}/{stage.name}]"
        self.result = StageResult()

    def run(self) -> StageResult:
        self.train_jobs(self.jobs_to_run(self.sweep.store.read_trials(latest_only=True)
                                         .to_pylist()))
        return self.result

    def train_jobs(self, todo: list[TrialJob]) -> None:
        raise NotImplementedError

    def jobs_to_run(self, rows: list[dict[str, Any]]) -> list[TrialJob]:
        """The stage's jobs with their stage references resolved (``rows``: the store's
        latest trial rows)."""
        return [resolve_references(job, rows, self.experiment) for job in self.jobs]

    def group_size(self, group: list[TrialJob]) -> int:
        """Trials one Tune run of ``group`` trains (for the progress line)."""
        return len(group)

    def cut_short(self, trials: list[Any]) -> bool:
        """Whether a Tune run that returned normally still left work undone."""
        return any(t.status not in ("TERMINATED", "ERROR") for t in trials)

    def train(self, group: list[TrialJob]) -> bool:
        """Train one group as one Tune run; False when it was interrupted."""
        sweep, store = self.sweep, self.sweep.store
        if any(job.fork_of for job in group):
            group = seed_members(group, sweep.storage, sweep.say,
                                 store.finished_rows(self.experiment.name))
        callback = SweepCallback(self.experiment, self.stage.name, store,
                                 self.group_size(group), sweep.say)
        tuner = build_tuner(self.experiment, self.stage, group, self.options, sweep.resources,
                            sweep.storage,
                            [callback, *tracker_callbacks(self.options, self.experiment)])
        started = time.time()
        with interruption_watch(self.options.debug) as watch:
            grid = tuner.fit()
        self.result.add(callback.counts(), callback.failures)
        # Tune handles Ctrl-C itself: it stops the run, saves its state and returns from
        # fit() as if done, saying so only in a log line (watched for here), with trials left
        # pending or running, or fewer samples than asked for.
        if watch.interrupted or self.cut_short(grid._experiment_analysis.trials):
            self.result.interrupted = True  # the interruption line comes next, from the CLI
            return False
        sweep.say(callback.summary(time.time() - started))
        return True


class GridRunner(StageRunner):
    """A grid stage: every planned trial, one Tune run per forking phase."""

    reuse_now = True  # trials another experiment (or stage) already trained are not rerun
    resolved: list[TrialJob]  # every job of the stage, references resolved (jobs_to_run)

    def jobs_to_run(self, rows: list[dict[str, Any]]) -> list[TrialJob]:
        """With ``--resume``, jobs whose finished row has the same digest are skipped, and
        changed ones are named and rerun; then trials the store holds are reused."""
        jobs = self.resolved = super().jobs_to_run(rows)
        reuse_now = self.options.reuse and self.reuse_now
        if not self.options.resume:
            return reuse(jobs, rows, self.sweep.store, self.sweep.say) if reuse_now else jobs
        done = finished_rows(rows, self.experiment.name)
        todo, changed = [], []
        for job in jobs:
            row = done.get(job.key)
            if row is not None and row.get("job_digest") == job.digest:
                continue
            if row is not None:
                old = json_loads(row.get("config_json"))
                changed.append(f"{job.trial_key} ({first_difference(old, job.config.to_dict())})")
            todo.append(job)
        say = self.sweep.say
        if changed:
            say(f"{self.tag} {len(changed)} finished trial(s) changed since their rows were "
                f"written and run again: {'; '.join(changed[:5])}"
                f"{' ...' if len(changed) > 5 else ''}")
        to_train = reuse(todo, rows, self.sweep.store, say) if reuse_now else todo
        if len(todo) < len(jobs):
            reused = len(todo) - len(to_train)
            say(f"{self.tag} resuming: {len(jobs) - len(todo)} finished trial(s) skipped, "
                f"{f'{reused} reused, ' if reused else ''}{self.to_run(to_train)}")
        return to_train

    def to_run(self, to_train: list[TrialJob]) -> str:
        """The resume line's count of what will train."""
        return f"{len(to_train)} to run"

    def train_jobs(self, todo: list[TrialJob]) -> None:
        if not todo:
            self.sweep.say(f"{self.tag} nothing to train: all {len(self.jobs)} trial(s) "
                           "already finished (--resume) or reused from the store")
            self.result.add({"ok": len(self.jobs)}, [])
            return
        phases = phases_to_run(self.resolved, todo) if forking_on(self.options) else [todo]
        self.train_phases(phases, todo)

    def train_phases(self, phases: list[list[TrialJob]], todo: list[TrialJob]) -> None:
        all(self.train(group) for group in phases if group)  # stops at an interruption


class HalvingRunner(GridRunner):
    """A grid stage over ``train.epochs`` lengths: each length trains only the arms the
    shorter one kept (orchestrator.plan.halving)."""

    reuse_now = False  # reused level by level, only what a level runs

    def train_phases(self, phases: list[list[TrialJob]], todo: list[TrialJob]) -> None:
        store, experiment = self.sweep.store, self.experiment
        keys = {job.key for job in todo}
        run_levels([job for phase in phases for job in phase], experiment.metric,
                   experiment.mode, self.stage.keep,
                   lambda: store.finished_rows(experiment.name), self.train_level,
                   self.sweep.say, self.tag,
                   done=[job for job in self.jobs if job.key not in keys])

    def to_run(self, to_train: list[TrialJob]) -> str:
        """Only the kept arms' trials run: the decisions the finished lengths took are
        taken again from their rows; a decision still to come gives a bound."""
        keys = {job.key for job in to_train}
        now, later = still_to_run(
            to_train, self.experiment.metric, self.experiment.mode, self.stage.keep,
            self.sweep.store.finished_rows(self.experiment.name),
            done=[job for job in self.resolved if job.key not in keys])
        return f"{now} to run" + (f" now, up to {later} longer trial(s) more as halving "
                                  "decides" if later else "")

    def train_level(self, group: list[TrialJob]) -> bool:
        if self.options.reuse:
            rows = self.sweep.store.read_trials(latest_only=True).to_pylist()
            group = reuse(group, rows, self.sweep.store, self.sweep.say)
        return self.train(group) if group else True


class OptunaRunner(StageRunner):
    """An optuna stage: one TPE study per planned job (one per seed), in turn."""

    def train_jobs(self, todo: list[TrialJob]) -> None:
        all(self.train([job]) for job in todo)  # stops at an interruption

    def group_size(self, group: list[TrialJob]) -> int:
        return self.stage.num_samples

    def cut_short(self, trials: list[Any]) -> bool:
        return super().cut_short(trials) or len(trials) < self.stage.num_samples


def runner_for(stage: Stage) -> type[StageRunner]:
    if stage.search == "optuna":
        return OptunaRunner
    return HalvingRunner if stage.scheduler == "halving" else GridRunner


def run_stage(sweep: SweepContext, stage: Stage, jobs: list[TrialJob]) -> StageResult:
    """Run one stage with its scheduler's runner."""
    return runner_for(stage)(sweep, stage, jobs).run()


def json_loads(text: str | None) -> dict[str, Any]:
    try:
        return dict(json.loads(text or "{}"))
    except ValueError:
        return {}


def tracker_callbacks(options: SweepOptions, experiment: Experiment) -> list[Any]:
    """Tune logger callbacks for ``--log`` (MLflow, TensorBoard, W&B)."""
    if not options.loggers:
        return []
    from orchestrator.run.tracker_callbacks import tracker_callbacks as make

    return list(make(list(options.loggers), experiment.name))
