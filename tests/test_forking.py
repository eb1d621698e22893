"""Exact schedule forking: where trials that differ only in epochs part, and that a member
started from its prefix's copy trains exactly what it would have trained alone (Ray-free)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

import search_spaces
from orchestrator.plan.forking import (
    fork_epoch,
    fork_file,
    members,
    phases_to_run,
    plan_forks,
    seed_members,
)
from orchestrator.study.trials import SweepOptions, plan
from pose_core.config import TrainConfig, with_values
from pose_core.loop import CHECKPOINT_FILE, train_trial
from tests.test_loop import SMALL, CpuTuneSession, data  # noqa: F401  (data is a fixture)


def test_fork_epoch_is_the_last_epoch_before_the_shortest_drop() -> None:
    study = TrainConfig()
    assert fork_epoch(study, [50, 100, 210]) == 39  # 80% of 50 = 40: drop at epoch 41
    assert fork_epoch(study, [5, 10, 21]) == 3  # mini scale: 80% of 5 = 4
    constant = TrainConfig(schedule="constant")
    assert fork_epoch(constant, [3, 6]) == 2  # no drop: all but the shortest's last epoch
    assert fork_epoch(study, [1, 2]) == 0  # nothing to share


def test_the_hyperparameter_grid_forks_as_a_chain_per_lr_arm_and_seed() -> None:
    experiment = search_spaces.load_experiment("hyperparameters")
    jobs = plan(experiment, SweepOptions(results="unused", seeds=2))["main"]
    phases = plan_forks(jobs)
    assert [len(p) for p in phases] == [12, 12, 12]  # lr x augmentation x seed per length
    assert sum(len(p) for p in phases) == len(jobs) == 36
    first, second, third = phases
    assert members(phases) == second + third
    # 50 keeps epoch 39 (its drop is at 40); 100 starts there and keeps 79; 210 starts there.
    assert all(j.config.train.epochs == 50 and j.fork_at == 39 and j.fork_of is None
               for j in first)
    assert all(j.config.train.epochs == 100 and j.fork_epoch == 39 and j.fork_at == 79
               for j in second)
    assert all(j.config.train.epochs == 210 and j.fork_epoch == 79 and j.fork_at == 0
               for j in third)
    for earlier, later in ((first, second), (second, third)):
        for member in later:
            variant, seed = member.fork_of or ("", -1)
            prefix = next(j for j in earlier if (j.variant_id, j.seed) == (variant, seed))
            assert seed == member.seed and member.fork_source == prefix.checkpoint_name()
            assert prefix.config.train.lr == member.config.train.lr
            assert prefix.config.data.augment == member.config.data.augment
            assert member.digest != prefix.digest  # forking is not part of the identity
    # A stage without an epochs axis has no groups: nothing changes.
    other = plan(search_spaces.load_experiment("augmentations"),
                 SweepOptions(results="unused"))["main"]
    assert plan_forks(other) == [other]


def test_a_resumed_member_still_forks_from_its_finished_prefix() -> None:
    """--resume with the 50-epoch trials finished: the 100- and 210-epoch trials still run as
    members of their chain (forked from the finished prefix), not from the start."""
    experiment = search_spaces.load_experiment("hyperparameters")
    jobs = plan(experiment, SweepOptions(results="unused", seeds=2))["main"]
    first, second, third = plan_forks(jobs)
    todo = [job for job in jobs if job.config.train.epochs > 50]
    phases = phases_to_run(jobs, todo)
    assert phases == [[], second, third]
    assert all(j.fork_of is not None and j.fork_epoch == 39 for j in phases[1])
    assert phases_to_run(jobs, jobs) == plan_forks(jobs)


def test_a_chain_link_that_shares_nothing_more_is_skipped() -> None:
    """Lengths 2, 3, 10 under the study schedule: 2 keeps epoch 1; 3's own drop is at epoch 2
    too (80% of 3, rounded), so it shares no more than it inherited and 10 forks from 2."""
    experiment = search_spaces.load_experiment("hyperparameters")
    jobs = [j for j in plan(experiment, SweepOptions(results="unused"))["main"]
            if j.config.train.lr == 5e-4 and j.config.data.augment == "none"]
    jobs = [dataclasses.replace(j, variant_id=f"epochs={n}", config=with_values(
        j.config, {"train.epochs": n})) for j, n in zip(jobs, (2, 3, 10), strict=True)]
    phases = plan_forks(jobs)
    assert [[j.config.train.epochs for j in p] for p in phases] == [[2], [3, 10]]
    two, (three, ten) = phases[0][0], phases[1]
    assert two.fork_at == 1 and three.fork_at == 0
    assert three.fork_of == ten.fork_of == ("epochs=2", 0)
    assert three.fork_epoch == ten.fork_epoch == 1


def test_a_forked_member_trains_exactly_what_it_trains_alone(
        data: tuple[Any, Any, Any], tmp_path: Path) -> None:  # noqa: F811
    train, test, skeleton = data
    cfg = with_values(SMALL, {"data.augment": "all", "eval.interval": 2})
    short, long = (with_values(cfg, {"train.epochs": n}) for n in (5, 7))
    k = fork_epoch(short.train, [5, 7])
    assert k == 3
    alone = CpuTuneSession(str(tmp_path / "alone"))
    reference = train_trial(long, train, test, skeleton, alone)
    prefix = CpuTuneSession(str(tmp_path / "prefix"))
    prefix.keep_epoch = k
    train_trial(short, train, test, skeleton, prefix)
    copy = tmp_path / "prefix" / fork_file(k)
    assert copy.is_file()
    member_dir = tmp_path / "member"
    member_dir.mkdir()
    (member_dir / CHECKPOINT_FILE).write_bytes(copy.read_bytes())
    member = CpuTuneSession(str(member_dir))
    forked = train_trial(long, train, test, skeleton, member)
    assert [r["epoch"] for r in member.reports] == [4, 5, 6, 7]  # only the epochs after K
    a, b = reference.model.state_dict(), forked.model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert member.reports[-1]["AP"] == alone.reports[-1]["AP"]
    assert member.reports[-1]["loss"] == alone.reports[-1]["loss"]
    assert [r["lr"] for r in member.reports] == [r["lr"] for r in alone.reports[k:]]


def test_seeding_places_the_copy_and_falls_back_without_one(tmp_path: Path) -> None:
    experiment = search_spaces.load_experiment("hyperparameters")
    jobs = plan(experiment, SweepOptions(results="unused"))["main"]
    first, second, _ = plan_forks(jobs)
    prefixes = first[:2]
    group = [next(m for m in second if m.fork_of == (p.variant_id, p.seed)) for p in prefixes]
    storage = str(tmp_path)
    copies = [tmp_path / p.checkpoint_name() / fork_file(p.fork_at) for p in prefixes]
    for copy in copies:
        copy.parent.mkdir(parents=True)
        copy.write_bytes(b"prefix-state")
    lines: list[str] = []
    seeded = seed_members(group, storage, lines.append)
    for job in seeded:
        assert job.fork_of is not None
        assert (tmp_path / job.checkpoint_name() / CHECKPOINT_FILE).read_bytes() == b"prefix-state"
    assert all("forked from" in line for line in lines)
    # A member whose own checkpoint exists keeps it; one whose prefix left no copy starts over.
    own = tmp_path / group[0].checkpoint_name() / CHECKPOINT_FILE
    own.write_bytes(b"own-progress")
    (tmp_path / group[1].checkpoint_name() / CHECKPOINT_FILE).unlink()
    for copy in copies:
        copy.unlink()
    again = seed_members(group, storage, lines.append)
    assert own.read_bytes() == b"own-progress" and again[0].fork_of is not None
    assert again[1].fork_of is None and "trains from the start" in lines[-1]
