"""Assemble one trial from a :class:`TrialConfig` and instance lists, and a plain ``fit``.

The loop itself is :func:`pose_core.loop.train_trial`; :func:`fit` runs it in this process,
the orchestrator runs the same function inside Ray, so a sweep trains exactly what a local
run trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from pose_core.config import TrialConfig
from pose_core.dataset import ImageSource, TopDownDataset
from pose_core.engine import (
    build_optimizer,
    build_scheduler,
    seed_everything,
)
from pose_core.losses import build_loss
from pose_core.models import build_model, init_weights
from pose_core.records import Instance
from pose_core.skeletons import Skeleton, resolve_sigmas

log = logging.getLogger(__name__)


def gt_records(instances: Sequence[Instance]) -> list[dict[str, Any]]:
    """Ground truth in the form :func:`pose_core.metrics.evaluate_predictions` expects."""
    return [
        {
            "image_id": inst.image_id,
            "bbox": list(inst.bbox),
            "keypoints": inst.keypoints,
            "area": inst.area,
        }
        for inst in instances
    ]


def make_datasets(
    cfg: TrialConfig,
    train: Sequence[Instance],
    test: Sequence[Instance],
    skeleton: Skeleton,
    cache: ImageSource | None = None,
) -> tuple[TopDownDataset, TopDownDataset]:
    common: dict[str, Any] = dict(
        flip_index=skeleton.flip_index,
        input_size=cfg.data.input_size,
        heatmap_sigma=cfg.data.heatmap_sigma,
        unbiased=cfg.data.encode == "unbiased",
        upper_body=skeleton.upper_body,
        lower_body=skeleton.lower_body,
        seed=cfg.train.seed,
        image_cache=cache,
    )
    train_set = TopDownDataset(
        train, train=True, augment=cfg.data.augment, geometric=cfg.data.geometric,
        batched=cfg.data.pipeline == "batched", **common,
    )
    test_set = TopDownDataset(test, train=False, **common)
    if cache is not None:
        # Decode once in this process before DataLoader workers fork: they then share the
        # arrays copy-on-write instead of each re-decoding every epoch (pose sets are small);
        # a node-wide ImageStore is filled (or, warm, just mapped) before training starts.
        cache.preload(inst.image_path for inst in (*train, *test))
    return train_set, test_set


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    train: bool,
    seed: int,
    workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader[Any]:
    """A loader whose shuffle order depends only on (seed, epoch): see :func:`set_loader_epoch`.

    The last training batch is dropped only when it would hold a single sample, because
    BatchNorm cannot train on a batch of one.
    """
    size = len(dataset)  # type: ignore[arg-type]
    sampler: Any
    if world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed
        )
        size = len(sampler)
    elif train:
        sampler = RandomSampler(
            dataset,  # type: ignore[arg-type]
            generator=torch.Generator().manual_seed(seed),
        )
    else:
        sampler = None
    batch = max(1, min(batch_size, size))
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        drop_last=train and size % batch == 1 and size > 1,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def set_loader_epoch(loader: DataLoader[Any], seed: int, epoch: int) -> None:
    """Make the shuffle order and the augmentation draw a function of (seed, epoch)."""
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed * 100003 + epoch)
    dataset = loader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


@dataclass
class Trial:
    """Everything one training run owns."""

    config: TrialConfig
    skeleton: Skeleton
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[..., torch.Tensor]
    sigmas: np.ndarray
    device: torch.device
    init_message: str = ""
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # EpochReport.as_dict()s


def build_trial(
    cfg: TrialConfig,
    skeleton: Skeleton,
    iterations_per_epoch: int,
    device: torch.device | None = None,
) -> Trial:
    """Model (initialised per ``cfg.model.init``), optimizer, schedule and loss."""
    seed_everything(cfg.train.seed)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sigmas = resolve_sigmas(cfg.eval.sigmas, skeleton)
    model = build_model(cfg.model, skeleton.num_keypoints, cfg.data.input_size)
    message = init_weights(model, cfg.model, skeleton.keypoints)
    log.info(message)
    model.to(device)
    if cfg.train.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, iterations_per_epoch)
    loss_fn = build_loss(cfg.train.loss)
    return Trial(cfg, skeleton, model, optimizer, scheduler, loss_fn, sigmas, device, message)


def should_evaluate(cfg: TrialConfig, completed_epochs: int) -> bool:
    """Evaluate every ``eval.interval`` epochs and always after the last one."""
    interval = max(1, cfg.eval.interval)
    return completed_epochs % interval == 0 or completed_epochs >= cfg.train.epochs

