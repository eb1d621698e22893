"""The report's figures: learning curves, per-keypoint heatmaps, swap rates, pose galleries.

Each figure function takes result rows (dicts, as ``ResultsStore`` returns them) and a PNG
path, draws with matplotlib's object API (no pyplot: no global state, no display needed) and
returns whether it drew anything, so the report can say "no data" instead of an empty plot.
Per-variant values are means over the variant's seeds.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]

HEATMAP_METRICS = (
    ("ap_per_keypoint", "AP per keypoint (one-keypoint OKS AP)", "viridis"),
    ("pck_per_keypoint", "PCK per keypoint", "viridis"),
    ("error_per_keypoint", "Mean error / box size (lower is better)", "magma_r"),
)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def variant_means(rows: Sequence[Row], column: str) -> dict[str, np.ndarray]:
    """Variant -> per-keypoint mean over its seeds of list column ``column`` (NaN/-1 skipped)."""
    lists: dict[str, list[list[float]]] = defaultdict(list)
    for row in rows:
        values = row.get(column)
        if values:
            lists[row["variant_id"]].append([float(v) for v in values])
    out = {}
    for variant, seeds in lists.items():
        if len({len(s) for s in seeds}) != 1:
            continue  # seeds on different skeletons: not comparable keypoint by keypoint
        array = np.array(seeds)
        array[array < 0] = np.nan  # -1 is pycocotools' "no GT", not a score
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: NaN is the answer
            out[variant] = np.nanmean(array, axis=0)
    return out


def learning_curves(epochs: Sequence[Row], path: Path) -> bool:
    """Training loss and test AP against epoch, one line per variant (mean over seeds)."""
    if not epochs:
        return False
    figure = _figure(10, 3.8)
    loss_axes, ap_axes = figure.subplots(1, 2)
    by_variant: dict[str, list[Row]] = defaultdict(list)
    for row in epochs:
        by_variant[row["variant_id"]].append(row)
    for variant in sorted(by_variant):
        for axes, column in ((loss_axes, "loss"), (ap_axes, "AP")):
            points: dict[int, list[float]] = defaultdict(list)
            for row in by_variant[variant]:
                value = row.get(column)
                if value is not None and math.isfinite(value):
                    points[int(row["epoch"])].append(float(value))
            if points:
                x = sorted(points)
                axes.plot(x, [sum(points[e]) / len(points[e]) for e in x], marker=".",
                          label=variant)
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ap_axes.set(xlabel="epoch", ylabel="AP (evaluated epochs)", title="Test AP")
    for axes in (loss_axes, ap_axes):
        axes.grid(True, alpha=0.3)
    if len(by_variant) <= 12:  # beyond that a legend hides the curves
        ap_axes.legend(fontsize="x-small")
    _save(figure, path)
    return True


def keypoint_heatmaps(rows: Sequence[Row], names: Sequence[str], path: Path) -> bool:
    """Variant x keypoint heatmaps of AP, PCK and normalised error."""
    panels = [(title, cmap, variant_means(rows, column))
              for column, title, cmap in HEATMAP_METRICS]
    panels = [panel for panel in panels if panel[2]]
    if not panels:
        return False
    variants = sorted({v for _, _, means in panels for v in means})
    k = max(len(m) for _, _, means in panels for m in means.values())
    labels = list(names) if len(names) == k else [f"k{j}" for j in range(k)]
    figure = _figure(max(7.0, 0.4 * k + 3), len(panels) * (0.3 * len(variants) + 1.6))
    for axes, (title, cmap, means) in zip(
        np.atleast_1d(figure.subplots(len(panels), 1)), panels, strict=True
    ):
        grid = np.array([means.get(v, np.full(k, np.nan)) for v in variants])
        image = axes.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest")
        axes.set_yticks(range(len(variants)), variants, fontsize="x-small")
        axes.set_xticks(range(k), labels, rotation=60, ha="right", fontsize="x-small")
        axes.set_title(title, fontsize="medium")
        figure.colorbar(image, ax=axes, fraction=0.03)
    _save(figure, path)
    return True


def mirror_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right keypoint pairs by name, as the skeleton infers them for flip augmentation."""
    from pose_core.skeletons import skeleton_from_coco_category

    if not names:
        return []
    category = {"name": "report", "keypoints": list(names), "skeleton": []}
    return list(skeleton_from_coco_category(category).flip_pairs)


def swap_rates(rows: Sequence[Row], names: Sequence[str], path: Path) -> bool:
    """Variant x left/right pair: mean of the two directions' swap rates."""
    means = variant_means(rows, "swap_rate_per_keypoint")
    pairs = [(a, b) for a, b in mirror_pairs(names)
             if all(len(m) > max(a, b) for m in means.values())]
    if not means or not pairs:
        return False
    variants = sorted(means)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        grid = np.array([[np.nanmean(means[v][[a, b]]) for a, b in pairs] for v in variants])
    figure = _figure(max(6.0, 0.6 * len(pairs) + 3), 0.3 * len(variants) + 2.2)
    axes = figure.subplots()
    image = axes.imshow(grid, aspect="auto", cmap="Reds", vmin=0, interpolation="nearest")
    axes.set_yticks(range(len(variants)), variants, fontsize="x-small")
    axes.set_xticks(range(len(pairs)), [f"{names[a]} / {names[b]}" for a, b in pairs],
                    rotation=60, ha="right", fontsize="x-small")
    axes.set_title("Left/right swap rate per keypoint pair", fontsize="medium")
    figure.colorbar(image, ax=axes, fraction=0.03)
    _save(figure, path)
    return True


def pose_gallery(
    best: Row, out_dir: Path, catalog_path: str | None, count: int, prefix: str
) -> list[tuple[str, str]]:
    """``count`` hardest and easiest test instances of the best trial by OKS, drawn with GT
    (green) and prediction (red); returns ``(relative png path, caption)`` pairs."""
    uri = str(best["checkpoint_uri"])
    if "://" not in uri and not Path(uri).exists():  # before importing torch: seconds saved
        raise FileNotFoundError(f"checkpoint {uri} not found")
    import json

    import cv2

    from orchestrator.infer.outputs import draw_pose
    from orchestrator.infer.runtime import load_trained, predict_instances, trial_test_set
    from pose_core.pck import instance_oks
    from pose_core.readers import load_image
    from pose_core.skeletons import resolve_sigmas

    model, cfg, skeleton = load_trained(uri)
    recorded = json.loads(best["config_json"] or "{}")
    if recorded and recorded != cfg.to_dict():
        raise ValueError("the checkpoint's config differs from the trial row's")
    instances, _ = trial_test_set(best, cfg, catalog_path)
    coords, scores = predict_instances(model, cfg, skeleton, instances)
    sigmas = resolve_sigmas(cfg.eval.sigmas, skeleton)
    oks = np.array([instance_oks(c, i.keypoints, i.area, sigmas)
                    for c, i in zip(coords, instances, strict=True)])
    ranked = [int(j) for j in np.argsort(oks) if math.isfinite(oks[j])]
    chosen = [("hardest", j) for j in ranked[:count]]
    chosen += [("easiest", j) for j in ranked[::-1][:count] if j not in ranked[:count]]
    out = []
    for n, (kind, j) in enumerate(chosen):
        inst = instances[j]
        image = load_image(inst.image_path).copy()  # BGR, as cv2 draws and writes
        draw_pose(image, np.asarray(inst.keypoints), skeleton, (60, 200, 60), (0, 160, 0), 0.5)
        predicted = np.concatenate([coords[j], scores[j][:, None]], axis=1)
        # every predicted point, whatever its score: a weak model's guesses are the point here
        draw_pose(image, predicted, skeleton, (60, 60, 230), (0, 0, 200), -math.inf)
        name = f"figures/{prefix}-pose-{n:02d}-{kind}.jpg"
        cv2.imwrite(str(out_dir / name), _crop(image, inst.bbox))
        out.append((name, f"{kind}: OKS {oks[j]:.2f}, {Path(inst.image_path).name}"))
    return out


def _crop(image: np.ndarray, bbox: Sequence[float], margin: float = 0.25) -> np.ndarray:
    x, y, w, h = bbox
    height, width = image.shape[:2]
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    x1, y1 = min(width, int(x + (1 + margin) * w)), min(height, int(y + (1 + margin) * h))
    return image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image
