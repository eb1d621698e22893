"""A table and a plot for any experiment, read from its results (no layout to write first).

The study's tables (:mod:`orchestrator.report.tables`) have hand-written row labels; a user's own
experiment gets this generic form instead: one row per variant of the final stage, the config
values that vary between variants as label columns (read from each row's stored config, so
any dotted path works), then every metric as mean ± 95% t-interval over seeds, best in bold.
The footer is the study tables' footer (test set, sigmas, area rule, PCK, skipped trials).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.report.tables import (
    Row,
    TableFormat,
    _csv,
    _footer,
    _markdown,
    _stage_order,
    _stat,
)
from orchestrator.store.results import ResultsStore
from orchestrator.study.stats import mean_interval
from pose_core.config import flatten
from pose_core.metrics import METRIC_NAMES


def render_experiment_table(
    results_uri: str, experiment: str | None = None, fmt: TableFormat = "markdown"
) -> str:
    """The generic table of ``experiment`` (default: the store's only experiment)."""
    if fmt not in ("markdown", "csv"):
        raise ValueError(f"unknown table format {fmt!r}; valid formats are markdown, csv")
    rows, body, stages = final_rows(results_uri, experiment)
    axes = varying_axes(body)
    metrics = [m for m in METRIC_NAMES if any(r.get(m) is not None for r in body)]
    groups: dict[str, list[Row]] = {}
    for row in sorted(body, key=lambda r: [_sortable(config_value(r, a)) for a in axes]):
        groups.setdefault(row["variant_id"], []).append(row)
    lines = [[*(_text(config_value(g[0], a)) for a in axes), len(g),
              *(_stat(g, m) for m in metrics)] for g in groups.values()]
    headers = [*axes, "Seeds", *metrics]
    sources = {r["checkpoint_uri"]: r for r in rows if r.get("checkpoint_uri")}
    footer = _footer(rows, body, stages, sources)
    if fmt == "csv":
        return _csv(headers, lines, footer, len(metrics))
    title = f"{rows[0]['experiment']}: stage {stages[-1]!r}, {len(groups)} variants"
    return _markdown(title, headers, lines, footer, len(axes), len(metrics))


def final_rows(
    results_uri: str, experiment: str | None
) -> tuple[list[Row], list[Row], list[str]]:
    """(every row of the experiment, its final stage's ``ok`` rows, its stage names)."""
    every = ResultsStore(results_uri).read_trials().to_pylist()
    if not every:
        raise ValueError(f"no trial results in {results_uri}: run a sweep there first")
    present = sorted({r["experiment"] for r in every})
    if experiment is None and len(present) == 1:
        experiment = present[0]
    if experiment not in present:
        asked = f"experiment {experiment!r}" if experiment else "which experiment (--experiment)"
        raise ValueError(f"{results_uri}: no results of {asked}; it holds {', '.join(present)}")
    rows = [r for r in every if r["experiment"] == experiment]
    for row in rows:
        row["_config"] = json.loads(row["config_json"] or "{}")
    stages = _stage_order(rows)
    body = [r for r in rows if r["stage"] == stages[-1] and r["status"] == "ok"]
    return rows, body, stages


def config_value(row: Row, axis: str) -> Any:
    """A dotted config path (``train.lr``) from the stored config, else a results column."""
    if "." in axis:
        flat = flatten(row["_config"])
        if axis not in flat:
            raise ValueError(f"no config value {axis!r}; valid: {', '.join(sorted(flat))}")
        return flat[axis]
    if axis not in row:
        raise ValueError(f"no results column {axis!r}; valid: "
                         f"{', '.join(sorted(k for k in row if not k.startswith('_')))}")
    return row[axis]


def varying_axes(body: list[Row]) -> list[str]:
    """Dotted config paths whose value differs between the rows (the seed excepted)."""
    values: dict[str, set[str]] = {}
    for row in body:
        for path, value in flatten(row["_config"]).items():
            values.setdefault(path, set()).add(json.dumps(value, sort_keys=True))
    return sorted(p for p, v in values.items() if len(v) > 1 and p != "train.seed")


def _sortable(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) and value is not None else (1, str(value))


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_axis_plot(
    results_uri: str, x: str, out_png: str, metric: str = "AP", experiment: str | None = None
) -> str:
    """``metric`` (mean ± 95% interval over seeds) against a numeric axis ``x`` (a dotted
    config path or a results column), one line per setting of the other varying axes."""
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRIC_NAMES)}")
    rows, body, stages = final_rows(results_uri, experiment)
    if not body:
        raise ValueError(f"no finished trials of {rows[0]['experiment']} in {results_uri}")
    for row in body:
        value = config_value(row, x)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"--x {x}: not numeric (got {value!r}); numeric axes: "
                             + ", ".join(a for a in varying_axes(body) if _numeric(body, a)))
    # The other varying axes split the rows into lines; an axis that is x under another name
    # (data.real_count for the column real_count) is x itself.
    others = [a for a in varying_axes(body)
              if any(config_value(r, a) != config_value(r, x) for r in body)]
    series: dict[str, list[Row]] = {}
    for row in body:
        label = ", ".join(f"{a}={_text(config_value(row, a))}" for a in others) or metric
        series.setdefault(label, []).append(row)
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    figure = Figure(figsize=(7.0, 4.5), dpi=150, layout="constrained")
    axes = figure.subplots()
    for label, group in sorted(series.items()):
        points = sorted(Counter(float(config_value(r, x)) for r in group))
        stats = [mean_interval([float(r[metric]) for r in group if r[metric] is not None
                                and float(config_value(r, x)) == p]) for p in points]
        axes.errorbar(points, [s[0] for s in stats], yerr=[s[1] or 0.0 for s in stats],
                      marker="o", capsize=3, label=label)
    xs = [float(config_value(r, x)) for r in body]
    if min(xs) > 0 and max(xs) / min(xs) >= 100:  # learning rates, data amounts
        axes.set_xscale("log")
    axes.set_xlabel(x)
    axes.set_ylabel(metric)
    axes.set_title(f"{rows[0]['experiment']}: {metric} against {x} (stage {stages[-1]!r})")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return str(path)


def _numeric(body: list[Row], axis: str) -> bool:
    values = [config_value(r, axis) for r in body]
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in values)
