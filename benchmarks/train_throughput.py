"""Training throughput of a pose model: fp32 eager vs bf16 autocast + channels_last (+ compile).

Synthetic random tensors stand in for data (no loader, no augmentation), so this measures the
model step alone: forward, MSE loss, backward, Adam. Each mode builds a fresh model from the
same seed. Example::

    python -m benchmarks.train_throughput --batch 64 --steps 50 --warmup 10 --compile
    python -m benchmarks.train_throughput --batch 2 --steps 2 --warmup 1 --device cpu
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from pose_core.config import ModelConfig
from pose_core.throughput import time_training_step


@dataclass(frozen=True)
class Mode:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool


@dataclass(frozen=True)
class Result:
    mode: Mode
    images_per_s: float
    seconds_per_step: float
    final_loss: float


def run_mode(mode: Mode, args: argparse.Namespace, device: torch.device) -> Result:
    timing = time_training_step(
        ModelConfig(backbone=args.backbone, head=args.head), args.keypoints, args.input_size,
        args.batch, device, bf16=mode.bf16, channels_last=mode.channels_last,
        compile_model=mode.compile, steps=args.steps, warmup=args.warmup)
    return Result(mode, timing.images_per_s, timing.seconds_per_step, timing.final_loss)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time bf16+CL+compile")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--head", default="heatmap", choices=["heatmap", "kitpose"])
    parser.add_argument("--keypoints", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=256)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    device = torch.device(args.device)
    modes = [Mode("fp32-eager", False, False, False), Mode("bf16-cl-eager", True, True, False)]
    if args.compile:
        modes.append(Mode("bf16-cl-compile", True, True, True))
    print(
        f"# {args.backbone}/{args.head} {args.input_size}x{args.input_size} K={args.keypoints} "
        f"batch={args.batch} steps={args.steps} warmup={args.warmup} device={device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}) "
        f"torch={torch.__version__}"
    )
    results = []
    for mode in modes:
        result = run_mode(mode, args, device)
        results.append(result)
        print(
            f"mode={mode.name:16s} images/s={result.images_per_s:9.2f} "
            f"s/step={result.seconds_per_step:8.4f} loss={result.final_loss:.6f}"
        )
    base = results[0].images_per_s
    print("ratio " + " ".join(f"{r.mode.name}/fp32-eager={r.images_per_s / base:.2f}x"
                              for r in results[1:]))  # fmt: skip
    return results


if __name__ == "__main__":
    main()
