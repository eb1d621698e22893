"""Exact schedule forking (Ray-free planning; the file copies work on local and s3:// storage).

Trials of one grid stage that differ only in ``train.epochs`` train identically until the
shorter one's first learning-rate drop: the study's schedule (warm-up in iterations, then
x0.1 at fixed fractions of the length) does not depend on the length before that, the data
order depends only on the seed and the epoch index, evaluation does not touch the model or
the random state, and a checkpoint restores model, optimizer, scheduler step and random
state exactly (``pose_core.engine.save_checkpoint``). So, in each such group sorted by
length, the trials form a chain:

1. a trial with a longer one after it (a *prefix*) keeps a copy of its checkpoint after
   ``K`` epochs, ``K = min(length, first drop) - 1`` of its own schedule (the optimizer in
   the checkpoint after epoch ``K + 1`` already holds its dropped rate for the next step,
   which a longer trial must not inherit);
2. the next longer trial (a *member*) starts from that copy, placed as its own checkpoint,
   and trains epochs ``K + 1 ..`` only. Its row says ``forked_from``; its epoch history
   holds the prefix's first ``K`` epochs. A member is itself the prefix of the next length
   (the study's 50/100/210: 50 keeps epoch 39, 100 starts there and keeps epoch 79, 210
   starts there), so the trials run in phases, one per length.

Nothing else is shared: a member whose own checkpoint exists (an interrupted run) continues
from it, and a member whose prefix left no copy (it failed or was stopped early) trains
from the start. ``--no-fork`` turns forking off.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.study.trials import SweepOptions, TrialJob
from pose_core.config import TrainConfig
from pose_core.engine import milestones
from pose_core.loop import CHECKPOINT_FILE


def forking_on(options: SweepOptions) -> bool:
    """Forking needs the in-process Tune runner (one worker per trial), whose session keeps
    the prefix's copy; Ray Train (DDP) trials train from the start."""
    tune_runner = options.runner == "tune" or (options.runner == "auto" and options.workers <= 1)
    return options.fork and tune_runner


def fork_file(epoch: int) -> str:
    return f"fork-epoch-{epoch}.pt"


def fork_epoch(train: TrainConfig, epochs: Sequence[int]) -> int:
    """The last epoch after which every length in ``epochs`` has trained identically (0:
    none). ``train`` is any of the trials' train configs (they differ only in epochs)."""
    shortest = min(epochs)
    drops = milestones(dataclasses.replace(train, epochs=shortest))
    return max(0, min(shortest, *drops) - 1) if drops else max(0, shortest - 1)


def identity_without_epochs(job: TrialJob) -> str:
    """The job's training identity with ``train.epochs`` left out (equal for a group)."""
    train = dataclasses.replace(job.config.train, epochs=0)
    return dataclasses.replace(job, config=dataclasses.replace(job.config, train=train)).digest


def plan_forks(jobs: Sequence[TrialJob]) -> list[list[TrialJob]]:
    """The jobs in phases: the first holds every job that is not a member; phase ``d``
    the members whose prefix is in phase ``d - 1``. Prefixes are marked ``fork_at``,
    members ``fork_of``, ``fork_epoch`` and ``fork_source``."""
    groups: dict[str, list[TrialJob]] = defaultdict(list)
    for job in jobs:
        if not job.sampled:
            groups[identity_without_epochs(job)].append(job)
    marked: dict[tuple[str, int], tuple[TrialJob, int]] = {}  # (variant, seed) -> (job, depth)
    for group in groups.values():
        if len({j.config.train.epochs for j in group}) < 2:
            continue
        group = sorted(group, key=lambda j: j.config.train.epochs)
        source: tuple[TrialJob, int] | None = None  # the latest prefix and its phase
        for i, job in enumerate(group):
            depth = 0
            if source is not None and job.config.train.epochs > source[0].config.train.epochs:
                prefix, depth = source[0], source[1] + 1
                job = dataclasses.replace(job, fork_of=(prefix.variant_id, prefix.seed),
                                          fork_epoch=prefix.fork_at,
                                          fork_source=prefix.checkpoint_name())
            longer = [j.config.train.epochs for j in group[i:]]
            k = fork_epoch(job.config.train, longer) if len(set(longer)) > 1 else 0
            if k > job.fork_epoch:  # it shares more with the longer ones than it inherits
                job = dataclasses.replace(job, fork_at=k)
                source = (job, depth)
            marked[(job.variant_id, job.seed)] = (job, depth)
    phases: list[list[TrialJob]] = [[]]
    for job in jobs:
        job, depth = marked.get((job.variant_id, job.seed), (job, 0))
        while len(phases) <= depth:
            phases.append([])
        phases[depth].append(job)
    return phases


def phases_to_run(jobs: Sequence[TrialJob], todo: Sequence[TrialJob]) -> list[list[TrialJob]]:
    """``plan_forks`` over all the stage's ``jobs``, kept to those in ``todo``: a member
    whose prefix finished before (``--resume``) or was reused still forks from it."""
    keys = {job.key for job in todo}
    return [[job for job in phase if job.key in keys] for phase in plan_forks(jobs)]


def members(phases: Sequence[Sequence[TrialJob]]) -> list[TrialJob]:
    """Every forked job of ``plan_forks``'s phases."""
    return [job for phase in phases[1:] for job in phase]


def seed_members(members: Sequence[TrialJob], storage: str, say: Callable[[str], None],
                 rows: Mapping[tuple[str, str, int], Mapping[str, Any]] | None = None,
                 ) -> list[TrialJob]:
    """Place each prefix's epoch-K copy as its members' checkpoint; a member whose prefix
    left no copy trains from the start (unmarked). ``rows``: the stage's finished rows by
    job key; a prefix that was reused, not trained here, has its copy (if its original was a
    prefix with the same K) in the original's checkpoint folder, which its row names."""
    from orchestrator.store.storage import exists, join, read_bytes, write_bytes_atomic

    out = []
    for job in members:
        assert job.fork_of is not None
        variant = job.fork_of[0]
        source = join(storage, job.fork_source, fork_file(job.fork_epoch))
        prefix_row = (rows or {}).get((job.stage, *job.fork_of))
        if prefix_row and prefix_row.get("reused_from") and prefix_row.get("checkpoint_uri"):
            source = join(str(prefix_row["checkpoint_uri"]), fork_file(job.fork_epoch))
        target = join(storage, job.checkpoint_name(), CHECKPOINT_FILE)
        tag = f"[{job.experiment}/{job.stage}] {job.variant_id} seed {job.seed}"
        if exists(target):
            out.append(job)  # its own run got further: continue from there
        elif exists(source):
            write_bytes_atomic(target, read_bytes(source))
            say(f"{tag}: forked from {variant} after epoch {job.fork_epoch} (identical "
                "training until then; --no-fork trains it from the start)")
            out.append(job)
        else:
            say(f"{tag}: {variant} left no epoch-{job.fork_epoch} checkpoint; trains from "
                "the start")
            out.append(dataclasses.replace(job, fork_of=None, fork_epoch=0, fork_source=""))
    return out
