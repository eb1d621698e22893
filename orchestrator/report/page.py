"""``posetune report``: a static HTML page of a results store, one section per experiment.

The page is ``OUT/index.html`` with its figures as PNG/JPEG files under ``OUT/figures/``,
linked relatively: it needs no server and no network, so it opens from disk and from an S3
bucket (upload the folder) alike. Per experiment it shows the study's table
(:func:`orchestrator.report.tables.render_table`, or per-variant means where the experiment has no
study table), learning curves, per-keypoint AP / PCK / error heatmaps, left/right swap
rates, predicted poses of the best trial on its hardest and easiest test instances, each
variant's config as a diff from the experiment's baseline, and provenance (versions, git
commits, nodes, GPU-hours), all read from the rows. Only the pose gallery loads a model.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.report import figures
from orchestrator.report.tables import METRICS, render_table
from orchestrator.store.results import ResultsStore
from orchestrator.study.files import shipped
from orchestrator.study.stats import mean_interval
from pose_core.config import flatten

Row = dict[str, Any]
Change = tuple[str, str, str]  # dotted config key, baseline value, this value
SUMMARY_METRICS = tuple(column for column, _ in METRICS)  # the study's columns


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Picture:
    path: str  # relative to index.html
    caption: str


@dataclass(frozen=True)
class VariantConfig:
    variant_id: str
    seeds: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Section:
    """Everything the template shows for one experiment."""

    name: str
    anchor: str
    table: Table
    figures: tuple[Picture, ...]
    missing: tuple[str, ...]  # figures that could not be drawn, and why
    sweep_changes: tuple[Change, ...]
    variants: tuple[VariantConfig, ...]
    baseline_source: str
    provenance: tuple[tuple[str, str], ...]
    gallery: tuple[Picture, ...]
    gallery_note: str


def build_report(
    results: str, out: str | Path, experiment: str | None = None,
    catalog: str | None = None, pose_images: int = 3,
) -> Path:
    """Write the report of ``results`` (local folder or s3:// URI) to ``out``; returns the page.

    ``experiment`` limits it to one experiment; ``catalog`` is the data catalog TOML the sweep
    used (for the best trial's test images; default: the generated data); ``pose_images`` is
    the number of hardest and of easiest instances drawn (0: no gallery, no model loaded).
    """
    store = ResultsStore(results)
    trials = store.read_trials().to_pylist()
    if not trials:
        raise ValueError(f"no trial results in {results}: run a sweep there first")
    present = sorted({r["experiment"] for r in trials})
    if experiment is not None and experiment not in present:
        raise ValueError(f"no results of experiment {experiment!r} in {results}; "
                         f"it holds {', '.join(present)}")
    epochs: dict[str, list[Row]] = defaultdict(list)
    for row in store.read_epochs().to_pylist():
        epochs[row["experiment"]].append(row)
    folder = Path(out)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    sections = [
        section(name, [r for r in trials if r["experiment"] == name], epochs[name], results,
                folder, catalog, pose_images)
        for name in ([experiment] if experiment else present)
    ]
    page = folder / "index.html"
    page.write_text(render_page(store.uri, sections))
    return page


def render_page(uri: str, sections: Sequence[Section]) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(loader=PackageLoader("orchestrator.report", "templates"),
                              autoescape=True, undefined=StrictUndefined)
    return environment.get_template("report.html.j2").render(uri=uri, sections=sections)


def section(
    name: str, rows: list[Row], epochs: list[Row], results: str, folder: Path,
    catalog: str | None, pose_images: int,
) -> Section:
    anchor = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    done = [r for r in rows if r["status"] == "ok"]
    names = next((r["keypoint_names"] for r in done if r["keypoint_names"]), None) or []
    pictures, missing = [], []
    for stem, caption, draw in (
        ("curves", "Learning curves: training loss and test AP per evaluated epoch",
         lambda p: figures.learning_curves(epochs, p)),
        ("keypoints", "Per keypoint, per variant (mean over seeds)",
         lambda p: figures.keypoint_heatmaps(done, names, p)),
        ("swaps", "Left/right swaps: predictions nearer the mirrored keypoint's ground truth",
         lambda p: figures.swap_rates(done, names, p)),
    ):
        relative = f"figures/{anchor}-{stem}.png"
        if draw(folder / relative):
            pictures.append(Picture(relative, caption))
        else:
            missing.append(f"{caption}: no data in the rows")
    gallery, note = _gallery(done, folder, catalog, pose_images, anchor)
    sweep_changes, variants, source = config_changes(name, rows)
    return Section(name, anchor, study_table(name, results, rows), tuple(pictures),
                   tuple(missing), sweep_changes, variants, source, provenance(rows),
                   tuple(gallery), note)


def _gallery(
    done: list[Row], folder: Path, catalog: str | None, count: int, anchor: str
) -> tuple[list[Picture], str]:
    scored = [r for r in done if r["AP"] is not None and r["checkpoint_uri"]]
    if count <= 0:
        return [], "Pose images not requested (--pose-images 0)."
    if not scored:
        return [], "No finished trial with a checkpoint: no pose images."
    best = max(scored, key=lambda r: r["AP"])
    label = f"{best['variant_id']}, seed {best['seed']} (AP {best['AP']:.3f})"
    try:
        drawn = figures.pose_gallery(best, folder, catalog, count, anchor)
    # Deliberately broad: a moved checkpoint or missing test image must not cost the rest of
    # the report; the note names the error instead.
    except Exception as error:  # noqa: BLE001
        return [], f"Pose images of {label} not drawn: {type(error).__name__}: {error}"
    pictures = [Picture(path, caption) for path, caption in drawn]
    return pictures, (f"Best trial {label}. Ground truth in green, prediction in red; "
                      "instances ranked by OKS.")


def study_table(name: str, results: str, rows: list[Row]) -> Table:
    """The study's table from ``render_table``; per-variant means where it has none."""
    try:
        return parse_markdown_table(render_table(name, results))
    except (ValueError, KeyError) as error:
        return variant_table(rows, f"No study table for {name} ({error}).")


def parse_markdown_table(text: str) -> Table:
    """``render_table``'s Markdown (bold title, pipe table, footer lines) as a :class:`Table`."""
    lines = [line.strip() for line in text.strip().splitlines()]
    title = lines[0].strip("*") if lines and lines[0].startswith("**") else ""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines
             if line.startswith("|")]
    body = [row for row in cells[1:] if not all(set(c) <= set("-: ") for c in row)]
    notes = [line for line in lines[1:] if line and not line.startswith("|")]
    return Table(title, tuple(cells[0]) if cells else (), tuple(tuple(r) for r in body),
                 tuple(notes))


def variant_table(rows: list[Row], note: str) -> Table:
    """Mean ± 95% interval over seeds of the study's metrics, one row per (stage, variant)."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            groups[(row["stage"], row["variant_id"])].append(row)
    body = []
    for (stage, variant), group in sorted(groups.items()):
        cells = [stage, variant, str(len(group))]
        for metric in SUMMARY_METRICS:
            values = [float(r[metric]) for r in group if r[metric] is not None]
            mean, half = mean_interval(values) if values else (None, None)
            cells.append("n/a" if mean is None else f"{mean:.3f}"
                         + (f" ± {half:.3f}" if half is not None else ""))
        body.append(tuple(cells))
    return Table("Per-variant means", ("Stage", "Variant", "Seeds", *SUMMARY_METRICS),
                 tuple(body), (note,))


def _shipped_baseline(name: str) -> dict[str, Any] | None:

    experiment = shipped(name)
    # through JSON so tuples compare equal to the rows' lists
    return dict(json.loads(json.dumps(experiment.baseline.flat()))) if experiment else None


def config_changes(
    name: str, rows: list[Row]
) -> tuple[tuple[Change, ...], tuple[VariantConfig, ...], str]:
    """Changes every variant shares (e.g. ``--smoke`` sizes), then each variant's own ones,
    against the shipped experiment's baseline (else the most common value of each key)."""
    configs: dict[str, dict[str, Any]] = {}
    seeds: dict[str, list[int]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["variant_id"], r["seed"])):
        key = f"{row['stage']}/{row['variant_id']}" if _stages(rows) > 1 else row["variant_id"]
        configs.setdefault(key, flatten(json.loads(row["config_json"] or "{}")))
        seeds[key].append(int(row["seed"]))
    for config in configs.values():
        config.pop("train.seed", None)  # seeds are listed on their own
    baseline, source = _shipped_baseline(name), f"the baseline of search_spaces/{name}"
    keys = sorted({k for c in configs.values() for k in c})
    if baseline is None:
        source = "the most common value of each key (no shipped experiment of this name)"
        baseline = {k: Counter(json.dumps(c.get(k)) for c in configs.values()).most_common(1)[0][0]
                    for k in keys}
        baseline = {k: json.loads(v) for k, v in baseline.items()}
    shared = {k for k in keys if len({json.dumps(c.get(k)) for c in configs.values()}) == 1}
    sweep = tuple((k, _text(baseline.get(k)), _text(next(iter(configs.values())).get(k)))
                  for k in keys if k in shared and next(iter(configs.values())).get(k)
                  != baseline.get(k))
    variants = tuple(
        VariantConfig(variant, ", ".join(map(str, sorted(set(seeds[variant])))),
                      tuple((k, _text(baseline.get(k)), _text(config.get(k))) for k in keys
                            if k not in shared and config.get(k) != baseline.get(k)))
        for variant, config in configs.items()
    )
    return sweep, variants, source


def _stages(rows: list[Row]) -> int:
    return len({r["stage"] for r in rows})


def _text(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value


def provenance(rows: list[Row]) -> tuple[tuple[str, str], ...]:
    """Versions, commits, nodes and cost of an experiment's trials, from the rows."""

    def values(column: str, width: int = 0) -> str:
        counts = Counter(str(r[column])[: width or None] for r in rows if r[column] is not None)
        if not counts:
            return "unknown"
        return ", ".join(f"{v} ({n})" if len(counts) > 1 else v for v, n in counts.most_common())

    status = Counter(r["status"] for r in rows)
    return (
        ("Trials", ", ".join(f"{n} {s}" for s, n in sorted(status.items()))),
        ("posetune", values("posetune_version")), ("torch", values("torch_version")),
        ("timm", values("timm_version")), ("Ray", values("ray_version")),
        ("Git commit", values("git_commit", 12)), ("Nodes", values("node")),
        ("GPU-hours", f"{sum(r['gpu_hours'] for r in rows):.2f}"),
        ("Trial wall time (hours)", f"{sum(r['wall_s'] for r in rows) / 3600:.2f}"),
        ("Ran", f"{min(r['started_at'] for r in rows):%Y-%m-%d %H:%M} to "
                f"{max(r['ended_at'] for r in rows):%Y-%m-%d %H:%M} UTC"),
        ("OKS sigmas / area rule / PCK normaliser",
         f"{values('sigma_set')} / {values('area_rule')} / {values('pck_normaliser')}"),
    )
