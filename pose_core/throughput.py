"""Training throughput of a pose model's step (forward, loss, backward, Adam) on random tensors.

No data loading or augmentation: this is the model step alone, what a GPU spends most of a
trial on. ``benchmarks/train_throughput.py`` compares precision modes with it, and
``posetune sweep ... --plan --calibrate`` measures the figure its cost plan divides by.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch

from pose_core.config import ModelConfig
from pose_core.losses import build_loss
from pose_core.models import build_model


@dataclass(frozen=True)
class StepTiming:
    images_per_s: float
    seconds_per_step: float
    final_loss: float


def time_training_step(
    model_cfg: ModelConfig, keypoints: int, input_size: int, batch: int,
    device: torch.device, *, bf16: bool = False, channels_last: bool = False,
    compile_model: bool = False, steps: int = 10, warmup: int = 2,
) -> StepTiming:
    """Images per second of ``steps`` training steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    model = build_model(model_cfg, keypoints, input_size).to(device)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    step_model = torch.compile(model) if compile_model else model
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = build_loss("mse")
    side = input_size // 4
    images = torch.randn(batch, 3, input_size, input_size, device=device)
    images = images.contiguous(memory_format=memory)
    target = torch.rand(batch, keypoints, side, side, device=device)
    weights = torch.ones(batch, keypoints, device=device)

    def step() -> torch.Tensor:
        cast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())
        with cast:
            output = step_model(images)
        output = {k: v.float() for k, v in output.items()}
        loss = loss_fn(output, target, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    loss = torch.zeros(())
    for _ in range(steps):
        loss = step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return StepTiming(batch * steps / elapsed, elapsed / steps, float(loss))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
