"""The study's tables and figures, rendered from a results store (local folder or S3).

``render_table(name, uri, fmt)`` renders the table of one experiment in the study's form:
row labels that read like the paper, the study's columns AP, AP.75, AP.85 and PCK.05, and
the mean with a 95% t-interval where a row was run with several seeds. Only trials with
status ``ok`` are tabulated; failed and stopped ones are counted under the table, next to
a footer naming the OKS sigma set, the OKS area rule and the PCK normaliser the rows used.
Earlier stages of a multi-stage experiment (the checkpoint a table fine-tunes from) are
summarised in the footer, not tabulated.

The experiment's rows are those whose ``experiment`` column equals ``name``; if there are
none, the rows of the one experiment whose ``table=`` names ``name`` (so the quickstart's
results also render with the real-plus-synthetic layout). ``render_plot`` draws Figure 7
(AP against the amount of synthetic data) and a per-keypoint PCK bar chart.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.compute as pc

from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Experiment
from orchestrator.study.files import shipped
from orchestrator.study.stats import mean_interval
from pose_core.skeletons import UNIFORM_SIGMA, sigma_digest

Row = dict[str, Any]
Sources = dict[str, Row]  # checkpoint URI -> the row of the trial that wrote it
TableFormat = Literal["markdown", "csv"]

METRICS = (("AP", "AP"), ("AP75", "AP.75"), ("AP85", "AP.85"), ("PCK05", "PCK.05"))

DATASET_NAMES = {"animalpose": "Animal-Pose", "ap10k": "AP-10K", "lynx-train": "lynx",
                 "lynx-synthetic": "synthetic", "lynx-test": "lynx-test"}
AUGMENT_LABELS = {"none": "no augmentation", "blur": "+ blur", "noise": "+ Gaussian noise",
                  "hsv": "+ HSV shift", "brightness_contrast": "+ brightness/contrast",
                  "grayscale": "+ grayscale", "all": "+ all"}
BACKBONE_ORDER = ("resnet50", "resnet101", "resnet152", "hrnet_w32", "hrnet_w48")
HEAD_LABELS = {"heatmap": "heatmap head", "kitpose": "KITPose head"}
INIT_LABELS = {"imagenet": "ImageNet", "random": "random init"}


def backbone_label(name: str) -> str:
    """``resnet50`` -> ``ResNet-50``, ``hrnet_w32`` -> ``HRNet-w32``; other names unchanged."""
    if match := re.fullmatch(r"resnet(\d+)", name):
        return f"ResNet-{match[1]}"
    if name.startswith("hrnet_"):
        return "HRNet-" + name.removeprefix("hrnet_").replace("_", "-")
    return name


def named_backbone(row: Row) -> str:
    """The backbone the row's variant names (a scale may train a stand-in: mini's ResNet-18
    for ResNet-50)."""
    match = re.search(r"(?:^|,)backbone=([^,]+)", str(row.get("variant_id") or ""))
    return match[1] if match else str(row["backbone"])


def backbone_cell(row: Row) -> str:
    named, ran = named_backbone(row), str(row["backbone"])
    label = backbone_label(ran)
    return label if named == ran else f"{label} (for {backbone_label(named)})"


def head_label(name: str) -> str:
    return HEAD_LABELS.get(name, f"{name} head")


def lr_label(lr: float) -> str:
    """``0.0005`` -> ``5e-4``, the way the paper writes learning rates."""
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def data_mix(row: Row) -> str:
    """The training data of a row: ``Animal-Pose + 1000 synthetic``."""
    data = row["_config"].get("data", {})
    parts = [DATASET_NAMES.get(data["base"], data["base"])] if data.get("base") else []
    parts += [f"{row['real_count']} real"] if row["real_count"] else []
    parts += [f"{row['synthetic_count']} synthetic"] if row["synthetic_count"] else []
    return " + ".join(parts) or "no training data"


def start(row: Row, sources: Sources) -> str:
    """Where a row's weights started: ``ImageNet`` or ``Animal-Pose checkpoint``; at mini and
    smoke, ImageNet init is named as its stand-in (``generated-pretrained start (stand-in for
    ImageNet)``), like the stand-in backbones."""
    from orchestrator.data.pretrained import LABEL, is_generated

    weights = (row.get("_config") or {}).get("model", {}).get("weights")
    if row["init"] == "imagenet" and is_generated(weights):
        return LABEL
    if row["init"] != "checkpoint":
        return INIT_LABELS.get(row["init"], str(row["init"]))
    source = sources.get(row["init_checkpoint"] or "")
    return f"{data_mix(source)} checkpoint" if source else "checkpoint"


def recipe(row: Row, sources: Sources) -> tuple[str, ...]:
    """``ImageNet + Animal-Pose, 100 real``; ``Animal-Pose checkpoint, 10 real + 50 synthetic``."""
    data = row["_config"].get("data", {})
    head = start(row, sources)
    if row["init"] != "checkpoint" and data.get("base"):
        head += " + " + DATASET_NAMES.get(data["base"], data["base"])
    amounts = f"{row['real_count']} real"
    if row["synthetic_count"]:
        amounts += f" + {row['synthetic_count']} synthetic"
    return (f"{head}, {amounts}",)


def _index(options: tuple[str, ...], value: str) -> tuple[int, str]:
    return (options.index(value) if value in options else len(options), value)


@dataclass(frozen=True)
class Layout:
    """How one experiment's rows become a table: its title, label columns and row order."""

    title: str
    columns: tuple[str, ...]
    label: Callable[[Row, Sources], tuple[str, ...]]
    order: Callable[[Row], tuple[Any, ...]]
    extras: tuple[tuple[str, str], ...] = ()  # (record column, header), averaged like metrics


_HYPER = Layout(
    "Learning rate x epochs on Animal-Pose + 1000 synthetic", ("Learning rate", "Epochs"),
    lambda r, s: (lr_label(r["lr"]), str(r["epochs"])), lambda r: (-r["lr"], r["epochs"]))
_HYPER_ARMS = Layout(
    "Learning rate x epochs on Animal-Pose + 1000 synthetic, without and with augmentations",
    ("Learning rate", "Epochs", "Augmentations"),
    lambda r, s: (lr_label(r["lr"]), str(r["epochs"]),
                  AUGMENT_LABELS.get(r["augment"], str(r["augment"]))),
    lambda r: (_index(tuple(AUGMENT_LABELS), r["augment"]), -r["lr"], r["epochs"]))
_REAL = ("Training",)

TABLES: dict[str, Layout] = {
    "backbones": Layout(
        "Table 1. Backbones, zero-shot on lynx after Animal-Pose training", ("Backbone",),
        lambda r, s: (backbone_cell(r),),
        lambda r: _index(BACKBONE_ORDER, named_backbone(r)),
        (("params_m", "Params (M)"), ("gflops", "GFLOPs"))),
    "synthetic_amount": Layout(
        "Figure 7 as a table. Synthetic images added to Animal-Pose",
        ("Training data", "Augmentations"),
        lambda r, s: (data_mix(r), r["augment"]),
        lambda r: (_index(tuple(AUGMENT_LABELS), r["augment"]), r["synthetic_count"])),
    "augmentations": Layout(
        "Table 2. Augmentations on Animal-Pose + 1000 synthetic", ("Augmentation",),
        lambda r, s: (AUGMENT_LABELS.get(r["augment"], "+ " + r["augment"]),),
        lambda r: _index(tuple(AUGMENT_LABELS), r["augment"])),
    "hyperparameters": _HYPER_ARMS,
    "hyperparameters_tpe": Layout(
        "Learning rate x epochs by TPE search on Animal-Pose + 1000 synthetic", _HYPER.columns,
        _HYPER.label, _HYPER.order),
    "hyperparameters_halving": Layout(
        "Learning rate x epochs by successive halving on Animal-Pose + 1000 synthetic "
        "(arms dropped after a shorter length have no longer rows)", _HYPER_ARMS.columns,
        _HYPER_ARMS.label, _HYPER_ARMS.order),
    "real_amount": Layout(
        "Table 3. Real lynx images, from ImageNet or from an Animal-Pose checkpoint", _REAL,
        recipe, lambda r: (r["init"] == "checkpoint", r["real_count"])),
    "real_plus_synthetic": Layout(
        "Table 4. Real plus synthetic images in fine-tuning", _REAL, recipe,
        lambda r: (r["real_count"], r["synthetic_count"])),
    "two_stage": Layout(
        "Table 5. Two stages: Animal-Pose + 1000 synthetic, then real lynx images", _REAL,
        recipe, lambda r: (r["real_count"],)),
    "kitpose": Layout(
        "KITPose head vs heatmap head", ("Model",),
        lambda r, s: (f"{backbone_label(r['backbone'])} + {head_label(r['head'])}",),
        lambda r: (r["head"] != "heatmap", r["head"])),
    "quickstart": Layout(
        "Quickstart. Real x synthetic images on generated data", _REAL, recipe,
        lambda r: (r["real_count"], r["synthetic_count"])),
}


def render_table(name: str, results_uri: str, fmt: TableFormat = "markdown") -> str:
    """The table of experiment ``name`` from the results at ``results_uri``, as Markdown or CSV."""
    if fmt not in ("markdown", "csv"):
        raise ValueError(f"unknown table format {fmt!r}; valid formats are markdown, csv")
    layout = TABLES[_layout_name(name)]
    rows, every = _experiment_rows(name, results_uri)
    layout = TABLES.get(rows[0]["experiment"], layout)  # e.g. the quickstart's own title
    stages = _stage_order(rows)
    body = [r for r in rows if r["stage"] == stages[-1] and r["status"] == "ok"]
    sources = {r["checkpoint_uri"]: r for r in every if r["checkpoint_uri"]}
    groups: dict[str, list[Row]] = {}  # seeds of one variant; labels may round alike
    for row in sorted(body, key=layout.order):
        groups.setdefault(row["variant_id"], []).append(row)
    lines = [[*layout.label(g[0], sources), *_cells(g, layout)] for g in groups.values()]
    headers = [*layout.columns, *(h for _, h in layout.extras), "Seeds", *(h for _, h in METRICS)]
    footer = _footer(rows, body, stages, sources)
    if fmt == "csv":
        return _csv(headers, lines, footer)
    return _markdown(layout.title, headers, lines, footer, len(layout.columns))


def _layout_name(name: str) -> str:
    shipped = _shipped(name)
    table = name if name in TABLES else shipped.table if shipped else None
    if table not in TABLES:
        raise ValueError(f"no table named {name!r}; valid tables are {', '.join(TABLES)}")
    return str(table)


def _shipped(experiment: str) -> Experiment | None:
    """The experiment's definition in ``search_spaces`` (None for one defined elsewhere)."""
    return shipped(experiment)


def _experiment_rows(name: str, results_uri: str) -> tuple[list[Row], list[Row]]:
    """(rows of the experiment, those rows and the rows whose checkpoints they start from);
    the rows' config is parsed once.

    Only those experiments' rows are read whole: the rest of the store gives only the few
    columns that say which experiments they are (a compacted store skips the others' files
    and row groups)."""
    store = ResultsStore(results_uri)
    keys = store.read_trials(columns=["checkpoint_uri", "init_checkpoint"])
    if not keys.num_rows:
        raise ValueError(f"no trial results in {results_uri}: run a sweep there first")
    present = sorted(pc.unique(keys["experiment"]).to_pylist())
    chosen = [name] if name in present else [
        e for e in present if (shipped := _shipped(e)) and shipped.table == name]
    if len(chosen) != 1:
        found = "several experiments use this table: " if chosen else "it holds "
        raise ValueError(f"no results of experiment {name!r} in {results_uri}; "
                         f"{found}{', '.join(chosen or present)}")
    mine = keys.filter(pc.equal(keys["experiment"], chosen[0]))
    starts = pc.drop_null(pc.unique(mine["init_checkpoint"]))
    sources = keys.filter(pc.is_in(keys["checkpoint_uri"], value_set=starts))
    experiments = sorted({chosen[0], *sources["experiment"].to_pylist()})
    every = store.read_trials(where={"experiment": experiments}).to_pylist()
    for row in every:
        row["_config"] = json.loads(row["config_json"] or "{}")
    return [r for r in every if r["experiment"] == chosen[0]], every


def _stage_order(rows: list[Row]) -> list[str]:
    """Stage names in run order: the shipped definition's, else by first start time."""
    shipped = _shipped(rows[0]["experiment"])
    names = [s.name for s in shipped.stages] if shipped else []
    present = {r["stage"] for r in rows}
    if present <= set(names):
        return [n for n in names if n in present]
    first = {s: min(r["started_at"] for r in rows if r["stage"] == s) for s in present}
    return sorted(present, key=lambda s: (first[s], s))


def _stat(group: list[Row], column: str) -> tuple[float, float | None] | None:
    values = [float(r[column]) for r in group if r[column] is not None]
    return mean_interval(values) if values else None


def _cells(group: list[Row], layout: Layout) -> list[Any]:
    cells: list[Any] = [_stat(group, column) for column, _ in layout.extras]
    return [*cells, len(group), *(_stat(group, column) for column, _ in METRICS)]


def _markdown(
    title: str, headers: list[str], lines: list[list[Any]], footer: list[str], labels: int,
    metrics: int = len(METRICS),
) -> str:
    extras = len(headers) - labels - 1 - metrics
    metric_at = range(len(headers) - metrics, len(headers))
    means = {i: {s[0] for s in (line[i] for line in lines) if s} for i in metric_at}
    best = {i: max(m) for i, m in means.items() if len(m) > 1}  # bold nothing when all tie

    def cell(i: int, value: Any) -> str:
        if i < labels or i == labels + extras:
            return str(value)
        if value is None:
            return "n/a"
        mean, half = value
        text = f"{mean:.1f}" if i < labels + extras else f"{mean:.3f}"
        text += f" ± {half:.3f}" if half is not None and i in metric_at else ""
        return f"**{text}**" if i in best and mean == best[i] else text

    rule = ["---" if i < labels else "---:" for i in range(len(headers))]
    table = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    table += ["| " + " | ".join(cell(i, v) for i, v in enumerate(line)) + " |" for line in lines]
    if not lines:
        table.append("\n(no finished trials)")
    return "\n".join([f"**{title}**", "", *table, "", *footer]) + "\n"


def _csv(
    headers: list[str], lines: list[list[Any]], footer: list[str], metrics: int = len(METRICS)
) -> str:
    """One CSV row per table row: mean and ``_ci95`` half-width per metric; footer as ``#``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first_metric = len(headers) - metrics
    names = [*headers[:first_metric], *(f"{h}{s}" for h in headers[first_metric:]
                                        for s in ("", "_ci95"))]
    writer.writerow(names)
    for line in lines:
        cells: list[Any] = []
        for i, value in enumerate(line):
            if i < first_metric and not isinstance(value, tuple):
                cells.append("" if value is None else value)
            elif i < first_metric:
                cells.append(round(value[0], 4))
            else:
                mean, half = value if value else (None, None)
                cells += [_round(mean), _round(half)]
        writer.writerow(cells)
    return out.getvalue() + "".join(f"# {line}\n" for line in footer if line)


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 6)


def _agree(rows: list[Row], key: Callable[[Row], str]) -> str:
    counts = Counter(key(r) for r in rows)
    if len(counts) <= 1:
        return next(iter(counts), "unknown")
    return "ROWS DISAGREE: " + ", ".join(f"{v} ({n} rows)" for v, n in counts.most_common())


def _footer(rows: list[Row], body: list[Row], stages: list[str], sources: Sources) -> list[str]:
    seeds = max((Counter((r["stage"], r["variant_id"]) for r in body)).values(), default=1)
    lines = [f"Mean ± 95% interval (t-distribution) over up to {seeds} seeds per row."
             if seeds > 1 else "One run per row (no interval)."]
    if body:
        test = _agree(body, lambda r: str(r["_config"].get("data", {}).get("test")))
        sigmas = _agree(body, lambda r: f"{r['sigma_set']}"
                        + (f" (digest {r['sigma_digest'][:8]})" if r["sigma_digest"] else ""))
        pck = _agree(body, lambda r: f"{r['pck_normaliser']} size, threshold "
                     f"{r['_config'].get('eval', {}).get('pck_threshold', 0.05):g}")
        lines.append(f"Test set: {test}. OKS sigmas: {sigmas}. OKS area: "
                     f"{_agree(body, lambda r: r['area_rule'])}. PCK normalised by: {pck}.")
        if any(uniform_sigmas(r) for r in body):
            lines.append(f"OKS sigmas are uniform ({UNIFORM_SIGMA:g}): AP is not comparable "
                         "with the study's.")
    status = Counter(r["status"] for r in rows if r["status"] != "ok")
    if status:
        lines.append("Not tabulated: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
                     + " trial(s).")
    for stage in stages[:-1]:
        done = [r for r in rows if r["stage"] == stage and r["status"] == "ok"]
        for variant in sorted({r["variant_id"] for r in done}):
            group = [r for r in done if r["variant_id"] == variant]
            ap = _stat(group, "AP")
            where = f"{data_mix(group[0])} from {start(group[0], sources)}"
            score = f"AP {ap[0]:.3f}" if ap else "AP n/a"
            lines.append(f"Stage {stage!r} ({where}): {score} over {len(group)} run(s).")
    return lines


def uniform_sigmas(row: Row) -> bool:
    """The row was scored with the uniform fallback sigmas (a skeleton nobody gave sigmas)."""
    if row["sigma_set"] == f"uniform:{UNIFORM_SIGMA:g}":
        return True
    names = row.get("keypoint_names") or []
    digest = str(row.get("sigma_digest") or "")
    uniform = sigma_digest(np.full(len(names), UNIFORM_SIGMA)) if names else ""
    return bool(digest and uniform) and uniform.startswith(digest[:len(uniform)])


PLOT_NAMES = ("synthetic_amount", "pck_per_keypoint")


def render_plot(name: str, results_uri: str, out_png: str) -> str:
    """Draw figure ``name`` from the results into ``out_png`` (PNG); returns the path."""
    if name not in PLOT_NAMES:
        raise ValueError(f"no figure named {name!r}; valid figures are {', '.join(PLOT_NAMES)}")
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    figure = Figure(figsize=(7.0, 4.5), dpi=150, layout="constrained")
    axes = figure.subplots()
    if name == "synthetic_amount":
        rows, _ = _experiment_rows(name, results_uri)
        _plot_synthetic(axes, [r for r in rows if r["status"] == "ok"])
    else:
        _plot_keypoints(axes, ResultsStore(results_uri).read_trials().to_pylist(), results_uri)
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return str(path)


def _plot_synthetic(axes: Any, rows: list[Row]) -> None:
    """Figure 7: AP against synthetic images added, one line per augmentation setting."""
    names = {"none": "without augmentation", "all": "with all augmentations"}
    for augment in sorted({r["augment"] for r in rows}, key=lambda a: _index(("none", "all"), a)):
        counts = sorted({r["synthetic_count"] for r in rows if r["augment"] == augment})
        stats = [_stat([r for r in rows if r["augment"] == augment
                        and r["synthetic_count"] == c], "AP") for c in counts]
        points = [(c, s) for c, s in zip(counts, stats, strict=True) if s]
        x = [c for c, _ in points]
        y = [s[0] for _, s in points]
        error = [s[1] or 0.0 for _, s in points]
        axes.errorbar(x, y, yerr=error, marker="o", capsize=3,
                      label=names.get(augment, f"with {augment}"))
    ticks = sorted({r["synthetic_count"] for r in rows})
    # symlog keeps 0 synthetic images on the axis while 10..10k stay evenly spaced
    axes.set_xscale("symlog", linthresh=10, linscale=0.5)
    axes.set_xticks(ticks, [f"{t // 1000}k" if t >= 1000 else str(t) for t in ticks])
    axes.set_xlabel("synthetic images added to Animal-Pose")
    axes.set_ylabel("AP on the lynx test set")
    axes.set_title("Figure 7. AP against the amount of synthetic data")
    axes.grid(True, alpha=0.3)
    axes.legend()


def _plot_keypoints(axes: Any, rows: list[Row], results_uri: str) -> None:
    """Per-keypoint PCK of the best ``ok`` trial (highest AP) of any experiment."""
    if not rows:
        raise ValueError(f"no trial results in {results_uri}: run a sweep there first")
    scored = [r for r in rows if r["status"] == "ok" and r["pck_per_keypoint"]
              and r["AP"] is not None]
    if not scored:
        raise ValueError(f"no finished trial in {results_uri} has per-keypoint PCK")
    best = max(scored, key=lambda r: r["AP"])
    values = best["pck_per_keypoint"]
    names = best["keypoint_names"] or []
    if len(names) != len(values):
        names = [f"keypoint {i}" for i in range(len(values))]
    axes.bar(range(len(values)), values, color="tab:blue")
    mean = sum(values) / len(values)
    axes.axhline(mean, color="tab:red", linestyle="--", label="mean over keypoints")
    axes.set_xticks(range(len(values)), names, rotation=60, ha="right")
    axes.set_ylim(0, 1)
    threshold = json.loads(best["config_json"] or "{}").get("eval", {}).get("pck_threshold", 0.05)
    axes.set_ylabel(f"PCK@{threshold:g}")
    axes.set_title(f"Per-keypoint PCK of the best trial (AP {best['AP']:.3f})\n"
                   f"{best['experiment']} / {best['stage']} / {best['variant_id']} / seed "
                   f"{best['seed']}", fontsize="medium")
    axes.legend()
