"""The result records: one typed dataclass per trial and per epoch, and their Arrow schema.

The Arrow schema is derived from the record dataclasses (:func:`arrow_schema`), never written
twice, and every Parquet file is written with it, so an all-None column is still typed
(Arrow would otherwise infer ``null``) and files from different sweeps concatenate. Fields
are checked on construction by the same checker as trial configs
(:func:`pose_core.config.coerce`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pyarrow as pa

from pose_core.config import ConfigError, coerce
from pose_core.metrics import METRIC_NAMES

TrialStatus = Literal["ok", "failed", "stopped"]
TRIAL_KEY = ("experiment", "stage", "variant_id", "seed")


@dataclass(frozen=True)
class TrialRecord:
    """Everything about one finished trial: identity, config, metrics, cost and provenance.

    ``datasets`` reads like ``"base=animalpose,real=lynx-train,synthetic=lynx-synthetic,
    test=lynx-test"``; ``config_json`` is the full ``TrialConfig`` as JSON. Datetimes must be
    timezone-aware (stored as UTC).
    """

    experiment: str
    stage: str
    variant_id: str
    trial_id: str
    seed: int
    status: TrialStatus
    error: str | None
    backbone: str
    head: str
    init: str
    init_checkpoint: str | None
    lr: float
    epochs: int
    batch_size: int
    augment: str
    real_count: int
    synthetic_count: int
    datasets: str
    input_size: int
    loss: str
    schedule: str
    config_json: str
    subset_digest: str
    AP: float | None
    AP50: float | None
    AP75: float | None
    AP85: float | None
    AR: float | None
    PCK05: float | None
    pck_per_keypoint: list[float] | None
    keypoint_names: list[str] | None
    sigma_set: str
    sigma_digest: str
    area_rule: str
    pck_normaliser: str
    params_m: float | None
    gflops: float | None
    best_epoch: int | None
    epochs_run: int
    wall_s: float
    gpu_hours: float
    train_images_per_s: float | None
    checkpoint_uri: str | None
    posetune_version: str
    torch_version: str
    timm_version: str
    ray_version: str
    git_commit: str | None
    started_at: datetime
    ended_at: datetime
    node: str | None
    workers: int
    use_gpu: bool
    # Seconds from Tune starting the trial to the end of its first optimizer step (the
    # orchestration overhead: process, imports, data, model); None in files from before.
    startup_s: float | None = None
    # Identity of the training (sha256 of the full config and the catalog entries it reads):
    # --resume skips a trial only when its finished row has the digest now planned.
    job_digest: str | None = None
    scale: str | None = None  # full | mini | smoke (None in files from before scales)
    # Images of the trial's datasets left out as undecodable (catalog bad_images = "skip").
    images_skipped: int | None = None
    # "EXPERIMENT/STAGE/VARIANT/seed=N" of the finished trial whose training this row reuses
    # (the same job digest: orchestrator.plan.reuse); None when the trial trained itself.
    reused_from: str | None = None
    train_images: int | None = None  # training instances per epoch (image-epochs: x epochs_run)
    # Per keypoint (pose_core.keypoint_metrics): one-keypoint OKS AP, mean error / box size,
    # left/right swap rate; None in files from before.
    ap_per_keypoint: list[float] | None = None
    error_per_keypoint: list[float] | None = None
    swap_rate_per_keypoint: list[float] | None = None
    # The seed that drew the data subsets (data.subset_seed); equals ``seed`` under
    # --redraw-subsets, 0 otherwise. None in files from before.
    subset_seed: int | None = None
    # "EXPERIMENT/STAGE/VARIANT/seed=N@epoch=K": the trial started from that trial's
    # checkpoint after K epochs (identical training until then: orchestrator.plan.forking) and
    # trained epochs K+1.. itself. None when it trained from the start.
    forked_from: str | None = None
    # Epochs this trial trained itself: epochs_run less the epochs a forked trial inherited
    # from its prefix; 0 for a reused row. The compute a study spent is the sum of
    # train_images x epochs_trained. None in files from before.
    epochs_trained: int | None = None

    def __post_init__(self) -> None:
        _normalise_fields(self)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of one trial; ``restarted`` marks epochs run after a restart from checkpoint."""

    experiment: str
    stage: str
    variant_id: str
    trial_id: str
    seed: int
    epoch: int
    loss: float
    lr: float
    AP: float | None
    PCK05: float | None
    # Seconds from the trial's start (its row's started_at) to the epoch's end; a fork
    # member's inherited epochs keep their prefix's, and the epochs a trial resumed by
    # --resume trained before its driver died are negative (they ended before this start).
    wall_s: float
    images_per_s: float | None
    restarted: bool

    def __post_init__(self) -> None:
        _normalise_fields(self)


Record = TrialRecord | EpochRecord

_SCALAR_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: pa.timestamp("us", tz="UTC"),
}


def _optional_inner(hint: Any) -> Any | None:
    """``X`` for ``X | None``; None for any other type."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = get_args(hint)
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return inner[0]
        raise TypeError(f"only `X | None` unions are supported in records, not {hint}")
    return None


def _arrow_type(hint: Any) -> pa.DataType:
    if get_origin(hint) is Literal:
        if not all(isinstance(option, str) for option in get_args(hint)):
            raise TypeError(f"only string Literals are supported in records, not {hint}")
        return pa.string()
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        return pa.list_(_arrow_type(item))
    if hint in _SCALAR_TYPES:
        return _SCALAR_TYPES[hint]
    raise TypeError(f"no Arrow type for record field type {hint}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@functools.cache
def arrow_schema(cls: type) -> pa.Schema:
    """The Arrow schema of a record dataclass: ``X | None`` nullable, everything else not null."""
    fields = []
    for name, hint in _hints(cls).items():
        inner = _optional_inner(hint)
        fields.append(pa.field(name, _arrow_type(inner or hint), nullable=inner is not None))
    return pa.schema(fields)


def _normalise_fields(record: object) -> None:
    """Type-check every field with the config checker (numpy scalars become int/float)."""
    cls: type = type(record)
    for name, hint in _hints(cls).items():
        where = f"{cls.__name__}.{name}"
        value = coerce(hint, getattr(record, name), where)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ConfigError(f"{where}: expected a timezone-aware datetime, got {value!r}")
        object.__setattr__(record, name, value)  # frozen: set once, during construction


_metric_fields = [f.name for f in dataclasses.fields(TrialRecord) if f.name in METRIC_NAMES]
assert tuple(_metric_fields) == METRIC_NAMES, "TrialRecord must hold every metric of METRIC_NAMES"
