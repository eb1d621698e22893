"""The demo's closing report: the rows as a short table, what each metric measures, the answer
to the demo's question read off its own rows, and the commands to run next.

``render_demo_report`` is pure (rows in, text out) so the wording is tested on fixed rows; the
CLI only queries the rows and says how posetune was invoked (``invocation``).
"""

from __future__ import annotations

import os
import shlex
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.store.query import QUERY_TABLES

WIDTH = 100  # wrap prose here; the table and commands are never wrapped
QUESTION = "do a few real and a few synthetic images help a model trained on a generic base set?"

# (column, what it measures). Every one is a fraction in [0, 1]; higher is better.
METRICS: tuple[tuple[str, str], ...] = (
    ("AP", "COCO keypoint AP: precision averaged over OKS thresholds 0.50 to 0.95"),
    ("AP75", "AP at OKS 0.75: poses whose keypoints lie close to the truth"),
    ("AP85", "AP at OKS 0.85: near-exact poses only (the study's strict column)"),
    ("PCK05", "share of keypoints within 5% of the box's longer side from the truth"),
)


@dataclass(frozen=True)
class Spread:
    """How far one arm's AP moved between repeated runs of the same demo, and where."""

    runs: Mapping[str, tuple[float, ...]]  # arm label -> AP of each recorded run
    where: str

    @property
    def ap(self) -> float:
        return max(max(aps) - min(aps) for aps in self.runs.values())

    @property
    def source(self) -> str:
        seen = "; ".join(f"{arm} {', '.join(f'{ap:.3f}' for ap in aps)}"
                         for arm, aps in self.runs.items())
        return f"between runs of this demo {self.where} ({seen})"


# Three `make demo` runs (two arms known from one of them); README, "How much the demo varies".
DEMO_SPREAD = Spread(
    runs={
        "base set only": (0.121, 0.154, 0.186),
        "base + 100 synthetic": (0.304, 0.332),
        "base + 40 real": (0.276, 0.240, 0.236),
        "base + 40 real + 100 synthetic": (0.328, 0.326),
    },
    where="on 2-core machines",
)


@dataclass(frozen=True)
class Arm:
    """One cell of the demo's 2 x 2 grid: its ok seeds averaged, or why it has no numbers."""

    real: int
    synthetic: int
    seeds: int
    status: str  # "ok" when at least one seed finished, else the first seed's status
    metrics: Mapping[str, float]  # empty when no seed finished
    epochs: int
    wall_s: float

    @property
    def label(self) -> str:
        added = [f"{n} {kind}" for n, kind in ((self.real, "real"), (self.synthetic, "synthetic"))
                 if n]
        return " + ".join(["base", *added]) if added else "base set only"

    @property
    def ap(self) -> float | None:
        return self.metrics.get("AP")


def arms_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[Arm]:
    """Group result rows (columns of ``trials``) by (real_count, synthetic_count)."""
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((int(row["real_count"]), int(row["synthetic_count"])), []).append(row)
    arms = []
    for (real, synthetic), group in sorted(groups.items()):
        ok = [r for r in group if r["status"] == "ok" and r.get("AP") is not None]
        metrics = ({name: sum(float(r[name]) for r in ok) / len(ok) for name, _ in METRICS}
                   if ok else {})
        arms.append(Arm(
            real=real, synthetic=synthetic, seeds=len(group),
            status="ok" if ok else str(group[0]["status"]), metrics=metrics,
            epochs=max(int(r.get("epochs_run") or 0) for r in group),
            wall_s=sum(float(r.get("wall_s") or 0.0) for r in group),
        ))
    return arms


def duration_text(seconds: float) -> str:
    """46 -> '46s', 64 -> '1m04s', 3725 -> '1h02m'."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def table_lines(arms: Sequence[Arm]) -> list[str]:
    width = max([len("training data")] + [len(a.label) for a in arms])
    names = [name for name, _ in METRICS]
    span = 7 * len(names) - 2  # the metric columns together, for a trial with no numbers
    lines = ["  ".join([f"{'training data':<{width}}", *(f"{n:>5}" for n in names),
                        "seeds", "epochs", "   time"])]
    for arm in arms:
        numbers = ("  ".join(f"{arm.metrics[n]:5.3f}" for n in names) if arm.metrics
                   else f"{arm.status:<{span}}")
        lines.append("  ".join([f"{arm.label:<{width}}", numbers, f"{arm.seeds:>5}",
                                f"{arm.epochs:>6}", f"{duration_text(arm.wall_s):>7}"]))
    return lines


def metric_lines() -> list[str]:
    lines = ["Each metric is between 0 and 1; higher is better:"]
    lines += [f"  {name:<6} {meaning}" for name, meaning in METRICS]
    lines.append("  time   wall-clock time of the trial: data, training and evaluation")
    return lines


def answer_lines(arms: Sequence[Arm], spread: Spread) -> list[str]:
    """The demo's question answered from AP, with each difference weighed against ``spread``."""
    scored = sorted((a for a in arms if a.ap is not None), key=lambda a: -(a.ap or 0.0))
    base = next((a for a in arms if not a.real and not a.synthetic), None)
    lines = [f"The question: {QUESTION}"]
    if base is None or base.ap is None or len(scored) < 2:
        missing = "the base-set-only trial" if base is None or base.ap is None else "the other arms"
        return lines + wrap(f"No answer from this run: {missing} did not finish; rerun the demo "
                            "with --resume to train what is missing.")
    best, runner_up = scored[0], scored[1]
    if best is base:
        lines += wrap(f"Answer: no. No added images beat the base set alone (AP {base.ap:.3f}).")
    else:
        gain = (best.ap or 0.0) - base.ap
        clear = gain > spread.ap
        lines += wrap(f"Answer: {'yes' if clear else 'not clearly'}. Best: {best.label}, AP "
                      f"{best.ap:.3f} against {base.ap:.3f} for the base set only (+{gain:.3f}, "
                      f"{'more' if clear else 'less'} than the run-to-run spread of "
                      f"{spread.ap:.3f}).")
    width = max(len(a.label) for a in scored)
    for arm in (a for a in scored if a is not base):
        gain = (arm.ap or 0.0) - base.ap
        lines.append(f"  {arm.label:<{width}}  {gain:+.3f} AP vs base set only"
                     f"{'' if abs(gain) > spread.ap else ' (within the spread)'}")
    lead = (best.ap or 0.0) - (runner_up.ap or 0.0)
    verdict = ("more than the spread: a clear first" if lead > spread.ap
               else "within the spread: this run cannot tell the two apart")
    lines += wrap(f"Best vs runner-up ({runner_up.label}): {lead:.3f} AP apart, {verdict}.")
    lines += wrap(f"Run to run, one arm's AP moved by up to {spread.ap:.3f} {spread.source}. "
                  "Toy data: this shows the pipeline learns, not what the study found.")
    return lines


def wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=WIDTH, subsequent_indent="  ")


def next_lines(posetune: str, results: str) -> list[str]:
    """The commands to run next, each as it runs from the user's folder; the seeds sweep
    goes into the demo's own store with --resume, so it keeps the demo's 4 trials."""
    where = shlex.quote(results)
    sql = shlex.quote("SELECT variant_id, AP, PCK05 FROM trials ORDER BY AP DESC")
    commands = (
        ("these rows as the study's tables look", f"{posetune} table quickstart {where}"),
        (f"SQL over the rows (tables: {', '.join(QUERY_TABLES)})",
         f"{posetune} query {where} --sql {sql}"),
        ("3 seeds per arm, keeping these 4 trials (8 more, about 8 min on 2 cores): means "
         "with 95% intervals", f"{posetune} sweep quickstart --seeds 3 --results {where} --resume"),
        ("the study's experiments; run one CPU-sized with: sweep NAME --smoke",
         f"{posetune} list"),
    )
    lines = ["Next (run from this folder):"]
    for why, command in commands:
        lines += [f"  # {why}", f"  {command}"]
    return lines


def render_demo_report(
    rows: Sequence[Mapping[str, Any]], posetune: str = "posetune",
    results: str = "posetune-demo/results", spread: Spread = DEMO_SPREAD,
) -> str:
    """The whole closing report for the demo's result rows (columns of the ``trials`` table)."""
    arms = arms_from_rows(rows)
    total = sum(a.wall_s for a in arms)
    header = f"Results: {len(rows)} trials, {duration_text(total)} of trial time"
    sections = [[header, "", *table_lines(arms)], metric_lines(), answer_lines(arms, spread),
                next_lines(posetune, results)]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def invocation(argv0: str, on_path: str | None, cwd: Path, python: str) -> str:
    """How to type posetune again from ``cwd``: ``posetune`` when PATH finds the same program,
    else the path it was started by (relative to ``cwd`` when below it), else ``python -m``."""
    program = Path(argv0)
    if program.name != "posetune":  # python -m orchestrator.cli, or a test runner
        return f"{shlex.quote(python)} -m orchestrator.cli"
    absolute = Path(os.path.normpath(program if program.is_absolute() else cwd / program))
    if on_path and Path(os.path.normpath(on_path)) == absolute:
        return "posetune"
    return shlex.quote(shown_path(absolute, cwd, executable=True))


def shown_path(path: Path, cwd: Path, executable: bool = False) -> str:
    """``path`` relative to ``cwd`` when below it (``./x`` for a program in ``cwd`` itself)."""
    try:
        relative = path.relative_to(cwd)
    except ValueError:
        return str(path)
    text = str(relative)
    return f"./{text}" if executable and "/" not in text else text
