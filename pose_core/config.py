"""Typed trial configuration: frozen dataclasses whose defaults are the study's baseline.

A trial is fully described by one :class:`TrialConfig`. Sweeps vary it through dotted paths
(``"train.lr"``, ``"data.synthetic_count"``); :func:`with_values` applies such a set of
changes and :func:`check_path` validates a path and a value's type up front, so a typo in
a search space fails when the file is imported, not at trial 37.

Defaults follow the reference study and MMPose's Animal-Pose configs: 256x256 input,
64x64 heatmaps with sigma 2, Adam 5e-4, 210 epochs, batch 64, x0.1 at 80% and 95%.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

HeadName = Literal["heatmap", "kitpose"]
InitName = Literal["random", "imagenet", "checkpoint"]
LossName = Literal["mse", "kitpose"]
ScheduleName = Literal["study", "mmpose", "constant"]
DecodeName = Literal["standard", "dark"]
EncodeName = Literal["standard", "unbiased"]
AreaRule = Literal["given", "bbox"]
PckNormaliser = Literal["bbox", "diagonal", "sqrt_area"]
# The study's five photometric augmentations, alone and together (pose_core.augment).
AugmentName = Literal["none", "blur", "noise", "hsv", "brightness_contrast", "grayscale", "all"]
# Where the photometric set, normalisation and heatmap encoding run: in the loader, one sample
# at a time (the reference), or as one batched step on the training device (pose_core.batch_augment).
PipelineName = Literal["per_sample", "batched"]


@dataclass(frozen=True)
class DataConfig:
    """Where training and test instances come from, and how they are prepared.

    Dataset fields hold catalog names (resolved by the orchestrator's catalog) or paths.
    ``base`` is used whole (or ``base_count`` images of it); ``real_count`` and ``synthetic_count`` draw nested subsets
    (the 10 real images are inside the 50 for the same ``subset_seed``).
    """

    base: str | None = "animalpose"
    base_count: int | None = None
    real: str | None = "lynx-train"
    real_count: int = 0
    synthetic: str | None = "lynx-synthetic"
    synthetic_count: int = 0
    test: str = "lynx-test"
    subset_seed: int = 0
    augment: AugmentName = "none"
    geometric: bool = True
    cutmix: bool = False
    input_size: int = 256
    heatmap_sigma: float = 2.0
    encode: EncodeName = "standard"
    max_test: int | None = None
    loader_workers: int = 2
    pipeline: PipelineName = "per_sample"

    @property
    def heatmap_size(self) -> int:
        """Heatmaps are a quarter of the input side (stride 4), as in every reference model."""
        return self.input_size // 4


@dataclass(frozen=True)
class ModelConfig:
    """Backbone by timm name, our head by name, and where the initial weights come from."""

    backbone: str = "hrnet_w32"
    head: HeadName = "heatmap"
    init: InitName = "imagenet"
    weights: str | None = None
    kit_dim: int = 1024
    kit_depth: int = 2
    kit_parts: int = 5
    kit_mlp_ratio: int = 3


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. ``lr`` is for the whole batch; no automatic LR scaling."""

    lr: float = 5e-4
    epochs: int = 210
    batch_size: int = 64
    warmup_iters: int = 500
    schedule: ScheduleName = "study"
    loss: LossName = "mse"
    grad_clip: float | None = None
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False


@dataclass(frozen=True)
class EvalConfig:
    """How predictions are scored. The sigma set, area rule and PCK normaliser are recorded."""

    sigmas: str = "animalpose"
    area_rule: AreaRule = "given"
    pck_normaliser: PckNormaliser = "bbox"
    pck_threshold: float = 0.05
    flip_test: bool = True
    decode: DecodeName = "standard"
    shift_heatmap: bool = True
    interval: int = 10


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        return from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 5e-4, ...}``: every leaf by dotted path."""
        return flatten(self.to_dict())


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``: every non-mapping leaf by its
    dotted path (the one flattener: configs, stored ``config_json``, tracker parameters)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{path}.")
        else:
            out[path] = value
    return out


class ConfigError(ValueError):
    """An unknown key, a wrong type or a value outside a closed set."""


T = typing.TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(values).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        path = f"{where}.{name}" if where else name
        kwargs[name] = coerce(hints[name], value, path)
    return cls(**kwargs)


def coerce(hint: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type ``hint`` (int is accepted where float is expected)."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, path)
    if origin is Literal:
        options = get_args(hint)
        if value not in options:
            raise ConfigError(f"{path}: {value!r} is not one of {list(options)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            try:
                return coerce(option, value, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{path}: {value!r} matches none of {hint}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{path}: expected None, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = get_args(hint)
        return [coerce(item, element, f"{path}[{i}]") for i, element in enumerate(value)]
    # numpy scalars count as numbers (results carry them); bools never do.
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported config type {hint}")


def leaf_type(path: str) -> Any:
    """The annotated type of a dotted path such as ``train.lr``; raises for unknown paths."""
    parts = path.split(".")
    if len(parts) != 2:
        raise ConfigError(f"{path!r}: config paths are SECTION.KEY, e.g. 'train.lr'")
    sections = get_type_hints(TrialConfig)
    if parts[0] not in sections:
        raise ConfigError(f"{path!r}: unknown section {parts[0]!r}; valid: {sorted(sections)}")
    hints = get_type_hints(sections[parts[0]])
    if parts[1] not in hints:
        raise ConfigError(
            f"{path!r}: unknown key {parts[1]!r} in {parts[0]}; valid: {sorted(hints)}"
        )
    return hints[parts[1]]


def check_path(path: str, value: Any) -> Any:
    """Validate that ``value`` may be assigned to ``path``; returns the coerced value."""
    return coerce(leaf_type(path), value, path)


def with_values(config: TrialConfig, changes: dict[str, Any]) -> TrialConfig:
    """A copy of ``config`` with dotted-path ``changes`` applied and type-checked."""
    sections: dict[str, dict[str, Any]] = {}
    for path, value in changes.items():
        checked = check_path(path, value)
        section, key = path.split(".")
        sections.setdefault(section, {})[key] = checked
    updates = {
        name: dataclasses.replace(getattr(config, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(config, **updates)
