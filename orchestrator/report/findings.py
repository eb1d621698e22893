"""The study's seven findings, checked against a results store: agrees, differs or within noise.

Each finding is one contrast between two trial variants (``AP(b) - AP(a)``), fixed here before
any run and named in the study's own terms (MISSION.md). The contrast is computed per seed and
paired (the two arms of one seed share the seed's subsets under ``--redraw-subsets``, and the
training seed); the mean difference gets a 95% t-interval over seeds. The verdict:

- ``agrees``: the interval excludes 0 on the study's side (for a "no gain" finding: the
  interval includes 0);
- ``differs``: the interval excludes 0 on the other side (for "no gain": it excludes 0);
- ``within noise``: the interval includes 0 (one seed: no interval, no verdict).

Stand-ins change names at small scales (``mini`` trains ResNet-18 for ResNet-50, 63 real
images for 1000): contrasts select rows by the variant's name, which stays the study's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import variant_id
from orchestrator.study.stats import mean_interval


@dataclass(frozen=True)
class Arm:
    experiment: str
    values: Mapping[str, Any]  # the variant's axis values (or its case name)
    case: str | None = None
    label: str = ""

    @property
    def variant(self) -> str:
        return variant_id(self.values, self.case)


@dataclass(frozen=True)
class Finding:
    number: int
    claim: str
    contrast: str  # what b - a measures, in the study's terms
    a: Arm
    b: Arm
    study: float  # the study's AP(b) - AP(a)
    no_gain: bool = False  # the study found no difference


FINDINGS = (
    Finding(1, "HRNet-w32 is the best backbone", "HRNet-w32 - ResNet-152 (the best ResNet)",
            Arm("backbones", {"model.backbone": "resnet152"}),
            Arm("backbones", {"model.backbone": "hrnet_w32"}), 0.403 - 0.333),
    Finding(2, "more synthetic images help (peak at 10k, no augmentation)",
            "Animal-Pose + 10k synthetic - Animal-Pose alone",
            Arm("synthetic_amount", {"data.synthetic_count": 0, "data.augment": "none"}),
            Arm("synthetic_amount", {"data.synthetic_count": 10000, "data.augment": "none"}),
            0.475 - 0.431),
    Finding(3, "photometric augmentations help on the synthetic mix",
            "all five augmentations - none (Animal-Pose + 1k synthetic)",
            Arm("augmentations", {"data.augment": "none"}),
            Arm("augmentations", {"data.augment": "all"}), 0.516 - 0.464),
    Finding(4, "lr 1e-4 for 100 epochs beats the default 5e-4 for 210",
            "(1e-4, 100) - (5e-4, 210), no augmentation",
            Arm("hyperparameters", {"train.lr": 5e-4, "train.epochs": 210,
                                    "data.augment": "none"}),
            Arm("hyperparameters", {"train.lr": 1e-4, "train.epochs": 100,
                                    "data.augment": "none"}), 0.486 - 0.464),
    Finding(5, "more real images help (from the Animal-Pose checkpoint)",
            "1000 real - 10 real, fine-tuned from the Animal-Pose checkpoint",
            Arm("real_amount", {}, "checkpoint,real=10"),
            Arm("real_amount", {}, "checkpoint,real=1000"), 0.849 - 0.626),
    Finding(6, "adding 1k synthetic to real fine-tuning gives no gain",
            "1000 real + 1k synthetic - 1000 real (from the checkpoint)",
            Arm("real_plus_synthetic", {"data.real_count": 1000, "data.synthetic_count": 0}),
            Arm("real_plus_synthetic", {"data.real_count": 1000,
                                        "data.synthetic_count": 1000}), 0.0, no_gain=True),
    Finding(7, "two stages (Animal-Pose + 1k synthetic, then real) is the best recipe",
            "two stages - Animal-Pose checkpoint, both fine-tuned on 1000 real",
            Arm("real_amount", {}, "checkpoint,real=1000"),
            Arm("two_stage", {"data.real_count": 1000}), 0.855 - 0.849),
)


@dataclass(frozen=True)
class Result:
    finding: Finding
    seeds: int
    mean: float | None
    half_width: float | None

    @property
    def verdict(self) -> str:
        if self.mean is None:
            return "not run"
        if self.half_width is None:
            return "one seed: no interval"
        low, high = self.mean - self.half_width, self.mean + self.half_width
        if self.finding.no_gain:
            return "agrees" if low <= 0 <= high else "differs"
        if low <= 0 <= high:
            return "within noise"
        same_side = (low > 0) == (self.finding.study > 0)
        return "agrees" if same_side else "differs"


def _ap_by_seed(rows: list[dict[str, Any]], arm: Arm, metric: str) -> dict[int, float]:
    """The final-stage AP of one arm per seed (ok rows only)."""
    out: dict[int, float] = {}
    for row in rows:
        if (row["experiment"] == arm.experiment and row["variant_id"] == arm.variant
                and row["status"] == "ok" and row.get(metric) is not None):
            out[int(row["seed"])] = float(row[metric])
    return out


def evaluate(results_uri: str, metric: str = "AP") -> list[Result]:
    # Only what the contrasts compare: the arms' experiments, the columns _ap_by_seed reads.
    arms = sorted({arm.experiment for f in FINDINGS for arm in (f.a, f.b)})
    store = ResultsStore(results_uri)
    rows = store.read_trials(columns=["status", metric], where={"experiment": arms}).to_pylist()
    if not rows and not store.read_trials(columns=["status"]).num_rows:
        raise ValueError(f"no trial results in {results_uri}: run the study there first")
    out = []
    for finding in FINDINGS:
        a, b = _ap_by_seed(rows, finding.a, metric), _ap_by_seed(rows, finding.b, metric)
        seeds = sorted(set(a) & set(b))
        if not seeds:
            out.append(Result(finding, 0, None, None))
            continue
        mean, half = mean_interval([b[s] - a[s] for s in seeds])
        out.append(Result(finding, len(seeds), mean, half))
    return out


def render(results: list[Result], metric: str = "AP") -> str:
    """A markdown table: finding, contrast, the study's difference, this store's, verdict."""
    lines = [f"| # | Finding (study) | Contrast ({metric}, b - a) | Study | Here, mean ± 95% "
             "interval (seeds) | Verdict |", "|---|---|---|---|---|---|"]
    for r in results:
        f = r.finding
        here = "not run" if r.mean is None else (
            f"{r.mean:+.3f}" + (f" ± {r.half_width:.3f}" if r.half_width is not None else "")
            + f" ({r.seeds})")
        study = "±0.000 (no gain)" if f.no_gain else f"{f.study:+.3f}"
        lines.append(f"| {f.number} | {f.claim} | {f.contrast} | {study} | {here} | "
                     f"{r.verdict} |")
    return "\n".join(lines)
