"""A framework-free training engine: train one epoch, evaluate, checkpoint, resume.

Nothing here prints, reports or knows about Ray: functions return values and accept an
optional ``on_step`` callback. The orchestrator's Ray worker and the single-process
:func:`pose_core.loop.fit` both drive these same functions.

Schedule (the study's): Adam, linear warmup over the first ``warmup_iters`` iterations from
0.001x (MMPose's LinearLR start_factor), then x0.1 at 80% and again at 95% of the epochs;
``mmpose`` uses MMPose's 170/200 of 210 milestones scaled to the epoch count.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pose_core.codecs import decode_heatmaps, flip_back, merge_flip
from pose_core.config import EvalConfig, TrainConfig
from pose_core.dataset import predictions_to_image
from pose_core.metrics import MetricResult, evaluate_predictions

LossFunction = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]
# Finishes a loader batch on the device (pose_core.batch_augment.BatchPreparer).
PrepareFunction = Callable[[dict[str, torch.Tensor], torch.device], dict[str, torch.Tensor]]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the trial cannot continue."""

    def __init__(self, epoch: int, iteration: int, value: float) -> None:
        self.epoch, self.iteration, self.value = epoch, iteration, value
        super().__init__(
            f"non-finite loss {value} at epoch {epoch}, iteration {iteration}; "
            "lower the learning rate or enable train.grad_clip"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the fields: the default passes the message as the only argument.
        return type(self), (self.epoch, self.iteration, self.value)


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    loss: float
    lr: float
    iterations: int
    images: int
    wall_s: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s > 0 else 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam without weight decay, as in every reference config."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)


def milestones(cfg: TrainConfig) -> tuple[int, ...]:
    """Epochs at which the learning rate drops by 10x."""
    if cfg.schedule == "constant":
        return ()
    if cfg.schedule == "mmpose":
        fractions = (170 / 210, 200 / 210)
    else:
        fractions = (0.8, 0.95)
    return tuple(max(1, round(f * cfg.epochs)) for f in fractions)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, iterations_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration multiplier: linear warmup, then step decay at the epoch milestones."""
    drops = [m * iterations_per_epoch for m in milestones(cfg)]
    warmup = cfg.warmup_iters

    def factor(iteration: int) -> float:
        scale = 0.1 ** sum(iteration >= d for d in drops)
        if warmup > 0 and iteration < warmup:
            scale *= 0.001 + (1.0 - 0.001) * iteration / warmup
        return scale

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA only: CPU bf16 is slower than fp32 on most CPUs."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: LossFunction,
    device: torch.device,
    epoch: int,
    cfg: TrainConfig,
    cutmix_generator: torch.Generator | None = None,
    on_step: Callable[[int, float], None] | None = None,
    *,
    prepare: PrepareFunction | None = None,
) -> EpochStats:
    """One pass over ``loader``. Raises :class:`NonFiniteLossError` on a NaN/inf loss.

    With ``cutmix_generator`` set, batches are mixed with KITPose's CutMix rules and the
    loss is ``lam * L(weights_a) + (1 - lam) * L(weights_b)``.

    Batches of a ``batched`` dataset (key ``image_u8``) are finished on ``device`` by
    ``prepare``, by default the loader's ``dataset.batch_preparer()``.
    """
    model.train()
    total, count, images = 0.0, 0, 0
    start = time.perf_counter()
    channels_last = cfg.channels_last and device.type == "cuda"
    for iteration, batch in enumerate(loader):
        if "image_u8" in batch:
            prepare = prepare or _dataset_preparer(loader)
            batch = prepare(batch, device)
        else:
            batch = to_device(batch, device)
        images_in = batch["image"]
        if channels_last:
            images_in = images_in.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.bf16):
            if cutmix_generator is not None:
                loss = _cutmix_loss(model, loss_fn, batch, images_in, cutmix_generator)
            else:
                output = model(images_in)
                loss = loss_fn(_float(output), batch["heatmaps"], batch["weights"])
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, iteration, value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += value
        count += 1
        images += int(images_in.shape[0])
        if on_step is not None:
            on_step(iteration, value)
    wall = time.perf_counter() - start
    return EpochStats(
        epoch=epoch,
        loss=total / max(count, 1),
        lr=float(optimizer.param_groups[0]["lr"]),
        iterations=count,
        images=images,
        wall_s=wall,
    )


def _dataset_preparer(loader: Any) -> PrepareFunction:
    make = getattr(getattr(loader, "dataset", None), "batch_preparer", None)
    if make is None:
        raise ValueError(
            "the loader yields uint8 'image_u8' batches but neither a prepare step nor a "
            "dataset with batch_preparer() was given"
        )
    prepare: PrepareFunction = make()
    return prepare


def _float(output: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Losses are computed in fp32 even under bf16 autocast (heatmap values are tiny)."""
    return {k: v.float() for k, v in output.items()}


def _cutmix_loss(
    model: nn.Module,
    loss_fn: LossFunction,
    batch: dict[str, torch.Tensor],
    images: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    from pose_core.augment import cutmix

    mixed = cutmix(images, batch["heatmaps"], batch["weights"], generator)
    output = _float(model(mixed.images))
    lam = float(mixed.lam)
    return lam * loss_fn(output, mixed.heatmaps, mixed.weights_a) + (1 - lam) * loss_fn(
        output, mixed.heatmaps, mixed.weights_b
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    flip_index: Sequence[int],
    cfg: EvalConfig,
    bf16: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints in image pixels for every sample of ``loader``.

    Returns ``coords (N, K, 2)``, ``scores (N, K)`` and the dataset ``indices (N,)``.
    """
    model.eval()
    coords, scores, indices = [], [], []
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        with autocast(device, bf16):
            heatmaps = model(images)["heatmaps"].float()
            if cfg.flip_test:
                flipped = model(torch.flip(images, dims=[3]))["heatmaps"].float()
                heatmaps = merge_flip(heatmaps, flip_back(flipped, flip_index, cfg.shift_heatmap))
        xy, score = decode_heatmaps(heatmaps.cpu().numpy(), method=cfg.decode)
        input_size = int(images.shape[-1])
        coords.append(
            predictions_to_image(
                xy, batch["center"].numpy(), batch["scale"].numpy(), input_size
            )
        )
        scores.append(score)
        indices.append(batch["index"].numpy())
    if not coords:
        raise ValueError("evaluation set is empty")
    return np.concatenate(coords), np.concatenate(scores), np.concatenate(indices)


def evaluate(
    model: nn.Module,
    loader: Any,
    gt_records: Sequence[dict[str, Any]],
    flip_index: Sequence[int],
    sigmas: np.ndarray,
    cfg: EvalConfig,
    device: torch.device,
    bf16: bool = False,
) -> MetricResult:
    """Predict on ``loader`` and score against ``gt_records`` (index-aligned with the dataset).

    ``gt_records[i]`` is ``{"image_id", "bbox", "keypoints" (K, 3), "area"}`` for dataset item i.
    """
    coords, scores, indices = predict(model, loader, device, flip_index, cfg, bf16)
    order = np.argsort(indices)
    records = [gt_records[i] for i in indices[order]]
    return evaluate_predictions(
        records,
        coords[order],
        scores[order],
        num_keypoints=coords.shape[1],
        sigmas=sigmas,
        sigma_set=cfg.sigmas,
        area_rule=cfg.area_rule,
        pck_normaliser=cfg.pck_normaliser,
        pck_threshold=cfg.pck_threshold,
        flip_index=flip_index,
    )


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model under DDP / torch.compile wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    config: dict[str, Any],
    keypoint_names: Sequence[str],
    extra: dict[str, Any] | None = None,
) -> None:
    """One file holding everything needed for exact resume and for later fine-tuning.

    ``epoch`` is the number of completed epochs. Only tensors, numbers, strings and
    containers are stored, so :func:`load_checkpoint` can use ``weights_only=True``.
    """
    state = {
        "format": "posetune-checkpoint-1",
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "config": config,
        "skeleton": list(keypoint_names),
        "rng": _portable_rng(rng_state()),
        "extra": extra or {},
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _portable_rng(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states as plain lists/tensors: numpy's tuple holds an ndarray, which
    ``weights_only`` loading accepts, but Python's state is a nested tuple of ints: fine."""
    numpy_state = state["numpy"]
    state["numpy"] = [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)),
                      *numpy_state[2:]]
    return state


def load_checkpoint(
    path: str | Path,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != "posetune-checkpoint-1":
        raise ValueError(f"{path} is not a posetune checkpoint (no 'format' key)")
    if model is not None:
        unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        rng = dict(state["rng"])
        numpy_state = rng["numpy"]
        rng["numpy"] = (numpy_state[0], numpy_state[1].numpy().astype(np.uint32),
                        *numpy_state[2:])
        set_rng_state(rng)
    return state
