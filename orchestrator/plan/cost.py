"""``posetune sweep ... --plan``: what a sweep will cost, before it runs (Ray-free).

Per stage and in total: trials, image-epochs (training images x epochs, the unit of work),
how many trials the results store already holds with the same training identity (reused,
not trained: :mod:`orchestrator.plan.reuse`), how many start from another trial's identical first
epochs (forked: :mod:`orchestrator.plan.forking`), and GPU-hours from a throughput figure in training
images per second: ``--throughput`` for every trial, or else the figures measured on this
machine's device per backbone, head, input size and batch (``--plan --calibrate`` measures and
caches them: :mod:`orchestrator.plan.calibration`); hours are shown only where every trial of a
stage has a figure. Sampled (TPE) stages count their epochs axis at its maximum: an upper bound.
A halving stage (:mod:`orchestrator.plan.halving`) counts the trials its rule will run at each
length; which arms go on is known only then, so where arms differ in cost the plan counts the
dearest ones (an upper bound, marked ``<=``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tabulate import tabulate

from orchestrator.plan.forking import forking_on, members, phases_to_run
from orchestrator.plan.halving import arm_of, levels
from orchestrator.plan.reuse import finished_by_digest
from orchestrator.store.results import ResultsStore
from orchestrator.store.storage import join, write_bytes_atomic
from orchestrator.study.experiment import Experiment, IntRange, kept_count
from orchestrator.study.trials import SweepOptions, TrialJob, search_axes


@dataclass
class StagePlan:
    stage: str
    trials: int
    image_epochs: int
    reused: int = 0
    reused_image_epochs: int = 0
    upper_bound: bool = False  # sampled stage: epochs at the axis maximum
    forked: int = 0
    forked_image_epochs: int = 0  # the members' shared first epochs, trained once
    hours: float | None = None  # device-hours of the trained image-epochs, where figures exist

    @property
    def trained_image_epochs(self) -> int:
        return self.image_epochs - self.reused_image_epochs - self.forked_image_epochs


@dataclass
class SweepPlan:
    experiment: str
    scale: str
    stages: list[StagePlan] = field(default_factory=list)
    throughput: float | None = None  # --throughput: images per second for every trial
    figures: dict[str, float] = field(default_factory=dict)  # measured, by figure key
    device: str | None = None  # where ``figures`` were measured
    # Generated-pretrained starts this machine lacks: built once, before the first trial.
    starts: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(getattr(s, key)) for s in self.stages)

    def total_hours(self) -> float | None:
        hours = [s.hours for s in self.stages]
        return None if not hours or any(h is None for h in hours) else sum(
            h for h in hours if h is not None)

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "scale": self.scale,
                "throughput": self.throughput, "figures": self.figures, "device": self.device,
                "stages": [asdict(s) | {"trained_image_epochs": s.trained_image_epochs}
                           for s in self.stages],
                "image_epochs": self.total("image_epochs"),
                "trained_image_epochs": self.total("trained_image_epochs"),
                "hours": self.total_hours(), "starts_to_build": self.starts}

    def rate(self, job: TrialJob) -> float | None:
        if self.throughput:
            return self.throughput
        from orchestrator.plan.calibration import figure_key

        return self.figures.get(figure_key(job))


def image_epochs(job: TrialJob, sizes: dict[str, int]) -> int:
    """The whole training of ``job``: training instances x its epochs."""
    return train_images(job, sizes) * job.config.train.epochs


def train_images(job: TrialJob, sizes: dict[str, int]) -> int:
    """Instances one epoch trains on: the base set (or ``base_count`` of it) + the draws."""
    data = job.config.data
    base = 0
    if data.base:
        base = data.base_count if data.base_count is not None else sizes.get(data.base, 0)
    return base + (data.real_count if data.real else 0) + \
        (data.synthetic_count if data.synthetic else 0)


def make_plan(
    experiment: Experiment, planned: dict[str, list[TrialJob]], sizes: dict[str, int],
    options: SweepOptions, catalog: dict[str, Any], throughput: float | None = None,
) -> SweepPlan:
    """The cost of ``planned`` (jobs from the preflight; ``sizes``: instances per dataset),
    with the training throughput figures this machine's device has cached."""
    from orchestrator.plan.calibration import device_name, throughputs

    store = ResultsStore(options.results)
    rows = store.read_trials(latest_only=True).to_pylist() if options.reuse else []
    done = finished_by_digest(rows)
    every = [job for jobs in planned.values() for job in jobs]
    from orchestrator.plan.pretraining import cost_line, missing_starts

    plan = SweepPlan(experiment.name, options.scale_of.name, throughput=throughput,
                     figures=throughputs(every), device=device_name(),
                     starts=[cost_line(start) for start in missing_starts(every)])
    for name, jobs in planned.items():
        stage = experiment.stage(name)
        if stage.search == "optuna":
            axis = search_axes(stage, options.scale_of).get("train.epochs")
            epochs = axis.high if isinstance(axis, IntRange) else jobs[0].config.train.epochs
            per_trial = train_images(jobs[0], sizes) * epochs
            count = stage.num_samples * len(jobs)
            rate = plan.rate(jobs[0])
            plan.stages.append(StagePlan(name, count, per_trial * count, upper_bound=True,
                                         hours=per_trial * count / rate / 3600 if rate else None))
            continue
        if stage.scheduler == "halving":
            jobs, bound = halving_jobs(jobs, stage.keep, sizes)
        entry = StagePlan(name, len(jobs), 0, upper_bound=stage.scheduler == "halving" and bound)
        todo = []
        for job in jobs:
            work = image_epochs(job, sizes)
            entry.image_epochs += work
            if dataclasses.replace(job, catalog=catalog).digest in done:
                entry.reused += 1
                entry.reused_image_epochs += work
            else:
                todo.append(job)
        inherited = {}
        if forking_on(options):
            for member in members(phases_to_run(jobs, todo)):
                entry.forked += 1
                inherited[member.key] = train_images(member, sizes) * member.fork_epoch
                entry.forked_image_epochs += inherited[member.key]
        rates = [plan.rate(job) for job in todo]
        if all(rates):
            entry.hours = sum(
                (image_epochs(job, sizes) - inherited.get(job.key, 0)) / float(rate or 1) / 3600 for job, rate in zip(todo, rates, strict=True))
        plan.stages.append(entry)
    return plan


def halving_jobs(jobs: list[TrialJob], keep: float,
                 sizes: dict[str, int]) -> tuple[list[TrialJob], bool]:
    """The jobs a halving stage runs: every arm at the shortest length, then at each longer
    one as many arms as its rule keeps, the dearest first; True when that is a bound (arms
    differ in cost)."""
    chosen: list[TrialJob] = []
    arms: list[str] | None = None
    bound = False
    for level in levels(jobs):
        work: dict[str, int] = {}
        for job in level:
            if arms is None or arm_of(job) in arms:
                work[arm_of(job)] = work.get(arm_of(job), 0) + image_epochs(job, sizes)
        if arms is not None:
            ranked = sorted(work, key=lambda arm: work[arm], reverse=True)  # stable
            arms = ranked[:kept_count(len(arms), keep)]
            bound = bound or len(set(work.values())) > 1
        else:
            arms = list(work)
        chosen += [job for job in level if arm_of(job) in arms]
    return chosen, bound


def render(plan: SweepPlan) -> str:
    def hours(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    rows = [[s.stage, s.trials, s.reused, s.forked,
             f"{'<=' if s.upper_bound else ''}{s.image_epochs:,}",
             f"{s.trained_image_epochs:,}", hours(s.hours)]
            for s in plan.stages]
    rows.append(["total", plan.total("trials"), plan.total("reused"), plan.total("forked"),
                 f"{plan.total('image_epochs'):,}", f"{plan.total('trained_image_epochs'):,}",
                 hours(plan.total_hours())])
    table = tabulate(rows, headers=["stage", "trials", "reused", "forked", "image-epochs",
                                    "to train", "hours"], disable_numparse=True)
    if plan.throughput:
        note = f"hours at {plan.throughput:g} training images/s per device (--throughput)"
    elif plan.figures:
        measured = "; ".join(f"{k} {v:.1f} img/s" for k, v in sorted(plan.figures.items()))
        note = (f"hours at the training throughput measured on {plan.device} (model step "
                f"only; cached by --calibrate): {measured}")
        if plan.total_hours() is None:
            note += ". A stage shows n/a where a trial's figure is missing: --calibrate again"
    else:
        note = ("hours: pass --calibrate (measures each backbone and input size on this "
                "machine's device, a GPU on a cluster node) or --throughput IMG_PER_S")
    if plan.starts:
        note += (f"\nbefore the first trial: {len(plan.starts)} generated-pretrained start(s) "
                 "to build (not in the hours above):\n"
                 + "\n".join(f"  - {line}" for line in plan.starts))
    return f"plan for {plan.experiment} at scale {plan.scale}\n{table}\n{note}\n"


def write_plan(plan: SweepPlan, results: str) -> str:
    uri = join(results, "plan", f"{plan.experiment}.json")
    write_bytes_atomic(uri, json.dumps(plan.to_dict(), indent=2).encode())
    return uri
