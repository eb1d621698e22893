"""``posetune predict``: poses for an image folder or a video, with a trained checkpoint or an
exported ONNX model.

The input side is three choices, each in its own module: the frames (an image folder,
:mod:`orchestrator.infer.image_folder`, or a video, :mod:`orchestrator.infer.video`), the
boxes (whole frame, MegaDetector JSON or a box file, :mod:`orchestrator.infer.boxes`) and the
model (:mod:`orchestrator.infer.runtime`). Every input is opened and checked before the first
frame is predicted, and a video that stops decoding stops the run before anything is written;
the predictions then go to :func:`orchestrator.infer.outputs.write_outputs` (and, for a
video, the overlay video). Images of a folder that do not decode are left out and listed on
stderr at the end; the predictions for the others are still written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol, TextIO, TypeVar

import numpy as np

from orchestrator.infer.boxes import (
    BoxSource,
    box_file,
    megadetector_images,
    megadetector_video,
    whole_frame,
)
from orchestrator.infer.frames import Frame, FrameReader, Pose, Predictions
from orchestrator.infer.image_folder import ImageFolder
from orchestrator.infer.outputs import write_outputs
from orchestrator.infer.runtime import BATCH, Runner, checkpoint_runner, onnx_runner
from orchestrator.infer.suggest import check_destinations, needs_flipped, write_suggestions
from orchestrator.infer.video import VideoFrames, write_overlay_video
from pose_core.checks import BadImage
from pose_core.records import Instance

CHUNK = 2 * BATCH  # frames decoded and predicted at a time: a long video never sits in memory
T = TypeVar("T")


class FrameSource(Protocol):
    """Frames in input order with their pixels, and a way to read one again."""

    @property
    def count(self) -> int: ...

    @property
    def skipped(self) -> list[BadImage]: ...

    @property
    def read_frame(self) -> FrameReader: ...

    def frames(self) -> Iterator[tuple[Frame, np.ndarray]]: ...


@dataclass(frozen=True)
class PredictOutcome:
    """What ``posetune predict`` wrote, and the images it left out."""

    results: list[dict[str, Any]]
    skipped: tuple[BadImage, ...]


def open_inputs(args: argparse.Namespace) -> tuple[FrameSource, BoxSource]:
    """The frames and boxes ``args`` ask for, checked (ValueError / FileNotFoundError)."""
    if args.video is None:
        video_only = [flag for flag, value in (("--stride", args.stride != 1), (
            "--start", args.start is not None), ("--end", args.end is not None), (
            "--boxes", args.boxes is not None)) if value]
        if video_only:
            hint = " (an image folder takes boxes from --detections)" if args.boxes else ""
            raise ValueError(f"{', '.join(video_only)}: only with --video{hint}")
        folder = ImageFolder(args.images)
        boxes = megadetector_images(args.detections, args.threshold) if args.detections \
            else whole_frame
        return folder, boxes
    if args.overlay and not args.overlay.lower().endswith(".mp4"):
        raise ValueError(f"--overlay {args.overlay}: with --video the overlay is a video; "
                         "give a file name ending in .mp4")
    source = VideoFrames(args.video, args.stride, args.start, args.end)
    video = source.video
    if args.detections:
        boxes = megadetector_video(args.detections, video.path, video.frame_count,
                                   args.threshold)
    elif args.boxes:
        boxes = box_file(args.boxes, video.path, video.frame_count, args.threshold)
    else:
        boxes = whole_frame
    return source, boxes


def run_predict(args: argparse.Namespace) -> PredictOutcome:
    check_destinations(args)
    source, boxes = open_inputs(args)
    runner = onnx_runner(args.model, args.device) if args.model \
        else checkpoint_runner(args.checkpoint, args.device)
    clip = source if isinstance(source, VideoFrames) else None
    video = clip.video if clip else None
    preds = Predictions(skeleton=runner.skeleton, video=video.path if video else None,
                        fps=video.fps if video else None)
    progress = Progress(source.count)
    try:
        for chunk in chunked(source.frames(), CHUNK):
            predict_chunk(runner, chunk, boxes, preds, needs_flipped(args))
            progress.advance(len(chunk))
    finally:
        rate = progress.close()  # the error, if any, starts on its own line
    results = write_outputs(preds, args.out, args.format, None if video else args.overlay,
                            source.read_frame)
    if clip is not None and args.overlay:
        write_overlay_video(preds, clip.video, clip.numbers, args.overlay)
    what = f"frame(s) of {video.name}" if video else "image(s)"
    print(f"{len(results)} animal(s) in {len(preds.frames)} {what} -> {args.out} "
          f"({rate:.1f} frames/s, {runner.description})")
    write_suggestions(args, preds, source.read_frame)
    if source.skipped:
        assert isinstance(source, ImageFolder)
        print(f"posetune predict: skipped {len(source.skipped)} of {source.count} image(s) "
              "that do not decode:", file=sys.stderr)
        for image in source.skipped:
            print(f"  {source.relative(image.path)}: {image.reason}", file=sys.stderr)
    return PredictOutcome(results, tuple(source.skipped))


def predict_chunk(runner: Runner, chunk: list[tuple[Frame, np.ndarray]], boxes: BoxSource,
                  preds: Predictions, with_mirrored: bool = False) -> None:
    """Predict the animals of ``chunk``'s frames and append frames and poses to ``preds``
    (with the mirrored crop's own prediction in ``Pose.flipped`` when ``with_mirrored``)."""
    images: dict[str, np.ndarray] = {}
    instances: list[Instance] = []
    owners: list[tuple[int, float]] = []
    k = runner.skeleton.num_keypoints
    for frame, image in chunk:
        images[frame.name] = image
        preds.frames.append(frame)
        for box in boxes(frame):
            if box.w <= 1 or box.h <= 1:
                continue
            instances.append(Instance(
                image_path=frame.name, image_id=frame.index + 1,
                annotation_id=len(instances) + 1, width=frame.width, height=frame.height,
                bbox=box.bbox, keypoints=np.zeros((k, 3), dtype=np.float32),
                area=box.w * box.h, source="predict"))
            owners.append((len(preds.frames) - 1, box.score))
    if not instances:
        return
    coords, scores = runner.predict(instances, ChunkImages(images))
    mirrored: Sequence[np.ndarray | None] = [None] * len(instances)
    if with_mirrored:
        mirrored = list(runner.predict_mirrored(instances, ChunkImages(images)))
    for inst, (owner, box_score), coord, score, flipped in zip(
            instances, owners, coords, scores, mirrored, strict=True):
        preds.poses.append(Pose(frame=owner, bbox=inst.bbox, keypoints=coord, scores=score,
                                box_score=box_score, flipped=flipped))


class ChunkImages:
    """The decoded frames of one chunk by name (a :class:`pose_core.dataset.ImageSource`)."""

    def __init__(self, images: dict[str, np.ndarray]) -> None:
        self.images = images

    def get(self, path: str) -> np.ndarray:
        return self.images[path]

    def preload(self, paths: Iterable[str]) -> None:
        """Everything is decoded already."""


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Progress:
    """Frames done, of how many, and frames per second on one stderr line that rewrites
    itself, on a terminal only (logs and pipes get the summary line alone)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = self.shown = time.perf_counter()

    def rate(self) -> float:
        return self.done / max(time.perf_counter() - self.started, 1e-9)

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.live and (now - self.shown >= 0.25 or self.done >= self.total):
            self.shown = now
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            print(f"\rpredict [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                  f" frames, {self.rate():.1f} frames/s", end="", file=self.stream, flush=True)

    def close(self) -> float:
        """End the line; returns the frames per second over the whole run."""
        if self.live and self.done:
            print(file=self.stream, flush=True)
        return self.rate()
