"""Exact schedule forking: where trials that differ only in epochs part, and that a member
started from its prefix's copy trains exactly what it would have trained alone (Ray-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import search_spaces
from orchestrator.forking import fork_epoch, fork_file, plan_forks, seed_members
from orchestrator.planning import SweepOptions, plan
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


def test_the_hyperparameter_grid_forks_by_lr_arm_and_seed() -> None:
    experiment = search_spaces.load_experiment("hyperparameters")
    jobs = plan(experiment, SweepOptions(results="unused", seeds=2))["main"]
    first, second = plan_forks(jobs)
    assert len(first) + len(second) == len(jobs) == 36
    # One prefix (the 50-epoch trial) per lr x augmentation x seed, two members each.
    assert len(first) == 12 and len(second) == 24
    assert all(j.config.train.epochs == 50 and j.fork_at == 39 for j in first)
    for member in second:
        variant, seed = member.fork_of or ("", -1)
        prefix = next(j for j in first if (j.variant_id, j.seed) == (variant, seed))
        assert seed == member.seed and member.fork_epoch == 39
        assert prefix.config.train.lr == member.config.train.lr
        assert prefix.config.data.augment == member.config.data.augment
        assert member.digest != prefix.digest  # forking is not part of the identity
    # A stage without an epochs axis has no groups: nothing changes.
    other = plan(search_spaces.load_experiment("augmentations"),
                 SweepOptions(results="unused"))["main"]
    assert plan_forks(other) == (other, [])


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
    first, second = plan_forks(jobs)
    prefix = first[0]
    members = [m for m in second if m.fork_of == (prefix.variant_id, prefix.seed)]
    storage = str(tmp_path)
    copy = tmp_path / prefix.checkpoint_name() / fork_file(prefix.fork_at)
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"prefix-state")
    lines: list[str] = []
    seeded = seed_members(members, storage, lines.append)
    for job in seeded:
        assert job.fork_of is not None
        assert (tmp_path / job.checkpoint_name() / CHECKPOINT_FILE).read_bytes() == b"prefix-state"
    assert all("forked from" in line for line in lines)
    # A member whose own checkpoint exists keeps it; one whose prefix left no copy starts over.
    own = tmp_path / members[0].checkpoint_name() / CHECKPOINT_FILE
    own.write_bytes(b"own-progress")
    (tmp_path / members[1].checkpoint_name() / CHECKPOINT_FILE).unlink()
    copy.unlink()
    again = seed_members(members, storage, lines.append)
    assert own.read_bytes() == b"own-progress" and again[0].fork_of is not None
    assert again[1].fork_of is None and "trains from the start" in lines[-1]
