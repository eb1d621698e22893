"""The data catalog: dataset names used by experiments -> files, local or ``s3://``.

A catalog is a TOML file::

    data_dir = "~/.cache/posetune/data"        # where generated sets are written

    [datasets.animalpose]
    coco = "/data/animalpose/train.json"          # COCO keypoint JSON (local or s3://)
    images = "/data/animalpose/images"            # image root (local or s3://)

    [datasets.lynx-train]
    czechlynx = "s3://my-bucket/czechlynx/CzechLynxDataset-Metadata-Real.csv"
    images = "s3://my-bucket/czechlynx"
    split = "geo_aware:train"

    [datasets.lynx-synthetic]
    generate = { style = "synthetic", images = 10000, seed = 404, scenes = 4 }

    [datasets.mouse]                               # labels in the field's formats
    labels = "openfield-Pranav-2018-10-30"         # DeepLabCut project, .slp, .nwb, ...
                                                   # (relative to the catalog's folder)
    format = "dlc"                                 # optional: inferred from the path
    split = "train"                                # first 80% of frames; "test": last 20%
    sigmas = { snout = 0.026, leftear = 0.035, rightear = 0.035, tailbase = 0.079 }

    [weights]                                      # ImageNet weights for model.init = "imagenet"
    hrnet_w32 = "/weights/hrnet_w32.pth"

Remote files are downloaded once into a local cache (``orchestrator.storage.local_cache``)
and read from there: pose sets are small, and decoding from local disk keeps GPUs fed.
The default catalog points every name at data posetune generates itself, so every
experiment runs anywhere; generation is deterministic, idempotent and guarded by a file
lock so concurrent trials on one node never write the same folder twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pose_core.readers import read_coco, read_czechlynx
from pose_core.records import Instance, ReadReport
from pose_core.skeletons import ANIMALPOSE, Skeleton, with_named_sigmas
from pose_core.synth import SynthConfig, generate


class CatalogError(ValueError):
    """A dataset name the catalog cannot resolve, or a malformed catalog."""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    coco: str | None = None
    czechlynx: str | None = None
    images: str | None = None
    split: str | None = None
    generate: dict[str, Any] | None = None
    labels: str | None = None  # any format orchestrator.labels reads
    format: str | None = None  # of labels; inferred from the path when absent
    sigmas: dict[str, float] | None = None  # OKS sigma by keypoint name (eval.sigmas="default")

    def __post_init__(self) -> None:
        kinds = [k for k in KINDS if getattr(self, k)]
        if len(kinds) != 1:
            raise CatalogError(
                f"catalog entry [datasets.{self.name}] needs exactly one of "
                f"{', '.join(KINDS)} (has {kinds or 'none'})"
            )
        if self.format is not None and not self.labels:
            raise CatalogError(f"catalog entry [datasets.{self.name}]: format is for labels")

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k))


KINDS = ("coco", "czechlynx", "generate", "labels")


DEFAULT_SIZES = {"animalpose": 400, "lynx-train": 1000, "lynx-test": 300, "lynx-synthetic": 10000}
SMOKE_SIZES = {"animalpose": 60, "lynx-train": 40, "lynx-test": 40, "lynx-synthetic": 100}
GENERATED = {
    # name: (style, seed). Real sets are stood in by the camera-trap style, synthetic by
    # the clean render style, so "real vs synthetic" keeps its domain gap.
    "animalpose": ("camera-trap", 101),
    "lynx-train": ("camera-trap", 202),
    "lynx-test": ("camera-trap", 303),
    "lynx-synthetic": ("synthetic", 404),
}


def default_data_dir() -> str:
    return os.environ.get("POSETUNE_DATA", str(Path("~/.cache/posetune/data").expanduser()))


@dataclass(frozen=True)
class Catalog:
    datasets: dict[str, DatasetEntry]
    weights: dict[str, str] = field(default_factory=dict)
    data_dir: str = field(default_factory=default_data_dir)
    source: str = "<default>"

    @classmethod
    def default(
        cls, smoke: bool = False, data_dir: str | None = None, needs: dict[str, int] | None = None
    ) -> Catalog:
        """Generated stand-ins for every dataset name the study uses.

        ``needs`` (images a sweep draws from each set) sizes the generated sets so a sweep
        never renders more than it uses; image i depends only on (seed, i), so a larger set
        extends a smaller one.
        """
        sizes = dict(SMOKE_SIZES if smoke else DEFAULT_SIZES)
        for name, count in (needs or {}).items():
            if name in sizes and count > 0:
                sizes[name] = count
        entries = {
            name: DatasetEntry(
                name, generate={"style": style, "seed": seed, "images": sizes[name], "scenes": 4}
            )
            for name, (style, seed) in GENERATED.items()
        }
        return cls(entries, {}, data_dir or default_data_dir(), "<default>")

    @classmethod
    def from_file(
        cls, path: str | Path, smoke: bool = False, needs: dict[str, int] | None = None
    ) -> Catalog:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CatalogError(f"catalog {path}: cannot read: {error}") from None
        base = cls.default(smoke, needs=needs)
        datasets = dict(base.datasets)
        for name, values in raw.get("datasets", {}).items():
            unknown = set(values) - {f.name for f in dataclasses.fields(DatasetEntry)} - {"name"}
            if unknown:
                raise CatalogError(f"catalog {path}: [datasets.{name}] unknown keys {sorted(unknown)}")
            if isinstance(values.get("labels"), str) and "://" not in values["labels"]:
                # Trials run in other working directories: anchor at the catalog's folder.
                values["labels"] = str(path.parent.resolve() / Path(values["labels"]).expanduser())
            datasets[name] = DatasetEntry(name, **values)
        weights = {k: str(v) for k, v in raw.get("weights", {}).items()}
        data_dir = str(Path(raw.get("data_dir", base.data_dir)).expanduser())
        return cls(datasets, weights, data_dir, str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, to ship to Ray workers inside the trial config."""
        return {
            "datasets": {n: dataclasses.asdict(e) for n, e in self.datasets.items()},
            "weights": self.weights,
            "data_dir": self.data_dir,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Catalog:
        datasets = {n: DatasetEntry(**e) for n, e in values["datasets"].items()}
        return cls(datasets, values["weights"], values["data_dir"], values["source"])

    def entry(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            raise CatalogError(
                f"dataset {name!r} is not in the catalog ({self.source}); add a "
                f"[datasets.{name}] entry with coco/czechlynx/labels/generate, "
                f"known names: {sorted(self.datasets)}"
            )
        return self.datasets[name]

    def load(
        self, name: str, progress: Callable[[str], None] | None = None
    ) -> tuple[list[Instance], Skeleton, ReadReport]:
        """Instances of dataset ``name`` (materialising generated or remote data first)."""
        entry = self.entry(name)
        instances, skeleton, report = self._read(entry, progress)
        if entry.sigmas:
            skeleton = with_named_sigmas(skeleton, entry.sigmas, f"[datasets.{name}] sigmas")
        return instances, skeleton, report

    def _read(
        self, entry: DatasetEntry, progress: Callable[[str], None] | None
    ) -> tuple[list[Instance], Skeleton, ReadReport]:
        name = entry.name
        if entry.kind == "generate":
            path = self.materialise(entry, progress)
            return read_coco(path, source=name)
        from orchestrator.storage import local_cache

        if entry.kind == "labels":
            from orchestrator.labels import read_labels

            frames = Path(self.data_dir) / "frames"  # video-backed sources, extracted once
            return read_labels(local_cache(entry.labels or ""), entry.format, source=name,
                               split=entry.split, frames_dir=frames)
        images = local_cache(entry.images) if entry.images else None
        if entry.kind == "coco":
            return read_coco(local_cache(entry.coco or ""), image_root=images, source=name)
        instances, report = read_czechlynx(
            local_cache(entry.czechlynx or ""), image_root=images, split=entry.split, source=name
        )
        return instances, ANIMALPOSE, report

    def materialise(
        self, entry: DatasetEntry, progress: Callable[[str], None] | None = None
    ) -> Path:
        """Generate a synthetic set once; later calls (any process) reuse it."""
        spec = dict(entry.generate or {})
        config = SynthConfig(**spec)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        target = Path(self.data_dir) / f"{entry.name}-{digest}"
        done = target / "annotations.json"
        if done.is_file():
            return done
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if done.is_file():
                return done
            tmp = target.with_name(f".{target.name}.partial")
            shutil.rmtree(tmp, ignore_errors=True)
            if progress:
                progress(f"generating {entry.name}: {config.images} {config.style} images")
            generate(tmp, config)
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        return done

    def validate(
        self, names: Iterable[str], progress: Callable[[str], None] | None = None
    ) -> dict[str, tuple[ReadReport, int, Skeleton]]:
        """Load every named dataset once, up front, so bad data fails before training.

        Returns each set's read report, its number of images and its skeleton."""
        out = {}
        for name in sorted(set(names)):
            instances, skeleton, report = self.load(name, progress)
            out[name] = (report, len({i.image_id for i in instances}), skeleton)
        return out
