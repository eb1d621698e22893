"""Successive halving along a grid's epochs axis: who goes on, what runs, what the plan says
(Ray-free; the sweep on Ray is in test_sweeps)."""

from __future__ import annotations

from typing import Any

import pytest

import search_spaces
from orchestrator.plan.cost import halving_jobs, make_plan
from orchestrator.plan.forking import plan_forks
from orchestrator.plan.halving import arm_of, choose, levels, run_levels, still_to_run
from orchestrator.study.experiment import Experiment, Grid, Stage, halving_arms, kept_count
from orchestrator.study.trials import SweepOptions, TrialJob, plan
from pose_core.config import ConfigError

SIZES = {"animalpose": 4000, "lynx-synthetic": 10000, "lynx-test": 100}


def hyper_jobs(seeds: int = 1) -> list[TrialJob]:
    experiment = search_spaces.load_experiment("hyperparameters_halving")
    return plan(experiment, SweepOptions(results="unused", seeds=seeds))["main"]


def test_arms_and_levels() -> None:
    jobs = hyper_jobs()
    assert {arm_of(j) for j in jobs} == {f"lr={lr},augment={a}" for lr in ("0.0005", "0.0001",
                                         "1e-05") for a in ("none", "all")}
    assert [[j.config.train.epochs for j in lv][0] for lv in levels(jobs)] == [50, 100, 210]
    assert [len(lv) for lv in levels(jobs)] == [6, 6, 6]
    assert [kept_count(n, 0.5) for n in (6, 3, 2, 1)] == [3, 2, 1, 1]
    assert kept_count(3, 1 / 3) == 1 and kept_count(9, 1 / 3) == 3
    assert halving_arms(6, 3, 0.5) == [6, 3, 2] and halving_arms(9, 4, 1 / 3) == [9, 3, 1, 1]


def rows_for(jobs: list[TrialJob], scores: dict[tuple[str, int], float | None],
             ) -> dict[tuple[str, str, int], dict[str, Any]]:
    out = {}
    for job in jobs:
        value = scores.get((arm_of(job), job.seed))
        if value is not None:
            out[job.key] = {"status": "ok", "AP": value}
        elif (arm_of(job), job.seed) in scores:
            out[job.key] = {"status": "failed", "AP": None}
    return out


def test_choose_ranks_arms_by_the_mean_over_seeds() -> None:
    level = levels(hyper_jobs(seeds=2))[0]
    arms = sorted({arm_of(j) for j in level})
    scores: dict[tuple[str, int], float | None] = {}
    for i, arm in enumerate(arms):
        scores[(arm, 0)] = 0.1 * i
        scores[(arm, 1)] = 0.1 * i
    # arms[0]: best seed 0 alone, but its mean is lower than arms[5]'s.
    scores[(arms[0], 0)], scores[(arms[0], 1)] = 0.9, 0.0
    scores[(arms[5], 0)], scores[(arms[5], 1)] = 0.46, 0.46
    scores[(arms[4], 0)] = None  # a failed trial: its arm has only seed 1
    kept, ranked, warning = choose(level, rows_for(level, scores), "AP", "max", 0.5)
    assert warning == ""  # 0.4 (one seed) against 0.3 (two equal seeds): clear
    assert kept == [arms[5], arms[0], arms[4]]  # 0.46, 0.45, 0.4 (seed 1 only)
    assert [a for a, _ in ranked][:3] == kept
    # Lower is better for a minimised metric; an arm with no result at all ranks last.
    scores = {(arm, 0): float(i) for i, arm in enumerate(arms)}
    scores[(arms[0], 0)] = None
    level = levels(hyper_jobs())[0]
    kept, ranked, warning = choose(level, rows_for(level, scores), "AP", "min", 1 / 3)
    assert warning.startswith(" (one seed: no noise estimate for the cut")
    assert kept == [arms[1], arms[2]] and ranked[-1] == (arms[0], None)
    # Ties keep the grid's order.
    tied = {(arm, 0): 0.2 for arm in arms}
    kept, _, _ = choose(level, rows_for(level, tied), "AP", "max", 0.5)
    assert kept == [arm_of(j) for j in level][:3]


def test_a_cut_within_the_seeds_noise_is_said() -> None:
    level = levels(hyper_jobs(seeds=2))[0]
    arms = [arm_of(j) for j in level if j.seed == 0]
    pairs = [(0.9, 0.9), (0.8, 0.8), (0.30, 0.40), (0.34, 0.34), (0.1, 0.1), (0.1, 0.1)]
    scores = {(arm, seed): pair[seed] for arm, pair in zip(arms, pairs, strict=True)
              for seed in (0, 1)}
    kept, _, warning = choose(level, rows_for(level, scores), "AP", "max", 0.5)
    assert kept == arms[:3]  # 0.35 against 0.34: kept, but a standard error of 0.05 apart
    assert "the cut is within noise" in warning and f"{arms[2]} 0.350" in warning
    scores[(arms[3], 0)] = scores[(arms[3], 1)] = 0.1
    assert choose(level, rows_for(level, scores), "AP", "max", 0.5)[2] == ""


def test_run_levels_runs_only_the_kept_arms_longer_trials() -> None:
    jobs = hyper_jobs()
    best = "lr=0.0001,augment=none"
    second = "lr=0.0005,augment=all"
    score = {arm_of(j): 0.1 for j in jobs} | {best: 0.5, second: 0.4,
                                               "lr=1e-05,augment=all": 0.3}
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    ran: list[list[str]] = []

    def run(group: list[TrialJob]) -> bool:
        ran.append([j.variant_id for j in group])
        for job in group:  # longer trials score higher, ranking kept
            rows[job.key] = {"status": "ok", "AP": score[arm_of(job)] + job.config.train.epochs / 1e4}
        return True

    lines: list[str] = []
    marked = [j for phase in plan_forks(jobs) for j in phase]
    assert run_levels(marked, "AP", "max", 0.5, lambda: rows, run, lines.append, "[h/main]")
    assert [len(g) for g in ran] == [6, 3, 2]
    assert all("epochs=50" in v for v in ran[0])
    assert sorted(ran[1]) == sorted(f"{a.replace(',', ',epochs=100,', 1)}"
                                    for a in (best, second, "lr=1e-05,augment=all"))
    assert sorted(arm_of_id(v) for v in ran[2]) == sorted([best, second])
    assert lines[0].startswith("[h/main] halving after the 50-epoch trials: 3 of 6 arm(s) go on")
    assert "Dropped, their 6 longer trial(s) not run" in lines[0]
    assert "2 of 3 arm(s) go on" in lines[1] and "their 1 longer trial(s)" in lines[1]
    assert len(lines) == 2


def arm_of_id(variant: str) -> str:
    return ",".join(p for p in variant.split(",") if not p.startswith("epochs="))


def test_run_levels_decides_from_finished_rows_and_stops_when_interrupted() -> None:
    jobs = hyper_jobs()
    first = levels(jobs)[0]
    rows = {j.key: {"status": "ok", "AP": 0.5 if "lr=1e-05" in j.variant_id else 0.1}
            for j in first}
    ran: list[list[TrialJob]] = []

    def run(group: list[TrialJob]) -> bool:
        ran.append(group)
        return False  # interrupted

    todo = [j for j in jobs if j.config.train.epochs > 50]
    assert not run_levels(todo, "AP", "max", 0.5, lambda: rows, run, lambda _: None, "t",
                          done=first)
    # The 50-epoch trials had finished: the 100-epoch level ran for the best 3 arms only.
    assert len(ran) == 1 and len(ran[0]) == 3
    assert {arm_of(j) for j in ran[0]} == {"lr=1e-05,augment=none", "lr=1e-05,augment=all",
                                           "lr=0.0005,augment=none"}


def test_a_resume_counts_only_what_halving_will_train() -> None:
    """The resume line's count (issue 23: "8 to run" where 1 ran): the decisions of the
    finished lengths are taken again; a decision still to come is a bound."""
    jobs = hyper_jobs()
    short, middle, longest = levels(jobs)
    rows = {j.key: {"status": "ok", "AP": 0.5 if "lr=1e-05" in j.variant_id else 0.1}
            for j in short}
    todo = middle + longest
    # The 50-epoch trials finished: 3 arms go on to 100 epochs, then at most 2 to 210.
    assert still_to_run(todo, "AP", "max", 0.5, rows, done=short) == (3, 2)
    # Two of the kept arms' 100-epoch trials finished too: 1 left now, 2 at most after.
    kept = [j for j in middle if "lr=1e-05" in j.variant_id]
    rows |= {j.key: {"status": "ok", "AP": 0.5} for j in kept}
    left = [j for j in todo if j not in kept]
    assert still_to_run(left, "AP", "max", 0.5, rows, done=short + kept) == (1, 2)
    # Every 100-epoch trial of the kept arms finished: the 2 kept arms' 210-epoch ones.
    third = next(j for j in middle if arm_of(j) == "lr=0.0005,augment=none")
    rows[third.key] = {"status": "ok", "AP": 0.1}
    assert still_to_run(longest, "AP", "max", 0.5, rows,
                        done=[*short, *kept, third]) == (2, 0)
    assert still_to_run([], "AP", "max", 0.5, rows, done=jobs) == (0, 0)


def test_the_plan_counts_what_halving_trains() -> None:
    jobs = hyper_jobs(seeds=3)
    chosen, bound = halving_jobs(jobs, 0.5, SIZES)
    assert not bound  # every arm costs the same
    assert [sum(j.config.train.epochs == n for j in chosen) for n in (50, 100, 210)] == \
        [18, 9, 6]  # (6, 3, 2 arms) x 3 seeds
    experiment = search_spaces.load_experiment("hyperparameters_halving")
    options = SweepOptions(results="unused-plan-store", seeds=3)
    cost = make_plan(experiment, {"main": jobs}, SIZES, options, {})
    (stage,) = cost.stages
    images = 4000 + 1000
    assert stage.trials == 33
    assert stage.image_epochs == images * 3 * (6 * 50 + 3 * 100 + 2 * 210)
    # Chained forking: each 100-epoch trial inherits 39 epochs, each 210-epoch one 79.
    assert stage.forked == 15
    assert stage.forked_image_epochs == images * 3 * (3 * 39 + 2 * 79)
    assert stage.trained_image_epochs == images * 3 * (6 * 50 + 3 * 61 + 2 * 131)
    grid = make_plan(search_spaces.load_experiment("hyperparameters"),
                     {"main": plan(search_spaces.load_experiment("hyperparameters"),
                                   SweepOptions(results="unused", seeds=3))["main"]},
                     SIZES, options, {})
    naive = grid.total("image_epochs")
    assert naive == images * 3 * 6 * 360
    assert stage.trained_image_epochs / naive == pytest.approx(745 / 2160)


def test_halving_needs_an_epochs_grid_and_a_fraction() -> None:
    with pytest.raises(ConfigError, match="train.epochs axis of two or more lengths"):
        Experiment(name="h", description="", stages=(
            Stage(axes={"train.lr": Grid(1e-3, 1e-4)}, scheduler="halving"),))
    with pytest.raises(ConfigError, match="keep=1.0 must be between 0 and 1"):
        Experiment(name="h", description="", stages=(
            Stage(axes={"train.epochs": Grid(5, 10)}, scheduler="halving", keep=1.0),))
