"""Successive halving along a grid's epochs axis (``Stage(scheduler="halving")``; Ray-free).

A grid stage whose ``train.epochs`` axis has several lengths is a set of *arms* (the other
axes' combinations, e.g. lr x augmentation) each trained at every length. Halving runs the
lengths in order, shortest first: every arm trains the shortest length, then only the best
``ceil(keep * n)`` arms of the ``n`` that trained a length (by the experiment's metric,
averaged over the seeds) train the next one. Every row it writes is a complete grid trial
with its own schedule (nothing is extrapolated from a partial curve, which is what made ASHA
pick the wrong learning rate: BENCHMARKS.md, P3); the dropped arms' longer trials are never
run, and a line names each decision. With exact schedule forking (``orchestrator.plan.forking``)
each kept arm's next length starts from the previous length's copy, so an arm that reaches
the longest length costs little more than that length alone.

Reused or already finished trials take part in the decisions like trials run now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from orchestrator.study.experiment import kept_count
from orchestrator.study.stats import mean, standard_error
from orchestrator.study.trials import TrialJob


def arm_of(job: TrialJob) -> str:
    """The job's arm: its variant id without the epochs value."""
    parts = [p for p in job.variant_id.split(",") if not p.startswith("epochs=")]
    return ",".join(parts) or "baseline"


def levels(jobs: Sequence[TrialJob]) -> list[list[TrialJob]]:
    """The jobs by length, shortest first."""
    lengths = sorted({j.config.train.epochs for j in jobs})
    return [[j for j in jobs if j.config.train.epochs == n] for n in lengths]


def score(rows: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    found = values(rows, metric)
    return mean(found) if found else None


def values(rows: Sequence[Mapping[str, Any]], metric: str) -> list[float]:
    return [float(r[metric]) for r in rows
            if r.get("status") in ("ok", "stopped") and r.get(metric) is not None]


def choose(
    level: Sequence[TrialJob], rows: Mapping[tuple[str, str, int], Mapping[str, Any]],
    metric: str, mode: str, keep: float,
) -> tuple[list[str], list[tuple[str, float | None]], str]:
    """(the arms that go on, every arm of ``level`` with its score, best first, and a warning
    when the cut is within noise, else ""). ``rows``: the stage's finished rows by job key.
    An arm without a score (its trials failed) ranks last; ties keep the grid's order."""
    by_arm: dict[str, list[Mapping[str, Any]]] = {}
    for job in level:
        row = rows.get(job.key)
        by_arm.setdefault(arm_of(job), []).extend([row] if row is not None else [])
    sign = 1.0 if mode == "max" else -1.0
    scored = [(arm, score(found, metric)) for arm, found in by_arm.items()]
    ranked_ok = sorted([(a, s) for a, s in scored if s is not None],
                       key=lambda item: sign * item[1], reverse=True)  # stable: ties in order
    ranked: list[tuple[str, float | None]] = [*ranked_ok, *((a, s) for a, s in scored if s is None)]
    count = kept_count(len(by_arm), keep)
    kept = [arm for arm, _ in ranked_ok[:count]]
    warning = ""
    if 0 < count < len(ranked_ok):  # the last arm kept against the first one dropped
        (last, a), (first, b) = ranked_ok[count - 1], ranked_ok[count]
        errors = [standard_error(values(by_arm[arm], metric)) for arm in (last, first)]
        if all(e is None for e in errors):
            warning = (f" (one seed: no noise estimate for the cut, {last} {a:.3f} against "
                       f"{first} {b:.3f}; more seeds make halving surer)")
        elif abs(a - b) <= (sum((e or 0.0) ** 2 for e in errors)) ** 0.5:
            warning = (f" (the cut is within noise: {last} {a:.3f} against {first} {b:.3f} "
                       "differ by no more than their standard error over the seeds; more "
                       "seeds, or longer shortest runs, make halving surer)")
    return kept, ranked, warning


def describe(
    tag: str, epochs: int, kept: Sequence[str], ranked: Sequence[tuple[str, float | None]],
    metric: str, following: int,
) -> str:
    def show(arm: str, value: float | None) -> str:
        return f"{arm} ({metric} {value:.3f})" if value is not None else f"{arm} (no result)"

    went = [show(a, s) for a, s in ranked if a in kept]
    dropped = [show(a, s) for a, s in ranked if a not in kept]
    line = (f"{tag} halving after the {epochs}-epoch trials: {len(kept)} of {len(ranked)} "
            f"arm(s) go on: {'; '.join(went)}")
    if dropped:
        line += (f". Dropped, their {following} longer trial(s) not run: "
                 f"{'; '.join(dropped)}")
    return line


def run_levels(
    jobs: Sequence[TrialJob], metric: str, mode: str, keep: float,
    rows_now: Callable[[], Mapping[tuple[str, str, int], Mapping[str, Any]]],
    run: Callable[[list[TrialJob]], bool], say: Callable[[str], None], tag: str,
    done: Sequence[TrialJob] = (),
) -> bool:
    """Run ``jobs`` (those still to train) level by level, deciding after each; ``done``:
    the stage's other jobs, already finished or reused (their rows count in decisions).
    ``run(group)`` trains a group and returns False to stop (interrupted). True when every
    level ran."""
    for _, group in walk(jobs, metric, mode, keep, rows_now, say, tag, done):
        if group and not run(group):
            return False
    return True


def still_to_run(
    jobs: Sequence[TrialJob], metric: str, mode: str, keep: float,
    rows: Mapping[tuple[str, str, int], Mapping[str, Any]], done: Sequence[TrialJob] = (),
) -> tuple[int, int]:
    """What :func:`run_levels` will train of ``jobs`` (``--resume``; ``rows``: the stage's
    finished rows): the trials of the first length with any left, on the arms the finished
    lengths' decisions keep, and at most how many longer trials follow as halving decides."""
    every = levels([*jobs, *done])
    for index, (level, group) in enumerate(walk(jobs, metric, mode, keep, lambda: rows,
                                                lambda line: None, "", done)):
        if not group:
            continue
        arms, later = len({arm_of(j) for j in level}), 0
        for longer in every[index + 1:]:
            arms = kept_count(arms, keep)
            later += arms * max(1, len(longer) // max(1, len({arm_of(j) for j in longer})))
        return len(group), later
    return 0, 0


def walk(
    jobs: Sequence[TrialJob], metric: str, mode: str, keep: float,
    rows_now: Callable[[], Mapping[tuple[str, str, int], Mapping[str, Any]]],
    say: Callable[[str], None], tag: str, done: Sequence[TrialJob] = (),
) -> Iterator[tuple[list[TrialJob], list[TrialJob]]]:
    """Each length's trials on the arms still in (every arm at the shortest) and those of
    them in ``jobs``, to train before the next is asked for; between two lengths the
    decision is taken from ``rows_now()`` and said."""
    every = levels([*jobs, *done])
    todo = {j.key for j in jobs}
    kept: set[str] | None = None
    for index, level in enumerate(every):
        if kept is not None:
            level = [j for j in level if arm_of(j) in kept]
        if not level:  # no arm went on (every one failed)
            return
        yield level, [j for j in level if j.key in todo]
        if index + 1 < len(every):
            chosen, ranked, warning = choose(level, rows_now(), metric, mode, keep)
            following = sum(1 for later in every[index + 1:] for j in later
                            if arm_of(j) not in chosen and (kept is None or arm_of(j) in kept))
            say(describe(tag, level[0].config.train.epochs, chosen, ranked, metric, following)
                + warning)
            kept = set(chosen)
