"""The data catalog: dataset names used by experiments -> files, local or ``s3://``.

A catalog is a TOML file::

    data_dir = "~/.cache/posetune/data"        # where generated sets are written

    [datasets.animalpose]
    coco = "/data/animalpose/train.json"          # COCO keypoint JSON (local or s3://)
    images = "/data/animalpose/images"            # image root (local or s3://)

    [datasets.lynx-train]
    bad_images = "skip"                           # leave undecodable images out (default "stop")
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

    [datasets.dogs]
    coco = "/data/pets/keypoints.json"
    category = "dog"                               # one category of a multi-category file

    [weights]                                      # ImageNet weights for model.init = "imagenet"
    hrnet_w32 = "/weights/hrnet_w32.pth"

The file is read strictly: an unknown section or key is an error that names the nearest
valid one (``[dataset]`` -> ``did you mean [datasets]?``), and every ``[weights]`` key must be
a timm model name. A sweep checks the dataset names too (:meth:`Catalog.check_read`): an entry
that no trial reads, named like a set a trial does read that the file does not define (which
would fall back to generated data), is an error naming that set. Relative paths (``coco``, ``czechlynx``, ``images``, ``data_dir`` and the
``[weights]`` files) are relative to the catalog file's own folder, not to the working
directory: each trial runs in a folder of its own. ``~`` is expanded; ``s3://`` URIs are kept.

``bad_images`` (per dataset, ``"stop"`` by default) says what the sweep's preflight does with
images that do not decode (zero-byte, not an image, truncated; see
:func:`pose_core.image_check.check_images`): ``"stop"`` fails before any trial starts,
naming the first bad file; ``"skip"`` leaves those images (and their instances) out and
reports how many.

Remote files are downloaded once into a local cache (``orchestrator.store.storage.local_cache``)
and read from there: pose sets are small, and decoding from local disk keeps GPUs fed.
The default catalog points every name at data posetune generates itself, so every
experiment runs anywhere; generation is deterministic, idempotent and guarded by a file
lock so concurrent trials on one node never write the same folder twice.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pose_core.image_check import ImageCheckReport, check_images
from pose_core.image_store import ImageStore
from pose_core.readers import read_coco, read_czechlynx
from pose_core.records import Instance, ReadReport
from pose_core.skeletons import ANIMALPOSE, Skeleton, with_named_sigmas
from pose_core.synth import SynthConfig, generate


class CatalogError(ValueError):
    """A dataset name the catalog cannot resolve, or a malformed catalog."""


BadImages = Literal["stop", "skip"]
# A field whose value is a file or folder: a relative one is resolved against the catalog's folder.
_PATH = {"path": True}


@dataclass(frozen=True)
class DatasetEntry:
    """One ``[datasets.NAME]`` table. Its keys are exactly these fields (but ``name`` and
    ``skipped_image_ids``): a new key is one new field here, with ``metadata=_PATH`` when its
    value is a path."""

    name: str
    coco: str | None = field(default=None, metadata=_PATH)
    czechlynx: str | None = field(default=None, metadata=_PATH)
    images: str | None = field(default=None, metadata=_PATH)
    split: str | None = None
    generate: dict[str, Any] | None = None
    labels: str | None = field(default=None, metadata=_PATH)  # any format labels.py reads
    format: str | None = None  # of labels; inferred from the path when absent
    category: str | None = None  # one category (by name) of a multi-category COCO file
    sigmas: dict[str, float] | None = None  # OKS sigma by keypoint name (eval.sigmas="default")
    bad_images: BadImages = "stop"
    # Set by Catalog.check_images under bad_images = "skip", never read from the file: the
    # images every process leaves out (ids, which stay the same on every node's cache).
    skipped_image_ids: tuple[int, ...] = field(default=(), metadata={"file_key": False})

    def __post_init__(self) -> None:
        object.__setattr__(self, "skipped_image_ids", tuple(self.skipped_image_ids))
        kinds = [k for k in KINDS if getattr(self, k)]
        if len(kinds) != 1:
            raise CatalogError(
                f"catalog entry [datasets.{self.name}] needs exactly one of "
                f"{', '.join(KINDS)} (has {kinds or 'none'})"
            )
        if self.format is not None and not self.labels:
            raise CatalogError(f"catalog entry [datasets.{self.name}]: format is for labels")
        if self.split is not None and not (self.czechlynx or self.labels):
            raise CatalogError(f"catalog entry [datasets.{self.name}]: split is for labels and "
                               "czechlynx entries (a COCO file as labels = ... splits 80/20)")
        if self.category is not None and not (self.coco or self.labels):
            raise CatalogError(f"catalog entry [datasets.{self.name}]: category is for COCO "
                               "files (coco = ..., or labels = ... in COCO format)")
        if self.bad_images not in typing.get_args(BadImages):
            raise CatalogError(
                f"catalog entry [datasets.{self.name}]: bad_images = {self.bad_images!r}; "
                f"valid: {list(typing.get_args(BadImages))}"
            )

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k))


KINDS = ("coco", "czechlynx", "generate", "labels")


def dataset_keys() -> tuple[str, ...]:
    """The keys a ``[datasets.NAME]`` table may hold."""
    return tuple(
        f.name
        for f in dataclasses.fields(DatasetEntry)
        if f.name != "name" and f.metadata.get("file_key", True)
    )


DEFAULT_SIZES = {"animalpose": 400, "lynx-train": 1000, "lynx-test": 300, "lynx-synthetic": 10000}
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
    defined: tuple[str, ...] = ()  # the names the catalog file itself defines

    @classmethod
    def default(
        cls, pools: Mapping[str, int] | None = None, data_dir: str | None = None,
        needs: dict[str, int] | None = None,
    ) -> Catalog:
        """Generated stand-ins for every dataset name the study uses.

        Without ``pools`` (a scale's ``dataset_sizes``), ``needs`` (images a sweep draws
        from each set) sizes the generated sets so a sweep never renders more than it uses;
        image i depends only on (seed, i), so a larger set extends a smaller one. With
        ``pools`` the sets never shrink below those fixed sizes: every sweep of that scale
        then draws from the same pools, so equal trials of different experiments draw equal
        subsets and one can reuse the other (orchestrator.plan.reuse).
        """
        sizes = dict(pools or DEFAULT_SIZES)
        for name, count in (needs or {}).items():
            if name in sizes and count > 0:
                sizes[name] = max(count, sizes[name]) if pools else count
        entries = {
            name: DatasetEntry(
                name, generate={"style": style, "seed": seed, "images": sizes[name], "scenes": 4}
            )
            for name, (style, seed) in GENERATED.items()
        }
        return cls(entries, {}, data_dir or default_data_dir(), "<default>")

    @classmethod
    def from_file(
        cls, path: str | Path, pools: Mapping[str, int] | None = None,
        needs: dict[str, int] | None = None,
    ) -> Catalog:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CatalogError(f"catalog {path}: cannot read: {error}") from None
        _check_top_level(raw, path)
        folder = Path(os.path.abspath(path)).parent
        base = cls.default(pools, needs=needs)
        datasets = dict(base.datasets)
        for name, values in raw.get("datasets", {}).items():
            datasets[name] = _dataset_entry(name, values, path, folder)
        weights = _weights(raw.get("weights", {}), path, folder)
        data_dir = _resolved(raw["data_dir"], folder) if "data_dir" in raw else base.data_dir
        return cls(datasets, weights, data_dir, str(path), tuple(raw.get("datasets", {})))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, to ship to Ray workers inside the trial config."""
        return {
            "datasets": {n: dataclasses.asdict(e) for n, e in self.datasets.items()},
            "weights": self.weights,
            "data_dir": self.data_dir,
            "source": self.source,
            "defined": list(self.defined),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Catalog:
        datasets = {n: DatasetEntry(**e) for n, e in values["datasets"].items()}
        return cls(datasets, values["weights"], values["data_dir"], values["source"],
                   tuple(values.get("defined", ())))

    def entry(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            raise CatalogError(
                f"dataset {name!r} is not in the catalog ({self.source}); add a "
                f"[datasets.{name}] entry with coco/czechlynx/labels/generate, "
                f"known names: {sorted(self.datasets)}"
            )
        return self.datasets[name]

    def check_read(self, read: Iterable[str]) -> None:
        """An entry of the catalog file that no trial reads, named like a set that a trial
        reads and the file does not define, is a misspelling: without this check that set
        silently falls back to generated data (``[datasets.animalpos]`` for ``animalpose``)."""
        read = set(read)
        fallback = sorted(n for n in read if n in self.datasets and n not in self.defined)
        for name in self.defined:
            near = _nearest(name, fallback) if name not in read else None
            if near is not None:
                raise CatalogError(
                    f"catalog {self.source}: [datasets.{name}] is read by no trial, and "
                    f"{near!r} (read) is not defined, so it would be generated data; did you "
                    f"mean [datasets.{near}]?"
                )

    def load(
        self, name: str, progress: Callable[[str], None] | None = None
    ) -> tuple[list[Instance], Skeleton, ReadReport]:
        """Instances of dataset ``name`` (materialising generated or remote data first),
        without the images :meth:`check_images` found bad under ``bad_images = "skip"``."""
        entry = self.entry(name)
        instances, skeleton, report = self._read(entry, progress)
        if entry.kind != "labels":  # read_labels has done both
            from orchestrator.data.labels import note_outside, require_instances

            require_instances(instances, report)
            note_outside(instances, report)
        if entry.sigmas:
            skeleton = with_named_sigmas(skeleton, entry.sigmas, f"[datasets.{name}] sigmas")
        if entry.skipped_image_ids:
            skipped = set(entry.skipped_image_ids)
            kept = [i for i in instances if i.image_id not in skipped]
            report.skip("image does not decode (bad_images = skip)", len(instances) - len(kept))
            report.kept = len(kept)
            instances = kept
        return instances, skeleton, report

    def _read(
        self, entry: DatasetEntry, progress: Callable[[str], None] | None
    ) -> tuple[list[Instance], Skeleton, ReadReport]:
        name = entry.name
        if entry.kind == "generate":
            path = self.materialise(entry, progress)
            return read_coco(path, source=name)
        from orchestrator.store.storage import local_cache

        if entry.kind == "labels":
            from orchestrator.data.labels import read_labels

            frames = Path(self.data_dir) / "frames"  # video-backed sources, extracted once
            return read_labels(local_cache(entry.labels or ""), entry.format, source=name,
                               split=entry.split, frames_dir=frames, category=entry.category)
        images = local_cache(entry.images) if entry.images else None
        if entry.kind == "coco":
            return read_coco(local_cache(entry.coco or ""), image_root=images, source=entry.name,
                             category=entry.category)
        instances, report = read_czechlynx(
            local_cache(entry.czechlynx or ""), image_root=images, split=entry.split,
            source=entry.name,
        )
        return instances, ANIMALPOSE, report

    def check_images(
        self,
        names: Iterable[str],
        workers: int | None = None,
        store: ImageStore | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> tuple[Catalog, dict[str, ImageCheckReport]]:
        """Decode every image of the named datasets once and apply each entry's ``bad_images``.

        ``"stop"``: a bad image raises :class:`DataError` naming the first bad file and the
        count. ``"skip"``: the returned catalog's entry lists the bad images' ids, so
        :meth:`load` leaves them out in every process it is shipped to. ``store`` receives the
        decoded images (see :func:`pose_core.image_check.check_images`);
        ``progress(name, done, total)`` follows the decoding.
        """
        datasets = dict(self.datasets)
        reports: dict[str, ImageCheckReport] = {}
        for name in sorted(set(names)):
            entry = self.entry(name)
            instances, _, _ = self.load(name)
            tick = None if progress is None else functools.partial(progress, name)
            report = check_images([i.image_path for i in instances], workers, store, tick)
            reports[name] = report
            if report.ok:
                continue
            if entry.bad_images == "stop":
                report.raise_if_bad()
            bad = report.bad_paths
            ids = {i.image_id for i in instances if i.image_path in bad}
            datasets[name] = dataclasses.replace(
                entry, skipped_image_ids=tuple(sorted(ids | set(entry.skipped_image_ids)))
            )
        return dataclasses.replace(self, datasets=datasets), reports

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


TOP_LEVEL = {"data_dir": "key", "datasets": "section", "weights": "section"}


def _nearest(name: str, valid: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return close[0] if close else None


def _check_top_level(raw: dict[str, Any], path: Path) -> None:
    """Unknown sections and keys would be ignored, and generated data used in their place."""
    for key, value in raw.items():
        if key not in TOP_LEVEL:
            near = _nearest(key, TOP_LEVEL)
            if isinstance(value, dict):
                hint = f"; did you mean [{near}]?" if near else ""
                raise CatalogError(f"catalog {path}: unknown section [{key}]{hint}")
            hint = f"; did you mean {near!r}?" if near else ""
            raise CatalogError(f"catalog {path}: unknown key {key!r}{hint}")
        if isinstance(value, dict) != (TOP_LEVEL[key] == "section"):
            raise CatalogError(
                f"catalog {path}: {key!r} must be a {'table' if TOP_LEVEL[key] == 'section' else 'string'}"
            )
    for name, values in raw.get("datasets", {}).items():
        if not isinstance(values, dict):
            raise CatalogError(f"catalog {path}: [datasets.{name}] must be a table, got {values!r}")


def _dataset_entry(name: str, values: dict[str, Any], path: Path, folder: Path) -> DatasetEntry:
    valid = dataset_keys()
    for key, value in values.items():
        if key not in valid:
            near = _nearest(key, valid)
            hint = f"; did you mean {near!r}?" if near else ""
            raise CatalogError(
                f"catalog {path}: [datasets.{name}] unknown key {key!r}{hint} (valid: {list(valid)})"
            )
        wanted = dict if key in ("generate", "sigmas") else str
        if not isinstance(value, wanted):
            raise CatalogError(
                f"catalog {path}: [datasets.{name}] {key} = {value!r}: expected a "
                f"{'table' if wanted is dict else 'string'}"
            )
    paths = {f.name for f in dataclasses.fields(DatasetEntry) if f.metadata.get("path")}
    resolved: dict[str, Any] = {
        k: _resolved(v, folder) if k in paths else v for k, v in values.items()
    }
    try:
        return DatasetEntry(name, **resolved)
    except CatalogError as error:
        raise CatalogError(f"catalog {path}: {error}") from None


def _weights(values: dict[str, Any], path: Path, folder: Path) -> dict[str, str]:
    import timm

    for backbone, file in values.items():
        if not timm.is_model(backbone):
            near = _nearest(backbone, timm.list_models())
            hint = f"; did you mean {near!r}?" if near else ""
            raise CatalogError(f"catalog {path}: [weights] {backbone!r} is not a timm model{hint}")
        if not isinstance(file, str):
            raise CatalogError(f"catalog {path}: [weights] {backbone} = {file!r}: expected a path")
    return {backbone: _resolved(file, folder) for backbone, file in values.items()}


def _resolved(value: str, folder: Path) -> str:
    """``value`` with ``~`` expanded and, when relative, joined to the catalog's folder."""
    if "://" in value:
        return value
    return os.path.abspath(folder / Path(value).expanduser())
