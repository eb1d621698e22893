"""How long the training loop waits for data: per-sample loader vs batched device pipeline.

Trains a pose model on generated images (pose_core.synth) with a real DataLoader and measures,
per step, the time blocked in ``next(iterator)`` (the wait), the batched device step
(``BatchPreparer``: photometric set, normalisation, heatmap encoding) and the whole step
(CUDA synchronised). ``per_sample`` is the reference pipeline (albumentations, float32 images
and heatmaps collated in the workers); ``batched`` collates uint8 crops and finishes on the
device. Before training, the input pipelines alone are timed per core (one thread, no workers,
the batched device step on the CPU), alternating rounds as in benchmarks/input_pipeline.py.

    python -m benchmarks.data_wait --device cpu --backbone hrnet_w18_small --size 128 \\
        --batch 16 --steps 8 --warmup 2 --workers 1                       # quick CPU figure
    python -m benchmarks.data_wait --batch 128 --steps 50 --workers 8 \\
        --bf16 --channels-last --compile                                  # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import torch
from torch.utils.data import default_collate

from pose_core.config import ModelConfig
from pose_core.dataset import ImageCache, TopDownDataset
from pose_core.losses import build_loss
from pose_core.models import build_model
from pose_core.readers import read_coco
from pose_core.records import Instance
from pose_core.skeletons import Skeleton
from pose_core.synth import SynthConfig, generate
from pose_core.trainer import make_loader

PIPELINES = ("per_sample", "batched")


@dataclass(frozen=True)
class Timing:
    pipeline: str
    step_s: float  # mean wall time of one step
    wait_s: float  # of which blocked in next(loader)
    prepare_s: float  # of which the batched device step
    images_per_s: float

    @property
    def wait_share(self) -> float:
        return self.wait_s / self.step_s

    @property
    def prepare_share(self) -> float:
        return self.prepare_s / self.step_s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_dataset(
    instances: Sequence[Instance], skeleton: Skeleton, args: argparse.Namespace, pipeline: str,
    cache: ImageCache,
) -> TopDownDataset:  # fmt: skip
    return TopDownDataset.for_skeleton(
        instances, skeleton, input_size=args.size, train=True, augment=args.augment,
        image_cache=cache, batched=pipeline == "batched",
    )  # fmt: skip


def batches(loader: Any, dataset: TopDownDataset) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches; a new epoch (and worker start) when the loader runs out, as in training."""
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def train(
    pipeline: str, instances: Sequence[Instance], skeleton: Skeleton, cache: ImageCache,
    args: argparse.Namespace, device: torch.device,
) -> Timing:  # fmt: skip
    torch.manual_seed(0)
    dataset = make_dataset(instances, skeleton, args, pipeline, cache)
    loader = make_loader(dataset, args.batch, True, 0, args.workers)
    prepare = dataset.batch_preparer() if pipeline == "batched" else None
    model = build_model(ModelConfig(backbone=args.backbone, head=args.head),
                        skeleton.num_keypoints, args.size).to(device)  # fmt: skip
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    step_model = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    loss_fn = build_loss("mse")
    cast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else (
        contextlib.nullcontext)  # fmt: skip
    stream = batches(loader, dataset)
    wait = prep = total = 0.0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch = next(stream)
        got = time.perf_counter()
        if prepare is not None:
            batch = prepare(batch, device)
            synchronize(device)
        else:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        prepared = time.perf_counter()
        images = batch["image"].contiguous(memory_format=memory)
        with cast():
            output = step_model(images)
        output = {k: v.float() for k, v in output.items()}
        loss = loss_fn(output, batch["heatmaps"], batch["weights"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # the engine reads the loss every step, which synchronises
        synchronize(device)
        end = time.perf_counter()
        if step >= args.warmup:
            wait += got - start
            prep += prepared - got if prepare is not None else 0.0
            total += end - start
    steps = args.steps
    return Timing(pipeline, total / steps, wait / steps, prep / steps, args.batch * steps / total)


def input_throughput(
    datasets: dict[str, TopDownDataset], batch: int, rounds: int
) -> dict[str, float]:
    """Images per second per core of each input pipeline; best of ``rounds`` alternating rounds.

    ``batched`` counts the loader part and the device step on the CPU; ``batched (loader)``
    is the part that would remain in the DataLoader workers on a GPU machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    device = torch.device("cpu")
    best: dict[str, float] = {}
    try:
        for round_ in range(rounds):
            for name, dataset in datasets.items():
                dataset.set_epoch(round_ + 1)
                prepare = dataset.batch_preparer() if dataset.batched else None
                loader_s, device_s = _time_pipeline(dataset, batch, prepare, device)
                count = len(dataset)
                best[name] = max(best.get(name, 0.0), count / (loader_s + device_s))
                if prepare is not None:
                    key = f"{name} (loader)"
                    best[key] = max(best.get(key, 0.0), count / loader_s)
    finally:
        torch.set_num_threads(threads)
    return best


def _time_pipeline(
    dataset: TopDownDataset, batch: int,
    prepare: Callable[[dict[str, torch.Tensor], torch.device], dict[str, torch.Tensor]] | None,
    device: torch.device,
) -> tuple[float, float]:  # fmt: skip
    loader_s = device_s = 0.0
    for first in range(0, len(dataset), batch):
        start = time.perf_counter()
        samples = default_collate([dataset[i] for i in range(first, min(first + batch, len(dataset)))])
        collated = time.perf_counter()
        if prepare is not None:
            prepare(samples, device)
        loader_s += collated - start
        device_s += time.perf_counter() - collated
    return loader_s, device_s


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", choices=[*PIPELINES, "both"], default="both")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (0: input only)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating training rounds; the fastest of each is summarised")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="hrnet_w32")
    parser.add_argument("--head", default="heatmap", choices=["heatmap", "kitpose"])
    parser.add_argument("--size", type=int, default=256, help="input side (pixels)")
    parser.add_argument("--augment", default="all")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--images", type=int, default=64, help="distinct generated images")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--input-rounds", type=int, default=3,
                        help="rounds of the per-core input pipeline timing (0: skip)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Timing]:
    args = parse_args(argv)
    device = torch.device(args.device)
    pipelines = PIPELINES if args.pipeline == "both" else (args.pipeline,)
    with tempfile.TemporaryDirectory() as folder:
        config = SynthConfig(images=args.images, seed=0, width=args.width, height=args.height)
        instances, skeleton, _ = read_coco(generate(folder, config))
        cache = ImageCache()
        cache.preload(inst.image_path for inst in instances)  # before the workers fork
        print(
            f"# {args.backbone}/{args.head} {args.size}x{args.size} K={skeleton.num_keypoints} "
            f"batch={args.batch} steps={args.steps} warmup={args.warmup} workers={args.workers} "
            f"augment={args.augment} bf16={args.bf16} channels_last={args.channels_last} "
            f"compile={args.compile} device={device} "
            f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}) "
            f"torch={torch.__version__}; {len(instances)} instances from {args.images} "
            f"{args.width}x{args.height} images"
        )
        if args.input_rounds > 0:
            datasets = {p: make_dataset(instances, skeleton, args, p, cache) for p in pipelines}
            rates = input_throughput(datasets, args.batch, args.input_rounds)
            print("input_pipeline: " + ", ".join(f"{k} {v:.0f} img/s/core"
                                                 for k, v in rates.items()))  # fmt: skip
        # One epoch covers the run, so worker start-up is paid once, as in a long epoch.
        needed = args.batch * (args.warmup + args.steps)
        train_set = [instances[i % len(instances)] for i in range(max(needed, len(instances)))]
        results: dict[str, Timing] = {}
        for _, pipeline in itertools.product(range(args.rounds), pipelines if args.steps else ()):
            timing = train(pipeline, train_set, skeleton, cache, args, device)
            if pipeline not in results or timing.step_s < results[pipeline].step_s:
                results[pipeline] = timing
            print(
                f"pipeline={pipeline:10s} step {timing.step_s * 1e3:8.1f} ms  "
                f"wait {timing.wait_s * 1e3:7.1f} ms ({timing.wait_share:5.1%})  "
                f"prepare {timing.prepare_s * 1e3:6.1f} ms ({timing.prepare_share:5.1%})  "
                f"img/s {timing.images_per_s:8.1f}"
            )
    if not results:
        return results
    # The summary takes each pipeline's fastest round (a shared machine only ever slows one).
    summary = ", ".join(f"{p} wait {t.wait_share:.1%} of step" for p, t in results.items())
    speeds = ", ".join(f"{p} {t.images_per_s:.1f}" for p, t in results.items())
    print(f"data_wait: {summary}; img/s {speeds}")
    return results


if __name__ == "__main__":
    main()
