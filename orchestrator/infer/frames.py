"""What ``posetune predict`` predicted, whatever the frames came from and wherever poses go.

The input side (an image folder or a video, boxes, a checkpoint or an ONNX model) fills a
:class:`Predictions`; the output side (COCO results, SLEAP, DeepLabCut, overlays, the
labelling package of ``--suggest``) reads one. Neither knows about the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pose_core.skeletons import Skeleton

# What ``posetune predict --format`` writes (orchestrator.infer.outputs writes each).
OUTPUT_FORMATS = ("coco", "slp", "dlc")


@dataclass(frozen=True)
class Frame:
    """One image of the input: a file of an image folder or one decoded video frame."""

    index: int  # 0-based position in the input: image number or video frame number
    name: str  # image path relative to --images, or "<video file name>#<frame number>"
    width: int
    height: int
    path: str | None = None  # the image file (image folders); None for video frames
    time_s: float | None = None  # video frames: seconds from the video's start


@dataclass(frozen=True)
class Pose:
    """One animal's predicted pose in one frame."""

    frame: int  # position in Predictions.frames (not Frame.index)
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels
    keypoints: np.ndarray  # (K, 2) image pixels
    scores: np.ndarray  # (K,) peak confidence per keypoint
    box_score: float = 1.0  # the detector's confidence (1 for whole-frame boxes)
    # The prediction on the mirrored crop alone, mapped back to the image (K, 2), when the
    # caller asked for it (``--suggest`` uses the left/right disagreement); None otherwise.
    flipped: np.ndarray | None = None


@dataclass
class Predictions:
    """Every frame that was read (with or without an animal) and every pose found."""

    skeleton: Skeleton
    frames: list[Frame] = field(default_factory=list)
    poses: list[Pose] = field(default_factory=list)
    video: str | None = None  # the video file, when the frames came from one
    fps: float | None = None  # the video's frame rate

    def poses_by_frame(self) -> dict[int, list[Pose]]:
        """Frame position -> its poses (frames without an animal are absent)."""
        grouped: dict[int, list[Pose]] = {}
        for pose in self.poses:
            grouped.setdefault(pose.frame, []).append(pose)
        return grouped


# Reads a frame's pixels again (BGR uint8, H x W x 3, as pose_core.checks.load_image gives),
# for overlays and labelling packages.
FrameReader = Callable[[Frame], np.ndarray]
