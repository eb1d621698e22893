"""Training throughput of a pose model: fp32 eager vs bf16 autocast + channels_last (+ compile).

Synthetic random tensors stand in for data (no loader, no augmentation), so this measures the
model step alone: forward, MSE loss, backward, Adam. Each mode builds a fresh model from the
same seed. Example::

    python -m benchmarks.train_throughput --batch 64 --steps 50 --warmup 10 --compile
    python -m benchmarks.train_throughput --batch 2 --steps 2 --warmup 1 --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import torch

from pose_core.config import ModelConfig
from pose_core.losses import build_loss
from pose_core.models import build_model


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
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, head=args.head), args.keypoints,
                        args.input_size).to(device)  # fmt: skip
    memory = torch.channels_last if mode.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    step_model = torch.compile(model) if mode.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = build_loss("mse")
    side = args.input_size // 4
    images = torch.randn(args.batch, 3, args.input_size, args.input_size, device=device)
    images = images.contiguous(memory_format=memory)
    target = torch.rand(args.batch, args.keypoints, side, side, device=device)
    weights = torch.ones(args.batch, args.keypoints, device=device)

    def step() -> torch.Tensor:
        cast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if mode.bf16
            else contextlib.nullcontext()
        )
        with cast:
            output = step_model(images)
        output = {k: v.float() for k, v in output.items()}
        loss = loss_fn(output, target, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    for _ in range(args.warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return Result(mode, args.batch * args.steps / elapsed, elapsed / args.steps, float(loss))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
