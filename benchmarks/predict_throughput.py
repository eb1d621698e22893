"""``posetune predict --video`` throughput: PyTorch (``--checkpoint``) against ONNX Runtime
(``--model``), frames per second, side by side in one run.

A generated video (one animal a frame, whole-frame boxes) goes through predict's own loop
(:func:`orchestrator.infer.predict.predict_chunk`: decode, crop, network with flip test, heatmap
decode) with each runner, in alternating rounds; the best round of each counts. Model loading
the ONNX session's creation and a first warm-up chunk are not timed. Weights are random (speed does not depend on
them); each model is exported to ONNX as ``posetune export`` writes it. Examples::

    python -m benchmarks.predict_throughput                      # smoke and mini models, CPU
    python -m benchmarks.predict_throughput --threads 1          # one thread each (shared cores)
    python -m benchmarks.predict_throughput --models full --frames 32 --rounds 2
    python -m benchmarks.predict_throughput --device cuda --frames 512   # on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# (backbone, input size) of the trial scales' quickstart model
MODELS = {"smoke": ("hrnet_w18_small", 64), "mini": ("hrnet_w18_small", 128),
          "full": ("hrnet_w32", 256)}
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "withers", "tail_base",
         "left_front_paw", "right_front_paw", "left_back_paw", "right_back_paw"]


@dataclass(frozen=True)
class Result:
    model: str
    runner: str
    frames_per_s: float


def write_video(path: Path, frames: int, width: int, height: int) -> None:
    import cv2

    from pose_core.synth import SynthConfig, render

    config = SynthConfig(images=frames, seed=11, width=width, height=height)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (width, height))
    for n in range(frames):
        writer.write(render(n, config).image)
    writer.release()


def make_models(name: str, folder: Path) -> tuple[Path, Path]:
    """A random-init checkpoint of the scale's model and its model.onnx (with metadata)."""
    from orchestrator.infer.export import Heatmaps, describe, export_onnx
    from orchestrator.infer.runtime import load_trained
    from pose_core.config import TrialConfig, with_values
    from pose_core.engine import save_checkpoint
    from pose_core.models import build_model

    backbone, size = MODELS[name]
    cfg = with_values(TrialConfig(), {"model.backbone": backbone, "model.init": "random",
                                      "data.input_size": size})
    torch.manual_seed(0)
    checkpoint = folder / f"{name}.pt"
    save_checkpoint(checkpoint, build_model(cfg.model, len(NAMES), size), None, None, 1,
                    cfg.to_dict(), NAMES)
    model, cfg, skeleton = load_trained(str(checkpoint))
    onnx_path = folder / f"{name}.onnx"
    info = describe({"trial_id": "benchmark"}, cfg, skeleton, np.full(len(NAMES), 0.1))
    export_onnx(Heatmaps(model).eval(), size, onnx_path, info)
    return checkpoint, onnx_path


def open_runner(args: argparse.Namespace, video: Path, flag: str, model: Path) -> Any:
    """predict's frame and box sources and runner for ``flag MODEL``, warmed up on one chunk
    (the first batches pay for thread pools and allocations)."""
    from orchestrator.cli import build_parser
    from orchestrator.infer.frames import Predictions
    from orchestrator.infer.predict import CHUNK, chunked, open_inputs, predict_chunk
    from orchestrator.infer.runtime import checkpoint_runner, onnx_runner

    parsed = build_parser().parse_args(["predict", flag, str(model), "--video", str(video),
                                        "--device", args.device, "--out", "unused.json"])
    source, boxes = open_inputs(parsed)
    runner = onnx_runner(str(model), args.device) if flag == "--model" \
        else checkpoint_runner(str(model), args.device)
    first = next(chunked(source.frames(), CHUNK))
    predict_chunk(runner, first, boxes, Predictions(skeleton=runner.skeleton))
    return source, boxes, runner


def time_runner(opened: Any) -> float:
    """Frames per second of predict's loop over the whole video (decode, crop, network with
    flip test, decode) with one runner."""
    from orchestrator.infer.frames import Predictions
    from orchestrator.infer.predict import CHUNK, chunked, predict_chunk

    source, boxes, runner = opened
    preds = Predictions(skeleton=runner.skeleton)
    started = time.perf_counter()
    for chunk in chunked(source.frames(), CHUNK):
        predict_chunk(runner, chunk, boxes, preds)
    elapsed = time.perf_counter() - started
    assert len(preds.poses) == source.count
    return float(source.count / elapsed)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smoke", "mini"], choices=list(MODELS))
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads of both runners (torch.set_num_threads; onnxruntime "
                        "takes the same)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = folder / "clip.mp4"
        write_video(video, args.frames, args.width, args.height)
        for name in args.models:
            checkpoint, onnx_path = make_models(name, folder)
            opened = {"PyTorch": open_runner(args, video, "--checkpoint", checkpoint),
                      "ONNX Runtime": open_runner(args, video, "--model", onnx_path)}
            best = dict.fromkeys(opened, 0.0)
            for _ in range(args.rounds):  # alternating: shared cores load both alike
                for runner, parts in opened.items():
                    best[runner] = max(best[runner], time_runner(parts))
            results += [Result(name, runner, fps) for runner, fps in best.items()]
    backbone = {name: f"{MODELS[name][0]} {MODELS[name][1]}px" for name in args.models}
    print(f"| model | PyTorch frames/s | ONNX Runtime frames/s | ratio |  ({args.device}, "
          f"{args.threads} thread(s), {args.frames} frames {args.width}x{args.height}, flip test, "
          f"best of {args.rounds})")
    print("|---|---|---|---|")
    for name in args.models:
        fps = {r.runner: r.frames_per_s for r in results if r.model == name}
        print(f"| {name} ({backbone[name]}) | {fps['PyTorch']:.1f} | {fps['ONNX Runtime']:.1f} "
              f"| {fps['ONNX Runtime'] / fps['PyTorch']:.2f}x |")
    print("predict_throughput: " + ", ".join(
        f"{r.model} {r.runner} {r.frames_per_s:.1f} frames/s" for r in results))
    return results


if __name__ == "__main__":
    main()
